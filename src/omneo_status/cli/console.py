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
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

from omneo_status.api.doctor import DoctorReport
from omneo_status.api.trace import Exchange
from omneo_status.cli.progress import Shown, Stages, duration
from omneo_status.events import Step
from omneo_status.models import Batch, BatchState, Outcome, StatusDefinition
from omneo_status.moves import MovePair
from omneo_status.settings import SettingView
from omneo_status.summary import BatchSummary, RunSummary, RunView
from omneo_status.wording import count, number

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table
    from rich.text import Text
    from typer.rich_utils import OptionHighlighter

    from omneo_status.run.engine import Preview

# rich is imported where it is first used, not with this module: a run whose stderr is not a
# terminal and that goes well (cron, --json --quiet) never draws anything with it, and rich
# is a fifth of the tool's start-up.

PROGRESS_EVERY = 10.0
"""Seconds between two progress lines of a stage when stderr is not a terminal."""
RETRY_SHOWN_FROM = 3.0
"""A retry wait at least this long is said without ``-v``: the run looks stuck otherwise."""
LIVE_WORDS_WIDTH = 70
"""Columns the live display's words take (a stage's name, count, rate, time and ETA): the bar
gets what is left of the width, up to 30, and no bar under 5."""

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
    say(err, f"[bold red]Error:[/] {escape(message)}")
    if hint:
        say(err, f"[dim]Hint:[/] {escape(hint)}")


def print_warning(message: str) -> None:
    """One ``Warning:`` line on stderr."""
    say(stderr(), f"[yellow]Warning:[/] {escape(message)}")


def say(out: Console, markup: str) -> None:
    """A line of prose: broken between words at the terminal's width on a terminal (rather than
    mid-word by the terminal), one line as it is everywhere else (a log, a pipe, a test)."""
    out.print(markup, soft_wrap=not out.is_terminal)


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

    Each stage counts its own unit (``progress.Stages``). ``clock`` is the run's monotonic
    clock: rates, ETAs and progress lines follow it. ``quiet`` (``--quiet``) keeps the ``-v``
    lines back; ``-vv``'s request lines show in every mode. A live display needs a terminal
    that can move its cursor: on a dumb one (``TERM=dumb``) the plain lines are shown instead.
    """

    def __init__(
        self,
        *,
        display: Display,
        verbose: int = 0,
        quiet: bool = False,
        clock: Callable[[], float],
        console: Console | None = None,
    ) -> None:
        if console is not None:
            self.console = console
        if display is Display.LIVE and not self.console.is_interactive:
            display = Display.LINES
        self.display = display
        self.verbose = verbose
        self._detail = verbose > 0 and not quiet
        """Whether the ``-v`` lines show."""
        self._clock = clock
        self._began = clock()
        self.stages = Stages(clock)
        self._progress: Progress | None = None
        self._tasks: dict[Step, TaskID] = {}

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
        """Keep the live display up for the duration of the block (cleared at its end)."""
        if self.display is Display.LIVE:
            self._show()
        try:
            yield self
        finally:
            self._hide(leave=False)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Take the live display down while a question is asked, leaving its last frame in the
        scrollback, and draw a new one below the question and its answer afterwards (drawing
        the old one again would move up over them)."""
        if self._progress is None:
            yield
            return
        self._hide(leave=True)
        try:
            yield
        finally:
            self._show()

    def start(self, step: Step, total: int | None = None, done: int = 0) -> None:
        """Show a stage (again: a stage may be announced by every chunk that joins it)."""
        if self.stages.start(step, total, done) and self._progress is not None:
            self._add_task(step)
        self._draw(step)

    def advance(self, step: Step, amount: int = 1) -> None:
        """Move a stage on."""
        if self.stages.advance(step, amount) is not None:
            self._draw(step)

    def extend(self, step: Step, amount: int) -> None:
        """A stage has more units than announced."""
        if self.stages.extend(step, amount) is not None:
            self._draw(step)

    def finish(self, step: Step) -> None:
        """A stage is over."""
        if self.stages.finish(step) is None:
            return
        if self._progress is not None:
            self._draw(step)
        elif self.display is Display.LINES:
            self.console.print(escape(self.stages.ended(step)))

    def tick(self) -> None:
        """One progress line per stage under way (begun, with units left), in its unit, with
        its rate and, once founded, its ETA (``LINES`` only)."""
        if self.display is not Display.LINES:
            return
        for step, tally in self.stages.tallies.items():
            if tally.under_way:
                self.console.print(f"[{self._elapsed()}] {escape(self.stages.line(step))}")

    def info(self, message: str) -> None:
        """A log line, shown with ``--verbose`` (not with ``--quiet``)."""
        if self._detail:
            self.console.print(f"[dim]{escape(message)}[/]")

    def warn(self, message: str) -> None:
        """A warning, always shown."""
        say(self.console, f"[yellow]Warning:[/] {escape(message)}")

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

    # -- the live display ------------------------------------------------------------------

    def _show(self) -> None:
        """A new live display, with a row for every stage that has not ended."""
        self._progress = _live_progress(self.console)
        self._tasks = {}
        for step, tally in self.stages.tallies.items():
            if not tally.finished:
                self._add_task(step)
        self._progress.start()

    def _hide(self, *, leave: bool) -> None:
        """Stop the live display: its last frame is left in place (``leave``) or cleared."""
        progress, self._progress = self._progress, None
        if progress is None:
            return
        progress.live.transient = not leave
        progress.stop()

    def _add_task(self, step: Step) -> None:
        assert self._progress is not None
        if step in self._tasks:  # a stage that begins again (a second scan) keeps one row
            self._progress.remove_task(self._tasks[step])
        self._tasks[step] = self._progress.add_task(
            step.value, total=None, shown=Shown(self.stages, step)
        )
        self._draw(step)

    def _draw(self, step: Step) -> None:
        """Bring the bar of a stage up to date (its words are worked out as they are drawn)."""
        if self._progress is None or step not in self._tasks:
            return
        tally = self.stages.tallies[step]
        if tally.finished:  # a full bar and a tick, whatever its count says
            total = tally.total or tally.done or 1
            self._progress.update(self._tasks[step], total=total, completed=total)
        else:
            self._progress.update(
                self._tasks[step], total=tally.total or None, completed=tally.done
            )

    def _elapsed(self) -> str:
        return duration(self._clock() - self._began)


def _live_progress(console: Console) -> Progress:
    """rich's live display of the stages, fitted to the console's width: the bar narrows,
    then goes (a stage's words never do)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

    width = console.width
    words = [
        TextColumn("{task.fields[shown].count}", justify="right", markup=False),
        TextColumn("{task.fields[shown].rate}", markup=False),
        TextColumn("{task.fields[shown].elapsed}", markup=False),
        TextColumn("{task.fields[shown].eta}", markup=False),
    ]
    bar = min(30, width - LIVE_WORDS_WIDTH)
    return Progress(
        SpinnerColumn(finished_text="✓"),
        TextColumn("{task.description:<19}", markup=False),
        *([BarColumn(bar_width=bar)] if bar >= 5 else []),
        *words,
        console=console,
        transient=True,
    )


def _outcome_rows(counts: Mapping[str, int]) -> list[tuple[str, str]]:
    """The outcomes with rows, in the one order the plan and the summary share (``Outcome``'s),
    each with its style."""
    return [
        (outcome.value, _OUTCOME_STYLE.get(outcome.value, ""))
        for outcome in Outcome
        if counts.get(outcome.value, 0)
    ]


def _counts_table(title: str, counts: Mapping[str, int]) -> Table:
    """A table of rows by outcome, in ``Outcome``'s order (more rows are added after)."""
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold", title_justify="left")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for outcome, style in _outcome_rows(counts):
        name = f"[{style}]{outcome}[/]" if style else outcome
        table.add_row(name, number(counts[outcome]))
    return table


def confirm_plan(preview: Preview, tenant: str, *, input_name: str | None = None) -> bool:
    """Show the plan and ask whether to write (on stderr; the answer from stdin). The question
    names the action, the handles and the ``tenant``; it and its answer stay on the screen.
    ``input_name`` is what the run read (a workbook's sheet included)."""
    from rich.prompt import Confirm

    err = stderr()
    spec = preview.spec
    verb = "sync" if spec.sync else spec.action.value
    handles = ", ".join(spec.handles)
    if input_name:  # above the plan: the line before the question is the plan's last
        err.print(f"Input: {escape(input_name)}")
    table = _counts_table(f"Plan: {verb} {escape(handles)} at {escape(tenant)}", preview.counts)
    if preview.in_flight:
        table.add_row("sent before", number(preview.in_flight))
    table.add_row(f"to {verb}", number(preview.to_send), style="bold")
    table.add_row("total", number(preview.rows), style="bold")
    err.print(table)
    _render_moves(err, preview.moves)
    question = f"{verb.capitalize()} {handles} on {count(preview.to_send, 'profile')} at {tenant}?"
    return Confirm.ask(escape(question), console=err, default=False)


def render_summary(summary: RunSummary, *, title_note: str = "", err: bool = False) -> None:
    """The human summary of a run (on stderr when ``err``)."""
    out = stderr() if err else stdout()
    verb = f"Dry run of {summary.what}" if summary.dry_run else summary.what.capitalize()
    title = f"{verb} {', '.join(summary.handles)} - run {summary.run_id}{title_note}"
    table = _counts_table(escape(title), summary.counts)
    table.add_row("total", number(summary.rows), style="bold")
    out.print(table)
    _render_moves(out, summary.moves or ())
    _render_batches(out, summary.batches)
    lookup = summary.lookup
    if lookup is not None:
        say(
            out,
            f"Lookup: {lookup.mode.value} (about {count(lookup.requests, 'request')}):"
            f" {escape(lookup.reason)}",
        )
        if lookup.warning:
            say(out, f"  [yellow]warning:[/] {escape(lookup.warning)}")
    verified = summary.verified
    if verified.checked:
        problems = verified.problems
        status = (
            "[green]all good[/]" if not problems else f"[red]{count(len(problems), 'problem')}[/]"
        )
        checked = f"{number(verified.ok)}/{count(verified.checked, 'profile')}"
        out.print(f"Verified: {checked}, {status}")
        for problem in problems:
            say(out, f"  [red]-[/] {escape(problem)}")
        for note in verified.notes:
            say(out, f"  [yellow]note:[/] {escape(note)}")
    if summary.input:
        out.print(f"Input: {escape(summary.input)}")
    out.print(f"Report: {escape(str(summary.report))}")


def _render_moves(out: Console, moves: Sequence[MovePair]) -> None:
    """The rows that change by pair, one line each (``silver -> gold: 812``)."""
    if moves:
        out.print("Moves:")
    for pair in moves:
        out.print(f"  {escape(pair.label)}: {number(pair.rows)}")


def _render_batches(out: Console, batches: Sequence[BatchSummary]) -> None:
    """The summary's batches: how many, how they ended, and those sent again."""
    if not batches:
        return
    states = [BatchState.of(batch.status) for batch in batches]
    ok, failed = states.count(BatchState.DONE), states.count(BatchState.FAILED)
    ids = ", ".join(batch.batch_id for batch in batches[:3])
    more = f" (+{number(len(batches) - 3)} more)" if len(batches) > 3 else ""
    say(
        out,
        f"Batches: {number(len(batches))} ({number(ok)} succeeded, {number(failed)} failed):"
        f" {escape(ids)}{more}",
    )
    resent = [batch for batch in batches if batch.resent]
    if resent:
        rows = sum(batch.resent for batch in resent)
        which = ", ".join(f"{batch.batch_id} ({batch.status})" for batch in resent[:3])
        say(
            out,
            f"Sent again: {count(rows, 'row')}, once, from {count(len(resent), 'batch')} the"
            f" tenant lost or that stood still: {escape(which)}",
        )


def summary_line(summary: RunSummary, *, note: str = "") -> str:
    """A run's summary in one line (what ``--quiet`` prints); ``note`` follows the handles
    as it follows the table's title (``(already finished: nothing sent)``)."""
    verb = "dry run of " if summary.dry_run else ""
    counts = summary.counts
    shown = (
        ", ".join(f"{number(counts[outcome])} {outcome}" for outcome, _ in _outcome_rows(counts))
        or "nothing to do"
    )
    return (
        f"{verb}{summary.what} {','.join(summary.handles)}{note}: {shown}"
        f" ({count(summary.rows, 'row')}); run {summary.run_id}; report {summary.report}"
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
    """Recent runs, newest first (a run id begins with its UTC start time): a table where it
    fits the terminal without cutting or breaking a word, else one block a run, its id on a
    line of its own. A run id is what ``resume`` and ``undo`` take: it is never cut."""
    from rich.table import Table
    from rich.text import Text

    out = stdout()
    rows = [
        (
            run.run_id,
            _job(run),
            _state(run),
            number(run.rows),
            number(run.counts.get(Outcome.FAILED.value, 0)),
            run.input_name,
        )
        for run in runs
    ]
    widths = _word_widths(out, _RUNS_COLUMNS, rows)
    if widths is None:
        for run, (run_id, job, state, _, failed, input_name) in zip(runs, rows, strict=True):
            out.print(Text(run_id, style="bold"))
            out.print(Text(f"  {job}, {state}: {count(run.rows, 'row')}, {failed} failed"))
            out.print(Text(f"  input: {input_name}"))
        return
    table = Table(show_header=True, header_style="bold")
    for (header, wraps), width in zip(_RUNS_COLUMNS, widths, strict=True):
        right = header in ("rows", "failed")
        table.add_column(
            header, justify="right" if right else "left", no_wrap=not wraps, width=width
        )
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    out.print(table)


_RUNS_COLUMNS = (
    ("run id", False),
    ("job", True),
    ("state", False),
    ("rows", False),
    ("failed", False),
    ("input", True),
)
"""The columns of ``runs``: each header, and whether its cells may break between words."""


def _word_widths(
    out: Console, columns: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]]
) -> list[int] | None:
    """Widths for a table's columns so it fits the terminal with no word cut or broken (a
    column that may not break gets its longest cell), the room left given to the breakable
    columns, first come first served; None when even the narrowest such table is too wide."""
    from rich.cells import cell_len

    least, most = [], []
    for index, (header, wraps) in enumerate(columns):
        cells = [header, *(row[index] for row in rows)]
        longest = max(cell_len(cell) for cell in cells)
        word = max(cell_len(word) for cell in cells for word in cell.split() or [""])
        least.append(word if wraps else longest)
        most.append(longest)
    room = out.width - (3 * len(columns) + 1) - sum(least)  # a border and padding each side
    if room < 0:
        return None
    widths = []
    for low, high in zip(least, most, strict=True):
        grown = min(high, low + room)
        room -= grown - low
        widths.append(grown)
    return widths


def _state(run: RunView) -> str:
    """The run's state, with the rows it has still to decide (``interrupted, 768 pending``):
    resuming it decides them."""
    pending = run.counts.get("pending", 0)
    return f"{run.state}, {number(pending)} pending" if pending else run.state


def _job(run: RunView) -> str:
    """What a run did, in words: ``assign vip by mobile (dry run)``, ``assign club-gold,...
    from column tier``."""
    job = f"{run.action} {','.join(run.handles)}"
    job += f" from column {run.status_column}" if run.status_column else ""
    job += f" by {run.match}" if run.match != "email" else ""
    return job + (" (dry run)" if run.dry_run else "")


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


def fold_help() -> None:
    """Make Typer's help wrap a value too long for its column (a URL, a path) onto the next
    line instead of cutting it with an ellipsis. Typer draws every help text through its
    module's highlighter; this one also marks the text to fold."""
    from typer import rich_utils

    folding = _folding()
    if not isinstance(rich_utils.highlighter, folding):
        rich_utils.highlighter = folding()


@cache
def _folding() -> type[OptionHighlighter]:
    from typer.rich_utils import OptionHighlighter

    class Folding(OptionHighlighter):
        def highlight(self, text: Text) -> None:
            super().highlight(text)
            text.overflow = "fold"

    return Folding
