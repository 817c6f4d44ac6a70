"""The CSV reader and the email policy.

The reader streams: it decides the layout (delimiter, header, email column) from the first record
and then yields one :class:`InputRow` per record, so a file of a million rows never sits in memory.
Every problem with the file is an :class:`~omneo_status.errors.InputError` naming the file and the
line, whether it is found before the first row or at line 900,000.

No row is ever lost silently. Every physical line of the file is accounted for (the header, blank
lines, and each record with the line breaks its quoted cells hold), and a record that spans
several lines is checked, because that is how a stray quote swallows rows. A quoted cell may hold
line breaks (an address over a few lines), but each of these is an error naming the line where
the quote opened: a record over more than :data:`MAX_RECORD_LINES` lines, a quote still open at
the end of the file, a quoted cell that goes on after its closing quote, an email cell over two
lines, a quoted cell holding what reads as a row of its own (as many cells as the first record
and an address in the email column), or a record over several lines with more cells than the
first record.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import re
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Protocol

from omneo_status import sheets
from omneo_status.csvtext import DELIMITERS as DELIMITERS  # the reader's, re-exported
from omneo_status.csvtext import MAX_CELL_CHARS as MAX_CELL_CHARS
from omneo_status.csvtext import decoded_lines, too_long
from omneo_status.errors import InputError, UsageError

if TYPE_CHECKING:
    import _csv

MAX_RECORD_LINES = 10
"""A record (a row with its quoted line breaks) may span at most this many physical lines.

Enough for an address or a short note written over several lines; more is far likelier to be a
quote that was never closed and is swallowing the rows after it.
"""

_EMAIL_HEADERS = frozenset({"email", "emailaddress", "mail"})
_COLUMN_HINT = "Name the column with --column NAME."
_UNCLOSED_QUOTE_HINT = 'A quote (") that is never closed turns the rest of the file into one cell.'
_QUOTE_HINT = (
    'Close the quote, or remove it: a cell that starts with a quote (") ends at the next one.'
)
_HEADER_CELLS_SHOWN = 30

# A line of whitespace, delimiters and quotes only is blank (a row of empty cells).
_NO_DELIMITERS_OR_QUOTES = str.maketrans("", "", ',;\t"')
# Decoded lines never hold a NUL (it is refused), so this line after the last can only be ours:
# it comes back as a record of its own unless a quote left open swallows it.
_END_MARK = "\x00\n"


# --- the email policy ------------------------------------------------------------------------


def normalize_email(raw: str) -> str:
    """The address as it should be sent: surrounding whitespace and invisible characters
    (non-breaking and zero-width spaces, byte order marks, direction marks) trimmed, and the
    text in Unicode NFC (so a composed and a decomposed ``é`` are the same characters); case is
    kept."""
    if raw.isascii():  # the usual cell: its only blanks are whitespace, and it is NFC already
        return raw.strip()
    start, end = 0, len(raw)
    while start < end and _is_blank(raw[start]):
        start += 1
    while end > start and _is_blank(raw[end - 1]):
        end -= 1
    return unicodedata.normalize("NFC", raw[start:end])


def email_key(raw: str) -> str:
    """THE email policy: two cells (or a cell and an address the API returns) name the same
    address exactly when their keys are equal.

    The key is :func:`normalize_email` of the text, lower-cased with ``str.lower()`` (and put
    back in NFC). ``lower()`` and not ``casefold()``: Omneo stores emails in MySQL (Laravel), whose
    case-insensitive collations agree on plain case pairs (``A``/``a``, ``É``/``é``) but not on
    foldings such as ``ß`` (``ss`` in ``utf8mb4_unicode_ci``, ``s`` in ``utf8mb4_general_ci``,
    itself in a binary or ``_cs`` column). The key must never call two addresses the same when the
    tenant may keep them apart, since that could write to the wrong profile; when the tenant
    equates two addresses that the key keeps apart, its answer looks like another address and the
    row fails safely. The sandbox follows the same rule.
    """
    return _key_of(normalize_email(raw))


def same_email(a: str, b: str) -> bool:
    """Whether two cells name the same address under :func:`email_key`."""
    return email_key(a) == email_key(b)


def lookup_forms(email: str) -> list[str]:
    """The forms to search for: the address as written (normalised), then its key if that
    differs (a tenant that compares case-sensitively finds a lower-cased address that way)."""
    written = normalize_email(email)
    key = _key_of(written)
    return [written] if key == written else [written, key]


def _key_of(address: str) -> str:
    lowered = address.lower()
    return lowered if lowered.isascii() else unicodedata.normalize("NFC", lowered)


def _is_blank(char: str) -> bool:
    """Whitespace (NBSP included) or an invisible format character (zero-width space, BOM)."""
    return char.isspace() or unicodedata.category(char) == "Cf"


def trim_blank(raw: str) -> str:
    """The text without surrounding whitespace and invisible characters (as
    :func:`normalize_email` trims), in Unicode NFC; nothing else changes."""
    return normalize_email(raw)


# --- the key the reader looks for --------------------------------------------------------------


class KeyRule(Protocol):
    """How the reader finds, normalises and compares the key column of one match key.

    ``EMAIL_RULE`` is the email policy above; the other keys' rules live in
    :mod:`omneo_status.keys`.
    """

    name: str
    """What the column holds, for messages ("email", "mobile", "profile_id", ...)."""
    headerless: bool
    """Whether a one-column file starting with a valid key is read as having no header."""

    def normalize(self, raw: str) -> str:
        """The cell as it is sent to the API."""
        ...

    def key(self, normalized: str) -> str:
        """Equal for two normalised cells exactly when they name the same profile key."""
        ...

    def is_valid(self, normalized: str) -> bool:
        """Whether a normalised cell can be a key of this kind (no request otherwise)."""
        ...

    def is_header(self, cell: str) -> bool:
        """Whether a header cell names this key's column."""
        ...


class EmailRule:
    """The email policy as a :class:`KeyRule`: :func:`normalize_email`, :func:`email_key`,
    :func:`is_valid_email`, and headers such as ``Email`` or ``E-mail Address``."""

    name = "email"
    headerless = True

    def normalize(self, raw: str) -> str:
        """See :func:`normalize_email`."""
        return normalize_email(raw)

    def key(self, normalized: str) -> str:
        """See :func:`email_key`."""
        return _key_of(normalized)

    def is_valid(self, normalized: str) -> bool:
        """See :func:`is_valid_email`."""
        return is_valid_email(normalized)

    def is_header(self, cell: str) -> bool:
        """``Email``, ``E-mail Address``, ``mail`` ... (case, spaces, ``_`` and ``-`` ignored)."""
        return header_words(cell) in _EMAIL_HEADERS


EMAIL_RULE = EmailRule()
"""The reader's rule when no other match key is asked for."""


def header_words(cell: str) -> str:
    """A header cell reduced for comparison: lower case without spaces, ``_`` and ``-``."""
    return re.sub(r"[\s_-]", "", cell.lower())


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputRow:
    """One record of the input file, with its address normalised once, at load."""

    line: int
    """1-based line number where the record starts (the header, when present, is line 1)."""
    key: str
    """The match key's cell (the email cell of an email run) exactly as read (not trimmed); ""
    when the record is too short."""
    rule: KeyRule = field(default=EMAIL_RULE, repr=False, compare=False)
    """The match key's rule (the email policy unless another key was asked for)."""
    status: str | None = None
    """The cell of ``status_column`` as read (``--status-column``), or None without one."""
    address: str = field(init=False)
    """The cell as the rule normalises it (:func:`normalize_email`): what is sent to the API."""
    canonical: str = field(init=False)
    """The cell as the rule compares it (:func:`email_key`): equal for two rows exactly when
    they name the same profile key."""
    refused: str | None = field(init=False)
    """Why the cell cannot be a key whatever it reads (a workbook's number with a fraction, a
    date ...: a :class:`~omneo_status.sheets.Refused` cell), or None."""

    def __post_init__(self) -> None:
        refused = self.key.reason if isinstance(self.key, sheets.Refused) else None
        object.__setattr__(self, "key", str(self.key))
        object.__setattr__(self, "refused", refused)
        address = self.rule.normalize(self.key)
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "canonical", self.rule.key(address))


@dataclass(frozen=True, slots=True)
class InputLayout:
    """How the input file is laid out, decided from its first record."""

    delimiter: str
    """One of ``","``, ``";"``, ``"\\t"``."""
    has_header: bool
    column_index: int
    """0-based index of the key column (the email column of an email run)."""
    column_name: str | None
    """The header cell as written, or None when the file has no header."""
    sheet: str | None = None
    """The name of the workbook's sheet read, or None for a CSV."""
    status_index: int | None = None


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
    stream: BinaryIO,
    *,
    name: str,
    column: str | None = None,
    rule: KeyRule = EMAIL_RULE,
    sheet: str | None = None,
    status_column: str | None = None,
) -> tuple[InputLayout, Iterator[InputRow]]:
    """Decide the layout of a CSV (or a workbook's sheet) of emails and return it with a lazy
    iterator of its rows.

    ``stream`` is a binary file or pipe. ``name`` is how errors refer to the file. ``column``
    names the email column's header; without it, the one header such as ``Email`` or ``E-mail
    Address`` is found (two such headers are an error asking for ``column``), or a one-column
    file starting with an address is read as having no header. Problems found before the first
    row (an empty file, a UTF-16 file, no email column) raise here; problems further down (a bad
    byte, a NUL, a huge cell, a quote that swallows rows) raise while iterating, so callers
    should iterate to the end before acting on the rows. The iterator accounts for every
    physical line of the file and raises rather than end early. Blank records are skipped; a
    record too short to reach the email column gives ``key=""``.

    A workbook (.xlsx, .xls, .ods: known by its first bytes) is read through
    :func:`omneo_status.sheets.sheet_records`: its sheet ``sheet`` (a name or a number from 1;
    the first by default), with the sheet's row numbers as lines and errors naming the sheet.
    ``sheet`` for a CSV is a ``UsageError``.

    ``rule`` is the match key's (its headers, valid cells, normalisation; the email policy by
    default); ``status_column`` names the header of the column of each row's ``status``.
    """
    opened = _opened(stream, name=name, sheet=sheet)
    first = next(opened.records, None)
    if first is None:
        raise InputError(
            f"{opened.name}: the {'file' if opened.sheet is None else 'sheet'} is empty"
        )
    line, cells, _ = first
    layout = _choose_layout(
        cells, delimiter=opened.delimiter, line=line, name=opened.name, column=column, rule=rule
    )
    layout = dataclasses.replace(layout, sheet=opened.sheet)
    if status_column is not None:  # a header cell other than the key's
        at = _named_column(cells, status_column) if layout.has_header else None
        if at is None or at == layout.column_index:
            where, hint = (
                f"{opened.name}, line {line}",
                "Name its header with --status-column NAME.",
            )
            raise InputError(f"{where}: no status column named {status_column!r}", hint=hint)
        layout = dataclasses.replace(layout, status_index=at)
    return layout, _rows(first, opened.records, layout, name=opened.name, rule=rule)


class _Opened(NamedTuple):
    """An input opened for its records: a CSV, or one sheet of a workbook."""

    name: str
    """How messages name it (a sheet's says which)."""
    delimiter: str
    records: Iterator[tuple[int, list[str], list[str]]]
    sheet: str | None


def _opened(stream: BinaryIO, *, name: str, sheet: str | None) -> _Opened:
    """The input's records: a workbook's (known by its first bytes) or a CSV's."""
    start = stream.read(len(sheets.SIGNATURES[0]))
    if sheets.is_workbook(start):
        book = sheets.sheet_records(start + stream.read(), name=name, sheet=sheet)
        return _Opened(book.label, ",", book.records, book.sheet)
    if sheet is not None:
        raise UsageError(
            f"--sheet {sheet!r}: {name} is read as a CSV, not a workbook",
            hint="Leave out --sheet, or give a workbook (.xlsx, .xls or .ods).",
        )
    feed = _LineFeed(decoded_lines(stream, name, start), name=name)
    head = feed.read_head()
    if head is None:
        return _Opened(name, ",", iter(()), None)
    feed.delimiter = sniff_delimiter(head)
    records = _records(csv.reader(feed, delimiter=feed.delimiter), feed)
    return _Opened(name, feed.delimiter, records, None)


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


# --- reading: lines to records ---------------------------------------------------------------


class _LineFeed:
    """The decoded lines as the csv reader takes them: counted, kept per record, and followed
    by the end mark.

    A record that asks for more than ``MAX_RECORD_LINES`` lines is stopped here, before the
    reader swallows the rest of the file into one cell.
    """

    def __init__(self, lines: Iterator[str], *, name: str) -> None:
        self.name = name
        self.delimiter = ","
        self.served = 0
        """Physical lines handed to the reader (the end mark not included)."""
        self.ended = False
        """Whether the end mark was handed out: every line of the file has been read."""
        self.record: list[str] = []
        """The lines of the record being read."""
        self._lines = lines
        self._queued: list[str] = []

    def read_head(self) -> str | None:
        """The first line with content, read ahead (with the blank lines before it) and queued
        for the reader; None when the file has no content."""
        for text in self._lines:
            self._queued.append(text)
            if text.translate(_NO_DELIMITERS_OR_QUOTES).strip():
                return text
        return None

    def start_record(self) -> int:
        """Begin a new record and return the number of its first line."""
        self.record = []
        return self.served + 1

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        text = self._queued.pop(0) if self._queued else next(self._lines, None)
        if text is None:
            if self.ended:
                raise StopIteration
            self.ended = True
            self.record.append(_END_MARK)
            return _END_MARK
        if len(self.record) >= MAX_RECORD_LINES:
            raise self._runaway()
        self.served += 1
        self.record.append(text)
        return text

    def _runaway(self) -> InputError:
        start = self.served - len(self.record) + 1
        opened = _scan_quotes(self.record, self.delimiter).left_open
        return InputError(
            f'{self.name}, line {start + (opened or 0)}: a quote (") opened here is still open '
            f"after {MAX_RECORD_LINES} lines",
            hint=f"A quoted cell may hold line breaks, but a record may span at most "
            f"{MAX_RECORD_LINES} lines. {_QUOTE_HINT}",
        )


@dataclass(frozen=True, slots=True)
class _Quoting:
    """How the quotes of a record's lines pair up (line numbers are 0-based in the record)."""

    left_open: int | None
    """The line where a quote still open after the last line opened."""
    bad_close: tuple[int, int] | None
    """(opened, closed) of the first quoted cell that goes on after its closing quote."""


_FIELD_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED = range(4)


def _scan_quotes(lines: list[str], delimiter: str) -> _Quoting:
    """Pair the quotes of a record's lines the way the csv module reads them."""
    state, opened = _FIELD_START, 0
    bad_close: tuple[int, int] | None = None
    for index, text in enumerate(lines):
        for char in text:
            if state == _QUOTED:
                state = _QUOTE_IN_QUOTED if char == '"' else _QUOTED
            elif state == _QUOTE_IN_QUOTED and char == '"':
                state = _QUOTED  # a doubled quote inside quotes
            elif char in (delimiter, "\n"):
                state = _FIELD_START
            elif state == _FIELD_START and char == '"':
                state, opened = _QUOTED, index
            else:
                if state == _QUOTE_IN_QUOTED and bad_close is None:
                    bad_close = (opened, index)
                state = _UNQUOTED
    return _Quoting(opened if state == _QUOTED else None, bad_close)


def _records(reader: _csv.Reader, feed: _LineFeed) -> Iterator[tuple[int, list[str], list[str]]]:
    """(first line, cells, physical lines) of every record that is not blank.

    Every line read is accounted for: a record's lines are its first plus the line breaks its
    cells hold, and the records end exactly at the end of the file, or this raises.
    """
    accounted = 0
    while True:
        start = feed.start_record()
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise _csv_error(error, name=feed.name, line=start) from error
        lines = feed.record
        if lines == [_END_MARK]:
            break
        if len(lines) > 1:
            _check_quoting(lines, start=start, feed=feed)
        joined = "".join(cells)
        if joined.count("\n") + 1 != len(lines):
            raise _unaccounted(f"{feed.name}, line {start}", len(lines), joined.count("\n") + 1)
        accounted += len(lines)
        if not joined.strip():
            continue
        longest = max(map(len, cells))
        if longest > MAX_CELL_CHARS:
            raise too_long(
                name=feed.name, line=start, chars=longest, one_cell=True, hint=_QUOTE_HINT
            )
        yield start, cells, lines
    if not feed.ended or accounted != feed.served:
        raise _unaccounted(feed.name, feed.served, accounted)


def _check_quoting(lines: list[str], *, start: int, feed: _LineFeed) -> None:
    """Refuse a record over several lines whose quotes show it swallowed lines by mistake."""
    quoting = _scan_quotes(lines, feed.delimiter)
    if quoting.left_open is not None:  # the record ended only because the file did
        raise InputError(
            f'{feed.name}, line {start + quoting.left_open}: a quote (") opened here is never '
            "closed: it runs to the end of the file",
            hint=_QUOTE_HINT,
        )
    if quoting.bad_close is not None:
        opened, closed = quoting.bad_close
        raise InputError(
            f'{feed.name}, line {start + opened}: a quote (") opened here closes on line '
            f"{start + closed} in the middle of a cell: is a quote missing?",
            hint=_QUOTE_HINT,
        )


def _unaccounted(where: str, read: int, accounted: int) -> InputError:
    return InputError(
        f"{where}: {read:,} lines read but {accounted:,} accounted for: "
        "the file cannot be read reliably",
        hint="Please report this: no row is used rather than some rows lost.",
    )


def _csv_error(error: csv.Error, *, name: str, line: int) -> InputError:
    if "field larger than field limit" in str(error):
        return InputError(
            f"{name}, line {line}: a cell of more than {MAX_CELL_CHARS:,} characters: "
            "is this a CSV of email addresses?",
            hint=_UNCLOSED_QUOTE_HINT,
        )
    return InputError(f"{name}, line {line}: {error}")


def _rows(
    first: tuple[int, list[str], list[str]],
    records: Iterator[tuple[int, list[str], list[str]]],
    layout: InputLayout,
    *,
    name: str,
    rule: KeyRule,
) -> Iterator[InputRow]:
    index, at = layout.column_index, layout.status_index
    width = len(first[1])
    if layout.has_header and len(first[2]) > 1:
        # A header cell never holds a line break: the header's quote swallowed the rows after it.
        raise InputError(
            f'{name}, line {first[0]}: the header runs over {len(first[2])} lines: is a quote (")'
            " not closed?",
            hint=_QUOTE_HINT,
        )
    rest = records if layout.has_header else itertools.chain([first], records)
    for line, cells, lines in rest:
        if len(lines) > 1:
            _check_spread_row(line, cells, lines, layout=layout, width=width, name=name, rule=rule)
        status = None if at is None else cells[at] if at < len(cells) else ""
        yield InputRow(line, cells[index] if index < len(cells) else "", rule, status)


def _check_spread_row(
    line: int,
    cells: list[str],
    lines: list[str],
    *,
    layout: InputLayout,
    width: int,
    name: str,
    rule: KeyRule,
) -> None:
    """Refuse a row over several lines that shows a quote swallowed other rows: an address over
    two lines, a quoted cell holding what reads as a row of its own, or more cells than the
    first record."""
    index = layout.column_index
    if index < len(cells) and "\n" in cells[index]:
        raise InputError(
            f"{name}, line {line}: the {rule.name} cell runs over "
            f'{cells[index].count(chr(10)) + 1} lines: is a quote (") not closed?',
            hint=_QUOTE_HINT,
        )
    opened = line  # a cell over several lines opens where the line breaks before it leave off
    for cell in cells:
        pieces = cell.split("\n")
        for number, piece in enumerate(pieces if len(pieces) > 1 else ()):
            parts = piece.split(layout.delimiter)
            if len(parts) == width and rule.is_valid(rule.normalize(parts[index].strip('"'))):
                raise InputError(
                    f'{name}, line {opened}: a quote (") opened here swallows what reads as a '
                    f"row of its own (on line {opened + number})",
                    hint=_QUOTE_HINT,
                )
        opened += len(pieces) - 1
    if len(cells) > width:
        raise InputError(
            f"{name}, line {line}: a record over {len(lines)} lines with {len(cells)} cells, "
            f"where the first record has {width}: is a quote missing or extra?",
            hint=_QUOTE_HINT,
        )


def _choose_layout(
    cells: list[str],
    *,
    delimiter: str,
    line: int,
    name: str,
    column: str | None,
    rule: KeyRule,
) -> InputLayout:
    if column is not None:
        index = _named_column(cells, column)
        if index is None:
            raise _no_such_column(cells, column=column, line=line, name=name, rule=rule)
        return InputLayout(delimiter, has_header=True, column_index=index, column_name=cells[index])
    headers = _key_headers(cells, rule)
    if len(headers) > 1:
        named = ", ".join(repr(cells[index]) for index in headers)
        raise InputError(
            f"{name}, line {line}: several columns look like the {rule.name} column ({named})",
            hint="Name the one to use with --column NAME.",
        )
    if headers:
        index = headers[0]
        return InputLayout(delimiter, has_header=True, column_index=index, column_name=cells[index])
    index = _lone_key(cells, rule)
    if index is not None:
        return InputLayout(delimiter, has_header=False, column_index=index, column_name=None)
    raise InputError(
        f"{name}, line {line}: no {rule.name} column (header: {_header_list(cells)})",
        hint=_COLUMN_HINT,
    )


def _named_column(cells: list[str], column: str) -> int | None:
    """The header cell equal to ``column`` after trimming; failing that, ignoring case."""
    wanted = normalize_email(column)
    trimmed = [normalize_email(cell) for cell in cells]
    if wanted in trimmed:
        return trimmed.index(wanted)
    folded = [cell.casefold() for cell in trimmed]
    return folded.index(wanted.casefold()) if wanted.casefold() in folded else None


def _key_headers(cells: list[str], rule: KeyRule) -> list[int]:
    """The header cells that name the key's column (``Email``, ``E-mail Address`` ...)."""
    return [index for index, cell in enumerate(cells) if rule.is_header(cell)]


def _lone_key(cells: list[str], rule: KeyRule) -> int | None:
    """The index of the record's only filled cell when it is a valid key (a headerless file)."""
    if not rule.headerless:
        return None
    filled = [index for index, cell in enumerate(cells) if cell.strip()]
    if len(filled) == 1 and rule.is_valid(rule.normalize(cells[filled[0]])):
        return filled[0]
    return None


def _no_such_column(
    cells: list[str], *, column: str, line: int, name: str, rule: KeyRule
) -> InputError:
    if _lone_key(cells, rule) is not None and not _key_headers(cells, rule):
        what = "an email address" if rule is EMAIL_RULE else f"a {rule.name}"
        return InputError(
            f"{name}, line {line}: no column named {column!r}: the file has no header row "
            f"(line {line} is {what})",
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


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
