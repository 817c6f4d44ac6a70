"""Chunks that did not reach their end the normal way: a batch the tenant lost (404), a chunk
whose profiles stood still on a tenant without the batches endpoint (sent again once, then
given up), and a run interrupted while sending (rows never sent are simply sent; rows in doubt
are read back cheaply). Everything on the virtual clock, asserted on the sandbox's request log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from omneo_status import cli
from omneo_status.api.client import OmneoClient
from omneo_status.models import Action, Outcome, Profile
from omneo_status.options import JobSpec
from omneo_status.run.backoff import Backoff
from omneo_status.run.readback import ProfileReader
from omneo_status.run.watcher import BatchWatcher
from omneo_status.sandbox import SandboxConfig, Tenant, create_app, generate_tenant
from omneo_status.store.journal import Journal
from omneo_status.store.records import ChunkState, NewRow, Planned, RowRecord, Settled, Stage

from .conftest import EXAMPLES, Sandbox, VirtualClock, report_rows, summary_of, write_csv

EMAILS = str(EXAMPLES / "emails.csv")
BASE = "http://sandbox.test/api"
SENT_TO = (
    "ava.nguyen@example.com",
    "ben.carter@example.com",
    "grace.hall@example.com",
    "dan.lee@example.com",
)


def posts(tenant: Tenant) -> int:
    return sum(1 for r in tenant.requests if r.method == "POST")


def batch_polls(tenant: Tenant) -> list[tuple[str, int]]:
    return [(r.path, r.status) for r in tenant.requests if r.path.startswith("/api/v3/batches/")]


def single_reads(tenant: Tenant) -> list[str]:
    """The profile ids read one GET each (``GET /v3/profiles/{id}``)."""
    prefix = "/api/v3/profiles/"
    return [r.path[len(prefix) :] for r in tenant.requests if r.path.startswith(prefix)]


class StopAt(httpx.AsyncBaseTransport):
    """The sandbox, until a request matches ``when``: then the command is cancelled as Ctrl-C
    does, before that request reaches the tenant (or, with ``deliver``, once it has: its
    answer is lost). Each request first lets the other tasks run, as a network wait does (the
    in-process sandbox answers without one)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        clock: VirtualClock,
        when: Callable[[httpx.Request], bool],
        *,
        deliver: bool = False,
    ) -> None:
        self.inner = inner
        self.clock = clock
        self.when = when
        self.deliver = deliver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        if not self.when(request):
            return await self.inner.handle_async_request(request)
        if self.deliver:
            await self.inner.handle_async_request(request)
        self.clock.interrupt()
        await asyncio.sleep(0)
        raise AssertionError("the command was not cancelled")  # pragma: no cover


def nth_post(n: int) -> Callable[[httpx.Request], bool]:
    seen = [0]

    def when(request: httpx.Request) -> bool:
        seen[0] += request.method == "POST"
        return request.method == "POST" and seen[0] == n

    return when


def stalled_run(sandbox: Sandbox) -> None:
    """A run whose batch never finishes: it gives up waiting (exit 5)."""
    sandbox.config.batch_delay = 100_000.0
    stalled = sandbox.run("assign", "vip", EMAILS, "--poll-timeout", "8", "--json")
    assert stalled.exit_code == 5, stalled.stderr
    assert posts(sandbox.tenant) == 1


# -- 2. a batch the tenant no longer knows ---------------------------------------------------


def test_a_batch_the_tenant_lost_is_sent_again_at_once_and_the_rerun_ends_exit_0(
    sandbox: Sandbox,
) -> None:
    stalled_run(sandbox)
    [lost] = [path for path, _ in batch_polls(sandbox.tenant)][:1]
    sandbox.tenant.forget_batches()  # the tenant restarted without its queue
    sandbox.config.batch_delay = 0.0
    sandbox.tenant.requests.clear()
    started = sandbox.clock.now

    rerun = sandbox.run("assign", "vip", EMAILS, "--poll-timeout", "8", "--json")

    assert rerun.exit_code == 0, rerun.stderr
    assert sandbox.clock.now - started < 5.0  # no stall wait, no poll timeout either
    doc = summary_of(rerun)
    assert doc["counts"]["assigned"] == 4 and doc["counts"]["sent"] == 0
    assert all("vip" in sandbox.statuses(email) for email in SENT_TO)
    polls = batch_polls(sandbox.tenant)
    assert polls[0] == (lost, 404) and [s for p, s in polls if p == lost] == [404]
    assert posts(sandbox.tenant) == 1  # sent again once
    first, again = doc["batches"]
    assert (first["status"], first["resent"]) == ("lost", 4)
    assert (again["status"], again["resent"]) == ("success", 0)
    assert "(404): its 4 rows lacking the change are sent again, once" in rerun.stderr
    sent_again = [r for r in report_rows(Path(str(doc["report"]))) if r["outcome"] == "assigned"]
    assert all(r["batch_id"] == again["batch_id"] for r in sent_again)
    assert all("sent again" in r["detail"] for r in sent_again)

    shown = sandbox.run("assign", "vip", EMAILS, "--poll-timeout", "8")
    assert shown.exit_code == 0
    assert "Sent again: 4 rows" in shown.stdout


def lost_then_rerun(sandbox: Sandbox) -> str:
    """A stalled run, then the tenant forgets its batches; returns the lost batch's path."""
    stalled_run(sandbox)
    lost = batch_polls(sandbox.tenant)[0][0]
    sandbox.tenant.forget_batches()
    sandbox.config.batch_delay = 0.0
    return lost


RESEND_STOPS = {
    # The lost batch's first poll never reaches the tenant: the next run finds it lost.
    "at-the-lost-poll": (lambda r: r.url.path.startswith("/api/v3/batches/"), False),
    # The re-send is journaled as posting, its request never lands: read back, sent.
    "before-the-resend-lands": (lambda r: r.method == "POST", False),
    # The re-send lands, its answer is lost: read back, applied, not sent again.
    "after-the-resend-landed": (lambda r: r.method == "POST", True),
}


@pytest.mark.parametrize("stop", list(RESEND_STOPS))
def test_a_resend_stopped_at_any_point_is_resumed_and_lands_once(
    stop: str, sandbox: Sandbox, runtime: cli.Runtime
) -> None:
    lost_then_rerun(sandbox)
    when, deliver = RESEND_STOPS[stop]
    runtime.sandbox_transport = lambda: StopAt(
        sandbox.transport(), sandbox.clock, when, deliver=deliver
    )
    stopped = sandbox.run("assign", "vip", EMAILS, "--json")
    assert stopped.exit_code == 130, stopped.stderr
    runtime.sandbox_transport = sandbox.transport

    resumed = sandbox.run("assign", "vip", EMAILS, "--json", "--verify", "0")

    assert resumed.exit_code == 0, resumed.stderr
    doc = summary_of(resumed)
    assert doc["counts"]["assigned"] == 4 and doc["counts"]["failed"] == 0
    assert all("vip" in sandbox.statuses(email) for email in SENT_TO)
    landed = posts(sandbox.tenant)
    assert landed == 2  # the first send, and the one that replaced the lost batch
    assert single_reads(sandbox.tenant) == []  # in-doubt rows were read back in bulk


def test_a_batch_lost_again_after_its_resend_is_not_sent_a_third_time(sandbox: Sandbox) -> None:
    lost_then_rerun(sandbox)
    sandbox.config.batch_delay = 100_000.0  # the re-sent batch does not finish either
    again = sandbox.run("assign", "vip", EMAILS, "--poll-timeout", "8", "--json")
    assert again.exit_code == 5, again.stderr
    assert posts(sandbox.tenant) == 2
    sandbox.tenant.forget_batches()  # and the tenant loses that one too

    last = sandbox.run("assign", "vip", EMAILS, "--poll-timeout", "8", "--json")

    assert last.exit_code == 3, last.stderr
    assert posts(sandbox.tenant) == 2  # no third send
    doc = summary_of(last)
    assert doc["counts"]["failed"] == 4
    failed = [r for r in report_rows(Path(str(doc["report"]))) if r["outcome"] == "failed"]
    assert all("not sent a third time" in r["detail"] for r in failed)
    assert [b["status"] for b in doc["batches"]] == ["lost", "lost"]
    assert [b["resent"] for b in doc["batches"]] == [4, 0]


# -- 2. no batches endpoint: profiles that stand still ------------------------------------------


def test_without_a_batches_endpoint_a_stalled_chunk_is_sent_again_once_then_given_up(
    sandbox: Sandbox,
) -> None:
    sandbox.config.batches_endpoint = False
    sandbox.config.batch_delay = 100_000.0
    started = sandbox.clock.now
    first = sandbox.run("assign", "vip", EMAILS, "--stall-timeout", "30", "--json")

    assert first.exit_code == 5, first.stderr
    assert posts(sandbox.tenant) == 2  # sent, stood still for 30 s, sent again once
    assert 60.0 <= sandbox.clock.now - started < 90.0  # two stall timeouts, not more
    doc = summary_of(first)
    assert doc["counts"]["sent"] == 4 and doc["state"] == "gave_up_waiting"
    stalled, resent = doc["batches"]
    assert (stalled["status"], stalled["resent"]) == ("stalled", 4)
    assert resent["resent"] == 0
    assert "sent again, once" in first.stderr

    rerun = sandbox.run("assign", "vip", EMAILS, "--stall-timeout", "30", "--json")
    assert rerun.exit_code == 5, rerun.stderr
    assert posts(sandbox.tenant) == 2  # never sent a third time

    sandbox.config.batch_delay = 0.0
    sandbox.tenant.process_due_batches(float("inf"))
    done = sandbox.run("assign", "vip", EMAILS, "--stall-timeout", "30", "--json")
    assert done.exit_code == 0, done.stderr
    assert summary_of(done)["counts"]["assigned"] == 4
    assert posts(sandbox.tenant) == 2


# -- 5. a resume after an interruption while sending -------------------------------------------


def sent_profiles(tenant: Tenant) -> list[str]:
    """The profile ids of every batch POST that reached the tenant, in order."""
    return [
        entry["profile_id"]
        for r in tenant.requests
        if r.method == "POST"
        for entry in r.body["profiles"]
    ]


def test_a_resume_after_an_interruption_while_sending_reads_back_only_the_chunks_in_doubt(
    sandbox: Sandbox, runtime: cli.Runtime, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(300, seed=5)
    emails = [p.email or "" for p in sandbox.tenant.profiles.values()]
    lacking = sum(1 for p in sandbox.tenant.profiles.values() if "vip" not in p.statuses)
    csv = write_csv(tmp_path / "in.csv", emails)
    args = ["assign", "vip", str(csv), "--chunk-size", "50", "--verify", "0", "--json"]
    # Stopped as the second chunk's request goes out: the first was accepted, the second is
    # in doubt, every other chunk was cut but never sent.
    second_post = nth_post(2)
    runtime.sandbox_transport = lambda: StopAt(sandbox.transport(), sandbox.clock, second_post)
    stopped = sandbox.run(*args)
    assert stopped.exit_code == 130, stopped.stderr
    assert len(sent_profiles(sandbox.tenant)) == 50
    runtime.sandbox_transport = sandbox.transport
    before = len(sandbox.tenant.requests)

    resumed = sandbox.run(*args)

    assert resumed.exit_code == 0, resumed.stderr
    assert summary_of(resumed)["counts"]["assigned"] == lacking
    log = sandbox.tenant.requests[before:]
    assert not any(r.path.startswith("/api/v3/profiles/") for r in log)  # no GET by id at all
    first_post = next(n for n, r in enumerate(log) if r.method == "POST")
    read_back = [r for r in log[:first_post] if r.path == "/api/v3/profiles"]
    assert read_back and all("filter[email][in]" in dict(r.query) for r in read_back)
    assert len(read_back) <= 2  # the 50 rows in doubt, a page of addresses per request
    sent = sent_profiles(sandbox.tenant)
    assert len(sent) == len(set(sent)) == lacking  # every row sent once: none twice, none lost


# -- reading back: the cheapest read the tenant allows ------------------------------------------


def rows_of(tenant: Tenant, count: int) -> list[RowRecord]:
    """Rows for the tenant's last ``count`` profiles (page 1 of the tenant shows others)."""
    profiles = list(tenant.profiles.values())[-count:]
    return [
        RowRecord(
            n, p.email or "", p.email or "", Stage.CHUNKED, None, p.id, (), ("vip",), 1, None, ""
        )
        for n, p in enumerate(profiles, start=2)
    ]


def reads(tenant: Tenant) -> dict[str, int]:
    """The profile reads the tenant answered: in bulk, page by page, and one by id."""
    kinds = {"bulk": 0, "page": 0, "by_id": 0}
    for r in tenant.requests:
        if r.path.startswith("/api/v3/profiles/"):
            kinds["by_id"] += 1
        elif r.path == "/api/v3/profiles":
            kinds["bulk" if "filter[email][in]" in dict(r.query) else "page"] += 1
    return kinds


async def read_back(
    tenant: Tenant, config: SandboxConfig, rows: list[RowRecord], **how: bool
) -> tuple[list[Profile | None], ProfileReader]:
    transport = httpx.ASGITransport(app=create_app(tenant, config))
    async with OmneoClient(
        "http://sandbox.test/api", SecretStr(config.token), transport=transport
    ) as client:
        reader = ProfileReader(client, **how)
        found = await reader.read(rows)
        return found, reader


@pytest.mark.anyio
async def test_rows_matched_by_email_are_read_back_in_bulk_and_the_strays_by_id() -> None:
    tenant = generate_tenant(250, seed=3)
    rows = rows_of(tenant, 150)
    moved = rows[7]
    tenant.set_email(moved.profile_id or "", "moved.away@example.com")
    gone = rows[0]._replace(profile_id="no-such-profile", address="gone@example.com")
    found, reader = await read_back(tenant, SandboxConfig(), [gone, *rows[1:]], by_email=True)
    assert found[0] is None
    assert [p.id if p else None for p in found[1:]] == [r.profile_id for r in rows[1:]]
    assert reader.in_filter is True
    assert reads(tenant) == {"bulk": 2, "page": 0, "by_id": 2}  # the moved and the gone one


@pytest.mark.anyio
async def test_without_the_in_filter_a_small_tenant_is_read_page_by_page() -> None:
    tenant = generate_tenant(250, seed=3)
    config = SandboxConfig(email_in_filter=False)
    rows = rows_of(tenant, 150)
    found, reader = await read_back(tenant, config, rows, by_email=True)
    assert [p.id if p else None for p in found] == [r.profile_id for r in rows]
    assert reader.in_filter is False and reader.pages == 3
    assert reads(tenant) == {"bulk": 1, "page": 3, "by_id": 0}


@pytest.mark.anyio
async def test_other_keys_are_read_by_scan_or_by_id_whichever_costs_less() -> None:
    tenant = generate_tenant(250, seed=3)  # 3 pages
    many, _ = await read_back(tenant, SandboxConfig(), rows_of(tenant, 10))
    assert all(p is not None for p in many)
    assert reads(tenant) == {"bulk": 0, "page": 3, "by_id": 0}  # 3 pages, not 10 reads
    tenant.requests.clear()
    few, _ = await read_back(tenant, SandboxConfig(), rows_of(tenant, 2))
    assert all(p is not None for p in few)
    assert reads(tenant) == {"bulk": 0, "page": 0, "by_id": 2}
    big = generate_tenant(1000, seed=3)  # 10 pages: after page 1, 5 reads cost less
    some, reader = await read_back(big, SandboxConfig(), rows_of(big, 5))
    assert all(p is not None for p in some) and reader.pages == 10
    assert reads(big) == {"bulk": 0, "page": 1, "by_id": 5}


@pytest.mark.anyio
async def test_a_tenant_ignoring_the_page_dialect_leaves_the_rest_to_reads_by_id() -> None:
    tenant = generate_tenant(250, seed=3)
    config = SandboxConfig(page_style="per_page")  # page[number] is ignored: page 1 again
    rows = rows_of(tenant, 40)  # none of them on page 1, whatever its size
    found, _ = await read_back(tenant, config, rows)
    assert [p.id if p else None for p in found] == [r.profile_id for r in rows]
    assert reads(tenant) == {"bulk": 0, "page": 2, "by_id": 40}


# -- the journal: queued, posting, and rows sent again ------------------------------------------


def test_the_journal_tells_chunks_never_sent_from_chunks_in_doubt_and_moves_rows_sent_again(
    tmp_path: Path,
) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.create_run(
            "k" * 64,
            JobSpec(Action.ASSIGN, ("vip",)),
            base_url="http://t/api",
            input_name="in.csv",
            dry_run=False,
        )
        run.load(NewRow(n, f"p{n}@x.com", f"p{n}@x.com", f"p{n}@x.com") for n in (2, 3, 4))
        for line in (2, 3, 4):
            run.plan(Planned(line, f"p{line}", (), ("vip",)))
        chunk = run.open_chunk([2, 3, 4])
        assert [c.state for c in run.chunks()] == [ChunkState.QUEUED]  # nothing went out
        run.post_chunk(chunk)
        assert [c.state for c in run.chunks()] == [ChunkState.POSTING]  # in doubt from here
        run.accept_chunk(chunk, "b-1")
        # Line 2 was applied, line 3 goes out again, line 4 stays pending with its batch.
        new = run.resend_chunk(
            chunk,
            batch_status="stalled",
            settled=[Settled(2, Outcome.ASSIGNED)],
            again=[3],
            detail="sent again: b-1 stood still",
        )
        assert new is not None
        old, moved = run.chunks()
        assert (old.state, old.batch_status, old.resent) == (ChunkState.ACCEPTED, "stalled", 1)
        assert (moved.state, moved.profiles, moved.resent) == (ChunkState.QUEUED, 1, 0)
        [row] = run.rows_of_chunk(new)
        assert (row.line, row.resent, row.batch_id, row.detail) == (
            3,
            True,
            None,
            "sent again: b-1 stood still",
        )
        assert [r.line for r in run.rows_of_chunk(chunk)] == [2, 4]
        # Once its last row is settled, the old chunk is done; nothing else is sent again.
        assert (
            run.resend_chunk(
                chunk,
                batch_status="stalled",
                settled=[Settled(4, Outcome.ASSIGNED)],
                again=[],
                detail="",
            )
            is None
        )
        assert run.chunks()[0].state is ChunkState.DONE and run.chunks()[0].resent == 1


# -- the watcher: telling a lost batch from a missing endpoint ----------------------------------


class VagueBatch404(httpx.AsyncBaseTransport):
    """The sandbox, whose 404 for a batch says nothing about the endpoint."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if response.status_code == 404 and request.url.path.startswith("/api/v3/batches/"):
            return httpx.Response(404, json={"message": "Gone fishing"})
        return response


@pytest.mark.anyio
async def test_a_vague_404_is_a_lost_batch_only_once_another_batch_answered_in_the_run() -> None:
    tenant = generate_tenant(20, seed=4)
    clock = VirtualClock()
    config = SandboxConfig(batch_delay=100_000.0, clock=clock.monotonic)
    transport = VagueBatch404(httpx.ASGITransport(app=create_app(tenant, config)))
    rows = [r for r in rows_of(tenant, 20) if r.profile_id][:3]
    gone = rows[2]._replace(profile_id="no-such-profile")
    async with OmneoClient(BASE, SecretStr(config.token), transport=transport) as client:
        watcher = BatchWatcher(
            client, Action.ASSIGN, lambda: Backoff(clock.monotonic, clock.sleep, 1800.0, 30.0)
        )
        batch_id = await client.send_batch(
            Action.ASSIGN, [(r.profile_id or "", ["vip"]) for r in rows]
        )
        tenant.forget_batches()
        # Nothing tells yet whether the endpoint exists: the profiles are followed, and stand
        # still for the stall timeout.
        started = clock.now
        first = await watcher.watch(batch_id, [rows[0], rows[1], gone])
        assert first.gave_up is not None and clock.now - started >= 30.0
        assert [r.line for r in first.unsent] == [rows[0].line, rows[1].line]
        assert [(s.line, s.outcome, s.detail) for s in first.settled] == [
            (gone.line, Outcome.FAILED, "profile not found")
        ]
        # A batch that answers shows the endpoint exists: the same 404 is now a lost batch.
        other = await client.send_batch(Action.ASSIGN, [(rows[0].profile_id or "", ["vip"])])
        assert (await watcher.watch(other, rows[:1])).gave_up is not None  # pending, not lost
        assert watcher.endpoint is True
        tenant.forget_batches()
        started = clock.now
        lost = await watcher.watch(batch_id, rows[:2])
        assert lost.gave_up is None and clock.now == started  # at once
        assert [r.line for r in lost.unsent] == [rows[0].line, rows[1].line]
