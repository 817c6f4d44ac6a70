"""The engine: first through the CLI and the jobs (one send path, pipelined; guardrails in dry
runs, fatal answers, interruption, the runs list, run-id prefixes, verification notes), then
built directly over a client of the in-process sandbox and a journal in ``tmp_path``: a clean
run, a dry run, pipelined or not (a prompt, a guardrail, a planner hook), a refused chunk,
``--no-wait``, a resumed run, verification, the first error stopping the rest, and a batch that
never lands."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from omneo_status import cli
from omneo_status.api.client import OmneoClient
from omneo_status.errors import AuthError, Cancelled, GuardrailError, Interrupted
from omneo_status.events import Step
from omneo_status.jobs import JobContext, prune_runs, recent_runs, run_job
from omneo_status.keys import MatchKey
from omneo_status.models import Action, Outcome
from omneo_status.options import JobSpec, LookupMode, LookupPlan, RunOptions
from omneo_status.run.engine import SCAN_MOVED, Confirm, Engine, EngineResult, Planner, Preview
from omneo_status.run.outbox import RECONCILING, SENDS_AT_ONCE
from omneo_status.run.planner import CASE_NOTE, TenantFacts
from omneo_status.sandbox import SandboxConfig, Tenant, create_app, generate_tenant
from omneo_status.source import prepared_input
from omneo_status.store.journal import Journal, RunJournal
from omneo_status.store.records import ChunkState, NewRow, Planned, Stage

from ._middle import (
    BASE,
    BATCH_POST,
    PROFILES,
    After,
    Before,
    Recorder,
    Scripted,
    connect,
    json_answer,
    new_run,
    open_journal,
)
from .conftest import EXAMPLES, Sandbox, VirtualClock, report_rows, summary_of, write_csv

EMAILS = str(EXAMPLES / "emails.csv")


def test_chunks_go_out_while_lookups_go_on(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.tenant = generate_tenant(60, seed=5)
    targets = [p.email for p in sandbox.tenant.profiles.values() if "vip" not in p.statuses][:12]
    csv = write_csv(tmp_path / "in.csv", targets)
    result = sandbox.run(
        "assign",
        "vip",
        str(csv),
        "--lookup",
        "single",
        "--chunk-size",
        "3",
        "--concurrency",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert summary_of(result)["counts"]["assigned"] == 12
    paths = [(r.method, r.path) for r in sandbox.tenant.requests]
    first_post = paths.index(("POST", "/api/v3/profile/status/batch.json"))
    last_lookup = max(i for i, p in enumerate(paths) if p == ("GET", "/api/v3/profiles"))
    assert first_post < last_lookup
    assert sum(1 for p in paths if p[0] == "POST") == 4


def test_max_unmatched_holds_in_a_dry_run_too(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS, "--dry-run", "--max-unmatched", "20")
    assert result.exit_code == 3
    assert "over the limit of 20%" in result.stderr
    assert sandbox.writes() == []


def test_an_answer_that_is_not_json_stops_the_run(
    sandbox: Sandbox, runtime: cli.Runtime, tmp_path: Path
) -> None:
    inner = create_app(sandbox.tenant, sandbox.config)

    async def proxy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/v3/profiles":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"<html>Sign in</html>"})
            return
        await inner(scope, receive, send)

    runtime.sandbox_transport = lambda: httpx.ASGITransport(app=proxy)
    csv = write_csv(tmp_path / "in.csv", [f"user{i}@example.com" for i in range(60)])
    result = sandbox.run("assign", "vip", str(csv), "--lookup", "single", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert "not JSON" in doc["error"] and doc["run_id"]
    lookups = [r for r in sandbox.tenant.requests if r.path == "/api/v3/profiles"]
    assert lookups == []  # the proxy answered them all; none reached the tenant
    failed = [r for r in report_rows(Path(doc["report"])) if r["outcome"] == "failed"]
    assert all("not processed" in r["detail"] for r in failed)  # no row blamed one by one


def test_a_run_id_prefix_of_several_runs_lists_them(sandbox: Sandbox) -> None:
    first = summary_of(sandbox.run("assign", "vip", EMAILS, "--json"))["run_id"]
    second = summary_of(sandbox.run("remove", "vip", EMAILS, "--json"))["run_id"]
    prefix = next(first[:n] for n in range(len(first), 0, -1) if second.startswith(first[:n]))
    result = sandbox.invoke("resume", prefix, "--sandbox")
    assert result.exit_code == 2
    assert "ambiguous" in result.stderr
    assert first in result.stderr and second in result.stderr


def test_pruning_with_a_huge_number_of_days_forgets_nothing(sandbox: Sandbox) -> None:
    sandbox.run("assign", "vip", EMAILS)
    state = Path(os.environ["OMNEO_STATE_DIR"])
    assert prune_runs(state, 10**12) == 0
    assert len(recent_runs(state, 10)) == 1


def test_a_status_replaced_in_its_group_is_a_note_not_a_problem(sandbox: Sandbox) -> None:
    sandbox.config.group_rule = True
    ava = sandbox.tenant.by_email("ava.nguyen@example.com")[0]
    ava.statuses[:] = ["tier-silver", "welcome"]
    csv = write_csv(Path(os.environ["OMNEO_STATE_DIR"]).parent / "a.csv", [ava.email or ""])
    result = sandbox.run("assign", "tier-platinum", str(csv), "--json")
    assert result.exit_code == 0, result.stderr
    verified = summary_of(result)["verified"]
    assert verified["problems"] == []
    assert any("tier-silver is gone" in note and "Tier" in note for note in verified["notes"])


@pytest.mark.anyio
async def test_an_interrupted_run_says_so_in_its_report_and_in_runs(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(40, seed=9)
    csv = write_csv(tmp_path / "in.csv", [p.email or "" for p in sandbox.tenant.profiles.values()])
    state = tmp_path / "state"
    recorder = Recorder()
    resolved: list[Step] = []
    main = asyncio.current_task()
    assert main is not None

    def cancel_after_some(step: Step) -> None:
        resolved.append(step)
        if resolved.count(Step.RESOLVE) == 5:
            main.cancel()

    recorder.on_advance = cancel_after_some
    transport = httpx.ASGITransport(app=create_app(sandbox.tenant, sandbox.config))
    async with OmneoClient(
        "http://sandbox.test/api", SecretStr("sandbox-token"), transport=transport
    ) as client:
        ctx = JobContext(client, "http://sandbox.test/api", state, recorder)
        options = RunOptions(lookup=LookupMode.SINGLE, concurrency=2)
        with (
            prepared_input(str(csv), None, state_dir=state) as source,
            pytest.raises(Interrupted) as caught,
        ):
            await run_job(ctx, JobSpec(Action.ASSIGN, ("vip",)), options, source)
    stopped = caught.value
    assert stopped.run_id is not None and stopped.report is not None
    rows = report_rows(stopped.report)
    pending = [r for r in rows if r["outcome"] == "failed"]
    assert pending and all("(interrupted)" in r["detail"] for r in pending)
    [view] = recent_runs(state, 10)
    assert view.state == "interrupted" and view.exit_code == 130
    # runs counts the rows the report calls failed only because the run stopped as pending:
    # resuming decides them; nothing the tenant refused is hidden among them.
    by_outcome: dict[str, int] = {}
    for r in rows:
        outcome = "pending" if "(interrupted)" in r["detail"] else r["outcome"]
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
    assert {k: v for k, v in view.counts.items() if v} == by_outcome
    assert view.counts["failed"] == 0 and view.counts["pending"] == len(pending)


# -- the engine built directly: a client of the sandbox, a journal in tmp_path ------------------


ASSIGN_VIP = JobSpec(Action.ASSIGN, ("vip",))
DEFAULTS = RunOptions()


@dataclass
class Bench:
    """An ``Engine`` over a tenant of 60 profiles (5 hold ``vip``), on a virtual clock, with a
    journal of its own; ``before``/``after`` script single answers of the tenant."""

    tenant: Tenant
    config: SandboxConfig
    clock: VirtualClock
    journal: Journal
    reporter: Recorder = field(default_factory=Recorder)
    before: list[Before] = field(default_factory=list)
    after: list[After] = field(default_factory=list)
    engine: Engine | None = None

    def run(self, addresses: Sequence[str], **how: Any) -> RunJournal:
        return new_run(self.journal, addresses, **how)

    def execute(
        self,
        run: RunJournal,
        options: RunOptions = DEFAULTS,
        *,
        spec: JobSpec = ASSIGN_VIP,
        confirm: Confirm | None = None,
        planner: Planner | None = None,
        facts: TenantFacts | None = None,
    ) -> EngineResult:
        """Run the engine to its end on the virtual clock (its error is raised)."""
        transport = Scripted(self.tenant, self.config)
        transport.before[:], transport.after[:] = self.before, self.after

        async def main() -> EngineResult:
            async with connect(transport, self.clock) as client:
                statuses = await client.list_statuses()
                self.engine = Engine(
                    run=run,
                    spec=spec,
                    options=options,
                    client=client,
                    reporter=self.reporter,
                    definitions={status.handle: status for status in statuses},
                    confirm=confirm,
                    planner=planner,
                    facts=facts,
                    sleep=self.clock.sleep,
                    clock=self.clock.monotonic,
                )
                return await self.engine.execute()

        return self.clock.run(main())

    def lacking(self, count: int) -> list[str]:
        """Addresses of profiles without ``vip``."""
        return [p.email or "" for p in self.tenant.profiles.values() if "vip" not in p.statuses][
            :count
        ]

    def holding(self) -> str:
        return next(p.email or "" for p in self.tenant.profiles.values() if "vip" in p.statuses)

    def has_vip(self, address: str) -> bool:
        return "vip" in self.tenant.by_email(address)[0].statuses

    def requests(self, method: str, path: str) -> list[int]:
        """The positions of the requests of that method under ``path`` the tenant received."""
        return [
            n
            for n, r in enumerate(self.tenant.requests)
            if r.method == method and r.path.startswith(path)
        ]

    def lookups(self) -> list[int]:
        """The positions of the profile list requests (lookups, scans and reads in bulk)."""
        return [n for n, r in enumerate(self.tenant.requests) if r.path == PROFILES]

    def posts(self) -> list[int]:
        return self.requests("POST", BATCH_POST)


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    clock = VirtualClock()
    config = SandboxConfig(clock=clock.monotonic, wall_clock=clock.wall)
    with open_journal(tmp_path) as journal:
        yield Bench(generate_tenant(60, seed=5), config, clock, journal)


def counts(run: RunJournal) -> dict[str, int]:
    return {outcome.value: n for outcome, n in run.counts().items()}


def details(run: RunJournal) -> dict[int, tuple[str, str]]:
    """Each row's outcome (or stage, while pending) and detail, by line."""
    return {
        r.line: (r.outcome.value if r.outcome else r.stage.value, r.detail) for r in run.all_rows()
    }


def test_a_run_assigns_settles_and_verifies_every_row(bench: Bench) -> None:
    targets = bench.lacking(6)
    addresses = [*targets, bench.holding(), "nobody@example.com", targets[0].upper()]
    run = bench.run(addresses)
    result = bench.execute(run, RunOptions(chunk_size=4, verify=3))
    assert counts(run) == {"assigned": 6, "already_had": 1, "not_found": 1, "duplicate": 1}
    assert all(bench.has_vip(address) for address in targets)
    assert len(bench.posts()) == 2  # six rows in chunks of four
    assert [c.state.value for c in run.chunks()] == ["done", "done"]
    assert result.gave_up is False
    assert result.verification.checked == 3 and result.verification.ok == 3
    assert result.lookup is not None and result.lookup.mode is LookupMode.SCAN
    assert f"Lookup: scan, about 1 request: {result.lookup.reason}" in bench.reporter.said("info")
    finished = [step for kind, step in bench.reporter.events if kind == "finish"]
    assert finished == [
        "scanning the tenant",
        "resolving",
        "sending",
        "waiting for batches",
        "verifying",
    ]


def test_a_dry_run_writes_nothing_and_waits_for_nothing(bench: Bench) -> None:
    targets = bench.lacking(4)
    run = bench.run([*targets, bench.holding()], dry_run=True)
    result = bench.execute(run, RunOptions(dry_run=True, verify=5))
    assert counts(run) == {"would_assign": 4, "already_had": 1}
    assert bench.tenant.writes() == [] and run.chunks() == []
    assert bench.requests("GET", "/api/v3/batches") == []
    assert result.verification.checked == 0
    assert bench.engine is not None and bench.engine.pipelined is False


def test_chunks_go_out_while_lookups_go_on_when_nobody_is_asked(bench: Bench) -> None:
    run = bench.run(bench.lacking(12))
    bench.execute(run, RunOptions(lookup=LookupMode.SINGLE, chunk_size=3, concurrency=1))
    assert bench.engine is not None and bench.engine.pipelined is True
    assert len(bench.posts()) == 4
    assert bench.posts()[0] < bench.lookups()[-1]
    assert counts(run) == {"assigned": 12}


@pytest.mark.parametrize("answer", [True, False])
def test_a_person_asked_sees_the_plan_before_any_write(bench: Bench, answer: bool) -> None:
    targets = bench.lacking(7)
    run = bench.run([*targets, bench.holding(), "nobody@example.com"])
    shown: list[tuple[Preview, int, int]] = []

    def confirm(preview: Preview) -> bool:
        shown.append((preview, len(bench.lookups()), len(bench.tenant.writes())))
        return answer

    options = RunOptions(lookup=LookupMode.SINGLE, chunk_size=2, concurrency=1)
    if answer:
        bench.execute(run, options, confirm=confirm)
        assert counts(run) == {"assigned": 7, "already_had": 1, "not_found": 1}
        assert min(bench.posts()) > max(bench.lookups())  # every lookup before the first write
    else:
        with pytest.raises(Cancelled, match="nothing was written"):
            bench.execute(run, options, confirm=confirm)
        assert bench.tenant.writes() == []
    [(preview, looked_up, written)] = shown
    assert preview == Preview(ASSIGN_VIP, {"already_had": 1, "not_found": 1}, 7)
    assert preview.rows == 9
    assert (looked_up, written) == (9, 0)


def test_nobody_is_asked_when_there_is_nothing_to_send(bench: Bench) -> None:
    run = bench.run([bench.holding()])
    asked: list[Preview] = []

    def confirm(preview: Preview) -> bool:
        asked.append(preview)
        return True

    bench.execute(run, confirm=confirm)
    assert asked == [] and counts(run) == {"already_had": 1}


@pytest.mark.parametrize("dry_run", [False, True])
def test_too_many_unmatched_rows_stop_the_run_before_any_write(bench: Bench, dry_run: bool) -> None:
    run = bench.run([*bench.lacking(3), "nobody@example.com", "ghost@example.com"], dry_run=dry_run)
    with pytest.raises(GuardrailError) as stopped:
        bench.execute(run, RunOptions(max_unmatched=20, dry_run=dry_run))
    assert "2 of 5 rows (40.0%) would be skipped" in stopped.value.message
    assert "over the limit of 20%" in stopped.value.message
    assert bench.tenant.writes() == []


def test_unmatched_rows_under_the_limit_let_the_run_go_on_after_every_lookup(
    bench: Bench,
) -> None:
    run = bench.run([*bench.lacking(4), "nobody@example.com"])
    options = RunOptions(max_unmatched=20, lookup=LookupMode.SINGLE, chunk_size=1, concurrency=1)
    bench.execute(run, options)
    assert counts(run) == {"assigned": 4, "not_found": 1}
    assert min(bench.posts()) > max(bench.lookups())  # a guardrail waits for every decision


def test_a_refused_chunk_fails_its_rows_with_the_reason_and_the_others_go_on(
    bench: Bench,
) -> None:
    bench.config.max_batch = 2
    targets = bench.lacking(5)
    run = bench.run(targets)
    bench.execute(run, RunOptions(chunk_size=3, lookup=LookupMode.SINGLE, concurrency=1))
    refused = [r for r in run.all_rows() if r.outcome is Outcome.FAILED]
    assert len(refused) == 3
    assert all(r.detail.startswith("batch refused: POST /v3/profile/status") for r in refused)
    assert all("may not have more than 2 items" in r.detail for r in refused)
    assert counts(run) == {"failed": 3, "assigned": 2}
    assert [(c.batch_status, c.failed_count) for c in run.chunks()] == [
        ("refused", 3),
        ("success", 0),
    ]
    assert len(bench.reporter.said("row_failed")) == 3


def test_no_wait_sends_and_leaves_the_batches_to_the_tenant(bench: Bench) -> None:
    bench.config.batch_delay = 60.0
    run = bench.run(bench.lacking(4))
    result = bench.execute(run, RunOptions(no_wait=True, chunk_size=2))
    assert counts(run) == {"sent": 4}
    assert {detail for _, detail in details(run).values()} == {
        "queued; the run did not wait for the batch"
    }
    assert bench.requests("GET", "/api/v3/batches") == []
    assert result.verification.checked == 0 and len(bench.posts()) == 2


def test_a_resumed_run_reconciles_in_doubt_sends_queued_and_watches_accepted(
    bench: Bench,
) -> None:
    """A run that died with one chunk queued (cut, never sent), one posting (in doubt: its first
    row reached the tenant, its second did not), one accepted (its batch to follow) and one row
    never looked up."""
    queued, landed, lost, accepted, fresh = bench.lacking(5)
    run = bench.run([queued, landed, lost, accepted, fresh])
    profiles = {a: bench.tenant.by_email(a)[0] for a in (queued, landed, lost, accepted)}
    for line, address in enumerate((queued, landed, lost, accepted), start=2):
        run.plan(Planned(line, profiles[address].id, (), ("vip",)))
    run.flush()
    run.open_chunk([2])
    posting = run.open_chunk([3, 4])
    run.post_chunk(posting)
    profiles[landed].statuses.append("vip")
    batch = bench.tenant.queue_batch(
        "earlier", "attach", [(profiles[accepted].id, ["vip"])], due_at=0.0, created_at=0.0
    )
    run.accept_chunk(run.open_chunk([5]), batch.id)
    bench.execute(run, RunOptions(lookup=LookupMode.SINGLE, verify=0))
    assert details(run) == {
        2: ("assigned", ""),
        3: ("assigned", "applied by an earlier attempt"),
        4: ("assigned", ""),
        5: ("assigned", ""),
        6: ("assigned", ""),
    }
    assert all(bench.has_vip(address) for address in (queued, lost, accepted, fresh))
    assert bench.reporter.said("info")[0] == RECONCILING.format(chunks="1 chunk")
    assert len(bench.lookups()) == 1  # the row never looked up
    assert len(bench.requests("GET", PROFILES + "/")) == 2  # the pair in doubt, read back by id
    assert [c.state.value for c in run.chunks()] == ["done", "reconciled", "done", "done"]


class Holders:
    """A sync's planner stand-in: records what it found when the engine called it, and may
    stop the run."""

    def __init__(self, bench: Bench, *, refuse: bool = False) -> None:
        self.bench = bench
        self.refuse = refuse
        self.saw: list[tuple[int, int, int]] = []

    async def plan(self, run: RunJournal) -> None:
        lookups, writes = len(self.bench.lookups()), len(self.bench.tenant.writes())
        self.saw.append((run.stage_count(Stage.LOOKUP), lookups, writes))
        if self.refuse:
            raise GuardrailError("too many holders to remove")


def test_a_planner_hook_runs_once_every_row_is_decided_and_before_any_write(
    bench: Bench,
) -> None:
    run = bench.run(bench.lacking(4))
    holders = Holders(bench)
    options = RunOptions(lookup=LookupMode.SINGLE, chunk_size=1, concurrency=1)
    bench.execute(run, options, planner=holders)
    assert holders.saw == [(0, 4, 0)]  # nothing left to look up, nothing written
    assert bench.engine is not None and bench.engine.pipelined is False
    assert counts(run) == {"assigned": 4}


def test_a_planner_hook_that_refuses_stops_the_run_before_any_write(bench: Bench) -> None:
    run = bench.run(bench.lacking(4))
    with pytest.raises(GuardrailError, match="too many holders"):
        bench.execute(run, planner=Holders(bench, refuse=True))
    assert bench.tenant.writes() == []
    assert run.stage_count(Stage.PLANNED) == 4  # decided, kept for a resume


def test_verification_reports_a_profile_that_lost_the_change_after_its_batch(
    bench: Bench,
) -> None:
    targets = bench.lacking(3)
    undone = bench.tenant.by_email(targets[1])[0]

    def undo_behind_our_back(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.startswith("/api/v3/batches/"):
            undone.statuses[:] = []  # another system takes it away again
        return response

    bench.after.append(undo_behind_our_back)
    run = bench.run(targets)
    result = bench.execute(run, RunOptions(verify=10))
    assert result.verification.checked == 3 and result.verification.ok == 2
    assert result.verification.problems == [f"line 3 ({targets[1]}): vip not on the profile"]


def test_no_verification_reads_nothing_back(bench: Bench) -> None:
    run = bench.run(bench.lacking(3))
    result = bench.execute(run, RunOptions(verify=0, lookup=LookupMode.SINGLE))
    assert result.verification.checked == 0
    assert len(bench.lookups()) == 3  # the lookups only: no read by id after the batch
    assert ("finish", "verifying") not in bench.reporter.events


def test_the_first_lookup_error_stops_the_other_workers_and_is_raised(bench: Bench) -> None:
    seen: list[str] = []

    def refuse_the_third(request: httpx.Request) -> httpx.Response | None:
        if request.url.path != PROFILES:
            return None
        seen.append(request.url.params.get("filter[email]", ""))
        return json_answer(401, {"message": "Unauthenticated."}) if len(seen) == 3 else None

    bench.before.append(refuse_the_third)
    run = bench.run(bench.lacking(40))
    with pytest.raises(AuthError, match="refused \\(401\\)"):
        bench.execute(run, RunOptions(lookup=LookupMode.SINGLE, concurrency=4, chunk_size=100))
    assert 3 <= len(seen) < 3 + 4  # none started after the refusal, beyond those in flight
    assert bench.tenant.writes() == []


def refuse_the_first_post(bench: Bench) -> list[httpx.Request]:
    """The tenant refuses the run's first batch write (403); returns the writes it saw."""
    posts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response | None:
        if request.method != "POST":
            return None
        posts.append(request)
        return json_answer(403, {"message": "Forbidden."}) if len(posts) == 1 else None

    bench.before.append(refuse)
    return posts


def stopped_by_a_send_error(bench: Bench) -> tuple[RunJournal, list[warnings.WarningMessage]]:
    """A pipelined run of 12 rows in chunks of 2 whose first batch write is refused; the
    warnings it leaves behind (once collected) are returned rather than raised."""
    run = bench.run(bench.lacking(12))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(AuthError, match="\\(403\\)"):
            bench.execute(run, RunOptions(lookup=LookupMode.SINGLE, concurrency=1, chunk_size=2))
        gc.collect()
    return run, caught


def test_the_first_send_error_stops_the_run_and_no_later_chunk_goes_out(bench: Bench) -> None:
    posts = refuse_the_first_post(bench)
    run, _ = stopped_by_a_send_error(bench)
    assert len(posts) <= SENDS_AT_ONCE  # the refused one and, at most, one already in flight
    assert [c.chunk for c in run.chunks(ChunkState.POSTING)] == [1]  # in doubt, for a resume
    assert run.stage_count(Stage.LOOKUP) > 0  # the lookups stopped too


def test_a_run_stopped_by_an_error_leaves_no_coroutine_never_awaited(bench: Bench) -> None:
    refuse_the_first_post(bench)
    _, caught = stopped_by_a_send_error(bench)
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


class Ghosts:
    """The tenant answers every batch write and then forgets it: nothing is applied."""

    def __init__(self) -> None:
        self.sent = 0

    def __call__(self, request: httpx.Request) -> httpx.Response | None:
        if request.url.path != BATCH_POST:
            return None
        self.sent += 1
        return json_answer(202, {"data": {"batch_id": f"ghost-{self.sent}"}})


@pytest.mark.parametrize("endpoint", [True, False])
def test_a_batch_that_never_lands_is_sent_again_once_then_given_up(
    bench: Bench, endpoint: bool
) -> None:
    """Lost (the endpoint says 404 for it) or standing still (no endpoint: the profiles never
    change for the stall timeout), the rows are sent again once, never a third time."""
    bench.config.batches_endpoint = endpoint
    ghosts = Ghosts()
    bench.before.append(ghosts)
    targets = bench.lacking(2)
    run = bench.run(targets)
    result = bench.execute(run, RunOptions(lookup=LookupMode.SINGLE, stall_timeout=30.0))
    assert ghosts.sent == 2
    warned = bench.reporter.said("warn")
    assert "its 2 rows lacking the change are sent again, once" in warned[0]
    if endpoint:
        assert result.gave_up is False
        assert {outcome for outcome, _ in details(run).values()} == {"failed"}
        assert all("not sent a third time" in d for _, d in details(run).values())
    else:
        assert result.gave_up is True  # the rows stay pending: the run can be resumed
        assert {outcome for outcome, _ in details(run).values()} == {"chunked"}
        assert warned[-1].startswith("batch ghost-2: ")
        assert "(the stall timeout)" in warned[-1]


def test_a_run_with_nothing_left_to_look_up_goes_straight_to_its_chunks(bench: Bench) -> None:
    [address] = bench.lacking(1)
    run = bench.run([address])
    run.plan(Planned(2, bench.tenant.by_email(address)[0].id, (), ("vip",)))
    run.flush()
    run.open_chunk([2])
    bench.execute(run, RunOptions(verify=0))
    assert bench.lookups() == [] and len(bench.posts()) == 1
    assert counts(run) == {"assigned": 1}


def test_rows_matched_by_id_are_looked_up_one_by_one_and_a_refused_lookup_fails_its_row(
    bench: Bench,
) -> None:
    ids = [bench.tenant.by_email(a)[0].id for a in bench.lacking(3)]

    def refuse_one(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == f"{PROFILES}/{ids[1]}":
            return json_answer(422, {"message": "The given data was invalid."})
        return None

    bench.before.append(refuse_one)
    by_id = MatchKey.parse("id")
    run = bench.run(ids, match=by_id)
    spec = JobSpec(Action.ASSIGN, ("vip",), match=by_id)
    result = bench.execute(run, RunOptions(lookup=LookupMode.BULK, verify=0), spec=spec)
    assert "--lookup bulk applies to emails only: each profile_id is looked up on its own" in (
        bench.reporter.said("warn")
    )
    assert counts(run) == {"assigned": 2, "failed": 1}
    [(line, detail)] = [(r.line, r.detail) for r in run.all_rows() if r.outcome is Outcome.FAILED]
    assert line == 3 and detail.startswith("lookup failed: GET /v3/profiles/")
    assert bench.reporter.said("row_failed") == [f"3: {detail}"]
    assert result.lookup is None  # no email was looked up


def test_an_identity_nobody_has_is_named_as_the_likely_typo(bench: Bench) -> None:
    by_shop = MatchKey.parse("identity:shopfy")
    run = bench.run(["1001", "1002", "1002"], match=by_shop)
    bench.execute(run, spec=JobSpec(Action.ASSIGN, ("vip",), match=by_shop))
    assert counts(run) == {"not_found": 2, "duplicate": 1}
    assert bench.reporter.said("warn") == [
        "no profile was found by the identity `shopfy`; check the handle"
    ]


def test_undo_rows_are_read_by_id_and_sent_what_they_know(bench: Bench) -> None:
    holders = [p for p in bench.tenant.profiles.values() if "vip" in p.statuses][:2]
    spec = JobSpec(Action.REMOVE, ("vip",))
    run = bench.journal.create_run(
        "undo", spec, base_url=BASE, input_name="undo of a run", dry_run=False
    )
    known = [
        NewRow(n, p.email or "", p.email or "", p.email or "", profile_id=p.id, send=("vip",))
        for n, p in enumerate(holders, start=2)
    ]
    gone = "gone@example.com"
    known.append(NewRow(9, gone, gone, "gone", profile_id="no-such", send=("vip",)))
    run.load(known)
    result = bench.execute(run, spec=JobSpec(Action.REMOVE, ("vip",)))
    assert counts(run) == {"removed": 2, "not_found": 1}
    assert bench.lookups() == []  # by id only: GET /profiles/{id}
    assert all("vip" not in p.statuses for p in holders)
    assert result.lookup is None


def test_forced_bulk_lookups_go_in_groups_and_the_first_group_is_settled_while_planning(
    bench: Bench,
) -> None:
    targets = bench.lacking(10)
    strangers = [f"nobody{n}@example.com" for n in range(120)]
    run = bench.run([*targets, *strangers])
    result = bench.execute(run, RunOptions(lookup=LookupMode.BULK, verify=0))
    assert counts(run) == {"assigned": 10, "not_found": 120}
    assert result.lookup is not None and result.lookup.mode is LookupMode.BULK
    in_filter = [r for r in bench.tenant.requests if "filter[email][in]" in dict(r.query)]
    assert len(in_filter) == result.lookup.requests == 2  # a page of addresses, then the rest


def test_forced_bulk_on_a_tenant_that_ignores_the_filter_warns_and_goes_one_by_one(
    bench: Bench,
) -> None:
    bench.config.email_in_filter = False
    run = bench.run(bench.lacking(3))
    result = bench.execute(run, RunOptions(lookup=LookupMode.BULK, verify=0))
    warning = "the tenant does not honour filter[email][in]; looking emails up one by one"
    assert bench.reporter.said("warn") == [warning]
    assert result.lookup == LookupPlan(LookupMode.SINGLE, 4, warning, warning=warning)
    assert len(bench.lookups()) == 4 and counts(run) == {"assigned": 3}


def test_a_list_that_moves_under_the_scan_is_said_and_loses_nobody(bench: Bench) -> None:
    bench.tenant = generate_tenant(300, seed=7)
    everyone = [p.email or "" for p in bench.tenant.profiles.values()]
    targets = [e for i, e in enumerate(everyone) if i % 100 in (0, 99)]
    moved: list[bool] = []

    def insert_first(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path == PROFILES and "filter" not in str(request.url.query) and not moved:
            moved.append(True)
            newcomer = bench.tenant.add_profile("newcomer@example.com")
            bench.tenant.profiles = {newcomer.id: newcomer} | bench.tenant.profiles
        return response

    bench.after.append(insert_first)
    run = bench.run(targets)
    bench.execute(run, RunOptions(lookup=LookupMode.SCAN, verify=0))
    assert SCAN_MOVED in bench.reporter.said("warn")
    assert counts(run).get("not_found", 0) == 0 and counts(run).get("ambiguous", 0) == 0
    assert all(bench.has_vip(address) for address in targets)


@pytest.mark.parametrize(
    ("profiles", "switched"),
    [(500, True), (3000, False)],
)
def test_a_case_sensitive_filter_learned_on_the_way_hands_the_rows_to_a_scan_it_can_afford(
    bench: Bench, profiles: int, switched: bool
) -> None:
    """Bulk is chosen (the rule is not known yet); the first match found through a change of
    case shows the rule: the rest goes to a scan when it costs at most three times the plan,
    and otherwise the plan stays and says what it cannot rule out."""
    bench.tenant = generate_tenant(profiles, seed=8)
    bench.config.email_match = "case_sensitive"
    targets = [e.upper() for e in bench.lacking(5)]
    run = bench.run(targets)
    result = bench.execute(run, RunOptions(verify=0))
    assert counts(run) == {"assigned": 5}
    assert result.lookup is not None
    if switched:
        assert result.lookup.mode is LookupMode.SCAN
        assert result.lookup.reason.startswith("the tenant's email filter is case-sensitive")
        assert {detail for _, detail in details(run).values()} == {""}
    else:
        assert result.lookup.mode is LookupMode.BULK
        assert result.lookup.warning is not None
        assert bench.reporter.said("warn") == [result.lookup.warning]
        assert {detail for _, detail in details(run).values()} == {CASE_NOTE}


def test_what_doctor_measured_reaches_the_planner(bench: Bench) -> None:
    bench.tenant = generate_tenant(3000, seed=8)
    facts = TenantFacts(email_in_filter=False, measured="doctor, 2026-01-31")
    run = bench.run(bench.lacking(5))
    result = bench.execute(run, RunOptions(verify=0), facts=facts)
    assert result.lookup is not None and result.lookup.mode is LookupMode.SINGLE
    assert "ignores filter[email][in] (doctor, 2026-01-31)" in result.lookup.reason
    assert not any("filter[email][in]" in dict(r.query) for r in bench.tenant.requests)
    assert counts(run) == {"assigned": 5}
