"""Jobs: what identifies one, and starting, resuming and undoing its journaled runs.

A job is an action with its handles over a set of addresses on one tenant; running the same
job again continues its unfinished run (or shows its finished one) instead of starting over.
The CLI (``cli/runs.py``) calls ``run_job``, ``resume_job`` and ``undo_job``; nothing here
prints or exits.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from omneo_status.api.client import OmneoClient
from omneo_status.errors import (
    ApiError,
    Interrupted,
    OmneoStatusError,
    UnknownHandleError,
    UsageError,
)
from omneo_status.events import Reporter, Step
from omneo_status.keys import KeyKind, MatchKey
from omneo_status.locking import JobLock, is_held, job_lock
from omneo_status.models import Action, Outcome, StatusDefinition
from omneo_status.moves import scope, siblings
from omneo_status.options import JobSpec, RunOptions
from omneo_status.run.engine import Confirm, Engine, Preview
from omneo_status.run.planner import TenantFacts
from omneo_status.source import PreparedInput, journal_rows
from omneo_status.store.journal import Journal, RunJournal
from omneo_status.store.records import RESUMABLE, NewRow, RowRecord, RunInfo, RunState
from omneo_status.summary import (
    NOTHING_YET,
    Progress,
    RunSummary,
    RunView,
    run_view,
    summarize,
    write_run_report,
)
from omneo_status.sync import SYNC_ONE, SyncPlanner


@dataclass(frozen=True)
class JobContext:
    """What every job needs from outside: the API, the state dir, and who listens."""

    client: OmneoClient
    base_url: str
    state_dir: Path
    reporter: Reporter
    confirm: Confirm | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    facts: TenantFacts | None = None
    """What doctor measured on the tenant (its saved record), for the lookup planner."""
    on_run: Callable[[str], None] | None = None
    """Told the id of the run the job works on as soon as it takes it up (the log file
    stamps its lines with it)."""

    def claim(self, lock: JobLock, run_id: str) -> None:
        """Take up ``run_id``: its lock's sidecar names it, and ``on_run`` hears of it."""
        lock.claim(run_id)
        if self.on_run is not None:
            self.on_run(run_id)


def job_key(spec: JobSpec, *, base_url: str, digest: str, dry_run: bool) -> str:
    """The identity of a job: same action (or sync), handles, tenant, match key and keys means
    the same job (an email job's identity is what it was before other match keys existed)."""
    parts = [
        "sync" if spec.sync else spec.action.value,
        ",".join(sorted(spec.handles)),
        base_url.rstrip("/"),
        digest,
        str(dry_run),
    ]
    if spec.match.kind is not KeyKind.EMAIL:
        parts.append(f"match={spec.match}")
    if spec.status_column is not None:  # each row's status is in the digest
        parts.append("statuses=per-row")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def undo_key(run_id: str, *, dry_run: bool) -> str:
    """The identity of the job that undoes one run."""
    return hashlib.sha256(f"undo\n{run_id}\n{dry_run}".encode()).hexdigest()


async def check_handles(
    client: OmneoClient,
    handles: tuple[str, ...],
    reporter: Reporter,
    *,
    lines: Mapping[str, int] | None = None,
    moves: bool = False,
) -> dict[str, StatusDefinition]:
    """The tenant's status definitions by handle; raises ``UnknownHandleError`` unless every
    handle has one (suggesting the closest). ``lines`` says where the input's status column
    first names each handle; with ``moves`` (the run moves customers within groups itself) a
    grouped handle needs no caveat."""
    reporter.start(Step.HANDLES, None)
    definitions = {status.handle: status for status in await client.list_statuses()}
    reporter.finish(Step.HANDLES)
    unknown = [h for h in handles if h not in definitions]
    if not unknown:
        for caveat in status_caveats(definitions, handles, moves=moves):
            reporter.warn(caveat)
        return definitions
    handle, known = unknown[0], list(definitions)
    close = [k for k in known if k.lower() == handle.lower()]
    close += [
        k for k in difflib.get_close_matches(handle, known, n=3, cutoff=0.6) if k not in close
    ]
    guess = f"; did you mean {' or '.join(f'`{c}`' for c in close[:3])}?" if close else ""
    more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    where = f" (the status column, line {lines[handle]})" if lines and handle in lines else ""
    raise UnknownHandleError(
        f"Unknown status handle `{handle}`{where}{more}: the tenant has no such status{guess}",
        hint="List the tenant's statuses to see the handles; nothing was written.",
    )


def status_caveats(
    definitions: Mapping[str, StatusDefinition], handles: Sequence[str], *, moves: bool = False
) -> list[str]:
    """What the plan must say about handles that change on their own: a time-limited status
    expires, and a grouped one may replace (or be replaced by) its siblings (unless the run
    ``moves`` customers within groups itself)."""
    caveats: list[str] = []
    for handle in handles:
        status = definitions[handle]
        if status.time_limited:
            when = (
                f"it expires on {status.absolute_expiry}"
                if status.absolute_expiry
                else f"it lasts {status.period} {status.period_type or ''}".rstrip()
            )
            caveats.append(
                f"`{handle}` is time-limited ({when}): profiles lose it on their own, so a later"
                " check may find it gone"
            )
        if status.grouped and not moves:
            others = sorted(siblings(handle, definitions))
            group = status.group_name or status.group_handle
            also = f" ({', '.join(others)})" if others else ""
            caveats.append(
                f"`{handle}` belongs to the group {group}: the tenant may let a profile hold one"
                f" status of a group, so giving it may take a sibling{also} away"
            )
    return caveats


# -- the three ways a run starts ------------------------------------------------------------


@dataclass(frozen=True)
class _NewRun:
    """A run to start: its job, what it does, what it reads, and how its rows are loaded
    (``load`` adds them to the new run)."""

    job_key: str
    spec: JobSpec
    input_name: str
    load: Callable[[RunJournal], None]
    undo_of: str | None = None
    lines: Mapping[str, int] | None = None
    """Where the input's status column first names each handle (for an unknown one)."""


async def run_job(
    ctx: JobContext,
    spec: JobSpec,
    options: RunOptions,
    source: PreparedInput,
    *,
    report: Path | None = None,
    fresh: bool = False,
) -> RunSummary:
    """Run ``spec`` over a prepared input, resuming the same job's run if it is unfinished
    (or showing it again, ``already_finished``, if it finished). ``fresh`` starts anew.

    When the input names each row's status (``source.status_column``), ``spec``'s handles are
    the statuses the column names."""
    if source.status_column is not None:
        named = tuple(handle for handle, _ in source.statuses)
        spec = replace(spec, handles=named, status_column=source.status_column)
    elif spec.sync and len(spec.handles) != 1:
        raise UsageError(f"A sync takes exactly one status handle: {SYNC_ONE}")
    key = job_key(spec, base_url=ctx.base_url, digest=source.digest, dry_run=options.dry_run)

    def load(run: RunJournal) -> None:
        ctx.reporter.start(Step.READ, source.rows)
        count = run.load(journal_rows(source))
        run.mark_duplicates("address" if spec.match.kind is KeyKind.EMAIL else spec.match.noun)
        ctx.reporter.advance(Step.READ, count)
        ctx.reporter.finish(Step.READ)

    with job_lock(ctx.state_dir, key) as lock, Journal.in_state_dir(ctx.state_dir) as journal:
        latest = None if fresh else journal.latest_run(key)
        new = _NewRun(key, spec, source.label, load, lines=dict(source.statuses))
        return await _start(ctx, journal, lock, latest, new, options, report)


async def resume_job(
    ctx: JobContext, run_id: str, options: RunOptions, *, report: Path | None = None
) -> RunSummary:
    """Continue a run by id (or unique prefix), with the rows its journal holds; a finished
    run is shown again (``already_finished``)."""
    with Journal.in_state_dir(ctx.state_dir) as journal:
        info = journal.find_run(run_id)
        _check_target(info, ctx.base_url)
        if info.state is RunState.LOADING:
            raise UsageError(
                f"Run {info.run_id} stopped while reading its input",
                hint="Run the original command again; it starts that run afresh.",
                run_id=info.run_id,
            )
        options = replace(options, dry_run=info.dry_run)
        with job_lock(ctx.state_dir, info.job_key) as lock:
            ctx.claim(lock, info.run_id)
            run = journal.run_journal(info.run_id)
            if info.state is RunState.FINISHED:
                return _shown_again(run, options, report)
            return await _drive(ctx, run, options, report, since=Progress.of(run))


async def undo_job(
    ctx: JobContext, run_id: str, options: RunOptions, *, report: Path | None = None
) -> RunSummary:
    """Reverse exactly what a run changed: only the rows it assigned (or removed), and on each
    profile only the handles it sent (a sync's both sides, each row by its own action)."""
    with Journal.in_state_dir(ctx.state_dir) as journal:
        original = journal.find_run(run_id)
        _check_target(original, ctx.base_url)
        if original.dry_run:
            raise UsageError(f"Run {original.run_id} was a dry run: it changed nothing to undo")
        if original.undo_of is not None:
            ctx.reporter.info(f"Run {original.run_id} is itself an undo; undoing it re-applies")
        match = MatchKey.parse(original.match)
        spec = JobSpec(
            original.action.inverse,
            original.handles,
            match=match,
            status_column=original.status_column,
        )
        key = undo_key(original.run_id, dry_run=options.dry_run)

        def load(run: RunJournal) -> None:
            changed = journal.run_journal(original.run_id).units(
                "l.outcome IN (?,?,?) OR d.outcome IN (?,?,?)", _CHANGED * 2
            )
            run.load(
                row
                for lead, then in changed
                for row in _undo_rows(lead, then, original.action, match.rule.key)
            )

        new = _NewRun(key, spec, f"undo of {original.run_id}", load, undo_of=original.run_id)
        with job_lock(ctx.state_dir, key) as lock:
            return await _start(ctx, journal, lock, journal.latest_run(key), new, options, report)


_CHANGED = tuple(o.value for o in (Outcome.ASSIGNED, Outcome.REMOVED, Outcome.SENT))
"""Outcomes of a row whose change went out (or may have)."""


def _undo_rows(
    lead: RowRecord, then: RowRecord | None, action: Action, canonical: Callable[[str], str]
) -> Iterator[NewRow]:
    """The rows of an undo that reverse a row of the run (``action``'s) and the row that
    follows it. A tier move is reversed as a move back: its siblings assigned again first,
    then (once they are there) its new status removed, unless the profile had it before."""

    def went(row: RowRecord) -> bool:
        return bool(row.profile_id) and row.outcome in _done(row.action, action)

    if then is None or not went(then):
        if went(lead):
            yield _undo_row(lead, canonical)
        return
    back = _undo_row(then, canonical)
    yield back._replace(line=lead.line, holder=lead.holder, follows=None)
    if went(lead):
        yield _undo_row(lead, canonical, own=lead.action or action)._replace(
            line=then.line, follows=lead.line
        )


def _undo_row(
    row: RowRecord, canonical: Callable[[str], str], *, own: Action | None = None
) -> NewRow:
    """The row of an undo that reverses ``row``: its profile and handles known, its own
    action (``own``, if it had one) reversed."""
    action = own or row.action
    return NewRow(
        row.line,
        row.key,
        row.address,
        canonical(row.address),
        profile_id=row.profile_id,
        send=row.send,
        action=action.inverse if action else None,
        holder=row.holder,
    )


def _done(own: Action | None, run: Action) -> tuple[Outcome, ...]:
    """The outcomes of a row whose change went out (or may have): what an undo reverses."""
    return ((own or run).done, Outcome.SENT)


# -- the runs list ----------------------------------------------------------------------------


def recent_runs(state_dir: Path, limit: int) -> list[RunView]:
    """The newest runs first, as ``runs`` shows them; never waits for a running job."""
    with Journal.in_state_dir(state_dir) as journal:
        return [
            run_view(
                journal.run_journal(info.run_id),
                info,
                running=is_held(state_dir, info.job_key),
            )
            for info in journal.runs(limit)
        ]


def prune_runs(state_dir: Path, older_than_days: int) -> int:
    """Forget finished runs and dry runs older than that many days; returns how many."""
    with Journal.in_state_dir(state_dir) as journal:
        return journal.prune(older_than_days=older_than_days)


# -- inside ------------------------------------------------------------------------------------


async def _continue(
    ctx: JobContext,
    journal: Journal,
    latest: RunInfo | None,
    lock: JobLock,
    options: RunOptions,
    report: Path | None,
) -> RunSummary | None:
    """The same job's earlier run, finished (shown again) or resumed; None to start anew.

    Dry runs are always made afresh: a preview must read the tenant as it is now; so is a
    sync that finished, since the holders it mirrors may have changed since.
    """
    if latest is None or options.dry_run:
        return None
    if latest.sync is not None and latest.state is RunState.FINISHED:
        return None
    run = journal.run_journal(latest.run_id)
    if latest.state is RunState.FINISHED or (latest.state is RunState.SENT and options.no_wait):
        ctx.claim(lock, latest.run_id)
        return _shown_again(run, options, report)
    if latest.state in RESUMABLE:
        ctx.claim(lock, latest.run_id)
        ctx.reporter.info(f"Resuming run {latest.run_id} ({latest.state.value})")
        return await _drive(ctx, run, options, report, since=Progress.of(run))
    return None


async def _start(
    ctx: JobContext,
    journal: Journal,
    lock: JobLock,
    latest: RunInfo | None,
    new: _NewRun,
    options: RunOptions,
    report: Path | None,
) -> RunSummary:
    """The one way a run starts: the job's earlier run continued (or shown again) if there is
    one to continue, else a new run recorded, its handles checked, its rows loaded, and driven."""
    earlier = await _continue(ctx, journal, latest, lock, options, report)
    if earlier is not None:
        return earlier
    moves = _moves(new.spec, undo_of=new.undo_of)
    handles = new.spec.handles
    definitions = await check_handles(
        ctx.client, handles, ctx.reporter, lines=new.lines, moves=moves
    )
    spec = new.spec
    if moves:  # the run may also take each status's siblings away
        spec = replace(spec, handles=scope(handles, definitions))
        if options.no_wait and any(siblings(handle, definitions) for handle in handles):
            raise UsageError(
                "--no-wait cannot be used when a row moves its customer within a status group:"
                " the move's second write waits for its first to land; nothing was written",
                hint="Leave out --no-wait.",
            )
    run = journal.create_run(
        new.job_key,
        spec,
        base_url=ctx.base_url,
        input_name=new.input_name,
        dry_run=options.dry_run,
        undo_of=new.undo_of,
    )
    ctx.claim(lock, run.run_id)
    new.load(run)
    run.update(state=RunState.RUNNING)
    return await _drive(ctx, run, options, report, definitions=definitions)


def _moves(spec: JobSpec, *, undo_of: str | None) -> bool:
    """Whether the run moves customers within status groups: its rows name their statuses,
    it assigns them (an assign or a sync), and it is not an undo (which only reverses)."""
    return spec.status_column is not None and spec.action is Action.ASSIGN and undo_of is None


def _check_target(info: RunInfo, base_url: str) -> None:
    if info.base_url.rstrip("/") != base_url.rstrip("/"):
        raise UsageError(
            f"Run {info.run_id} was made against {info.base_url}, not {base_url}",
            hint="Use the same tenant (or base URL) as the original run.",
            run_id=info.run_id,
        )


def _shown_again(run: RunJournal, options: RunOptions, report: Path | None) -> RunSummary:
    path = write_run_report(run, report)
    return summarize(run, report=path, strict=options.strict, already_finished=True)


async def _drive(
    ctx: JobContext,
    run: RunJournal,
    options: RunOptions,
    report: Path | None,
    *,
    definitions: Mapping[str, StatusDefinition] | None = None,
    since: Progress | None = None,
) -> RunSummary:
    """Run the engine over the run, then record its end, write its report and summarize it.

    ``since`` is where a resumed run stood when this command took it up (None: a new run,
    all of it this command's): the summary's ``this_run`` is measured from it."""
    info = run.info()
    spec = JobSpec(
        info.action,
        info.handles,
        sync=info.sync is not None,
        match=MatchKey.parse(info.match),
        status_column=info.status_column,
    )
    moves = _moves(spec, undo_of=info.undo_of)
    if definitions is None:
        definitions = await check_handles(ctx.client, spec.handles, ctx.reporter, moves=moves)
    run.update(state=RunState.RUNNING)
    engine = Engine(
        run=run,
        spec=spec,
        options=options,
        client=ctx.client,
        reporter=ctx.reporter,
        definitions=definitions,
        confirm=ctx.confirm,
        planner=SyncPlanner(
            ctx.client,
            spec.handles,
            options.max_remove,
            ctx.reporter,
            dry_run=options.dry_run,
            concurrency=options.concurrency,
        )
        if spec.sync
        else None,
        facts=ctx.facts,
        sleep=ctx.sleep,
        clock=ctx.clock,
        moves=moves,
    )
    try:
        result = await engine.execute()
    except asyncio.CancelledError:
        stopped = Interrupted("Interrupted; the run's journal is saved", run_id=run.run_id)
        stopped.report = _stop(run, report, RunState.INTERRUPTED, stopped)
        raise stopped from None
    except OmneoStatusError as exc:
        state = RunState.FAILED if isinstance(exc, ApiError) else RunState.STOPPED
        exc.run_id, exc.report = run.run_id, _stop(run, report, state, exc)
        raise
    if result.gave_up:
        state = RunState.GAVE_UP
    elif options.no_wait and not options.dry_run:
        state = RunState.SENT
    else:
        state = RunState.FINISHED
    run.update(state=state, verification=json.dumps(result.verification.to_json()))
    path = write_run_report(run, report)
    summary = summarize(
        run,
        report=path,
        strict=options.strict,
        lookup=result.lookup,
        resumed=since is not None,
        no_wait=options.no_wait,
        this_run=(since or NOTHING_YET).since(run, requests=ctx.client.governor.stats.requests),
    )
    run.record_exit(int(summary.exit_code))
    return summary


def _stop(run: RunJournal, report: Path | None, state: RunState, error: OmneoStatusError) -> Path:
    """Record how the run stopped, then write its report (pending rows name that state)."""
    run.update(state=state, detail=error.message)
    path = write_run_report(run, report)
    run.record_exit(int(error.exit_code))
    return path


__all__ = [
    "Confirm",
    "JobContext",
    "PreparedInput",
    "Preview",
    "RunSummary",
    "RunView",
    "check_handles",
    "job_key",
    "prune_runs",
    "recent_runs",
    "resume_job",
    "run_job",
    "undo_job",
]
