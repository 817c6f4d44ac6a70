"""The per-row CSV report: one line per input row with the outcome it got.

The report is written to a private temporary file next to its destination and renamed into
place, so a reader sees either the previous report or the complete new one, never half of one.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from omneo_status.errors import ExitCode, OmneoStatusError, UsageError
from omneo_status.models import Outcome

REPORT_COLUMNS = ("line", "email", "outcome", "profile_id", "batch_id", "detail")
"""The columns of an email run's report; another match key names the second column after
itself (``mobile``, ``id``, ``identity``), and a run whose rows name their statuses
(``--status-column``) has a ``status`` column after it."""
STATUS_COLUMN = "status"
KEY_COLUMNS = ("email", "mobile", "id", "identity")

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ReportError(OmneoStatusError):
    """The report cannot be written (or read back)."""

    exit_code = ExitCode.FATAL


@dataclass(frozen=True, slots=True)
class ReportRow:
    """What happened to one input row."""

    line: int | None
    """The input line; None for a row that is not from the input (a sync's holder rows)."""
    key: str
    """The match key's cell as read (the report's second column: ``email`` for email runs)."""
    outcome: Outcome
    profile_id: str | None = None
    batch_id: str | None = None
    detail: str = ""
    status: str | None = None
    """The row's status as its input names it (``--status-column``; None: the report has no
    status column)."""


def safe_cell(value: str) -> str:
    """The value, prefixed with ``'`` if a spreadsheet would otherwise run it as a formula."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def report_columns(key_column: str = "email", *, statuses: bool = False) -> tuple[str, ...]:
    """The report's header when the key column is named ``key_column`` (and, with
    ``statuses``, a ``status`` column after it)."""
    status = (STATUS_COLUMN,) if statuses else ()
    return (REPORT_COLUMNS[0], key_column, *status, *REPORT_COLUMNS[2:])


def write_report(
    path: Path, rows: Iterable[ReportRow], key_column: str = "email", *, statuses: bool = False
) -> int:
    """Write the report to ``path`` (UTF-8 CSV, header first) and return the number of rows.

    ``key_column`` names the second column (the cell as read): ``email`` for email runs;
    ``statuses`` adds the ``status`` column after it (each row's ``status``).

    Rows are streamed, so ``rows`` may be a generator of any length. Parent directories are
    created; the file is readable by its owner only (mode 0600) and replaces any previous file
    atomically. Text cells a spreadsheet would run as formulas are made safe with
    :func:`safe_cell`, and line breaks in cells are written as ``"\\n"``. An OS error becomes
    ``ReportError("Cannot write the report to PATH: reason")``; an error raised by ``rows``
    propagates unchanged. Either way no partial file is left behind.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file with os.open(..., 0o600): it is never readable by others.
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _write_error(path, error) from error
    replaced = False
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            count = _write_rows(stream, rows, report_columns(key_column, statuses=statuses))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
        replaced = True
    except OSError as error:
        raise _write_error(path, error) from error
    finally:
        if not replaced:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
    return count


def check_report_target(path: Path, *, source: Path | None = None) -> None:
    """Make sure a report can later be written at ``path``, before the run makes a request.

    Raises ``UsageError`` (exit 2) when ``path`` is the input file ``source`` (compared as
    resolved paths: the report must never overwrite the customer's file), a directory, or in a
    directory that cannot be created or written. Creates the missing parent directories.
    """
    if source is not None and path.resolve() == source.resolve():
        raise UsageError(
            f"--report {path} is the input file: the report would overwrite it",
            hint="Give the report another name, or leave --report out (it goes under the state"
            " dir).",
        )
    if path.is_dir():
        raise UsageError(f"--report {path} is a directory", hint="Name a file, e.g. report.csv.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The report is written next to its destination and renamed: probe exactly that.
        with tempfile.TemporaryFile(dir=path.parent, prefix=f".{path.name}."):
            pass
    except OSError as error:
        raise UsageError(f"Cannot write the report to {path}: {_reason(error)}") from None


def read_report(path: Path) -> list[ReportRow]:
    """The rows of a report written by :func:`write_report`.

    The second column may bear any key's name (``ReportRow.key`` holds it), and a ``status``
    column may follow it. Cells come back as stored: a ``'`` that :func:`safe_cell` added
    stays, and empty ``profile_id``/``batch_id`` cells become None.
    """
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            reader = csv.reader(stream)
            header = next(reader, None)
            known = {
                report_columns(column, statuses=statuses)
                for column in KEY_COLUMNS
                for statuses in (False, True)
            }
            if header is None or tuple(header) not in known:
                raise ReportError(f"{path} is not a report: its header is {header!r}")
            statuses = STATUS_COLUMN in header
            return [
                _parse_row(cells, path=path, line=reader.line_num, statuses=statuses)
                for cells in reader
            ]
    except OSError as error:
        raise ReportError(f"Cannot read the report {path}: {_reason(error)}") from error


def _write_rows(stream: TextIO, rows: Iterable[ReportRow], columns: tuple[str, ...]) -> int:
    writer = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    statuses = STATUS_COLUMN in columns
    count = 0
    for row in rows:
        status = (_text_cell(row.status),) if statuses else ()
        writer.writerow(
            (
                "" if row.line is None else row.line,
                _text_cell(row.key),
                *status,
                row.outcome.value,
                _text_cell(row.profile_id),
                _text_cell(row.batch_id),
                _text_cell(row.detail),
            )
        )
        count += 1
    return count


def _text_cell(value: str | None) -> str:
    # csv quotes a cell holding "\n" (the line terminator) but not one holding a bare "\r",
    # which would then end the line early for every reader: write every line break as "\n".
    return safe_cell(value or "").replace("\r\n", "\n").replace("\r", "\n")


def _parse_row(cells: list[str], *, path: Path, line: int, statuses: bool) -> ReportRow:
    width = len(REPORT_COLUMNS) + statuses
    if len(cells) != width:
        raise ReportError(f"{path}, line {line}: {len(cells)} cells, not {width}")
    status = cells.pop(2) if statuses else None
    number, key, outcome, profile_id, batch_id, detail = cells
    try:
        return ReportRow(
            line=int(number) if number else None,
            key=key,
            outcome=Outcome(outcome),
            profile_id=profile_id or None,
            batch_id=batch_id or None,
            detail=detail,
            status=status,
        )
    except ValueError as error:
        raise ReportError(f"{path}, line {line}: {error}") from error


def _write_error(path: Path, error: OSError) -> ReportError:
    return ReportError(f"Cannot write the report to {path}: {_reason(error)}")


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
