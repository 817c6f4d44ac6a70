"""The transport's promises against HTTP servers nobody here wrote (slow: real servers, real time).

Each server of ``_servers.SERVERS`` serves the echo app in a subprocess on a loopback port with a
short keep-alive, and each cell of the matrix (server x transport: the tool's ``NetworkTransport``,
and httpx's ``AsyncHTTPTransport``, which proxied runs and ``OMNEO_TRANSPORT=httpx`` take) checks:

- kept-alive volume: hundreds of GETs over four connections, every body compared byte for
  byte, from empty to 1 MiB, plain, gzip and chunked, with JSON POSTs in between;
- the close race: requests sent after idle gaps swept across the server's keep-alive, so that
  some go out on a connection the server is closing. The tool's transport must bring every GET
  back whole with no error (it replaces such a connection at once); httpx's raises instead, and
  its GETs are sent again as the client's retry policy would (counted, allowed on that path).

Everywhere, a POST may come back, or fail with a clean httpx ``TransportError`` that the client's
retry policy retries (RFC 9110 §9.2.2: a transport re-sends no POST of its own); the echo app
counts each POST's id, and no POST is ever applied more times than the test sent it.

Then a real ``assign`` of a few hundred addresses through the sandbox app served by two of those
servers, once per transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import httpx
import pytest

import omneo_status
from omneo_status.api.transport import NetworkTransport
from omneo_status.sandbox import generate_tenant

from ._servers import SANDBOX_SEED, SERVERS, payload
from .conftest import write_csv

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parent / "_servers.py"
KEEP_ALIVE = 0.5
"""The servers' keep-alive in seconds: short, so that idle gaps around it stay short."""
WAITRESS_KEEP_ALIVE = 1.0
"""waitress counts whole seconds, and closes an idle connection at its next cleanup (every
second): the gaps sweep that whole window."""
TIMEOUTS: Mapping[str, float | None] = {"connect": 10.0, "read": 20.0, "write": 20.0, "pool": 20.0}
SIZES = (0, 1, 137, 1024, 4096, 16_387, 65_537, 262_144)
BIG = 1_048_576
POST_PADS = (0, 100, 2_000, 70_000)
TRANSPORTS = ("network", "httpx")
LANES = 32
"""Connections idling side by side in the close race, one transport each, so that each lane's
gap is exactly its connection's idle time."""
GAPS = 96
POST_ATTEMPTS = 3


# -- the servers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """A server of the matrix: its name, its base URL, and the keep-alive it was given."""

    name: str
    url: str
    keep_alive: float


@contextlib.contextmanager
def serving(name: str, keep_alive: float, *extra: str) -> Iterator[str]:
    """``_servers.py NAME KEEP_ALIVE EXTRA...`` in a subprocess; its URL once it answers. The
    process is stopped on the way out, whatever happened."""
    source_root = str(Path(omneo_status.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([source_root, os.environ.get("PYTHONPATH", "")]),
    }
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), name, str(keep_alive), *extra],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        watchdog = threading.Timer(30, process.kill)  # a server that never prints its port
        watchdog.start()
        try:
            assert process.stdout is not None
            port = process.stdout.readline().strip()
            watchdog.cancel()
            assert port.isdigit(), f"{name} did not start: {_tail(log)}"
            url = f"http://127.0.0.1:{port}"
            _wait_until_it_answers(url, process, log)
            yield url
        finally:
            watchdog.cancel()
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _wait_until_it_answers(url: str, process: subprocess.Popen[str], log: IO[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, f"the server stopped: {_tail(log)}"
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{url}/counts", timeout=2)
            return  # any answer: the echo app's counts, or the sandbox's 404
        assert time.monotonic() < deadline, f"the server never answered: {_tail(log)}"
        time.sleep(0.05)


def _tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:]


@pytest.fixture(scope="module", params=SERVERS)
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """Each server of the matrix, started once for the module's tests and stopped after."""
    name = str(request.param)
    keep_alive = WAITRESS_KEEP_ALIVE if name == "waitress" else KEEP_ALIVE
    with serving(name, keep_alive) as url:
        yield Served(name, url, keep_alive)


# -- the transports, driven as the client drives them ---------------------------------------------


@dataclass(frozen=True)
class Got:
    status: int
    headers: Mapping[str, str]
    """Names in any case."""
    body: bytes


class Sender(Protocol):
    async def send(self, method: str, url: str, content: bytes | None = None) -> Got: ...
    async def aclose(self) -> None: ...


def _headers(content: bytes | None) -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": "omneo-status-conformance"}
    if content is not None:
        headers["Content-Type"] = "application/json"
    return headers


class Network:
    """The tool's transport, through ``fetch`` as ``OmneoClient`` calls it."""

    def __init__(self, connections: int) -> None:
        self._transport = NetworkTransport(connections)

    async def send(self, method: str, url: str, content: bytes | None = None) -> Got:
        got = await self._transport.fetch(method, url, _headers(content), content, TIMEOUTS)
        return Got(got.status_code, got.headers, got.content)

    async def aclose(self) -> None:
        await self._transport.aclose()


class ThroughHttpx:
    """httpx's transport with the limits the client gives it, sent an ``httpx.Request`` and
    read whole, as the client does for every transport without a ``fetch``."""

    def __init__(self, connections: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._transport = httpx.AsyncHTTPTransport(limits=limits)

    async def send(self, method: str, url: str, content: bytes | None = None) -> Got:
        headers = {**_headers(content), "Accept-Encoding": "gzip, deflate"}
        request = httpx.Request(
            method, url, headers=headers, content=content, extensions={"timeout": TIMEOUTS}
        )
        response = await self._transport.handle_async_request(request)
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        return Got(response.status_code, response.headers, body)

    async def aclose(self) -> None:
        await self._transport.aclose()


def sender(transport: str, connections: int) -> Sender:
    return Network(connections) if transport == "network" else ThroughHttpx(connections)


# -- what a cell saw -------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one cell of the matrix saw; ``problems`` and ``get_errors`` must end empty."""

    gets: int = 0
    gzip: int = 0
    chunked: int = 0
    posts: int = 0
    reused: int = 0
    """Requests (first attempts) that went out on the connection the previous one used."""
    replaced: int = 0
    """... and on another connection: the server had closed the previous one."""
    peers: set[int] = field(default_factory=set)
    get_errors: list[str] = field(default_factory=list)
    post_errors: list[str] = field(default_factory=list)
    """Clean transport errors of POSTs, each retried as the client's retry policy would."""
    applied: dict[str, int] = field(default_factory=dict)
    """Each POSTed id's count, as the last answer to it said."""
    problems: list[str] = field(default_factory=list)

    def follow(self, previous: int | None, peer: int) -> None:
        self.peers.add(peer)
        if previous is not None:
            if peer == previous:
                self.reused += 1
            else:
                self.replaced += 1


async def get_bytes(
    client: Sender,
    base: str,
    size: int,
    tally: Tally,
    *,
    gzip: bool,
    chunked: bool,
    tries: int = 1,
) -> int | None:
    """GET ``/bytes/size`` (up to ``tries`` times while the transport fails) and check every
    byte of it; the server's view of our port on the first try, or None."""
    target = f"/bytes/{size}?gzip={int(gzip)}&chunked={int(chunked)}"
    for attempt in range(1, tries + 1):
        try:
            got = await client.send("GET", base + target)
        except httpx.TransportError as exc:
            tally.get_errors.append(f"GET {target} (try {attempt}): {type(exc).__name__}: {exc}")
            continue
        tally.gets += 1
        coding = got.headers.get("content-encoding", "")
        framing = got.headers.get("transfer-encoding", "")
        tally.gzip += coding == "gzip"
        tally.chunked += framing == "chunked"
        if got.status != 200 or got.body != payload(size):
            tally.problems.append(f"GET {target}: {got.status}, {len(got.body)} bytes, not those")
        if (coding == "gzip") != gzip or (framing == "chunked") != chunked:
            tally.problems.append(f"GET {target}: came {coding or 'plain'}, {framing or 'framed'}")
        return int(got.headers["x-peer"]) if attempt == 1 else None
    tally.problems.append(f"GET {target}: no answer in {tries} tries")
    return None


async def post_echo(client: Sender, base: str, key: str, pad: int, tally: Tally) -> int | None:
    """POST ``key`` to ``/echo`` until it is answered (a transport error is retried, as the
    client's retry policy retries it), checking it was applied no more often than it was sent;
    the server's view of our port on the first attempt, or None when that one failed."""
    body = json.dumps({"id": key, "pad": "x" * pad}).encode()
    for attempt in range(1, POST_ATTEMPTS + 1):
        try:
            got = await client.send("POST", f"{base}/echo", body)
        except httpx.TransportError as exc:
            tally.post_errors.append(f"POST {key} (try {attempt}): {type(exc).__name__}: {exc}")
            continue
        tally.posts += 1
        echo = json.loads(got.body)
        tally.applied[key] = echo["count"]
        if got.status != 200 or echo["id"] != key or echo["length"] != len(body):
            tally.problems.append(f"POST {key}: {got.status} {echo}")
        if echo["count"] > attempt:
            tally.problems.append(f"POST {key} applied {echo['count']} times, sent {attempt}")
        return int(got.headers["x-peer"]) if attempt == 1 else None
    tally.problems.append(f"POST {key}: no answer in {POST_ATTEMPTS} tries")
    return None


async def check_counts(base: str, tally: Tally) -> None:
    """The server applied each id exactly as often as its last answer said: nothing later."""
    async with httpx.AsyncClient() as plain:
        counts = (await plain.get(f"{base}/counts")).json()
    mine = {key: counts.get(key) for key in tally.applied}
    assert mine == tally.applied


def describe(served: Served, transport: str, tally: Tally) -> str:
    return (
        f"{served.name} x {transport}: {tally.gets} GETs ({tally.gzip} gzip, {tally.chunked} "
        f"chunked), {tally.posts} POSTs, {tally.reused} reused, {tally.replaced} replaced; "
        f"GET errors {tally.get_errors[:5]}; POST errors {tally.post_errors[:5]}; "
        f"problems {tally.problems[:5]}"
    )


# -- the matrix ----------------------------------------------------------------------------------


def volume_plan() -> list[tuple[str, int, bool, bool]]:
    """300 GETs (every size x gzip x chunked, 1 MiB among them) with 200 POSTs in between."""
    gets = [
        ("GET", size, gzip, chunked)
        for _ in range(9)
        for size in SIZES
        for gzip in (False, True)
        for chunked in (False, True)
    ]
    gets += [
        ("GET", BIG, gzip, chunked)
        for _ in range(3)
        for gzip in (False, True)
        for chunked in (False, True)
    ]
    posts = iter([("POST", POST_PADS[i % len(POST_PADS)], False, False) for i in range(200)])
    plan: list[tuple[str, int, bool, bool]] = []
    for i, get in enumerate(gets):  # three GETs, two POSTs, three GETs, ...
        plan.append(get)
        if i % 3 == 2:
            plan += itertools.islice(posts, 2)
    return plan


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_kept_alive_answers_come_back_whole(served: Served, transport: str) -> None:
    tally = Tally()
    plan = iter(enumerate(volume_plan()))
    client = sender(transport, 4)

    async def worker() -> None:
        for i, (method, size, gzip, chunked) in plan:
            if method == "GET":
                peer = await get_bytes(client, served.url, size, tally, gzip=gzip, chunked=chunked)
            else:
                peer = await post_echo(client, served.url, f"{transport}-v{i}", size, tally)
            if peer is not None:  # kept alive: a port the server has seen before
                tally.reused += peer in tally.peers
                tally.peers.add(peer)

    try:
        async with asyncio.timeout(120):
            await asyncio.gather(*(worker() for _ in range(4)))
    finally:
        await client.aclose()
    summary = describe(served, transport, tally)
    assert tally.problems == [] and tally.get_errors == [], summary
    assert (tally.gets, tally.gzip, tally.chunked) == (300, 150, 150), summary
    assert tally.posts == len(tally.applied) == 200, summary
    # Connections were kept alive: most requests went out on one already open.
    assert tally.reused * 2 >= tally.gets + tally.posts, summary
    await check_counts(served.url, tally)


def schedule(served: Served) -> list[list[tuple[float, str]]]:
    """Each lane's steps, ``(idle gap, method)``: first a gap of half the keep-alive (the
    connection is still open), then gaps swept evenly across the server's close, GETs and POSTs
    in turn: +-25 ms around its keep-alive, or waitress's whole cleanup window."""
    low, high = (
        (served.keep_alive - 0.1, served.keep_alive + 1.1)
        if served.name == "waitress"
        else (served.keep_alive - 0.025, served.keep_alive + 0.025)
    )
    sweep = [low + (high - low) * i / (GAPS - 1) for i in range(GAPS)]
    return [
        [(served.keep_alive / 2, "GET")]
        + [(gap, ("GET", "POST")[(lane + i) % 2]) for i, gap in enumerate(sweep[lane::LANES])]
        for lane in range(LANES)
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connections_closed_while_idle_are_replaced(served: Served, transport: str) -> None:
    tally = Tally()
    lanes = schedule(served)
    # httpx's transport does not replace a connection closed under a request: it raises, and
    # the client's retry policy sends the GET again (after a retry's wait).
    tries = 1 if transport == "network" else POST_ATTEMPTS

    async def lane(number: int) -> None:
        client = sender(transport, 1)
        try:
            previous = await get_bytes(client, served.url, 64, tally, gzip=False, chunked=False)
            for step, (gap, method) in enumerate(lanes[number]):
                await asyncio.sleep(gap)
                if method == "GET":
                    # Never chunked here: waitress closes the connection after a chunked answer.
                    size, gzip = SIZES[(number + step) % len(SIZES)], step % 2 == 1
                    peer = await get_bytes(
                        client, served.url, size, tally, gzip=gzip, chunked=False, tries=tries
                    )
                else:
                    key = f"{transport}-r{number}-{step}"
                    peer = await post_echo(client, served.url, key, 2_000, tally)
                if peer is not None:
                    tally.follow(previous, peer)
                previous = peer
        finally:
            await client.aclose()

    async with asyncio.timeout(120):
        await asyncio.gather(*(lane(number) for number in range(LANES)))
    summary = describe(served, transport, tally)
    assert tally.problems == [], summary
    assert tally.get_errors == [] or transport == "httpx", summary
    steps = [method for steps in lanes for _, method in steps]
    assert tally.gets == LANES + steps.count("GET"), summary
    assert len(tally.applied) == steps.count("POST"), summary
    # The gaps straddle the server's close: some connections were still open, some not.
    assert tally.reused >= LANES // 2 and tally.replaced > 0, summary
    await check_counts(served.url, tally)


# -- a real run ----------------------------------------------------------------------------------

PROFILES = 400
TARGETS = 300
MISSING = 5


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("server", ["uvicorn-h11", "hypercorn"])
def test_a_real_assign_run_through_a_third_party_server(
    server: str, transport: str, tmp_path: Path
) -> None:
    """``assign`` in a subprocess, one lookup per address, against the sandbox app served by
    ``server`` (the same generated tenant on both sides, so the counts are known)."""
    tenant = generate_tenant(PROFILES, seed=SANDBOX_SEED)  # what _servers.py --sandbox serves
    chosen = list(tenant.profiles.values())[:TARGETS]
    had = sum("vip" in p.statuses for p in chosen)
    vip_before = sum("vip" in p.statuses for p in tenant.profiles.values())
    emails = [p.email for p in chosen] + [f"nobody{i}@example.com" for i in range(MISSING)]
    csv = write_csv(tmp_path / "in.csv", emails)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNEO_")}
    env.update(OMNEO_TOKEN="sandbox-token", OMNEO_STATE_DIR=str(tmp_path / "state"))
    if transport == "httpx":
        env["OMNEO_TRANSPORT"] = "httpx"
    with serving(server, 1.0, "--sandbox", str(PROFILES)) as url:
        base_url = f"{url}/api"
        trace = tmp_path / "trace.jsonl"
        args = ["assign", "vip", str(csv), "--base-url", base_url, "--yes", "--json"]
        args += ["--trace", str(trace)]
        result = subprocess.run(
            [sys.executable, "-m", "omneo_status", *args, "--lookup", "single"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        holders = httpx.get(
            f"{base_url}/v3/profiles",
            params={"filter[statuses.handle]": "vip", "page[size]": "1"},
            headers={"Authorization": "Bearer sandbox-token"},
            timeout=10,
        ).json()["meta"]["total"]
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["rows"] == TARGETS + MISSING
    assert doc["counts"]["assigned"] == TARGETS - had
    assert doc["counts"]["already_had"] == had
    assert doc["counts"]["not_found"] == MISSING
    assert holders == vip_before + TARGETS - had
    first = json.loads(trace.read_text(encoding="utf-8").splitlines()[0])
    assert first["transport"]["name"] == ("httpx" if transport == "httpx" else "builtin")
