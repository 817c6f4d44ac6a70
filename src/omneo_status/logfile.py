"""``--log-file``: every stage and every failure of a run as JSON lines, for unattended runs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from omneo_status.errors import ConfigError
from omneo_status.events import Step


def utc_stamp(moment: datetime | None = None) -> str:
    """A time stamp as every log line has it: UTC, to the millisecond, ending in ``Z``
    (``2026-11-28T18:47:54.132Z``; ``examples/cron-assign-vip.sh`` writes the same)."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonLines:
    """A private (0600) file that records are appended to, one JSON line each, time-stamped
    and flushed as they come (``--log-file`` and ``--trace``)."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise ConfigError(f"Cannot open the {what} {path}: {exc.strerror}") from None
        self._file: TextIO = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, fields: Mapping[str, Any]) -> None:
        """Append one record: ``ts`` (:func:`utc_stamp`), then ``fields``."""
        self.append({"ts": utc_stamp(), **fields})

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record as it is (its ``ts`` already in it)."""
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()


class JsonLogReporter:
    """A ``Reporter`` that appends one JSON object per event to a private (0600) file.

    Every line carries the ``run_id`` of the run this process works on, so that the lines of
    two runs sharing one file (overlapping cron jobs) can be told apart. Until the process
    takes a run up (``bind``), its lines are held, each with its time; they are written with
    the run's id once it has one, or with ``null`` when the command ends without one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = JsonLines(path, "log file")
        self._counts: dict[Step, int] = {}
        self.run_id: str | None = None
        self._held: list[dict[str, Any]] | None = []

    def bind(self, run_id: str) -> None:
        """Stamp this line and every later one (and those held so far) with ``run_id``."""
        self.run_id = run_id
        self._release()

    def close(self) -> None:
        """Write what is held (with ``run_id`` null when no run was taken up), then close."""
        self._release()
        self._out.close()

    def _release(self) -> None:
        held, self._held = self._held or [], None
        for record in held:
            record["run_id"] = self.run_id
            self._out.append(record)

    def write(self, event: str, **fields: Any) -> None:
        """Append one event, stamped with this process's run (a document's own ``run_id``
        gives way: an exit-4 error names the run holding the lock, not this process's)."""
        record = {"ts": utc_stamp(), "event": event, "run_id": None, **fields}
        record["run_id"] = self.run_id
        if self._held is not None:
            self._held.append(record)
        else:
            self._out.append(record)

    def start(self, step: Step, total: int | None = None, done: int = 0) -> None:
        """Log a stage's start (once), with its unit and what an earlier attempt did."""
        if step not in self._counts:
            self._counts[step] = done
            self.write("stage_start", stage=step.value, unit=step.unit, total=total, done=done)

    def advance(self, step: Step, amount: int = 1) -> None:
        """Count, without a line per unit."""
        self._counts[step] = self._counts.get(step, 0) + amount

    def extend(self, step: Step, amount: int) -> None:
        """Nothing to log."""

    def finish(self, step: Step) -> None:
        """Log a stage's end with how many units it did."""
        if step in self._counts:
            self.write("stage_end", stage=step.value, unit=step.unit, done=self._counts[step])

    def info(self, message: str) -> None:
        """Log a line."""
        self.write("info", message=message)

    def warn(self, message: str) -> None:
        """Log a warning."""
        self.write("warning", message=message)

    def row_failed(self, line: int, key: str, detail: str) -> None:
        """Log a failed row (its key under ``email``, the log's field for every match key)."""
        self.write("row_failed", line=line, email=key, detail=detail)
