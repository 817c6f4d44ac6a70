"""The input of a run: read to its end once before anything touches the API (valid, hashed,
counted), then loaded into the journal with each row's normalised address and key (from the
rows kept in memory by the first reading when the file is small, else read again)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from omneo_status.errors import UsageError
from omneo_status.inputs import InputRow, open_input, read_rows, trim_blank
from omneo_status.keys import EMAIL, MatchKey
from omneo_status.models import Outcome
from omneo_status.sheets import sheet_label
from omneo_status.store.records import NewRow


@dataclass(frozen=True)
class PreparedInput:
    """An input file read once to the end: valid, hashed and counted."""

    name: str
    """How messages name it (``<stdin>`` for standard input)."""
    path: Path
    """Where it can be read again (a private spool file for standard input)."""
    column: str | None
    digest: str
    """SHA-256 over each row's line and key (and status, with a status column): the same keys
    give the same job."""
    rows: int
    match: MatchKey = EMAIL
    """The key the rows are matched by; it decides the column and each cell's policy."""
    kept: tuple[InputRow, ...] | None = field(default=None, repr=False, compare=False)
    """The rows as the first reading found them, for a file of at most ``KEPT_ROWS`` rows."""
    sheet: str | None = None
    """The name of the workbook's sheet read (None for a CSV): read again by that name."""
    status_column: str | None = None
    """The column each row's status is read from (``--status-column``), if any."""
    statuses: tuple[tuple[str, int], ...] = ()
    """Each status the column names, with the line it first appears on, in that order."""

    @property
    def label(self) -> str:
        """How the run names its input: the file, and a workbook's sheet
        (``tiers.xlsx, sheet 'Customers'``)."""
        return self.name if self.sheet is None else sheet_label(self.name, self.sheet)


KEPT_ROWS = 20_000
"""Files up to this many rows are parsed once, not twice (a few MB in memory at most)."""


@contextmanager
def prepared_input(
    path: str,
    column: str | None,
    *,
    state_dir: Path,
    stdin: BinaryIO | None = None,
    match: MatchKey = EMAIL,
    sheet: str | None = None,
    status_column: str | None = None,
) -> Iterator[PreparedInput]:
    """Read the input to its end before anything touches the API.

    ``match`` is the key the rows are matched by (email unless told otherwise). ``sheet``
    picks a workbook's sheet (``--sheet``: a name or a number; the first by default), whose
    name becomes part of the digest, so another sheet is another job. ``status_column`` names
    the column of each row's status, if the rows name their own. Every problem in the file
    (encoding, no key column, no such sheet ...) is raised here as an ``InputError``. Standard
    input (``-``) is spooled to a private file so it can be read again; the spool is removed
    when the context ends.
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
        kept: list[InputRow] | None = []
        statuses: dict[str, int] = {}
        with open_input(source) as stream:
            layout, records = read_rows(
                stream,
                name=name,
                column=column,
                rule=match.rule,
                sheet=sheet,
                status_column=status_column,
            )
            if layout.sheet is not None:
                digest.update(f"sheet\t{layout.sheet}\n".encode())
            for record in records:
                if record.status is None:
                    digest.update(f"{record.line}\t{record.canonical}\n".encode())
                else:
                    status = trim_blank(record.status)
                    statuses.setdefault(status, record.line)
                    digest.update(f"{record.line}\t{record.canonical}\t{status}\n".encode())
                rows += 1
                if kept is not None and rows > KEPT_ROWS:
                    kept = None  # too many to keep: the journal reads the file again
                elif kept is not None:
                    kept.append(record)
        statuses.pop("", None)  # an empty cell names no status: its row is settled as no_status
        yield PreparedInput(
            name,
            Path(source),
            column,
            digest.hexdigest(),
            rows,
            match,
            tuple(kept) if kept is not None else None,
            layout.sheet,
            status_column,
            tuple(statuses.items()),
        )
    finally:
        if spool is not None:
            with suppress(OSError):
                spool.unlink()


def journal_rows(source: PreparedInput) -> Iterator[NewRow]:
    """The input's rows as the journal loads them: a malformed key (or a workbook's cell that
    cannot be a key, with its reason) is settled at once, with no request, as ``invalid_email``
    (email runs) or ``invalid_key``, and so is a row whose status cell is empty, as
    ``no_status``; every other row waits for its lookup (carrying its status as the handle to
    send, when it names one)."""
    match = source.match
    rule = match.rule
    if source.kept is not None:
        yield from _new_rows(source.kept, match, source.status_column)
        return
    with open_input(str(source.path)) as stream:
        _, records = read_rows(
            stream,
            name=source.name,
            column=source.column,
            rule=rule,
            sheet=source.sheet,
            status_column=source.status_column,
        )
        yield from _new_rows(records, match, source.status_column)


def _new_rows(
    records: Iterable[InputRow], match: MatchKey, status_column: str | None
) -> Iterator[NewRow]:
    rule = match.rule
    for record in records:
        cells = (record.line, record.key, record.address, record.canonical)
        status = None if record.status is None else trim_blank(record.status)
        send = (status,) if status else ()
        if record.refused is not None or not rule.is_valid(record.address):
            invalid = record.refused or match.invalid_detail(record.address)
            yield NewRow(*cells, outcome=match.invalid, detail=invalid, send=send)
        elif status == "":
            empty = f"the {status_column} cell is empty: no status to give"
            yield NewRow(*cells, outcome=Outcome.NO_STATUS, detail=empty)
        else:
            yield NewRow(*cells, send=send)


def _spool_stdin(stdin: BinaryIO | None, state_dir: Path) -> Path:
    if stdin is None:
        raise UsageError("No standard input to read ('-' was given as the file)")
    tmp = state_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="stdin-", suffix=".csv", dir=tmp)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(stdin, out)
    return Path(name)
