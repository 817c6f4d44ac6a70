"""Everything the user sees on a terminal, drawn with rich, in this one module.

stdout carries the result only (the summary table, or one JSON document); progress, warnings
and errors go to stderr. Colour follows the terminal and ``NO_COLOR``; nothing forces a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from omneo_status.api.doctor import DoctorReport
from omneo_status.api.trace import Exchange
from omneo_status.events import Step
from omneo_status.models import Batch, BatchState, Outcome, StatusDefinition
from omneo_status.moves import MovePair
from omneo_status.options import JobSpec
from omneo_status.settings import SettingView
from omneo_status.summary import BatchSummary, RunSummary, RunView

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

# rich is imported where it is first used, not with this module: a run whose stderr is not a
# terminal and that goes well (cron, --json --quiet) never draws anything with it, and rich
# is a fifth of the tool's start-up.

PROGRESS_EVERY = 10.0
"""Seconds between two progress lines of a stage when stderr is not a terminal."""
RETRY_SHOWN_FROM = 3.0
"""A retry wait at least this long is said without ``-v``: the run looks stuck otherwise."""

_OUTCOME_STYLE = {
    Outcome.ASSIGNED.value: "green",
    Outcome.REMOVED.value: "green",
    Outcome.WOULD_ASSIGN.value: "cyan",
    Outcome.MOVED.value: "green",
    Outcome.WOULD_MOVE.value: "cyan",
    Outcome.WOULD_REMOVE.value: "cyan",
    Outcome.FAILED.value: "bold red",
    Outcome.NOT_FOUND.value: "yellow",
    Outcome.AMBIGUOUS.value: "yellow",
    Outcome.INVALID_EMAIL.value: "yellow",
    Outcome.SENT.value: "magenta",
}
_CHECK_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def stderr() -> Console:
    """The console for progress, warnings and errors."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout() -> Console:
    """The console for results."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def escape(text: str) -> str:
    """``text`` with rich's markup escaped."""
    from rich.markup import escape

    return escape(text)


def print_error(message: str, hint: str | None = None) -> None:
    """One ``Error:`` line (and a ``Hint:`` line) on stderr."""
    err = stderr()
    err.print(f"[bold red]Error:[/] {escape(message)}")
    if hint:
        err.print(f"[dim]Hint:[/] {escape(hint)}")


def print_warning(message: str) -> None:
    """One ``Warning:`` line on stderr."""
    stderr().print(f"[yellow]Warning:[/] {escape(message)}")


def print_note(message: str) -> None:
    """One informational line on stderr."""
    stderr().print(escape(message))


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_line(text: str) -> None:
    """A plain line on stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class Display(StrEnum):
    """How a run's progress is shown on stderr."""

    LIVE = "live"
    """A live display (only on a terminal)."""
    LINES = "lines"
    """Plain lines: stage ends, and a progress line every ``PROGRESS_EVERY`` seconds."""
    QUIET = "quiet"
    """Nothing but warnings (errors and the final line are printed by the CLI)."""


class ConsoleReporter:
    """Shows a run's progress on stderr (a ``Reporter``), and the client's retries and requests.

    ``clock`` is the run's monotonic clock: rates, ETAs and progress lines follow it. ``quiet``
    (``--quiet``) keeps the ``-v`` lines back; ``-vv``'s request lines show in every mode.
    """

    def __init__(
        self,
        *,
        display: Display,
        verbose: int = 0,
        quiet: bool = False,
        clock: Callable[[], float],
    ) -> None:
        if display is Display.LIVE and not self.console.is_terminal:
            display = Display.LINES
        self.display = display
        self.verbose = verbose
        self._detail = verbose > 0 and not quiet
        """Whether the ``-v`` lines show."""
        self._clock = clock
        self._began = clock()
        self._progress: Progress | None = None
        self._tasks: dict[Step, TaskID] = {}
        self._totals: dict[Step, int] = {}
        self._done: dict[Step, int] = {}
        self._started: dict[Step, float] = {}
        self._finished: set[Step] = set()

    @cached_property
    def console(self) -> Console:
        """stderr's console, made when first needed."""
        return stderr()

    @property
    def ticks(self) -> bool:
        """Whether ``tick`` should be called every ``PROGRESS_EVERY`` seconds."""
        return self.display is Display.LINES

    @contextmanager
    def showing(self) -> Iterator[ConsoleReporter]:
        """Keep the live display up for the duration of the block."""
        if self.display is Display.LIVE:
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[progress.description]{task.description:<20}"),
                BarColumn(bar_width=30),
                TextColumn("{task.fields[count]}", justify="right"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        try:
            yield self
        finally:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Take the live display down while a question is asked, then put it back."""
        progress = self._progress
        if progress is None:
            yield
            return
        progress.stop()
        try:
            yield
        finally:
            progress.start()

    def start(self, step: Step, total: int | None = None) -> None:
        """Show a stage (again: a stage may be announced by every chunk that joins it)."""
        if step in self._started:
            if total is not None:
                self.extend(step, total - self._totals.get(step, 0))
            return
        self._started[step] = self._clock()
        self._totals[step] = total or 0
        self._done[step] = 0
        if self._progress is not None:
            self._tasks[step] = self._progress.add_task(
                step.value, total=total if total else None, rate="", count=""
            )
            self._show_count(step)

    def advance(self, step: Step, amount: int = 1) -> None:
        """Move a stage on."""
        self._done[step] = self._done.get(step, 0) + amount
        if self._progress is not None and step in self._tasks:
            rate = self._rate(step)
            self._progress.advance(self._tasks[step], amount)
            self._progress.update(self._tasks[step], rate=f"{rate:,.0f}/s" if rate else "")
            self._show_count(step)

    def extend(self, step: Step, amount: int) -> None:
        """A stage has more units than announced."""
        self._totals[step] = self._totals.get(step, 0) + amount
        if self._progress is not None and step in self._tasks:
            self._progress.update(self._tasks[step], total=self._totals[step])
            self._show_count(step)

    def finish(self, step: Step) -> None:
        """A stage is over."""
        if step in self._finished or step not in self._started:
            return
        self._finished.add(step)
        done = self._done.get(step, 0)
        if self._progress is not None and step in self._tasks:
            total = self._totals[step] or done or 1
            self._progress.update(self._tasks[step], total=total, completed=done or total)
            self._show_count(step)
        elif self.display is Display.LINES:
            self.console.print(f"{step.value}: " + (f"{done:,} done" if done else "done"))

    def tick(self) -> None:
        """One progress line per stage under way: rows done, rate and ETA (``LINES`` only)."""
        if self.display is not Display.LINES:
            return
        for step in self._started:
            if step not in self._finished:
                self.console.print(f"[{self._elapsed()}] {escape(self._progress_text(step))}")

    def info(self, message: str) -> None:
        """A log line, shown with ``--verbose`` (not with ``--quiet``)."""
        if self._detail:
            self.console.print(f"[dim]{escape(message)}[/]")

    def warn(self, message: str) -> None:
        """A warning, always shown."""
        self.console.print(f"[yellow]Warning:[/] {escape(message)}")

    def row_failed(self, line: int, key: str, detail: str) -> None:
        """A failed row, shown with ``--verbose`` (the report lists them all)."""
        if self._detail:
            self.console.print(f"[red]line {line}[/] {escape(key)}: {escape(detail)}")

    def retrying(self, what: str, wait: float) -> None:
        """A request is retried after ``wait`` seconds: said with ``-v``, or when it is long
        and progress is shown."""
        if not self._detail and (self.display is Display.QUIET or wait < RETRY_SHOWN_FROM):
            return
        self.console.print(f"[dim]Retrying {escape(what)} in {wait:.1f}s[/]")

    def exchange(self, exchange: Exchange) -> None:
        """One line per HTTP request with ``-vv``: method, path, status and time."""
        if self.verbose < 2:
            return
        status = str(exchange.status) if exchange.status else (exchange.error or "no answer")
        self.console.print(
            f"[dim]{exchange.method} {escape(exchange.path)} {escape(status)}"
            f" {exchange.elapsed_ms:.0f} ms[/]"
        )

    def _rate(self, step: Step) -> float:
        elapsed = self._clock() - self._started.get(step, self._clock())
        return self._done.get(step, 0) / elapsed if elapsed > 0 else 0.0

    def _progress_text(self, step: Step) -> str:
        done, total, rate = self._done.get(step, 0), self._totals.get(step, 0), self._rate(step)
        count = f"{done:,}/{total:,}" if total else f"{done:,}"
        eta = _duration((total - done) / rate) if total and rate > 0 else "unknown"
        return f"{step.value}: {count} rows ({rate:,.1f}/s, ETA {eta})"

    def _elapsed(self) -> str:
        return _duration(self._clock() - self._began)

    def _show_count(self, step: Step) -> None:
        assert self._progress is not None
        total, done = self._totals.get(step, 0), self._done.get(step, 0)
        text = f"{done:,}/{total:,}" if total else (f"{done:,}" if done else "")
        self._progress.update(self._tasks[step], count=text)


def _duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class PlanPreview(Protocol):
    """The plan's counts a person is shown before the first write."""

    @property
    def counts(self) -> Mapping[str, int]:
        """Rows per outcome."""

    @property
    def to_send(self) -> int:
        """Profiles that would be written."""

    @property
    def moves(self) -> Sequence[MovePair]:
        """The moves by pair (a run whose rows name their statuses), else empty."""


def confirm_plan(
    preview: PlanPreview, spec: JobSpec | None, *, input_name: str | None = None
) -> bool:
    """Show the plan's counts and ask whether to write (on stderr; the answer from stdin).

    ``spec`` names the action and handles when the command knows them before the run starts,
    ``input_name`` what it read (a workbook's sheet included).
    """
    from rich.prompt import Confirm
    from rich.table import Table

    err = stderr()
    verb = ("sync" if spec.sync else spec.action.value) if spec is not None else "write"
    title = f"Plan for {escape(input_name)}" if input_name else "Plan"
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for outcome, count in sorted(preview.counts.items()):
        if count and outcome:
            table.add_row(outcome, str(count))
    table.add_row(f"to {verb}", str(preview.to_send), style="bold")
    err.print(table)
    _render_moves(err, preview.moves)
    what = f" {', '.join(spec.handles)}" if spec is not None and spec.handles else ""
    question = f"{verb.capitalize()}{what} on {preview.to_send} profile(s)?"
    return Confirm.ask(question, console=err, default=False)


def render_summary(summary: RunSummary, *, title_note: str = "", err: bool = False) -> None:
    """The human summary of a run (on stderr when ``err``)."""
    from rich.table import Table

    out = stderr() if err else stdout()
    verb = f"Dry run of {summary.what}" if summary.dry_run else summary.what.capitalize()
    title = f"{verb} {', '.join(summary.handles)} - run {summary.run_id}{title_note}"
    table = Table(title=title, show_header=True, header_style="bold", title_justify="left")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for outcome in Outcome:
        count = summary.counts.get(outcome.value, 0)
        if count:
            style = _OUTCOME_STYLE.get(outcome.value, "")
            table.add_row(f"[{style}]{outcome.value}[/]" if style else outcome.value, str(count))
    table.add_row("total", str(summary.rows), style="bold")
    out.print(table)
    _render_moves(out, summary.moves or ())
    _render_batches(out, summary.batches)
    lookup = summary.lookup
    if lookup is not None:
        out.print(
            f"Lookup: {lookup.mode.value} (about {lookup.requests} requests):"
            f" {escape(lookup.reason)}"
        )
        if lookup.warning:
            out.print(f"  [yellow]warning:[/] {escape(lookup.warning)}")
    verified = summary.verified
    if verified.checked:
        problems = verified.problems
        status = "[green]all good[/]" if not problems else f"[red]{len(problems)} problem(s)[/]"
        out.print(f"Verified: {verified.ok}/{verified.checked} profiles, {status}")
        for problem in problems:
            out.print(f"  [red]-[/] {escape(problem)}")
        for note in verified.notes:
            out.print(f"  [yellow]note:[/] {escape(note)}")
    if summary.input:
        out.print(f"Input: {escape(summary.input)}")
    out.print(f"Report: {escape(str(summary.report))}")


def _render_moves(out: Console, moves: Sequence[MovePair]) -> None:
    """The rows that change by pair, one line each (``silver -> gold: 812``)."""
    if moves:
        out.print("Moves:")
    for pair in moves:
        out.print(f"  {escape(pair.label)}: {pair.rows}")


def _render_batches(out: Console, batches: Sequence[BatchSummary]) -> None:
    """The summary's batches: how many, how they ended, and those sent again."""
    if not batches:
        return
    states = [BatchState.of(batch.status) for batch in batches]
    ok, failed = states.count(BatchState.DONE), states.count(BatchState.FAILED)
    ids = ", ".join(batch.batch_id for batch in batches[:3])
    more = f" (+{len(batches) - 3} more)" if len(batches) > 3 else ""
    out.print(f"Batches: {len(batches)} ({ok} succeeded, {failed} failed): {escape(ids)}{more}")
    resent = [batch for batch in batches if batch.resent]
    if resent:
        rows = sum(batch.resent for batch in resent)
        which = ", ".join(f"{batch.batch_id} ({batch.status})" for batch in resent[:3])
        out.print(
            f"Sent again: {rows} rows, once, from {len(resent)} batch(es) the tenant lost"
            f" or that stood still: {escape(which)}"
        )


def summary_line(summary: RunSummary, *, note: str = "") -> str:
    """A run's summary in one line (what ``--quiet`` prints); ``note`` follows the handles
    as it follows the table's title (``(already finished: nothing sent)``)."""
    verb = "dry run of " if summary.dry_run else ""
    counts = summary.counts
    shown = ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n) or "nothing to do"
    return (
        f"{verb}{summary.what} {','.join(summary.handles)}{note}: {shown}"
        f" ({summary.rows} rows); run {summary.run_id}; report {summary.report}"
    )


def render_statuses(statuses: Sequence[StatusDefinition]) -> None:
    """The tenant's status definitions as a table (group and expiry when the tenant says)."""
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    table.add_column("handle")
    table.add_column("name")
    grouped = any(s.grouped for s in statuses)
    limited = any(s.time_limited for s in statuses)
    if grouped:
        table.add_column("group")
    if limited:
        table.add_column("expires")
    for status in statuses:
        cells = [escape(status.handle), escape(status.name)]
        if grouped:
            cells.append(escape(status.group_name or status.group_handle or ""))
        if limited:
            cells.append(escape(_expiry(status)))
        table.add_row(*cells)
    stdout().print(table)


def _expiry(status: StatusDefinition) -> str:
    if status.absolute_expiry:
        return f"on {status.absolute_expiry}"
    if status.period:
        return f"after {status.period} {status.period_type or ''}".rstrip()
    return ""


def render_batch(batch: Batch) -> None:
    """One batch's state."""
    out = stdout()
    out.print(f"Batch {escape(batch.id)}: [bold]{escape(batch.status or 'unknown')}[/]")
    out.print(
        f"total {batch.total_count}, processed {batch.processed_count},"
        f" succeeded {batch.success_count}, failed {batch.failed_count}"
    )
    for item in batch.items:
        if item.state is BatchState.FAILED:
            out.print(
                f"  [red]failed[/] {escape(item.entity_id or '?')}: {escape(item.error or '')}"
            )


def render_runs(runs: Sequence[RunView]) -> None:
    """Recent runs as a table, newest first (a run id begins with its UTC start time)."""
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    table.add_column("run id", no_wrap=True)
    table.add_column("job", min_width=10)
    table.add_column("state", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("input", overflow="fold", min_width=8)
    for run in runs:
        job = f"{run.action} {','.join(run.handles)}"
        job += f" from column {run.status_column}" if run.status_column else ""
        job += f" by {run.match}" if run.match != "email" else ""
        job += " (dry run)" if run.dry_run else ""
        table.add_row(
            run.run_id,
            escape(job),
            run.state,
            str(run.rows),
            str(run.counts.get(Outcome.FAILED.value, 0)),
            escape(run.input_name),
        )
    stdout().print(table)


def sandbox_banner(base_url: str, token: str, profiles: int, *, all_interfaces: bool) -> None:
    """What a user needs to point the tool at a served sandbox (``base_url`` on this host)."""
    out = stdout()
    where = f"all interfaces; from this machine: {base_url}" if all_interfaces else base_url
    out.print(f"Omneo sandbox tenant ({profiles} profiles) listening on {where}")
    out.print(f"  export OMNEO_BASE_URL={base_url}")
    out.print(f"  export OMNEO_TOKEN={token}")
    out.print("Press Ctrl-C to stop.")


def render_config(views: Sequence[SettingView]) -> None:
    """The effective configuration, one setting a row, with where it came from."""
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source")
    for view in views:
        value = f"[red]{escape(view.value)}[/]" if view.missing else escape(view.value)
        table.add_row(view.key, value, escape(view.source))
    stdout().print(table)
    missing = [view.key for view in views if view.missing]
    if missing:
        print_warning(
            f"Not set or unusable: {', '.join(missing)}; commands that talk to the API will stop"
        )


def render_doctor(report: DoctorReport) -> None:
    """What doctor found: one row per check, then the capabilities a run relies on."""
    from rich.table import Table

    table = Table(title=f"Doctor: {escape(report.base_url)}", title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    for check in report.checks:
        style = _CHECK_STYLE.get(check.result, "")
        table.add_row(escape(check.name), f"[{style}]{check.result}[/]", escape(check.detail))
    out = stdout()
    out.print(table)
    for name, value in report.capabilities.to_json().items():
        out.print(f"  {escape(name)}: {escape(json.dumps(value))}")
    via = f" (proxy {report.transport.proxy})" if report.transport.proxy else ""
    out.print(f"  transport: {escape(report.transport.name + via)}")
    out.print(
        "[green]A run can work on this tenant.[/]"
        if report.ok
        else "[red]A run cannot work on this tenant.[/]"
    )


def print_text(text: str) -> None:
    """Text as it is on stdout (the report CSV of ``--report -``)."""
    sys.stdout.write(text)
    sys.stdout.flush()
