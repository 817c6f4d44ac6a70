"""One job from start to summary: read the input, key and lock the job, start or resume its
journaled run, drive the engine, and write the report.

``cli.py`` calls ``run_job``, ``resume_job`` and ``undo_job``; nothing here prints or exits.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import filelock

from omneo_status.client import OmneoClient
from omneo_status.errors import (
    ApiError,
    ExitCode,
    Interrupted,
    LockedError,
    OmneoStatusError,
    UnknownHandleError,
    UsageError,
)
from omneo_status.events import Reporter, Step
from omneo_status.inputs import email_key, is_valid_email, normalize_email, open_input, read_rows
from omneo_status.journal import Journal, RowRecord, RunInfo, RunState, Stage
from omneo_status.models import Action, Outcome
from omneo_status.report import ReportRow, write_report
from omneo_status.run import SKIPPED, Confirm, Engine, RunOptions, Verification

JOURNAL_FILE = "journal.sqlite"
INVALID = Outcome.INVALID_EMAIL.value


@dataclass(frozen=True)
class BatchSummary:
    """One batch of a run, as the summary shows it."""

    batch_id: str
    status: str
    profiles: int
    success_count: int
    failed_count: int


@dataclass
class RunSummary:
    """Everything the summary table and ``--json`` show about a run."""

    run_id: str
    action: Action
    handles: tuple[str, ...]
    dry_run: bool
    rows: int
    counts: dict[str, int]
    batches: list[BatchSummary]
    verified: Verification
    report: Path
    exit_code: ExitCode
    state: str
    resumed: bool = False
    already_finished: bool = False
    no_wait: bool = False
    requests: int = 0
    throttled: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The documented ``--json`` document."""
        return {
            "action": self.action.value,
            "handles": list(self.handles),
            "dry_run": self.dry_run,
            "run_id": self.run_id,
            "rows": self.rows,
            "counts": self.counts,
            "batches": [
                {
                    "batch_id": b.batch_id,
                    "status": b.status,
                    "profiles": b.profiles,
                    "success_count": b.success_count,
                    "failed_count": b.failed_count,
                }
                for b in self.batches
            ],
            "verified": {
                "checked": self.verified.checked,
                "ok": self.verified.ok,
                "problems": list(self.verified.problems),
            },
            "report": str(self.report),
            "exit_code": int(self.exit_code),
        }


@dataclass(frozen=True)
class PreparedInput:
    """An input file read once to the end: valid, hashed and counted."""

    name: str
    path: Path
    column: str | None
    digest: str
    rows: int


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


# -- input -----------------------------------------------------------------------------------


@contextmanager
def prepared_input(
    path: str, column: str | None, *, state_dir: Path, stdin: BinaryIO | None = None
) -> Iterator[PreparedInput]:
    """Read the input to its end before anything touches the API.

    Every problem in the file (encoding, no email column, ...) is raised here as an
    ``InputError``. Standard input (``-``) is spooled to a private file so it can be read again.
    """
    spool: Path | None = None
    try:
        if path == "-":
            spool = _spool_stdin(stdin, state_dir)
            source, name = str(spool), "<stdin>"
        else:
            source, name = path, path
        digest = hashlib.sha256()
        rows = 0
        with open_input(source) as stream:
            _, records = read_rows(stream, name=name, column=column)
            for record in records:
                digest.update(f"{record.line}\t{email_key(record.email)}\n".encode())
                rows += 1
        yield PreparedInput(name, Path(source), column, digest.hexdigest(), rows)
    finally:
        if spool is not None:
            with suppress(OSError):
                spool.unlink()


def _spool_stdin(stdin: BinaryIO | None, state_dir: Path) -> Path:
    if stdin is None:
        raise UsageError("No standard input to read ('-' was given as the file)")
    tmp = state_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="stdin-", suffix=".csv", dir=tmp)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(stdin, out)
    return Path(name)


def job_key(
    *, action: Action, handles: tuple[str, ...], base_url: str, digest: str, dry_run: bool
) -> str:
    """The identity of a job: same action, handles, tenant and addresses means the same job."""
    parts = [action.value, ",".join(sorted(handles)), base_url.rstrip("/"), digest, str(dry_run)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@contextmanager
def job_lock(state_dir: Path, key: str) -> Iterator[None]:
    """Hold the job's lock; a second run of the same job raises ``LockedError`` at once.

    The lock is the operating system's: it dies with its process, so a crash leaves nothing
    that blocks the next run.
    """
    locks = state_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = filelock.FileLock(str(locks / f"{key[:32]}.lock"), mode=0o600)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise LockedError(
            "Another run of this job is in progress",
            hint="Wait for it to finish (see `omneo-status runs`); its lock is released when"
            " it ends, even if it is killed.",
        ) from None
    try:
        yield
    finally:
        lock.release()


def is_running(state_dir: Path, info: RunInfo) -> bool:
    """Whether a process still holds the run's job lock (a killed run's state says ``running``)."""
    lock = filelock.FileLock(str(state_dir / "locks" / f"{info.job_key[:32]}.lock"))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    lock.release()
    return False


def shown_state(state_dir: Path, info: RunInfo) -> str:
    """The run's state as a person should read it: a dead ``running`` run is ``interrupted``."""
    if info.state in (RunState.RUNNING, RunState.LOADING) and not is_running(state_dir, info):
        return RunState.INTERRUPTED
    return info.state


def open_journal(state_dir: Path) -> Journal:
    """The journal of runs in this state directory."""
    return Journal(state_dir / JOURNAL_FILE)


# -- handles ---------------------------------------------------------------------------------


async def check_handles(client: OmneoClient, handles: tuple[str, ...], reporter: Reporter) -> None:
    """Raise ``UnknownHandleError`` unless every handle has a definition on the tenant."""
    reporter.start(Step.HANDLES, None)
    known = [status.handle for status in await client.list_statuses()]
    reporter.finish(Step.HANDLES)
    unknown = [h for h in handles if h not in known]
    if not unknown:
        return
    handle = unknown[0]
    close = [k for k in known if k.lower() == handle.lower()]
    close += [
        k for k in difflib.get_close_matches(handle, known, n=3, cutoff=0.6) if k not in close
    ]
    guess = f"; did you mean {' or '.join(f'`{c}`' for c in close[:3])}?" if close else ""
    more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    raise UnknownHandleError(
        f"Unknown status handle `{handle}`{more}: the tenant has no such status{guess}",
        hint="Run `omneo-status statuses` to list the handles; nothing was written.",
    )


# -- runs ------------------------------------------------------------------------------------


async def run_job(
    ctx: JobContext,
    options: RunOptions,
    source: PreparedInput,
    *,
    report: Path | None = None,
    fresh: bool = False,
) -> RunSummary:
    """Run ``assign``/``remove`` over a prepared input, resuming the same job if it is pending."""
    key = job_key(
        action=options.action,
        handles=options.handles,
        base_url=ctx.base_url,
        digest=source.digest,
        dry_run=options.dry_run,
    )
    journal = open_journal(ctx.state_dir)
    try:
        with job_lock(ctx.state_dir, key):
            latest = None if fresh else journal.latest_run(key)
            earlier = await _continue(ctx, journal, latest, options, report)
            if earlier is not None:
                if earlier.already_finished:
                    earlier.notes.append(
                        "This job already finished; pass --fresh to run it again from the start."
                    )
                return earlier
            await check_handles(ctx.client, options.handles, ctx.reporter)
            run_id = journal.create_run(
                job_key=key,
                action=options.action,
                handles=options.handles,
                base_url=ctx.base_url,
                input_name=source.name,
                dry_run=options.dry_run,
            )
            _load_rows(journal, run_id, source, ctx.reporter)
            info = journal.run(run_id)
            assert info is not None
            return await _drive(ctx, journal, info, options, report, resumed=False, checked=True)
    finally:
        journal.close()


async def resume_job(
    ctx: JobContext, run_id: str, options: RunOptions, *, report: Path | None = None
) -> RunSummary:
    """Continue a run by id, with the rows its journal holds (no input file needed)."""
    journal = open_journal(ctx.state_dir)
    try:
        info = _find_run(journal, run_id)
        _check_target(info, ctx.base_url)
        if info.state == RunState.LOADING:
            raise UsageError(
                f"Run {info.run_id} stopped while reading its input",
                hint="Run the original command again; it starts that run afresh.",
            )
        options = _options_of(info, options)
        with job_lock(ctx.state_dir, info.job_key):
            if info.state == RunState.FINISHED:
                return _summary(journal, info, report, options, already_finished=True)
            return await _drive(ctx, journal, info, options, report, resumed=True)
    finally:
        journal.close()


async def undo_job(
    ctx: JobContext, run_id: str, options: RunOptions, *, report: Path | None = None
) -> RunSummary:
    """Reverse exactly what a run changed: only the rows it assigned (or removed)."""
    journal = open_journal(ctx.state_dir)
    try:
        original = _find_run(journal, run_id)
        _check_target(original, ctx.base_url)
        if original.dry_run:
            raise UsageError(f"Run {original.run_id} was a dry run: it changed nothing to undo")
        if original.undo_of is not None:
            ctx.reporter.info(f"Run {original.run_id} is itself an undo; undoing it re-applies")
        action = Action.REMOVE if original.action is Action.ASSIGN else Action.ASSIGN
        done = Outcome.ASSIGNED if original.action is Action.ASSIGN else Outcome.REMOVED
        options = replace(options, action=action, handles=original.handles)
        key = hashlib.sha256(f"undo\n{original.run_id}\n{options.dry_run}".encode()).hexdigest()
        with job_lock(ctx.state_dir, key):
            earlier = await _continue(ctx, journal, journal.latest_run(key), options, report)
            if earlier is not None:
                return earlier
            await check_handles(ctx.client, options.handles, ctx.reporter)
            new_id = journal.create_run(
                job_key=key,
                action=action,
                handles=options.handles,
                base_url=ctx.base_url,
                input_name=f"undo of {original.run_id}",
                dry_run=options.dry_run,
                undo_of=original.run_id,
            )
            changed = journal.rows_with_outcome(original.run_id, [done, Outcome.SENT])
            count = journal.add_known_rows(
                new_id,
                (
                    (r.line, r.email, email_key(r.email), r.profile_id or "", r.send)
                    for r in changed
                    if r.profile_id
                ),
            )
            journal.set_run(new_id, state=RunState.RUNNING, rows=count)
            info = journal.run(new_id)
            assert info is not None
            return await _drive(ctx, journal, info, options, report, resumed=False, checked=True)
    finally:
        journal.close()


async def _continue(
    ctx: JobContext,
    journal: Journal,
    latest: RunInfo | None,
    options: RunOptions,
    report: Path | None,
) -> RunSummary | None:
    """The same job's earlier run, finished (its summary again) or resumed; None to start anew.

    Dry runs are always made afresh: a preview must read the tenant as it is now.
    """
    if latest is None or options.dry_run:
        return None
    if latest.state == RunState.FINISHED or (latest.state == RunState.SENT and options.no_wait):
        return _summary(journal, latest, report, options, already_finished=True)
    if latest.state in RunState.RESUMABLE:
        ctx.reporter.info(f"Resuming run {latest.run_id} ({latest.state})")
        return await _drive(ctx, journal, latest, options, report, resumed=True)
    return None


def _find_run(journal: Journal, run_id: str) -> RunInfo:
    info = journal.run(run_id)
    if info is None:
        raise UsageError(
            f"No run {run_id!r} in this state directory",
            hint="List runs with `omneo-status runs`.",
        )
    return info


def _check_target(info: RunInfo, base_url: str) -> None:
    if info.base_url.rstrip("/") != base_url.rstrip("/"):
        raise UsageError(
            f"Run {info.run_id} was made against {info.base_url}, not {base_url}",
            hint="Pass the same --tenant/--base-url as the original run.",
        )


def _options_of(info: RunInfo, options: RunOptions) -> RunOptions:
    return replace(options, action=info.action, handles=info.handles, dry_run=info.dry_run)


def _load_rows(journal: Journal, run_id: str, source: PreparedInput, reporter: Reporter) -> None:
    reporter.start(Step.READ, source.rows)

    def classified() -> Iterator[tuple[int, str, str, str, str | None, str]]:
        with open_input(str(source.path)) as stream:
            _, records = read_rows(stream, name=source.name, column=source.column)
            for record in records:
                email = normalize_email(record.email)
                key = email_key(email)
                if is_valid_email(email):
                    yield record.line, record.email, key, Stage.LOOKUP, None, ""
                else:
                    why = "empty cell" if not email else "not a valid email address"
                    yield record.line, record.email, key, Stage.DONE, INVALID, why

    count = journal.add_rows(run_id, classified())
    journal.mark_duplicates(run_id)
    journal.set_run(run_id, state=RunState.RUNNING, rows=count)
    reporter.advance(Step.READ, count)
    reporter.finish(Step.READ)


async def _drive(
    ctx: JobContext,
    journal: Journal,
    info: RunInfo,
    options: RunOptions,
    report: Path | None,
    *,
    resumed: bool,
    checked: bool = False,
) -> RunSummary:
    if not checked:
        await check_handles(ctx.client, options.handles, ctx.reporter)
    journal.set_run(info.run_id, state=RunState.RUNNING)
    engine = Engine(
        run_id=info.run_id,
        options=options,
        client=ctx.client,
        journal=journal,
        reporter=ctx.reporter,
        confirm=ctx.confirm,
        sleep=ctx.sleep,
        clock=ctx.clock,
    )
    try:
        outcome = await engine.execute()
    except asyncio.CancelledError:
        _stop(journal, info, report, RunState.INTERRUPTED, "interrupted")
        raise Interrupted(
            f"Interrupted; the journal of run {info.run_id} is saved",
            hint=f"Resume with: omneo-status resume {info.run_id}",
        ) from None
    except OmneoStatusError as exc:
        failed = isinstance(exc, ApiError)
        path = _stop(
            journal, info, report, RunState.FAILED if failed else RunState.STOPPED, exc.message
        )
        if failed and exc.hint is None:
            exc.hint = f"Re-run the same command (or `omneo-status resume {info.run_id}`) to go on."
        exc.message += f" (run {info.run_id}; report: {path})"
        raise
    if outcome.gave_up:
        state = RunState.GAVE_UP
    elif options.no_wait and not options.dry_run:
        state = RunState.SENT
    else:
        state = RunState.FINISHED
    verification = json.dumps(outcome.verification.__dict__)
    journal.set_run(info.run_id, state=state, verification=verification)
    refreshed = journal.run(info.run_id)
    assert refreshed is not None
    summary = _summary(journal, refreshed, report, options, resumed=resumed)
    summary.requests = ctx.client.governor.stats.requests
    summary.throttled = ctx.client.governor.stats.throttled
    if outcome.gave_up:
        summary.notes.append(
            f"Gave up waiting for some batches; they were accepted. Resume with:"
            f" omneo-status resume {info.run_id}"
        )
    return summary


def _stop(journal: Journal, info: RunInfo, report: Path | None, state: str, detail: str) -> Path:
    journal.commit()
    path = _write_report(journal, info, report)
    journal.set_run(info.run_id, state=state, detail=detail, report=str(path))
    return path


def _report_path(journal: Journal, info: RunInfo, report: Path | None) -> Path:
    if report is not None:
        return report
    return journal.path.parent / "reports" / f"{info.run_id}.csv"


def _write_report(journal: Journal, info: RunInfo, report: Path | None) -> Path:
    path = _report_path(journal, info, report)
    write_report(path, (_report_row(row, info) for row in journal.all_rows(info.run_id)))
    return path


def _report_row(row: RowRecord, info: RunInfo) -> ReportRow:
    outcome, detail = effective_outcome(row, info)
    return ReportRow(
        line=row.line,
        email=row.email,
        outcome=outcome,
        profile_id=row.profile_id,
        batch_id=row.batch_id,
        detail=detail,
    )


def effective_outcome(row: RowRecord, info: RunInfo) -> tuple[Outcome, str]:
    """A row's outcome for the report, pending rows included (they are never left blank)."""
    if row.outcome is not None:
        return row.outcome, row.detail
    if row.stage == Stage.CHUNKED and row.batch_id:
        return Outcome.SENT, f"batch {row.batch_id} accepted, not yet finished; re-run to follow it"
    return Outcome.FAILED, f"not processed: the run stopped ({info.state}); re-run to resume"


def _summary(
    journal: Journal,
    info: RunInfo,
    report: Path | None,
    options: RunOptions,
    *,
    resumed: bool = False,
    already_finished: bool = False,
) -> RunSummary:
    path = _write_report(journal, info, report)
    journal.set_run(info.run_id, report=str(path))
    counts = {outcome.value: 0 for outcome in Outcome}
    for row in journal.all_rows(info.run_id):
        outcome, _ = effective_outcome(row, info)
        counts[outcome.value] += 1
    batches = [
        BatchSummary(
            batch_id=chunk.batch_id,
            status=chunk.batch_status or "unknown",
            profiles=chunk.profiles,
            success_count=chunk.success_count or 0,
            failed_count=chunk.failed_count or 0,
        )
        for chunk in journal.chunks(info.run_id)
        if chunk.batch_id
    ]
    verified = (
        Verification(**json.loads(info.verification)) if info.verification else Verification()
    )
    summary = RunSummary(
        run_id=info.run_id,
        action=info.action,
        handles=info.handles,
        dry_run=info.dry_run,
        rows=sum(counts.values()),
        counts=counts,
        batches=batches,
        verified=verified,
        report=path,
        exit_code=ExitCode.OK,
        state=info.state,
        resumed=resumed,
        already_finished=already_finished,
        no_wait=options.no_wait,
    )
    summary.exit_code = exit_code_of(summary, strict=options.strict)
    return summary


def exit_code_of(summary: RunSummary, *, strict: bool) -> ExitCode:
    """The documented exit code of a finished run."""
    if summary.state == RunState.GAVE_UP:
        return ExitCode.GAVE_UP_WAITING
    if summary.counts.get(Outcome.FAILED.value, 0) or summary.verified.problems:
        return ExitCode.ROWS_FAILED
    if strict and any(summary.counts.get(o.value, 0) for o in SKIPPED):
        return ExitCode.ROWS_FAILED
    return ExitCode.OK
