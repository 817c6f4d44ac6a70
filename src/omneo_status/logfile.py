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
        """Append one record: ``ts`` (UTC, milliseconds), then ``fields``."""
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), **fields}
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()


class JsonLogReporter:
    """A ``Reporter`` that appends one JSON object per event to a private (0600) file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = JsonLines(path, "log file")
        self._counts: dict[Step, int] = {}

    def close(self) -> None:
        """Flush and close the file."""
        self._out.close()

    def write(self, event: str, **fields: Any) -> None:
        """Append one event."""
        self._out.write({"event": event, **fields})

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
