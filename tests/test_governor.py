"""The rate governor: windows followed, 429s honoured, concurrency cut and regrown, max-rps
spacing, first come first served, and whole runs through the CLI at several concurrencies.

Time is virtual: the sandbox, the client and the governor share an :class:`VirtualClock`,
which moves only when every task is waiting for it, to the earliest wake-up. Latency is
simulated on the same clock by :class:`LatencyTransport`, so no test sleeps for real.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import SecretStr

from omneo_status.api.client import OmneoClient, RetryPolicy
from omneo_status.api.governor import RateGovernor, Ticket, parse_retry_after
from omneo_status.sandbox import (
    RecordedRequest,
    SandboxConfig,
    Tenant,
    create_app,
    generate_tenant,
)

from .conftest import Sandbox, VirtualClock, summary_of, write_csv

T = TypeVar("T")
TOKEN = "sandbox-token"


async def _together(*work: Awaitable[T]) -> list[T]:
    return list(await asyncio.gather(*work))


class LatencyTransport(httpx.AsyncBaseTransport):
    """The sandbox in-process, with virtual one-way latency (and seeded jitter) each way."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, clock: VirtualClock, latency: float, seed: int
    ) -> None:
        self.inner = inner
        self.clock = clock
        self.latency = latency
        self.rng = random.Random(seed)

    def _delay(self) -> float:
        return self.latency * (0.5 + self.rng.random()) if self.latency else 0.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.clock.sleep(self._delay())
        response = await self.inner.handle_async_request(request)
        await response.aread()
        await self.clock.sleep(self._delay())
        return response


def paced(clock: VirtualClock, **limits: Any) -> RateGovernor:
    """A governor whose clock, waits and dates are the virtual ``clock``'s (``limits``: its
    ``concurrency`` and ``max_rps``)."""
    return RateGovernor(clock=clock.monotonic, wall_clock=clock.wall, sleep=clock.sleep, **limits)


def sandboxed_client(
    tenant: Tenant,
    clock: VirtualClock,
    *,
    rate_limit: int | None,
    rate_window: float = 1.0,
    latency: float = 0.0,
    concurrency: int = 8,
    max_rps: float | None = None,
    seed: int = 0,
) -> OmneoClient:
    config = SandboxConfig(
        rate_limit=rate_limit,
        rate_window=rate_window,
        clock=clock.monotonic,
        wall_clock=clock.wall,
    )
    transport = LatencyTransport(
        httpx.ASGITransport(app=create_app(tenant, config)), clock, latency, seed
    )
    governor = paced(clock, concurrency=concurrency, max_rps=max_rps)
    return OmneoClient(
        "http://sandbox.test/api",
        SecretStr(TOKEN),
        transport=transport,
        governor=governor,
        retry=RetryPolicy(max_retries=8, max_total_wait=3600),
        sleep=clock.sleep,
        rng=random.Random(seed),
    )


async def look_up_all(client: OmneoClient, emails: Sequence[str], workers: int) -> int:
    """Look every email up with ``workers`` concurrent tasks; returns how many were found."""
    queue = list(reversed(emails))
    found = 0

    async def worker() -> None:
        nonlocal found
        while queue:
            page = await client.find_profiles({"filter[email]": queue.pop()})
            found += len(page.profiles)

    async with client:
        await asyncio.gather(*(worker() for _ in range(workers)))
    return found


def looked_up(profiles: int, addresses: int, **client: Any) -> Tenant:
    """A tenant of ``profiles`` after its first ``addresses`` customers were looked up, 8 at a
    time, by ``sandboxed_client(**client)`` on virtual time (its ``requests`` tell how)."""
    clock = VirtualClock()
    tenant = generate_tenant(profiles)
    emails = [f"customer{n}@example.com" for n in range(1, addresses + 1)]
    clock.run(look_up_all(sandboxed_client(tenant, clock, **client), emails, 8))
    return tenant


def server_windows(
    requests: Sequence[RecordedRequest], window: float
) -> list[list[RecordedRequest]]:
    """The requests grouped as the sandbox's limiter counts them (by arrival time)."""
    windows: list[list[RecordedRequest]] = []
    opened = 0.0
    for request in sorted(requests, key=lambda r: r.at):
        if not windows or request.at >= opened + window:
            opened = request.at
            windows.append([])
        windows[-1].append(request)
    return windows


# -- following the windows -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "window", "latency", "concurrency", "seed"),
    [
        (10, 1.0, 0.0, 8, 0),
        (10, 1.0, 0.02, 8, 1),
        (10, 1.0, 0.02, 8, 2),
        (25, 2.0, 0.05, 16, 3),
        (5, 1.0, 0.01, 64, 4),
        (12, 3.0, 0.1, 4, 5),
        (40, 1.0, 0.005, 32, 6),
    ],
)
def test_no_window_after_the_first_exceeds_the_limit(
    limit: int, window: float, latency: float, concurrency: int, seed: int
) -> None:
    clock = VirtualClock()
    tenant = generate_tenant(300)
    emails = [f"customer{n}@example.com" for n in random.Random(seed).sample(range(1, 301), 150)]
    client = sandboxed_client(
        tenant,
        clock,
        rate_limit=limit,
        rate_window=window,
        latency=latency,
        concurrency=concurrency,
        seed=seed,
    )

    found = clock.run(look_up_all(client, emails, concurrency))

    assert found == len(emails)
    windows = server_windows(tenant.requests, window)
    assert len(windows) >= len(emails) // limit
    assert [len(hits) for hits in windows[1:] if len(hits) > limit] == []
    throttled = [r for r in tenant.requests if r.status == 429]
    assert len(throttled) <= 1  # the one request that finds out how long a window is
    assert client.governor.stats.throttled == len(throttled)
    assert client.governor.window == window
    assert client.governor.limit == limit


def test_the_limit_is_used_not_just_respected() -> None:
    """Each full window carries (nearly) the whole limit: the governor does not idle."""
    tenant = looked_up(300, 200, rate_limit=20, latency=0.01)
    full = server_windows(tenant.requests, 1.0)[:-1]
    assert all(len(hits) >= 19 for hits in full), [len(hits) for hits in full]


def test_max_rps_caps_the_rate_below_the_limit() -> None:
    tenant = looked_up(100, 60, rate_limit=50, max_rps=10)
    times = sorted(r.at for r in tenant.requests)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.1 - 1e-6  # the wall clock of the log is a float near 1.8e9
    assert all(r.status == 200 for r in tenant.requests)


# -- 429s ------------------------------------------------------------------------------------


def test_no_request_reaches_the_server_before_a_429s_reset() -> None:
    tenant = looked_up(100, 80, rate_limit=10, rate_window=2.0, latency=0.02)
    ordered = sorted(tenant.requests, key=lambda r: r.at)
    refused = [i for i, r in enumerate(ordered) if r.status == 429]
    assert refused
    windows = server_windows(ordered, 2.0)
    for index in refused:
        opened = next(w[0].at for w in windows if ordered[index] in w)
        later = ordered[index + 1 :]
        assert all(r.at >= opened + 2.0 for r in later)


def scripted(*answers: tuple[int, dict[str, str]]) -> Callable[[httpx.Request], httpx.Response]:
    replies = iter(answers)

    def reply(request: httpx.Request) -> httpx.Response:
        status, headers = next(replies)
        return httpx.Response(status, headers=headers, json={"data": []})

    return reply


@pytest.mark.parametrize(
    "retry_after",
    ["7", format_datetime(datetime.fromtimestamp(1_800_001_007.0, UTC), usegmt=True)],
)
def test_retry_after_is_honoured_in_seconds_or_as_a_date(retry_after: str) -> None:
    clock = VirtualClock()
    governor = paced(clock)
    sent: list[float] = []

    def reply(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now)
        if len(sent) == 1:
            return httpx.Response(429, headers={"Retry-After": retry_after}, json={})
        return httpx.Response(200, json={"data": []})

    client = OmneoClient(
        "http://api.test/api",
        SecretStr(TOKEN),
        transport=httpx.MockTransport(reply),
        governor=governor,
        sleep=clock.sleep,
    )

    async def main() -> None:
        async with client:
            await client.find_profiles({"filter[email]": "a@example.com"})

    clock.run(main())
    assert sent[0] == 1000.0
    assert sent[1] >= 1007.0
    assert governor.stats.throttled == 1


def test_a_throttled_governor_holds_every_request_until_the_reset() -> None:
    clock = VirtualClock()
    governor = paced(clock, concurrency=4)
    starts: list[float] = []

    async def request(status: int, headers: dict[str, str]) -> float | None:
        async with governor.slot() as ticket:
            starts.append(clock.now)
            return governor.observe(ticket, status, headers)

    async def main() -> None:
        wait = await request(429, {"retry-after": "3"})
        assert wait is not None and wait >= 3.0
        await asyncio.gather(*(request(200, {}) for _ in range(5)))

    clock.run(main())
    assert starts[0] == 1000.0
    assert min(starts[1:]) >= 1003.0


# -- concurrency -----------------------------------------------------------------------------


def ticket_of(governor: RateGovernor) -> Ticket:
    """Start one request and leave it in flight."""

    async def take() -> Ticket:
        context = governor.slot()
        return await context.__aenter__()

    return asyncio.run(take())


def test_concurrency_is_halved_once_per_burst_and_grows_back() -> None:
    governor = RateGovernor(concurrency=8)
    burst = [ticket_of(governor) for _ in range(3)]
    for ticket in burst:
        governor.observe(ticket, 429, {"retry-after": "0"})
    assert governor.concurrency == 4  # three 429s of one burst: one cut

    governor.observe(ticket_of(governor), 429, {"retry-after": "0"})
    assert governor.concurrency == 2  # a 429 of a later request: another cut

    for _ in range(100):
        governor.observe(ticket_of(governor), 200, {})
    assert governor.concurrency == 8
    assert governor.stats.concurrency_history[:2] == [4, 2]
    assert governor.stats.concurrency_history[-1] == 8


def test_no_more_requests_in_flight_than_the_concurrency() -> None:
    clock = VirtualClock()
    governor = paced(clock, concurrency=3)
    active = peak = 0

    async def request() -> None:
        nonlocal active, peak
        async with governor.slot() as ticket:
            active += 1
            peak = max(peak, active)
            await clock.sleep(0.1)
            active -= 1
            governor.observe(ticket, 200, {})

    clock.run(_together(*(request() for _ in range(20))))
    assert peak == 3
    assert governor.stats.requests == 20


def test_waiting_requests_go_first_come_first_served() -> None:
    clock = VirtualClock()
    governor = paced(clock, concurrency=1)
    order: list[str] = []

    async def request(name: str, hold: float) -> None:
        async with governor.slot() as ticket:
            order.append(name)
            await clock.sleep(hold)
            governor.observe(ticket, 200, {})

    async def hog() -> None:
        for i in range(3):  # comes back at once each time: must not jump the line
            await request(f"hog{i}", 0.1)

    async def main() -> None:
        await request("first", 0.0)
        await asyncio.gather(hog(), request("batch", 0.1))

    clock.run(main())
    assert order == ["first", "hog0", "batch", "hog1", "hog2"]


def test_max_rps_spaces_the_starts() -> None:
    clock = VirtualClock()
    governor = paced(clock, concurrency=8, max_rps=4)
    starts: list[float] = []

    async def request() -> None:
        async with governor.slot() as ticket:
            starts.append(clock.now)
            governor.observe(ticket, 200, {})

    clock.run(_together(*(request() for _ in range(12))))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) == pytest.approx(0.25)
    assert governor.stats.rate() == pytest.approx(12 / 2.75)


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts the requests in flight at the server (the most at once, too); with a
    ``capacity``, the server works on that many at a time, ``service`` seconds each, and the
    rest wait in its queue, so latency rises with every request beyond its capacity."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        clock: VirtualClock,
        *,
        service: float,
        capacity: int | None = None,
    ) -> None:
        self.inner = inner
        self.clock = clock
        self.service = service
        self.workers = asyncio.Semaphore(capacity if capacity is not None else 10_000)
        self.active = self.peak = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            async with self.workers:
                await self.clock.sleep(self.service)
                response = await self.inner.handle_async_request(request)
                await response.aread()
            return response
        finally:
            self.active -= 1


def levelled_client(
    clock: VirtualClock, ceiling: int, *, service: float, capacity: int | None = None
) -> tuple[OmneoClient, CountingTransport]:
    """A client over the sandbox (500 profiles, no rate limit) through a counting server."""
    config = SandboxConfig(clock=clock.monotonic, wall_clock=clock.wall)
    transport = CountingTransport(
        httpx.ASGITransport(app=create_app(generate_tenant(500), config)),
        clock,
        service=service,
        capacity=capacity,
    )
    governor = paced(clock, concurrency=ceiling)
    client = OmneoClient(
        "http://sandbox.test/api",
        SecretStr(TOKEN),
        transport=transport,
        governor=governor,
        sleep=clock.sleep,
    )
    return client, transport


EMAILS = [f"customer{n}@example.com" for n in range(1, 501)]


def test_the_level_starts_modest_and_grows_while_latency_holds() -> None:
    clock = VirtualClock()
    client, server = levelled_client(clock, 32, service=0.02)
    assert client.governor.concurrency == 8

    found = clock.run(look_up_all(client, EMAILS, 40))

    assert found == len(EMAILS)
    history = client.governor.stats.concurrency_history
    assert history == sorted(history)  # latency never rose: it only grew
    assert history[-1] == client.governor.concurrency == 32
    assert server.peak == 32


def test_the_level_backs_off_when_latency_rises() -> None:
    """A server that works on 12 requests at a time: beyond that, requests only queue."""
    clock = VirtualClock()
    client, server = levelled_client(clock, 32, service=0.02, capacity=12)

    found = clock.run(look_up_all(client, EMAILS, 40))

    assert found == len(EMAILS)
    history = client.governor.stats.concurrency_history
    cuts = [b for a, b in itertools.pairwise(history) if b < a]
    assert cuts  # no 429 or 5xx here: latency alone cut it
    assert client.governor.stats.throttled == 0
    assert max(history[history.index(cuts[0]) :]) <= 24  # it stays near the capacity
    assert server.peak < 32


def test_a_level_the_run_does_not_use_is_not_grown() -> None:
    clock = VirtualClock()
    client, server = levelled_client(clock, 32, service=0.02)

    clock.run(look_up_all(client, EMAILS[:200], 5))

    assert client.governor.concurrency == 8
    assert client.governor.stats.concurrency_history == []
    assert server.peak == 5


@pytest.mark.parametrize("ceiling", [1, 3, 12])
def test_the_level_never_exceeds_the_ceiling(ceiling: int) -> None:
    clock = VirtualClock()
    client, server = levelled_client(clock, ceiling, service=0.01)

    clock.run(look_up_all(client, EMAILS[:300], 40))

    assert client.governor.concurrency == ceiling
    assert max(client.governor.stats.concurrency_history, default=ceiling) <= ceiling
    assert server.peak == ceiling


def test_a_5xx_halves_the_level_once_per_burst() -> None:
    governor = RateGovernor(concurrency=8)
    burst = [ticket_of(governor) for _ in range(2)]
    for ticket in burst:
        governor.observe(ticket, 503, {})
    assert governor.concurrency == 4
    governor.observe(ticket_of(governor), 502, {})
    assert governor.concurrency == 2
    assert governor.stats.throttled == 0  # a 5xx is not a 429


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        RateGovernor(concurrency=0)
    with pytest.raises(ValueError, match="max_rps"):
        RateGovernor(max_rps=0)


# -- parse_retry_after -----------------------------------------------------------------------

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        (format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True), 30.0),
        (format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True), 0.0),
        ("Fri, 31 Dec 2027 23:59:59 GMT", datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | datetime | None) -> None:
    if isinstance(expected, datetime):
        expected = expected.timestamp() - NOW
    assert parse_retry_after(value, now_epoch=NOW) == expected


# -- whole runs through the CLI --------------------------------------------------------------


def addresses(tmp_path: Path, count: int, *, missing: int = 0) -> Path:
    emails = [f"customer{n}@example.com" for n in range(1, count + 1)]
    emails += [f"nobody{n}@example.com" for n in range(missing)]
    return write_csv(tmp_path / "emails.csv", emails)


@pytest.mark.parametrize("concurrency", ["1", "8", "64"])
def test_assign_accounts_for_every_row_at_any_concurrency(
    sandbox: Sandbox, tmp_path: Path, concurrency: str
) -> None:
    sandbox.tenant = generate_tenant(1200)
    had = {p.email for p in sandbox.tenant.profiles.values() if "vip" in p.statuses}
    path = addresses(tmp_path, 1100, missing=7)

    result = sandbox.run("assign", "vip", str(path), "--concurrency", concurrency, "--json")

    assert result.exit_code == 0, result.stderr
    counts = summary_of(result)["counts"]
    wanted = {f"customer{n}@example.com" for n in range(1, 1101)}
    assert counts["assigned"] == len(wanted - had)
    assert counts["already_had"] == len(wanted & had)
    assert counts["not_found"] == 7
    assert sum(counts.values()) == 1107
    holders = {p.email for p in sandbox.tenant.profiles.values() if "vip" in p.statuses}
    assert holders == had | wanted


def test_assign_under_a_rate_limit_accounts_for_every_row(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.tenant = generate_tenant(400)
    sandbox.config.rate_limit = 20
    before = {p.id: list(p.statuses) for p in sandbox.tenant.profiles.values()}
    path = addresses(tmp_path, 300, missing=3)

    result = sandbox.run("assign", "vip", str(path), "--concurrency", "8", "--json")

    assert result.exit_code == 0, result.stderr
    counts = summary_of(result)["counts"]
    assert sum(counts.values()) == 303
    assert counts["not_found"] == 3 and counts["failed"] == 0
    assert counts["assigned"] + counts["already_had"] == 300
    for profile in sandbox.tenant.profiles.values():
        number = int(profile.email.removeprefix("customer").split("@")[0])
        kept = before[profile.id]
        if number <= 300:
            assert profile.statuses[: len(kept)] == kept or set(kept) <= set(profile.statuses)
            assert "vip" in profile.statuses
        else:
            assert profile.statuses == kept
    throttled = [r for r in sandbox.tenant.requests if r.status == 429]
    assert len(throttled) <= 2


@pytest.mark.parametrize(("drift", "seed"), [(0.97, 0), (0.99, 1), (0.995, 2)])
def test_a_server_clock_running_slow_costs_one_429_per_miss_not_a_burst(
    drift: float, seed: int
) -> None:
    """The server's windows last longer than the governor can know: it must adapt."""
    clock = VirtualClock()
    tenant = generate_tenant(400)
    config = SandboxConfig(
        rate_limit=10,
        rate_window=1.0,
        clock=lambda: clock.now * drift,
        wall_clock=lambda: 1_800_000_000.0 + clock.now * drift,
    )
    transport = LatencyTransport(
        httpx.ASGITransport(app=create_app(tenant, config)), clock, 0.01, seed
    )
    client = OmneoClient(
        "http://sandbox.test/api",
        SecretStr(TOKEN),
        transport=transport,
        governor=paced(clock, concurrency=8),
        retry=RetryPolicy(max_retries=8, max_total_wait=3600),
        sleep=clock.sleep,
        rng=random.Random(seed),
    )
    emails = [f"customer{n}@example.com" for n in range(1, 301)]

    found = clock.run(look_up_all(client, emails, 8))

    assert found == len(emails)
    windows = server_windows(tenant.requests, 1.0)
    refused = [sum(r.status == 429 for r in hits) for hits in windows]
    assert max(refused[1:]) <= 1
    assert sum(refused) <= 6
    assert [len(hits) for hits in windows[1:] if len(hits) - 1 > 10] == []
