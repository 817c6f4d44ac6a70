"""How the core tells the outside world what it is doing, without knowing who listens.

The pipeline calls a ``Reporter``; the rich display (``console.py``), the JSON-lines log file
(``logfile.py``) and the list that tests read are three implementations of it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class Step(StrEnum):
    """The stages of a run, in the order a user sees them. Each counts its own unit
    (``unit``): a stage is only ever fed by the stages before it (chunks are cut from resolved
    rows, batches are watched once sent), so while an earlier stage is under way a later
    stage's total may still grow."""

    READ = "reading"
    HANDLES = "checking handles"
    RECONCILE = "reconciling"
    SCAN = "scanning the tenant"
    RESOLVE = "resolving"
    HOLDERS = "reading the holders"
    SEND = "sending"
    WAIT = "waiting for batches"
    VERIFY = "verifying"

    @property
    def unit(self) -> str | None:
        """What the stage counts, in the singular (None: it counts nothing, it is one step)."""
        return _UNITS[self]


_UNITS: dict[Step, str | None] = {
    Step.READ: "row",
    Step.HANDLES: None,
    Step.RECONCILE: "profile",
    Step.SCAN: "page",
    Step.RESOLVE: "row",
    Step.HOLDERS: "profile",
    Step.SEND: "row",
    Step.WAIT: "row",
    Step.VERIFY: "profile",
}


class Reporter(Protocol):
    """Receives progress from the core. Every method must return quickly and never raise."""

    def start(self, step: Step, total: int | None = None, done: int = 0) -> None:
        """A stage begins; ``total`` is how many units it has, when known, and ``done`` how
        many of them an earlier attempt of the run did already (counted, but not in a rate)."""

    def advance(self, step: Step, amount: int = 1) -> None:
        """Units of a stage are done."""

    def extend(self, step: Step, amount: int) -> None:
        """A stage has more units than first announced (chunks formed while resolving, or a
        total first learned from a list's first page)."""

    def finish(self, step: Step) -> None:
        """A stage is over."""

    def info(self, message: str) -> None:
        """Something worth a line in a log."""

    def warn(self, message: str) -> None:
        """Something the user should notice."""

    def row_failed(self, line: int, key: str, detail: str) -> None:
        """A row ended as ``failed`` (``key``: its match key's cell as read)."""


class FanoutReporter:
    """Passes every call on to several reporters."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    def start(self, step: Step, total: int | None = None, done: int = 0) -> None:
        """Pass on."""
        for r in self.reporters:
            r.start(step, total, done)

    def advance(self, step: Step, amount: int = 1) -> None:
        """Pass on."""
        for r in self.reporters:
            r.advance(step, amount)

    def extend(self, step: Step, amount: int) -> None:
        """Pass on."""
        for r in self.reporters:
            r.extend(step, amount)

    def finish(self, step: Step) -> None:
        """Pass on."""
        for r in self.reporters:
            r.finish(step)

    def info(self, message: str) -> None:
        """Pass on."""
        for r in self.reporters:
            r.info(message)

    def warn(self, message: str) -> None:
        """Pass on."""
        for r in self.reporters:
            r.warn(message)

    def row_failed(self, line: int, key: str, detail: str) -> None:
        """Pass on."""
        for r in self.reporters:
            r.row_failed(line, key, detail)
