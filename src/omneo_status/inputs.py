"""The CSV reader and the email policy.

The reader streams: it decides the layout (delimiter, header, email column) from the first record
and then yields one :class:`InputRow` per record, so a file of a million rows never sits in memory.
Every problem with the file is an :class:`~omneo_status.errors.InputError` naming the file and the
line, whether it is found before the first row or at line 900,000.
"""

from __future__ import annotations

import csv
import itertools
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from omneo_status.errors import InputError

if TYPE_CHECKING:
    import _csv

MAX_CELL_CHARS = 100_000
"""Longer cells (and longer lines) are refused: no CSV of email addresses has them."""

DELIMITERS = (",", ";", "\t")
"""The delimiters the reader recognises, in the order that breaks a tie when sniffing."""

_EMAIL_HEADERS = frozenset({"email", "emailaddress", "mail"})
_UTF8_HINT = "Save the file as UTF-8 (in Excel: 'CSV UTF-8')."
_COLUMN_HINT = "Name the column with --column NAME."
_UNCLOSED_QUOTE_HINT = 'A quote (") that is never closed turns the rest of the file into one cell.'
_HEADER_CELLS_SHOWN = 30

_BOM = b"\xef\xbb\xbf"
_CHUNK_BYTES = 1 << 16
# A UTF-8 character takes at most 4 bytes, so a line this long cannot fit in MAX_CELL_CHARS.
_MAX_LINE_BYTES = 4 * MAX_CELL_CHARS
_EOL = re.compile(rb"\r\n|\r|\n")
_EOL_BYTE = re.compile(rb"[\r\n]")
_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))
# Whitespace Python's str.strip() misses but spreadsheets and copy-paste leave behind.
_TRIM = re.compile(r"^[\s\u200b\u200c\u200d\u2060\ufeff]+|[\s\u200b\u200c\u200d\u2060\ufeff]+$")
# A line of whitespace, delimiters and quotes only is blank (a row of empty cells).
_NO_DELIMITERS_OR_QUOTES = str.maketrans("", "", ',;\t"')


@dataclass(frozen=True, slots=True)
class InputRow:
    """One record of the input file."""

    line: int
    """1-based line number where the record starts (the header, when present, is line 1)."""
    email: str
    """The email cell exactly as read (not trimmed); "" when the record is too short."""


@dataclass(frozen=True, slots=True)
class InputLayout:
    """How the input file is laid out, decided from its first record."""

    delimiter: str
    """One of ``","``, ``";"``, ``"\\t"``."""
    has_header: bool
    column_index: int
    """0-based index of the email column."""
    column_name: str | None
    """The header cell as written, or None when the file has no header."""


@contextmanager
def open_input(path: str, stdin: BinaryIO | None = None) -> Iterator[BinaryIO]:
    """Open the input file for binary reading; ``"-"`` means stdin (which is left open).

    A file that cannot be opened (missing, a directory, no permission) raises
    ``InputError("Cannot read PATH: reason")``.
    """
    if path == "-":
        yield stdin if stdin is not None else sys.stdin.buffer
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the with block below
    except OSError as error:
        raise InputError(f"Cannot read {path}: {_reason(error)}") from error
    with stream:
        yield stream


def read_rows(
    stream: BinaryIO, *, name: str, column: str | None = None
) -> tuple[InputLayout, Iterator[InputRow]]:
    """Decide the layout of a CSV of emails and return it with a lazy iterator of its rows.

    ``name`` is how errors refer to the file. ``column`` names the email column's header; without
    it, a header such as ``Email`` or ``E-mail Address`` is found, or a one-column file starting
    with an address is read as having no header. Problems found before the first row (an empty
    file, no email column) raise here; problems further down (a bad byte, a NUL, a huge cell)
    raise while iterating, so callers should iterate to the end before acting on the rows.
    Blank records are skipped; a record too short to reach the email column gives ``email=""``.
    """
    lines = _decoded_lines(stream, name)
    head = _lines_through_first_content(lines)
    delimiter = sniff_delimiter(head[-1]) if head else ","
    reader = csv.reader(itertools.chain(head, lines), delimiter=delimiter)
    records = _records(reader, name)
    first = next(records, None) if head else None
    if first is None:
        raise InputError(f"{name}: the file is empty")
    line, cells = first
    layout = _choose_layout(cells, delimiter=delimiter, line=line, name=name, column=column)
    return layout, _rows(first, records, layout)


def sniff_delimiter(line: str) -> str:
    """The delimiter used by a CSV line: the most frequent of ``, ; TAB`` outside quotes.

    Ties go to the earlier of ``DELIMITERS``; a line with none of them is one column, read as ``,``.
    """
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=counts.__getitem__)
    return best if counts[best] else ","


def normalize_email(raw: str) -> str:
    """The address without surrounding whitespace (non-breaking, zero-width); case is kept."""
    return _TRIM.sub("", raw)


def email_key(email: str) -> str:
    """The key two cells share exactly when they name the same address (trimmed, lower-cased)."""
    return normalize_email(email).lower()


def same_email(a: str, b: str) -> bool:
    """Whether two cells name the same address, ignoring case and surrounding whitespace."""
    return email_key(a) == email_key(b)


def lookup_forms(email: str) -> list[str]:
    """The forms to search for: the address as written, then lower-cased if that differs."""
    written = normalize_email(email)
    lowered = written.lower()
    return [written] if lowered == written else [written, lowered]


# Email syntax, after RFC 5321 (with RFC 6531's unicode letters) and without DNS.
_MAX_EMAIL = 254
_MAX_LOCAL = 64
_MAX_DOMAIN = 253
_ATEXT = r"[\w!#$%&'*+/=?^`{|}~-]"  # \w: unicode letters and digits, and "_"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
# Printable characters (space included) or backslash-escaped ones; no control characters.
_QUOTED_STRING = re.compile(r'"(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*"')
_LABEL = re.compile(r"[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?")  # letters/digits, inner hyphens


def is_valid_email(email: str) -> bool:
    """Whether a normalized address is syntactically usable: ``local@domain.tld``.

    The local part is a dot-atom (unicode letters allowed) or a quoted string; the domain has at
    least two labels and a top-level label that is not all digits. Surrounding whitespace makes
    the address invalid, so normalize first. Nothing is looked up.
    """
    if len(email) > _MAX_EMAIL:
        return False
    local, at, domain = email.rpartition("@")
    return bool(at) and _is_valid_local(local) and _is_valid_domain(domain)


def _is_valid_local(local: str) -> bool:
    if not 1 <= len(local) <= _MAX_LOCAL:
        return False
    pattern = _QUOTED_STRING if local.startswith('"') else _DOT_ATOM
    return pattern.fullmatch(local) is not None


def _is_valid_domain(domain: str) -> bool:
    if not 1 <= len(domain) <= _MAX_DOMAIN:
        return False
    labels = domain.split(".")
    return (
        len(labels) >= 2
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdecimal()
    )


# --- reading ---------------------------------------------------------------------------------


def _decoded_lines(stream: BinaryIO, name: str) -> Iterator[str]:
    """The file's physical lines as text, each ending in "\\n" whatever the file used.

    Lines are split on LF, CRLF or a lone CR and decoded one at a time, so a bad byte is reported
    with its own line number and memory never holds more than one (bounded) line.
    """
    for number, raw in enumerate(_raw_lines(stream, name), start=1):
        yield _decode_line(raw, name=name, line=number) + "\n"


def _raw_lines(stream: BinaryIO, name: str) -> Iterator[bytes]:
    pending = _skip_bom(stream)
    number = 0
    eof = False
    while not eof:
        chunk = stream.read(_CHUNK_BYTES)
        eof = not chunk
        pending += chunk
        start = 0
        for match in _EOL.finditer(pending):
            if match.group() == b"\r" and match.end() == len(pending) and not eof:
                break  # may be the first half of a CRLF split between two reads
            number += 1
            yield pending[start : match.start()]
            start = match.end()
        pending = pending[start:]
        if len(pending) > _MAX_LINE_BYTES:
            raise _line_too_long(stream, pending, name=name, line=number + 1)
    if pending:
        yield pending


def _skip_bom(stream: BinaryIO) -> bytes:
    """The first bytes of the stream, without a UTF-8 byte order mark."""
    start = b""
    while len(start) < len(_BOM):
        chunk = stream.read(len(_BOM) - len(start))
        if not chunk:
            break
        start += chunk
    return start.removeprefix(_BOM)


def _decode_line(raw: bytes, *, name: str, line: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        column = len(raw[: error.start].decode("utf-8", "replace")) + 1
        raise InputError(
            f"{name}, line {line}: not valid UTF-8 "
            f"(byte 0x{raw[error.start]:02X} at column {column})",
            hint=_UTF8_HINT,
        ) from error
    if "\x00" in text:
        raise InputError(
            f"{name}, line {line}: a NUL byte at column {text.index(chr(0)) + 1}",
            hint="Is this a spreadsheet (.xlsx) or a UTF-16 file? " + _UTF8_HINT,
        )
    if len(text) > MAX_CELL_CHARS:
        raise _too_long(name=name, line=line, chars=len(text), one_cell=not _has_delimiter(text))
    return text


def _line_too_long(stream: BinaryIO, start: bytes, *, name: str, line: int) -> InputError:
    """The error for a line too long to hold; reads the rest of it to say how long it is."""
    chars = _count_chars(start.removesuffix(b"\r"))
    while True:
        rest = stream.read(_CHUNK_BYTES)
        end = _EOL_BYTE.search(rest)
        chars += _count_chars(rest[: end.start()] if end else rest)
        if end or not rest:
            break
    return _too_long(name=name, line=line, chars=chars, one_cell=not _has_delimiter(start))


def _count_chars(data: bytes) -> int:
    """Characters in UTF-8 bytes: every byte except a continuation byte starts one."""
    return len(data.translate(None, _CONTINUATION_BYTES))


def _has_delimiter(text: str | bytes) -> bool:
    if isinstance(text, bytes):
        return any(delimiter.encode() in text for delimiter in DELIMITERS)
    return any(delimiter in text for delimiter in DELIMITERS)


def _too_long(
    *, name: str, line: int, chars: int, one_cell: bool, hint: str | None = None
) -> InputError:
    what = "a cell" if one_cell else "a line"
    return InputError(
        f"{name}, line {line}: {what} of {chars:,} characters: is this a CSV of email addresses?",
        hint=hint or f"Cells and lines are limited to {MAX_CELL_CHARS:,} characters.",
    )


def _lines_through_first_content(lines: Iterator[str]) -> list[str]:
    """The leading blank lines and the first line with content; [] if there is none."""
    head: list[str] = []
    for text in lines:
        head.append(text)
        if text.translate(_NO_DELIMITERS_OR_QUOTES).strip():
            return head
    return []


def _records(reader: _csv.Reader, name: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) for every record that is not blank."""
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise _csv_error(error, name=name, line=start) from error
        if not "".join(cells).strip():
            continue
        longest = max(map(len, cells))
        if longest > MAX_CELL_CHARS:
            # Lines are capped at the same length, so only a quoted cell over many lines gets here.
            raise _too_long(
                name=name, line=start, chars=longest, one_cell=True, hint=_UNCLOSED_QUOTE_HINT
            )
        yield start, cells


def _csv_error(error: csv.Error, *, name: str, line: int) -> InputError:
    if "field larger than field limit" in str(error):
        return InputError(
            f"{name}, line {line}: a cell of more than {MAX_CELL_CHARS:,} characters: "
            "is this a CSV of email addresses?",
            hint=_UNCLOSED_QUOTE_HINT,
        )
    return InputError(f"{name}, line {line}: {error}")


def _choose_layout(
    cells: list[str], *, delimiter: str, line: int, name: str, column: str | None
) -> InputLayout:
    if column is not None:
        index = _named_column(cells, column)
        if index is None:
            raise _no_such_column(cells, column=column, line=line, name=name)
        return InputLayout(delimiter, has_header=True, column_index=index, column_name=cells[index])
    index = _email_header(cells)
    if index is not None:
        return InputLayout(delimiter, has_header=True, column_index=index, column_name=cells[index])
    index = _lone_email(cells)
    if index is not None:
        return InputLayout(delimiter, has_header=False, column_index=index, column_name=None)
    raise InputError(
        f"{name}, line {line}: no email column (header: {_header_list(cells)})", hint=_COLUMN_HINT
    )


def _named_column(cells: list[str], column: str) -> int | None:
    """The header cell equal to ``column`` after trimming; failing that, ignoring case."""
    wanted = normalize_email(column)
    trimmed = [normalize_email(cell) for cell in cells]
    if wanted in trimmed:
        return trimmed.index(wanted)
    folded = [cell.casefold() for cell in trimmed]
    return folded.index(wanted.casefold()) if wanted.casefold() in folded else None


def _email_header(cells: list[str]) -> int | None:
    """The first header cell that names an email column (``Email``, ``E-mail Address`` ...)."""
    for index, cell in enumerate(cells):
        if re.sub(r"[\s_-]", "", cell.lower()) in _EMAIL_HEADERS:
            return index
    return None


def _lone_email(cells: list[str]) -> int | None:
    """The index of the record's only filled cell when it is an address (a headerless file)."""
    filled = [index for index, cell in enumerate(cells) if cell.strip()]
    if len(filled) == 1 and is_valid_email(normalize_email(cells[filled[0]])):
        return filled[0]
    return None


def _no_such_column(cells: list[str], *, column: str, line: int, name: str) -> InputError:
    if _lone_email(cells) is not None and _email_header(cells) is None:
        return InputError(
            f"{name}, line {line}: no column named {column!r}: the file has no header row "
            f"(line {line} is an email address)",
            hint="Leave out --column, or add a header row naming the column.",
        )
    return InputError(
        f"{name}, line {line}: no column named {column!r} (header: {_header_list(cells)})",
        hint="Pass one of the header's names to --column, or leave it out to find the column.",
    )


def _header_list(cells: list[str]) -> str:
    shown = ", ".join(cells[:_HEADER_CELLS_SHOWN])
    more = len(cells) - _HEADER_CELLS_SHOWN
    return f"{shown}, ... ({more} more)" if more > 0 else shown


def _rows(
    first: tuple[int, list[str]], records: Iterator[tuple[int, list[str]]], layout: InputLayout
) -> Iterator[InputRow]:
    index = layout.column_index
    rest = records if layout.has_header else itertools.chain([first], records)
    for line, cells in rest:
        yield InputRow(line, cells[index] if index < len(cells) else "")


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
