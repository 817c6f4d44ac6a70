"""Everything the user sees on a terminal, drawn with rich, in this one module.

stdout carries the result only (the summary table, or one JSON document); progress, warnings
and errors go to stderr. Colour follows the terminal and ``NO_COLOR``; nothing forces a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.prompt import Confirm
from rich.table import Table

from omneo_status.events import Step
from omneo_status.job import RunSummary
from omneo_status.journal import RunInfo
from omneo_status.models import Batch, Outcome, StatusDefinition
from omneo_status.run import Preview

_OUTCOME_STYLE = {
    Outcome.ASSIGNED: "green",
    Outcome.REMOVED: "green",
    Outcome.WOULD_ASSIGN: "cyan",
    Outcome.WOULD_REMOVE: "cyan",
    Outcome.FAILED: "bold red",
    Outcome.NOT_FOUND: "yellow",
    Outcome.AMBIGUOUS: "yellow",
    Outcome.INVALID_EMAIL: "yellow",
    Outcome.SENT: "magenta",
}


def stderr() -> Console:
    """The console for progress, warnings and errors."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout() -> Console:
    """The console for results."""
    return Console(highlight=False, soft_wrap=True)


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


class ConsoleReporter:
    """Shows a run's progress on stderr: a live display on a terminal, plain lines elsewhere."""

    def __init__(self, *, live: bool, verbose: bool = False) -> None:
        self.console = stderr()
        self.live = live and self.console.is_terminal
        self.verbose = verbose
        self._progress: Progress | None = None
        self._tasks: dict[Step, TaskID] = {}
        self._totals: dict[Step, int] = {}
        self._done: dict[Step, int] = {}
        self._finished: set[Step] = set()

    @contextmanager
    def showing(self) -> Iterator[ConsoleReporter]:
        """Keep the live display up for the duration of the block."""
        if self.live:
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
        if step in self._tasks or (not self.live and step in self._totals):
            if total is not None:
                self.extend(step, total - self._totals.get(step, 0))
            return
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
            task_id = self._tasks[step]
            self._progress.advance(task_id, amount)
            speed = self._progress.tasks[self._task_index(task_id)].speed
            self._progress.update(task_id, rate=f"{speed:,.0f}/s" if speed else "")
            self._show_count(step)

    def extend(self, step: Step, amount: int) -> None:
        """A stage has more units than announced."""
        self._totals[step] = self._totals.get(step, 0) + amount
        if self._progress is not None and step in self._tasks:
            self._progress.update(self._tasks[step], total=self._totals[step])
            self._show_count(step)

    def finish(self, step: Step) -> None:
        """A stage is over."""
        if step in self._finished or step not in self._totals:
            return
        self._finished.add(step)
        if self._progress is not None and step in self._tasks:
            task_id = self._tasks[step]
            done = self._done.get(step, 0)
            total = self._totals[step] or done or 1
            self._progress.update(task_id, total=total, completed=done or total)
            self._show_count(step)
        elif not self.live:
            done = self._done.get(step, 0)
            self.console.print(f"{step.value}: " + (f"{done:,} done" if done else "done"))

    def info(self, message: str) -> None:
        """A log line, shown with ``--verbose``."""
        if self.verbose:
            self.console.print(f"[dim]{escape(message)}[/]")

    def warn(self, message: str) -> None:
        """A warning, always shown."""
        self.console.print(f"[yellow]Warning:[/] {escape(message)}")

    def row_failed(self, line: int, email: str, detail: str) -> None:
        """A failed row, shown with ``--verbose`` (the report lists them all)."""
        if self.verbose:
            self.console.print(f"[red]line {line}[/] {escape(email)}: {escape(detail)}")

    def _show_count(self, step: Step) -> None:
        assert self._progress is not None
        total, done = self._totals.get(step, 0), self._done.get(step, 0)
        text = f"{done:,}/{total:,}" if total else (f"{done:,}" if done else "")
        self._progress.update(self._tasks[step], count=text)

    def _task_index(self, task_id: TaskID) -> int:
        assert self._progress is not None
        for index, task in enumerate(self._progress.tasks):
            if task.id == task_id:
                return index
        return 0


def confirm_plan(preview: Preview, action: str, handles: Sequence[str]) -> bool:
    """Show the plan's counts and ask whether to write (on stderr; the answer from stdin)."""
    err = stderr()
    table = Table(title="Plan", show_header=True, header_style="bold")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for outcome, count in sorted(preview.counts.items()):
        if count and outcome:
            table.add_row(outcome, str(count))
    table.add_row(f"to {action}", str(preview.to_send), style="bold")
    err.print(table)
    question = f"{action.capitalize()} {', '.join(handles)} on {preview.to_send} profile(s)?"
    return Confirm.ask(question, console=err, default=False)


def render_summary(summary: RunSummary) -> None:
    """The human summary of a run on stdout."""
    out = stdout()
    verb = "Dry run of" if summary.dry_run else summary.action.value.capitalize()
    title = f"{verb} {', '.join(summary.handles)} - run {summary.run_id}"
    if summary.already_finished:
        title += " (already finished: nothing sent)"
    elif summary.resumed:
        title += " (resumed)"
    table = Table(title=title, show_header=True, header_style="bold", title_justify="left")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for outcome in Outcome:
        count = summary.counts.get(outcome.value, 0)
        if count:
            style = _OUTCOME_STYLE.get(outcome, "")
            table.add_row(f"[{style}]{outcome.value}[/]" if style else outcome.value, str(count))
    table.add_row("total", str(summary.rows), style="bold")
    out.print(table)
    if summary.batches:
        ok = sum(1 for b in summary.batches if b.status in ("success", "completed"))
        ids = ", ".join(b.batch_id for b in summary.batches[:3])
        more = f" (+{len(summary.batches) - 3} more)" if len(summary.batches) > 3 else ""
        out.print(f"Batches: {len(summary.batches)} ({ok} succeeded): {ids}{more}")
    if summary.verified.checked:
        problems = summary.verified.problems
        status = "[green]all good[/]" if not problems else f"[red]{len(problems)} problem(s)[/]"
        out.print(f"Verified: {summary.verified.ok}/{summary.verified.checked} profiles, {status}")
        for problem in problems:
            out.print(f"  [red]-[/] {escape(problem)}")
    out.print(f"Report: {escape(str(summary.report))}")
    for note in summary.notes:
        out.print(f"[yellow]{escape(note)}[/]")


def render_statuses(statuses: Sequence[StatusDefinition]) -> None:
    """The tenant's status definitions as a table."""
    table = Table(show_header=True, header_style="bold")
    table.add_column("handle")
    table.add_column("name")
    for status in statuses:
        table.add_row(escape(status.handle), escape(status.name))
    stdout().print(table)


def render_batch(batch: Batch) -> None:
    """One batch's state."""
    out = stdout()
    out.print(f"Batch {escape(batch.id)}: [bold]{escape(batch.status or 'unknown')}[/]")
    out.print(
        f"total {batch.total_count}, processed {batch.processed_count},"
        f" succeeded {batch.success_count}, failed {batch.failed_count}"
    )
    for item in batch.items:
        if (item.status or "").lower() == "failed":
            out.print(
                f"  [red]failed[/] {escape(item.entity_id or '?')}: {escape(item.error or '')}"
            )


def render_runs(
    runs: Sequence[RunInfo], counts: Sequence[dict[str, int]], states: Sequence[str]
) -> None:
    """Recent runs as a table, newest first (a run id begins with its UTC start time)."""
    table = Table(show_header=True, header_style="bold")
    table.add_column("run id", no_wrap=True)
    table.add_column("job", min_width=10)
    table.add_column("state", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("input", overflow="fold", min_width=8)
    for run, count, state in zip(runs, counts, states, strict=True):
        job = f"{run.action.value} {','.join(run.handles)}" + (" (dry run)" if run.dry_run else "")
        table.add_row(
            run.run_id,
            escape(job),
            state,
            str(run.rows),
            str(count.get(Outcome.FAILED.value, 0)),
            escape(run.input_name),
        )
    stdout().print(table)


def sandbox_banner(base_url: str, token: str, profiles: int) -> None:
    """What a user needs to point the tool at a served sandbox."""
    out = stdout()
    out.print(f"Omneo sandbox tenant ({profiles} profiles) listening on {base_url}")
    out.print(f"  export OMNEO_BASE_URL={base_url}")
    out.print(f"  export OMNEO_TOKEN={token}")
    out.print("Press Ctrl-C to stop.")


def render_config(rows: Sequence[tuple[str, str, str]]) -> None:
    """The effective configuration, one setting a row, with where it came from."""
    table = Table(show_header=True, header_style="bold")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source")
    for key, value, source in rows:
        table.add_row(key, escape(value), escape(source))
    stdout().print(table)
