"""The commands that write: ``assign`` and ``remove`` (one command for both actions), ``sync``,
``resume`` and ``undo``. Each builds the job, drives it with its session's client and display,
and words the summary (``pass --fresh``, ``resume RUN_ID``) before it exits with its code."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import NoReturn

import typer

from omneo_status import jobs
from omneo_status.cli import boundary, console
from omneo_status.cli.boundary import EXIT_CODES_HELP, Runtime
from omneo_status.cli.console import ConsoleReporter
from omneo_status.cli.flags import (
    COLUMN,
    CONCURRENCY,
    EVERY_RUN,
    FILE_RUN,
    FRESH,
    MATCH,
    MAX_REMOVE,
    RUN_CONNECTION,
    RUN_OUTPUT,
    YES,
    Connection,
    CsvArg,
    Given,
    HandleArg,
    Output,
    RunIdArg,
    SyncHandleArg,
    connection,
    output,
    run_options,
    with_flags,
)
from omneo_status.cli.session import Session, open_session
from omneo_status.errors import OmneoStatusError, UsageError
from omneo_status.jobs import JobContext, Preview, RunSummary
from omneo_status.keys import MatchKey
from omneo_status.models import Action
from omneo_status.options import JobSpec, RunOptions
from omneo_status.settings import tenant_name
from omneo_status.source import prepared_input
from omneo_status.sync import SYNC_ONE

RUN_EPILOG = (
    "Examples:\n\n"
    "  omneo-status {verb} vip customers.csv --dry-run\n\n"
    "  omneo-status {verb} vip,staff customers.csv --yes --json\n\n"
    "  omneo-status {verb} vip examples/emails.csv --sandbox\n\n"
    "  omneo-status {verb} vip customers.csv --match identity:shopify --column 'Customer ID'\n\n"
    + EXIT_CODES_HELP
)
SYNC_EPILOG = (
    "Examples:\n\n"
    "  omneo-status sync vip tonight.csv --dry-run\n\n"
    "  omneo-status sync vip tonight.csv --max-remove 50 --yes --json\n\n"
    "  omneo-status sync vip examples/emails.csv --sandbox --max-remove 100%\n\n" + EXIT_CODES_HELP
)
RESUME_EPILOG = (
    "Examples:\n\n  omneo-status resume 20261128T181500-3fa9c2-0b1e\n\n"
    "  omneo-status resume 20261128T181500-3fa9c2-0b1e --max-remove 20%   (a stopped sync)\n\n"
    + EXIT_CODES_HELP
)
UNDO_EPILOG = (
    "Examples:\n\n  omneo-status undo 20261128T181500-3fa9c2-0b1e --dry-run\n\n"
    "  omneo-status undo 20261128T181500-3fa9c2-0b1e --yes\n\n" + EXIT_CODES_HELP
)

Job = Callable[[JobContext], Awaitable[RunSummary]]


# -- the commands ----------------------------------------------------------------------------


def _file_command(action: Action, help_text: str) -> Callable[..., None]:
    """``assign`` or ``remove``: the same command but for its action, its name and its help."""

    @with_flags(*FILE_RUN, *RUN_OUTPUT, *RUN_CONNECTION)
    def command(handle: HandleArg, csv_file: CsvArg, given: Given) -> None:
        _from_file(action, handle, csv_file, given)

    command.__name__ = command.__qualname__ = action.value
    command.__doc__ = help_text
    return command


assign = _file_command(
    Action.ASSIGN,
    """Add status HANDLE to every profile whose email (or --match key) is in CSV_FILE.

    Only the batch endpoint is used: statuses the profiles already hold are kept.
    """,
)
remove = _file_command(
    Action.REMOVE,
    """Remove status HANDLE from every profile whose email (or --match key) is in CSV_FILE.

    Only the handles given are detached; every other status is kept.
    """,
)


@with_flags(MAX_REMOVE, *FILE_RUN, *RUN_OUTPUT, *RUN_CONNECTION)
def sync(handle: SyncHandleArg, csv_file: CsvArg, given: Given) -> None:
    """Make the profiles in CSV_FILE exactly the holders of status HANDLE.

    Adds HANDLE to listed profiles that lack it and removes it from holders the file does not
    list, through the batch endpoint only; every other status is kept. The removal guard
    (--max-remove) stops before any write when too many holders would lose it.
    """
    _from_file(Action.ASSIGN, handle, csv_file, given, sync=True)


@with_flags(MAX_REMOVE, *EVERY_RUN, CONCURRENCY, *RUN_OUTPUT, *RUN_CONNECTION)
def resume(run_id: RunIdArg, given: Given) -> None:
    """Continue an unfinished run by id, from its journal (no input file needed).

    A sync stopped by its removal guard goes on with a higher --max-remove.
    """
    _by_id(False, run_id, given)


@with_flags(*EVERY_RUN, CONCURRENCY, *RUN_OUTPUT, *RUN_CONNECTION)
def undo(run_id: RunIdArg, given: Given) -> None:
    """Reverse exactly what a run changed, and nothing else.

    Removes what the run assigned (only where the profile did not hold it before), or adds
    back what it removed.
    """
    _by_id(True, run_id, given)


# -- what they share -------------------------------------------------------------------------


def _handles(text: str) -> tuple[str, ...]:
    handles = tuple(dict.fromkeys(h.strip() for h in text.split(",") if h.strip()))
    if not handles:
        raise UsageError(
            "No status handle given", hint="Example: omneo-status assign vip emails.csv"
        )
    return handles


def _asks(rt: Runtime, given: Given, options: RunOptions, conn: Connection) -> bool:
    """Whether the run asks before it writes: a person is there to answer, and neither --yes,
    a dry run nor --sandbox says not to (a rehearsal in the sandbox changes nothing real)."""
    return not (given[YES] or options.dry_run or conn.sandbox) and rt.interactive()


def _from_file(
    action: Action, handle: str, csv_file: str, given: Given, *, sync: bool = False
) -> None:
    """``assign`` and ``remove``, or ``sync`` (``sync=True``): read the file, run the job, show
    the summary, exit."""
    rt = boundary.runtime()
    out, conn = output(given), connection(given)
    with boundary.guard(out.json):
        spec = JobSpec(action, _handles(handle), sync=sync, match=MatchKey.parse(given[MATCH]))
        if sync and len(spec.handles) > 1:
            raise UsageError(
                f"sync takes one status handle, not {len(spec.handles)}: {SYNC_ONE}",
                hint=f"Run one sync per status: omneo-status sync {spec.handles[0]} ...",
            )
        options = run_options(given)
        report = out.report_path(None if csv_file == "-" else Path(csv_file))
        with (
            open_session(rt, conn, out) as session,
            prepared_input(
                csv_file,
                given[COLUMN],
                state_dir=session.settings.state_dir,
                stdin=sys.stdin.buffer,
                match=spec.match,
            ) as source,
        ):
            summary = _execute(
                session,
                options,
                lambda ctx: jobs.run_job(
                    ctx, spec, options, source, report=report, fresh=given[FRESH]
                ),
                ask=_asks(rt, given, options, conn),
            )
    _finish(summary, out, fresh_advice=True)


def _by_id(undo: bool, run_id: str, given: Given) -> None:
    """``resume``/``undo``: run the job the journal names, show the summary, exit."""
    rt = boundary.runtime()
    runner = jobs.undo_job if undo else jobs.resume_job
    out, conn = output(given), connection(given)
    with boundary.guard(out.json):
        options = run_options(given)
        report = out.report_path(None)
        with open_session(rt, conn, out) as session:
            summary = _execute(
                session,
                options,
                lambda ctx: runner(ctx, run_id, options, report=report),
                ask=_asks(rt, given, options, conn),
            )
    _finish(summary, out, fresh_advice=False)


def _execute(session: Session, options: RunOptions, job: Job, *, ask: bool) -> RunSummary:
    """Drive one job with the session's client and display; log its end."""
    shown, rt = session.shown, session.rt
    facts = session.facts()

    def confirm(preview: Preview) -> bool:
        with shown.paused():
            return console.confirm_plan(preview, tenant_name(session.settings.base_url))

    async def go() -> RunSummary:
        async with session.client(options.concurrency) as client:
            ctx = JobContext(
                client=client,
                base_url=session.settings.base_url,
                state_dir=session.settings.state_dir,
                reporter=session.reporter,
                confirm=confirm if ask else None,
                sleep=rt.sleep,
                clock=rt.clock,
                facts=facts,
            )
            ticker = asyncio.ensure_future(_tick(rt, shown)) if shown.ticks else None
            try:
                with shown.showing():
                    return await job(ctx)
            finally:
                if ticker is not None:
                    ticker.cancel()
                    with suppress(asyncio.CancelledError):
                        await ticker

    try:
        summary = boundary.run(rt, go)
    except OmneoStatusError as exc:
        if session.log is not None:
            session.log.write("error", **boundary.advice(exc).to_json())
        raise
    if session.log is not None:
        session.log.write("summary", **summary.to_json())
    return summary


async def _tick(rt: Runtime, shown: ConsoleReporter) -> None:
    """A progress line every ``PROGRESS_EVERY`` seconds, also while nothing advances."""
    while True:
        await rt.sleep(console.PROGRESS_EVERY)
        shown.tick()


def _advice_of(summary: RunSummary, *, fresh_advice: bool) -> list[str]:
    """The CLI's words for the summary's flags (shown on stderr in every mode)."""
    said: list[str] = []
    if fresh_advice and summary.already_finished:
        said.append("This job already finished; pass --fresh to run it again from the start.")
    if summary.gave_up:
        said.append(
            "Gave up waiting for some batches; they were accepted. Resume with:"
            f" omneo-status resume {summary.run_id}"
        )
    return said


def _finish(summary: RunSummary, out: Output, *, fresh_advice: bool) -> NoReturn:
    if out.json:
        console.print_json(summary.to_json())
    elif out.report_to_stdout:
        console.render_summary(summary, title_note=_title_note(summary), err=True)
        console.print_text(summary.report.read_text(encoding="utf-8"))
    elif out.quiet:
        console.print_line(console.summary_line(summary))
    else:
        console.render_summary(summary, title_note=_title_note(summary))
    for advice in _advice_of(summary, fresh_advice=fresh_advice):
        console.print_warning(advice)
    raise typer.Exit(int(summary.exit_code))


def _title_note(summary: RunSummary) -> str:
    if summary.already_finished:
        return " (already finished: nothing sent)"
    return " (resumed)" if summary.resumed else ""
