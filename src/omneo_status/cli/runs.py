"""The commands that write: ``assign`` and ``remove`` (one command for both actions), ``sync``,
``resume`` and ``undo``. Each builds the job, drives it with its session's client and display,
and words the summary (``pass --fresh``, ``resume RUN_ID``) before it exits with its code."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from contextlib import suppress
from enum import Enum
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
    SHEET,
    STATUS_COLUMN,
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
    "  omneo-status {verb} vip tiers.xlsx --sheet Customers --dry-run\n\n"
    "  omneo-status {verb} --status-column tier examples/tiers.csv --sandbox --dry-run\n\n"
    + EXIT_CODES_HELP
)
SYNC_EPILOG = (
    "Examples:\n\n"
    "  omneo-status sync vip tonight.csv --dry-run\n\n"
    "  omneo-status sync vip tonight.csv --max-remove 50 --yes --json\n\n"
    "  omneo-status sync vip members.xlsx --sheet 2 --dry-run\n\n"
    "  omneo-status sync vip examples/emails.csv --sandbox --max-remove 100%\n\n"
    "  omneo-status sync --status-column tier examples/tiers.csv --sandbox --dry-run\n\n"
    + EXIT_CODES_HELP
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
    def command(given: Given, handle: HandleArg = None, csv_file: CsvArg = None) -> None:
        _from_file(action, handle, csv_file, given)

    command.__name__ = command.__qualname__ = action.value
    command.__doc__ = help_text
    return command


assign = _file_command(
    Action.ASSIGN,
    """Add status HANDLE to every profile whose email (or --match key) is in CSV_FILE.

    Only the batch endpoint is used: statuses the profiles already hold are kept. With
    --status-column each row names its own status instead, and a status of a group moves its
    customer within the group: the other statuses of that group the profile holds are removed.
    """,
)
remove = _file_command(
    Action.REMOVE,
    """Remove status HANDLE from every profile whose email (or --match key) is in CSV_FILE.

    Only the handles given are detached; every other status is kept. With --status-column
    each row names the status to detach from its profile.
    """,
)


@with_flags(MAX_REMOVE, *FILE_RUN, *RUN_OUTPUT, *RUN_CONNECTION)
def sync(given: Given, handle: SyncHandleArg = None, csv_file: CsvArg = None) -> None:
    """Make the profiles in CSV_FILE exactly the holders of status HANDLE.

    Adds HANDLE to listed profiles that lack it and removes it from holders the file does not
    list, through the batch endpoint only; every other status is kept. The removal guard
    (--max-remove) stops before any write when too many holders would lose it. With
    --status-column, each row's status (its customer moved within the status's group) and
    every holder of those statuses or their siblings the file does not list loses them.
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


class Asking(Enum):
    """Whether a run asks before its first write."""

    ASK = "ask"
    """A person is there to answer."""
    TOLD = "told"
    """Nothing to ask: --yes, a dry run, or --sandbox (a rehearsal changes nothing real)."""
    NOBODY = "nobody"
    """It would ask, but stdin or stderr is not a terminal: it writes without asking, and
    says so in a warning (cron is how unattended runs are meant to go; --yes silences it)."""


UNASKED = (
    "Writing without asking: stdin or stderr is not a terminal, so nobody can answer"
    " (pass --yes to say that is meant)"
)


def _asking(rt: Runtime, given: Given, options: RunOptions, conn: Connection) -> Asking:
    """Whether the run asks before it writes (see ``Asking``)."""
    if given[YES] or options.dry_run or conn.sandbox:
        return Asking.TOLD
    return Asking.ASK if rt.interactive() else Asking.NOBODY


def _arguments(
    first: str | None, csv_file: str | None, status_column: str | None
) -> tuple[str, str]:
    """The HANDLE and CSV_FILE arguments (HANDLE "" with --status-column, where the one
    argument is the file)."""
    if first is None:
        raise UsageError(
            "Missing argument 'CSV_FILE'.",
            hint="Give a status HANDLE and a CSV_FILE, or --status-column NAME and a CSV_FILE.",
        )
    if status_column is None:
        if csv_file is None:
            raise UsageError(
                "Missing argument 'CSV_FILE'.",
                hint="Give a status HANDLE and a CSV_FILE, or --status-column NAME and a CSV_FILE.",
            )
        return first, csv_file
    if csv_file is not None:
        raise UsageError(
            f"--status-column {status_column} reads each row's status from the file: give no"
            f" HANDLE (got {first!r})",
            hint="Example: omneo-status assign --status-column tier customers.csv",
        )
    return "", first


def _from_file(
    action: Action, first: str | None, second: str | None, given: Given, *, sync: bool = False
) -> None:
    """``assign`` and ``remove``, or ``sync`` (``sync=True``): read the file, run the job, show
    the summary, exit."""
    rt = boundary.runtime()
    out, conn = output(given), connection(given)
    with boundary.guard(out.json):
        handle, csv_file = _arguments(first, second, given[STATUS_COLUMN])
        handles = _handles(handle) if handle else ()
        spec = JobSpec(action, handles, sync=sync, match=MatchKey.parse(given[MATCH]))
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
                sheet=given[SHEET],
                status_column=given[STATUS_COLUMN],
            ) as source,
        ):
            summary = _execute(
                session,
                options,
                lambda ctx: jobs.run_job(
                    ctx, spec, options, source, report=report, fresh=given[FRESH]
                ),
                asking=_asking(rt, given, options, conn),
                input_name=source.label,
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
                asking=_asking(rt, given, options, conn),
            )
    _finish(summary, out, fresh_advice=False)


def _execute(
    session: Session,
    options: RunOptions,
    job: Job,
    *,
    asking: Asking,
    input_name: str | None = None,
) -> RunSummary:
    """Drive one job with the session's client and display; log its end."""
    shown, rt, log = session.shown, session.rt, session.log
    if asking is Asking.NOBODY:
        session.reporter.warn(UNASKED)
    facts = session.facts()

    def confirm(preview: Preview) -> bool:
        with shown.paused():
            tenant = tenant_name(session.settings.base_url)
            return console.confirm_plan(preview, tenant, input_name=input_name)

    async def go() -> RunSummary:
        async with session.client(options.concurrency) as client:
            ctx = JobContext(
                client=client,
                base_url=session.settings.base_url,
                state_dir=session.settings.state_dir,
                reporter=session.reporter,
                confirm=confirm if asking is Asking.ASK else None,
                sleep=rt.sleep,
                clock=rt.clock,
                facts=facts,
                on_run=log.bind if log is not None else None,
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
        if log is not None:
            log.write("error", **boundary.advice(exc).to_json())
        raise
    if log is not None:
        log.write("summary", **summary.to_json())
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
    """Show the summary (stdout: the table, one line, the JSON document, or the report) and
    the advice its flags call for, then exit with its code. ``--quiet`` leaves stderr to
    warnings and errors whatever stdout gets."""
    if out.json:
        console.print_json(summary.to_json())
    elif out.report_to_stdout:
        if not out.quiet:
            console.render_summary(summary, title_note=_title_note(summary), err=True)
        console.print_text(summary.report.read_text(encoding="utf-8"))
    elif out.quiet:
        console.print_line(console.summary_line(summary, note=_title_note(summary)))
    else:
        console.render_summary(summary, title_note=_title_note(summary))
    for advice in _advice_of(summary, fresh_advice=fresh_advice):
        console.print_warning(advice)
    raise typer.Exit(int(summary.exit_code))


def _title_note(summary: RunSummary) -> str:
    if summary.already_finished:
        return " (already finished: nothing sent)"
    return " (resumed)" if summary.resumed else ""
