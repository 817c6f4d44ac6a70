"""Workbooks (.xlsx, .xls, .ods) read as they are: one sheet's rows as the CSV reader's records.

:func:`sheet_records` opens a workbook, picks its sheet, and yields ``(line, cells, lines)`` the
way :mod:`omneo_status.inputs` yields a CSV's records, with the sheet's row numbers as lines, so
the header row, ``--column``, column guessing and every check downstream work unchanged.

Cells are turned into text by one policy, :func:`cell_text`: text as it is; a number as its
digits only when they are exact (a whole number of at most 15 digits, all a spreadsheet keeps);
anything else that cannot be a key (a number with a fraction or of more digits, a date, a time,
TRUE/FALSE) is a :class:`Refused` cell, whose text is shown in the report and whose reason
settles the row as invalid. A formula cell is read as the value it last showed (the one saved
with the file).

The reader (python-calamine) reads an error cell such as ``#N/A`` as an empty cell. So that no
such row vanishes, every empty cell carries that reason, and a blank row among the rows (after
the first row with content and before the last) is a row of its own rather than skipped:
``invalid_email`` (or ``invalid_key``) with "blank row". Blank rows before the first row with
content and after the last are skipped, as a CSV's blank lines are.
"""

from __future__ import annotations

import datetime
import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from omneo_status.errors import InputError

SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")
"""How a workbook starts: a zip (.xlsx, .xlsm, .xlsb, .ods) or a compound file (.xls, or an
.xlsx encrypted with a password)."""

EXACT_DIGITS = 15
"""The significant digits a spreadsheet keeps exactly (Excel's limit): a whole number of more
digits may have lost its last ones (``6140000000123456`` is kept as ``6140000000123450``)."""

_EXACT_BELOW = 10**EXACT_DIGITS
_SHEETS_SHOWN = 30
_SECTOR = 512
"""An Excel 97-2003 file (a compound file) is made of whole sectors of this many bytes."""
_WHOLE_ROW = [""]
"""The "physical lines" of a sheet's row: one (a cell's line breaks never start a row)."""
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_PROTECTED_HINT = "Save a copy without the password (in Excel: File > Info > Protect Workbook)."
_UNREADABLE_HINT = "Open it in the spreadsheet and save it again as .xlsx (or as 'CSV UTF-8')."
_SHEET_HINT = "Pick one with --sheet NAME or --sheet NUMBER (1 is the first)."

CellValue = str | int | float | bool | datetime.date | datetime.time | datetime.timedelta
"""A cell as the reader gives it (a datetime is a date)."""


class Refused(str):
    """A cell's text that cannot be used as a key, with the reason: the row it is the key of is
    settled as invalid with that reason (the text is what the report shows)."""

    reason: str

    def __new__(cls, text: str, reason: str) -> Refused:
        """The text, and why it cannot be a key."""
        cell = super().__new__(cls, text)
        cell.reason = reason
        return cell


EMPTY = Refused("", "empty cell (a formula error such as #N/A reads as empty too)")
"""Every empty cell of a sheet: the reader cannot tell it from an error cell."""
BLANK = Refused("", "blank row (a row of formula errors such as #N/A reads as blank too)")
"""Every cell of a blank row among the rows."""


def is_workbook(start: bytes) -> bool:
    """Whether a file's first bytes are a workbook's (see :data:`SIGNATURES`)."""
    return start.startswith(SIGNATURES)


def cell_text(value: CellValue) -> str:
    """THE cell policy: a cell as the text the reader's records hold.

    Text is kept as it is (a blank cell is :data:`EMPTY`); a number becomes its digits when it
    is a whole number of at most :data:`EXACT_DIGITS` digits (``61400000001.0``, shown as
    ``6.14E+10``, is ``61400000001``); any other number, a date, a time, a duration or
    TRUE/FALSE is :class:`Refused` with the reason. Never raises.
    """
    if isinstance(value, str):
        return value or EMPTY
    if isinstance(value, bool):
        return Refused("TRUE" if value else "FALSE", "a TRUE/FALSE cell, not text")
    if isinstance(value, int | float):
        return _number_text(value)
    if isinstance(value, datetime.timedelta):
        return Refused(str(value), "a duration cell, not text")
    kind = "a time" if isinstance(value, datetime.time) else "a date"
    return Refused(value.isoformat(), f"{kind} cell, not text")


def _number_text(value: int | float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return Refused(
            repr(value), "a number cell with a fraction, not digits: store the column as text"
        )
    if abs(value) >= _EXACT_BELOW:
        return Refused(
            repr(value),
            f"a number cell of more than {EXACT_DIGITS} digits: a spreadsheet keeps only"
            f" {EXACT_DIGITS} exactly, so the last ones may be lost; store the column as text",
        )
    return str(int(value))


def sheet_label(name: str, sheet: str) -> str:
    """How messages name one sheet of a workbook: ``tiers.xlsx, sheet 'Customers'``."""
    return f"{name}, sheet {sheet!r}"


@dataclass(frozen=True)
class SheetRecords:
    """One sheet of a workbook, chosen, with its records still to be read."""

    sheet: str
    """The sheet's name."""
    label: str
    """How messages name it (:func:`sheet_label`)."""
    records: Iterator[tuple[int, list[str], list[str]]]
    """``(row number, cells, lines)`` of every row from the first with content to the last."""


def sheet_records(data: bytes, *, name: str, sheet: str | None) -> SheetRecords:
    """Open the workbook ``data`` (the file's bytes) and its sheet ``sheet`` (a name, or a
    number from 1; the first sheet when None).

    A workbook that cannot be read (password-protected, damaged, no sheet), or a sheet it does
    not have, raises ``InputError`` naming the file (and listing its sheets).
    """
    import python_calamine  # here: only a run over a workbook pays for loading it

    if data.startswith(SIGNATURES[1]) and len(data) % _SECTOR:
        raise InputError(
            f"{name}: the workbook is cut short ({len(data):,} bytes, where an Excel 97-2003"
            f" file is made of whole {_SECTOR}-byte sectors)",
            hint="Download or save it again.",
        )
    try:
        book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        names = [
            meta.name
            for meta in book.sheets_metadata
            if meta.typ is python_calamine.SheetTypeEnum.WorkSheet
        ]
        chosen = _chosen_sheet(names, sheet, name=name)
        rows = book.get_sheet_by_name(chosen).iter_rows()
    except BaseException as error:
        if not (isinstance(error, python_calamine.CalamineError | OSError) or _panicked(error)):
            raise
        raise _unreadable(data, error, name=name) from error
    return SheetRecords(chosen, sheet_label(name, chosen), _records(rows))


def _records(rows: Iterable[list[CellValue]]) -> Iterator[tuple[int, list[str], list[str]]]:
    """The records of a sheet: a row with content, and each blank row between two of them."""
    blank: list[int] = []
    started = False
    for number, values in enumerate(rows, start=1):
        cells = [value if type(value) is str and value else cell_text(value) for value in values]
        if not any(cell.strip() for cell in cells):
            if started:
                blank.append(number)
            continue
        for empty in blank:
            yield empty, [BLANK] * len(cells), _WHOLE_ROW
        blank.clear()
        started = True
        yield number, cells, _WHOLE_ROW


def _chosen_sheet(names: list[str], wanted: str | None, *, name: str) -> str:
    """The sheet ``--sheet`` names: by name (case ignored, as spreadsheets do), else by number."""
    if not names:
        raise InputError(f"{name}: the workbook has no worksheet", hint=_UNREADABLE_HINT)
    if wanted is None:
        return names[0]
    folded = {sheet.casefold(): sheet for sheet in names}
    key = wanted.strip().casefold()
    if key in folded:
        return folded[key]
    if key.isdecimal() and 1 <= int(key) <= len(names):
        return names[int(key) - 1]
    shown = ", ".join(f"{n} {sheet!r}" for n, sheet in enumerate(names[:_SHEETS_SHOWN], 1))
    more = f", ... ({len(names) - _SHEETS_SHOWN} more)" if len(names) > _SHEETS_SHOWN else ""
    plural = "sheet" if len(names) == 1 else "sheets"
    raise InputError(
        f"{name}: no sheet {wanted!r}; the workbook has {len(names)} {plural}: {shown}{more}",
        hint=_SHEET_HINT,
    )


def _panicked(error: BaseException) -> bool:
    """Whether the reader's Rust code gave up on a damaged file by panicking (pyo3 raises a
    ``PanicException``, a ``BaseException`` it does not export)."""
    return type(error).__name__ == "PanicException"


def _unreadable(data: bytes, error: BaseException, *, name: str) -> InputError:
    """Why the workbook cannot be read, in the user's words (password, or damaged)."""
    if _is_encrypted(data):
        return InputError(f"{name}: the workbook is password-protected", hint=_PROTECTED_HINT)
    reason = str(error).strip() or type(error).__name__
    return InputError(
        f"{name}: this looks like a workbook (.xlsx, .xls or .ods) but it cannot be read:"
        f" damaged, or password-protected? ({reason})",
        hint=_UNREADABLE_HINT,
    )


def _is_encrypted(data: bytes) -> bool:
    """Whether a workbook is encrypted with a password: an Office file (a compound file holding
    an ``EncryptedPackage``), or an OpenDocument file whose manifest lists encrypted parts."""
    if data.startswith(SIGNATURES[1]):
        return _ENCRYPTED_PACKAGE in data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            manifest = archive.read("META-INF/manifest.xml")
    except Exception:  # a damaged zip (any of zipfile's errors) is not known to be encrypted
        return False
    return b"encryption-data" in manifest
