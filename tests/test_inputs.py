"""The CSV reader and the email policy."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omneo_status.errors import ExitCode, InputError
from omneo_status.inputs import (
    DELIMITERS,
    MAX_RECORD_LINES,
    InputLayout,
    InputRow,
    email_key,
    is_valid_email,
    lookup_forms,
    normalize_email,
    open_input,
    read_rows,
    same_email,
    sniff_delimiter,
)

from .conftest import Sandbox


def read(data: bytes, column: str | None = None) -> tuple[InputLayout, list[InputRow]]:
    layout, rows = read_rows(io.BytesIO(data), name="in.csv", column=column)
    return layout, list(rows)


def read_error(data: bytes, column: str | None = None) -> InputError:
    with pytest.raises(InputError) as caught:
        read(data, column)
    return caught.value


def emails_of(data: bytes, column: str | None = None) -> list[tuple[int, str]]:
    return [(row.line, row.key) for row in read(data, column)[1]]


# --- strategies ------------------------------------------------------------------------------

_atom = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+_-", min_size=1, max_size=8
)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
addresses = st.builds(
    lambda local, domain, tld: ".".join(local) + "@" + ".".join([*domain, tld]),
    st.lists(_atom, min_size=1, max_size=3),
    st.lists(_label, min_size=1, max_size=3),
    st.from_regex(r"[a-zA-Z]{2,6}", fullmatch=True),
)


# --- the reader: properties ------------------------------------------------------------------


@given(
    emails=st.lists(addresses, min_size=1, max_size=15),
    delimiter=st.sampled_from(DELIMITERS),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
    quote=st.booleans(),
    header=st.booleans(),
    extra=st.booleans(),
    multiline=st.booleans(),
    blanks=st.lists(st.booleans(), min_size=15, max_size=15),
)
def test_read_rows_gives_back_every_email_with_its_line(
    emails: list[str],
    delimiter: str,
    eol: str,
    bom: bool,
    quote: bool,
    header: bool,
    extra: bool,
    multiline: bool,
    blanks: list[bool],
) -> None:
    extra = extra and header  # a headerless file is only recognised with one column
    multiline = multiline and extra and quote

    def record(email: str, note: str) -> str:
        cells = ["Someone", email, note] if extra else [email]
        return delimiter.join(f'"{cell}"' if quote else cell for cell in cells)

    lines: list[str] = []
    expected: list[tuple[int, str]] = []
    line = 1
    if header:
        lines.append(record("Email", "Note"))
        line += 1
    for email, blank in zip(emails, blanks, strict=False):
        if blank:
            lines.append(delimiter * 2 if extra else "")
            line += 1
        expected.append((line, email))
        note = "first\nsecond" if multiline else "note"
        lines.append(record(email, note))
        line += 1 + note.count("\n")
    data = ("\ufeff" if bom else "") + eol.join(lines) + eol

    layout, rows = read(data.encode())

    assert [(row.line, row.key) for row in rows] == expected
    assert layout == InputLayout(
        delimiter=delimiter if extra else ",",
        has_header=header,
        column_index=1 if extra else 0,
        column_name="Email" if header else None,
    )


@given(st.text())
def test_sniff_delimiter_always_answers_a_known_delimiter(line: str) -> None:
    assert sniff_delimiter(line) in DELIMITERS


# --- the reader: examples --------------------------------------------------------------------


def test_bom_is_dropped() -> None:
    layout, rows = read(b"\xef\xbb\xbfEmail\na@b.co\n")
    assert layout.column_name == "Email"
    assert rows == [InputRow(2, "a@b.co")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings(eol: bytes) -> None:
    data = eol.join([b"email", b"a@b.co", b"", b"c@d.co"]) + eol
    assert emails_of(data) == [(2, "a@b.co"), (4, "c@d.co")]


class _Trickle(io.RawIOBase):
    """A stream that answers every read with at most ``size`` bytes, as a pipe may."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data = data
        self._size = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), self._size, len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("eol", [b"\r\n", b"\r"], ids=["CRLF", "CR"])
def test_line_ends_split_between_reads(eol: bytes, size: int) -> None:
    data = b"\xef\xbb\xbfemail" + eol + eol.join([b"a@b.co", b"", b"c@d.co"]) + eol
    _, rows = read_rows(cast(BinaryIO, _Trickle(data, size)), name="pipe")
    assert list(rows) == [InputRow(2, "a@b.co"), InputRow(4, "c@d.co")]


def test_no_final_newline() -> None:
    assert emails_of(b"email\na@b.co") == [(2, "a@b.co")]


@pytest.mark.parametrize(
    ("data", "delimiter"),
    [
        (b"Name;Email\nAda;a@b.co\n", ";"),
        (b"Name\tEmail\nAda\ta@b.co\n", "\t"),
        (b"Name,Email\nAda,a@b.co\n", ","),
        (b'"Name;with;semicolons",Email\nAda,a@b.co\n', ","),
        (b"Email\na@b.co\n", ","),
    ],
)
def test_delimiter_is_sniffed_from_the_header(data: bytes, delimiter: str) -> None:
    layout, rows = read(data)
    assert layout.delimiter == delimiter
    assert rows[0].key == "a@b.co"


def test_sniffing_a_tie_prefers_comma_then_semicolon() -> None:
    assert sniff_delimiter("a,b;c") == ","
    assert sniff_delimiter("a;b\tc") == ";"
    assert sniff_delimiter("a;b;c,d") == ";"


def test_shopify_customer_export() -> None:
    data = (
        b"First Name,Last Name,Email,Accepts Email Marketing,Default Address Company,"
        b"Default Address City,Phone,Accepts SMS Marketing,Total Spent,Total Orders,Note,"
        b"Tax Exempt,Tags\n"
        b'Grace,Hall,Grace.Hall@Example.com,yes,"Hall, Inc.",Sydney,,no,10.00,1,,no,vip\n'
    )
    layout, rows = read(data)
    assert layout == InputLayout(",", has_header=True, column_index=2, column_name="Email")
    assert rows == [InputRow(2, "Grace.Hall@Example.com")]


@pytest.mark.parametrize(
    "name",
    ["email", "E-mail", "Email Address", "email_address", " EMAIL ", "Mail", "e-mail-address"],
)
def test_email_header_names_are_recognised(name: str) -> None:
    layout, rows = read(f"id,{name}\n1,a@b.co\n".encode())
    assert (layout.column_index, layout.column_name) == (1, name)
    assert rows == [InputRow(2, "a@b.co")]


def test_two_email_headers_ask_for_column() -> None:
    error = read_error(b"Email,Name,E-mail\na@b.co,Ada,c@d.co\n")
    assert error.message == (
        "in.csv, line 1: several columns look like the email column ('Email', 'E-mail')"
    )
    assert error.hint and "--column" in error.hint
    assert emails_of(b"Email,Name,E-mail\na@b.co,Ada,c@d.co\n", column="E-mail") == [(2, "c@d.co")]


def test_column_exact_match() -> None:
    layout, rows = read(b"Email,Work Email\na@b.co,w@b.co\n", column="Work Email")
    assert (layout.column_index, layout.column_name) == (1, "Work Email")
    assert rows == [InputRow(2, "w@b.co")]


def test_column_exact_match_wins_over_a_case_insensitive_one() -> None:
    layout, _ = read(b"EMAIL,email\na@b.co,c@d.co\n", column="email")
    assert layout.column_index == 1


def test_column_matches_ignoring_case_and_surrounding_spaces() -> None:
    layout, _ = read(b"Name, Customer E-Mail \nAda,a@b.co\n", column="customer e-mail")
    assert (layout.column_index, layout.column_name) == (1, " Customer E-Mail ")


def test_column_missing_lists_the_header() -> None:
    error = read_error(b"Name,Email\nAda,a@b.co\n", column="Courriel")
    assert error.message == "in.csv, line 1: no column named 'Courriel' (header: Name, Email)"
    assert error.hint
    assert error.exit_code == ExitCode.USAGE


def test_column_with_a_headerless_file_says_there_is_no_header() -> None:
    error = read_error(b"a@b.co\nc@d.co\n", column="email")
    assert "no header row" in error.message
    assert error.message.startswith("in.csv, line 1: ")


def test_headerless_one_column_file() -> None:
    layout, rows = read(b"\n  \na@b.co\nnot an email\n")
    assert layout == InputLayout(",", has_header=False, column_index=0, column_name=None)
    assert rows == [InputRow(3, "a@b.co"), InputRow(4, "not an email")]


def test_no_email_column_lists_the_header() -> None:
    error = read_error(b"First Name,Last Name\nAda,Lovelace\n")
    assert error.message == "in.csv, line 1: no email column (header: First Name, Last Name)"
    assert error.hint == "Name the column with --column NAME."


def test_a_headerless_file_of_several_columns_needs_a_header() -> None:
    error = read_error(b"Ada,a@b.co\n")
    assert error.message.startswith("in.csv, line 1: no email column (header: Ada, a@b.co)")


def test_a_long_header_is_shortened_in_the_message() -> None:
    header = ",".join(f"c{i}" for i in range(50))
    error = read_error(header.encode() + b"\n")
    assert "c29, ... (20 more)" in error.message


def test_quoted_cells() -> None:
    data = b'name,email\n"Doe, ""JD"" John","a@b.co"\n"Multi\nline\nname",c@d.co\ne,f@g.co\n'
    assert emails_of(data) == [(2, "a@b.co"), (3, "c@d.co"), (6, "f@g.co")]


def test_an_email_cell_over_two_lines_is_refused() -> None:
    error = read_error(b'email\nx@y.co\n"a@b\n.co"\nc@d.co\n')
    assert error.message == (
        'in.csv, line 3: the email cell runs over 2 lines: is a quote (") not closed?'
    )


def test_blank_lines_are_skipped_but_counted() -> None:
    data = b"\n\nemail;name\n;\n   \n\r\na@b.co;x\n ; \n\nc@d.co;y\n\n"
    assert emails_of(data) == [(7, "a@b.co"), (10, "c@d.co")]


def test_cells_are_passed_through_as_read() -> None:
    data = 'email\n  a@b.co \n=HYPERLINK("x")\n"""q""@b.co"\nJosé@exämple.com\n'.encode()
    assert [email for _, email in emails_of(data)] == [
        "  a@b.co ",
        '=HYPERLINK("x")',
        '"q"@b.co',
        "José@exämple.com",
    ]


def test_short_records_give_an_empty_email() -> None:
    data = b"id,name,email\n1,Ada\n2\n3,Bob,b@c.co,extra,cells\n"
    assert emails_of(data) == [(2, ""), (3, ""), (4, "b@c.co")]


def test_header_only_file_has_a_layout_and_no_rows() -> None:
    layout, rows = read(b"\xef\xbb\xbfEmail\r\n\r\n")
    assert layout.column_name == "Email"
    assert rows == []


@pytest.mark.parametrize(
    "data", [b"", b"\xef\xbb\xbf", b"\n\n", b" \r\n\t\r\n", b",,\n;;\n", b'""\n']
)
def test_empty_file(data: bytes) -> None:
    error = read_error(data)
    assert error.message == "in.csv: the file is empty"
    assert error.exit_code == ExitCode.USAGE


def test_invalid_utf8_names_the_line_byte_and_column() -> None:
    data = "email\na@b.co\nné@b.co\n".encode() + b"b\xe9@latin1.co\n"
    _, rows = read_rows(io.BytesIO(data), name="in.csv")
    assert next(rows) == InputRow(2, "a@b.co")
    assert next(rows) == InputRow(3, "né@b.co")
    with pytest.raises(InputError) as caught:
        next(rows)
    assert caught.value.message == "in.csv, line 4: not valid UTF-8 (byte 0xE9 at column 2)"
    assert caught.value.hint == "Save the file as UTF-8 (in Excel: 'CSV UTF-8')."


def test_invalid_utf8_in_the_header_raises_from_read_rows() -> None:
    error = read_error(b"\xe9mail\na@b.co\n")
    assert error.message == "in.csv, line 1: not valid UTF-8 (byte 0xE9 at column 1)"


@pytest.mark.parametrize("start", [b"\xff\xfe", b"\xfe\xff"], ids=["utf16-le", "utf16-be"])
def test_utf16_is_named_before_any_line_is_decoded(start: bytes) -> None:
    error = read_error(start + "email\na@b.co\n".encode("utf-16-le"))
    assert error.message.startswith("in.csv: this looks like a UTF-16 file")
    assert error.hint and "CSV UTF-8" in error.hint


@pytest.mark.parametrize(
    "start", [b"PK\x03\x04", b"\xd0\xcf\x11\xe0"], ids=["zip (.xlsx, .ods)", "compound (.xls)"]
)
def test_a_workbook_is_read_as_one_not_asked_for_as_a_csv(start: bytes) -> None:
    error = read_error(start + b"\x00" * 508)  # a workbook's first bytes, and nothing of one
    assert error.message.startswith("in.csv: this looks like a workbook (.xlsx, .xls or .ods)")
    assert "cannot be read" in error.message


def test_column_counts_characters_not_bytes() -> None:
    error = read_error("email\nélan,".encode() + b"\xff\n")
    assert error.message == "in.csv, line 2: not valid UTF-8 (byte 0xFF at column 6)"


def test_a_bad_byte_deep_in_the_file_names_its_line() -> None:
    data = b"email\n" + b"a@b.co\n" * 9_999 + b"\x80@b.co\n"
    error = read_error(data)
    assert error.message.startswith("in.csv, line 10001: not valid UTF-8 (byte 0x80")


def test_nul_byte() -> None:
    error = read_error(b"email\na@b.co\nc@\x00d.co\n")
    assert error.message == "in.csv, line 3: a NUL byte at column 3"


def test_ten_megabyte_single_line() -> None:
    error = read_error(b"email\n" + b"x" * 10_000_000 + b"\n")
    assert error.message == (
        "in.csv, line 2: a cell of 10,000,000 characters: is this a CSV of email addresses?"
    )


def test_ten_megabyte_file_of_one_line() -> None:
    error = read_error(b"a" * 10_000_000)
    assert error.message.startswith("in.csv, line 1: a cell of 10,000,000 characters")


def test_a_long_line_of_many_cells_is_called_a_line() -> None:
    error = read_error(b"email\n" + b"a@b.co," * 20_000 + b"\n")
    assert error.message.startswith("in.csv, line 2: a line of 140,000 characters")


def test_a_long_cell_counts_characters() -> None:
    error = read_error(b"email\n" + "é".encode() * 150_000 + b"\n")
    assert "a cell of 150,000 characters" in error.message


def test_a_long_cell_over_a_few_lines() -> None:
    data = b'name,email\n"' + b"x" * 40_000 + b"\n" + b"y" * 79_999 + b'",a@b.co\n'
    error = read_error(data)
    assert "line 2: a cell of 120,000 characters" in error.message
    assert error.hint
    assert "quote" in error.hint


def test_a_quote_open_over_many_lines_stops_at_the_bound() -> None:
    data = b'email\na@b.co\n"unclosed@b.co\n' + b"c@d.co\n" * 30_000
    error = read_error(data)
    assert error.message == (
        f'in.csv, line 3: a quote (") opened here is still open after {MAX_RECORD_LINES} lines'
    )
    assert error.hint
    assert "quote" in error.hint


class _LazyCsv(io.RawIOBase):
    """A CSV file of ``count`` addresses made on demand, so the test never holds it whole."""

    def __init__(self, count: int) -> None:
        self._chunks = self._make(count)
        self._pending = b""
        self.served = 0

    @staticmethod
    def _make(count: int) -> Iterator[bytes]:
        yield b"email\n"
        for start in range(0, count, 5_000):
            numbers = range(start, min(start + 5_000, count))
            yield b"".join(b"user%d@example.com\n" % n for n in numbers)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._pending:
            self._pending = next(self._chunks, b"")
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.served += size
        return size


@pytest.mark.slow
def test_a_million_rows_stream() -> None:
    layout, rows = read_rows(io.BufferedReader(_LazyCsv(1_000_000)), name="big.csv")
    assert layout.column_name == "email"
    count = 0
    last = InputRow(0, "")
    for count, last in enumerate(rows, start=1):  # noqa: B007 - the last row is checked below
        pass
    assert count == 1_000_000
    assert last == InputRow(1_000_001, "user999999@example.com")


def test_the_layout_is_decided_before_the_rows_are_read() -> None:
    raw = _LazyCsv(1_000_000)
    layout, _ = read_rows(io.BufferedReader(raw), name="big.csv")
    assert layout.column_name == "email"
    assert raw.served < 1_000_000


def test_an_unexpected_csv_error_names_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        line_num = 0

        def __init__(self, lines: object, delimiter: str) -> None:
            pass

        def __next__(self) -> list[str]:
            raise csv.Error("something odd")

    monkeypatch.setattr(csv, "reader", Broken)
    assert read_error(b"email\n").message == "in.csv, line 1: something odd"


# --- no row is lost silently (issue 9, section 1) ---------------------------------------------


def customers(count: int, *, columns: int = 2) -> list[str]:
    """A header and ``count`` rows of ``Customer N,customerN@example.com[,note N]``."""
    header = ["name,email", "name,email,note"][columns - 2]
    rows = [f"Customer {n},customer{n}@example.com" for n in range(1, count + 1)]
    if columns == 3:
        rows = [f"{row},note {n}" for n, row in enumerate(rows, start=1)]
    return [header, *rows]


def with_line(lines: list[str], number: int, text: str) -> bytes:
    """The file of ``lines`` with line ``number`` (1-based) replaced by ``text``."""
    changed = [text if index == number else line for index, line in enumerate(lines, start=1)]
    return ("\n".join(changed) + "\n").encode()


_STILL_OPEN = f'a quote (") opened here is still open after {MAX_RECORD_LINES} lines'
_NEVER_CLOSED = 'a quote (") opened here is never closed: it runs to the end of the file'


@pytest.mark.parametrize(
    ("columns", "line", "text", "says"),
    [
        (2, 6, '"The Boss,customer5@example.com', _STILL_OPEN),
        (3, 6, 'Customer 5,customer5@example.com,"note 5', _STILL_OPEN),
        (2, 999, '"The Boss,customer998@example.com', _NEVER_CLOSED),
        (3, 1001, 'Customer 1000,customer1000@example.com,"note', _NEVER_CLOSED),
        (2, 1, '"name,email', _STILL_OPEN),
    ],
    ids=["issue-example", "extra-column", "near-the-end", "last-line", "header"],
)
def test_an_unclosed_quote_is_an_error_at_its_line(
    columns: int, line: int, text: str, says: str
) -> None:
    error = read_error(with_line(customers(1000, columns=columns), line, text))
    assert error.message == f"in.csv, line {line}: {says}"
    assert error.hint and "quote" in error.hint
    assert error.exit_code == ExitCode.USAGE


def test_an_unclosed_quote_on_the_last_line_without_a_final_newline() -> None:
    error = read_error(b'email\na@b.co\n"c@d.co')
    assert error.message == f"in.csv, line 3: {_NEVER_CLOSED}"


def test_the_issue_example_before_any_request(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(with_line(customers(1000), 6, '"The Boss,customer5@example.com'))
    result = sandbox.run("assign", "vip", str(path), "--json")
    assert result.exit_code == ExitCode.USAGE, result.stdout
    assert "in.csv, line 6: a quote" in result.stderr
    assert sandbox.tenant.requests == []


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        (
            {6: '"The Boss,customer5@example.com', 9: '"Smith, J",customer8@example.com'},
            'line 6: a quote (") opened here closes on line 9 in the middle of a cell',
        ),
        (
            {6: '"The Boss,customer5@example.com', 8: 'Customer 7",customer7@example.com'},
            'line 6: a quote (") opened here swallows what reads as a row of its own (on line 6)',
        ),
        (
            {6: '"The Boss,customer5@example.com', 7: 'Customer 6",customer6@example.com'},
            'line 6: a quote (") opened here swallows what reads as a row of its own (on line 6)',
        ),
        (
            {6: 'Customer 5,"customer5@example.com', 7: 'customer6@example.com",x'},
            "line 6: the email cell runs over 2 lines",
        ),
        (
            {6: 'Customer 5,customer5@example.com,"note', 7: 'Customer 6",customer6@example.com'},
            "line 6: a record over 2 lines with 4 cells, where the first record has 2",
        ),
        (
            {1: 'name,email,"note', 2: 'Customer 1",customer1@example.com'},
            'line 1: the header runs over 2 lines: is a quote (") not closed?',
        ),
    ],
    ids=[
        "closed-by-a-later-quote",
        "closed-at-a-cell-end",
        "two-lines",
        "email",
        "more-cells",
        "header",
    ],
)
def test_a_quote_that_swallows_rows_within_the_bound_is_an_error(
    changes: dict[int, str], says: str
) -> None:
    lines = customers(20)
    for number, text in changes.items():
        lines[number - 1] = text
    error = read_error(("\n".join(lines) + "\n").encode())
    assert error.message.startswith(f"in.csv, {says}")


def test_a_record_may_span_up_to_the_bound() -> None:
    address = "\n".join(f"line {n}" for n in range(MAX_RECORD_LINES))
    ok = f'name,email,address\nAda,a@b.co,"{address}"\nBob,b@c.co,x\n'
    assert emails_of(ok.encode()) == [(2, "a@b.co"), (2 + MAX_RECORD_LINES, "b@c.co")]
    error = read_error(ok.replace("line 0", "line 0\nmore").encode())
    assert error.message == f"in.csv, line 2: {_STILL_OPEN}"


def test_an_address_over_three_lines_keeps_working() -> None:
    data = b'Name,Email,Address\nAda,a@b.co,"12 Main St\nSydney, NSW\n2000"\nBob,b@c.co,\n'
    assert emails_of(data) == [(2, "a@b.co"), (5, "b@c.co")]


_REAL_READER = csv.reader


class _Dropping:
    """A csv reader that loses lines the way a quoting bug would: it reads two per record."""

    def __init__(self, lines: Iterator[str], delimiter: str) -> None:
        self._reader = _REAL_READER(lines, delimiter=delimiter)
        self.line_num = 0

    def __next__(self) -> list[str]:
        cells = next(self._reader)
        return next(self._reader, cells)


class _Stopping:
    """A csv reader that ends after two records, whatever the file holds."""

    def __init__(self, lines: Iterator[str], delimiter: str) -> None:
        self._reader = _REAL_READER(lines, delimiter=delimiter)
        self.line_num = 0
        self._left = 2

    def __next__(self) -> list[str]:
        self._left -= 1
        if self._left < 0:
            raise StopIteration
        return next(self._reader)


@pytest.mark.parametrize(
    ("reader", "says"),
    [
        (_Dropping, "in.csv, line 1: 2 lines read but 1 accounted for"),
        (_Stopping, "in.csv: 2 lines read but 2 accounted for"),
    ],
)
def test_every_line_read_is_accounted_for(
    monkeypatch: pytest.MonkeyPatch, reader: type, says: str
) -> None:
    monkeypatch.setattr(csv, "reader", reader)
    error = read_error(b"email\na@b.co\nc@d.co\ne@f.co\n")
    assert error.message.startswith(says)


_NOTE = st.text(
    st.characters(blacklist_characters="\r\x00@", blacklist_categories=["Cs"]), max_size=20
)


@given(
    rows=st.lists(st.tuples(_NOTE, addresses, _NOTE), min_size=1, max_size=12),
    delimiter=st.sampled_from(DELIMITERS),
    eol=st.sampled_from(["\n", "\r\n"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
)
def test_any_well_quoted_file_reads_back_whole(
    rows: list[tuple[str, str, str]], delimiter: str, eol: str, quoting: Literal[0, 1]
) -> None:
    rows = [
        (name, email, note)
        for name, email, note in rows
        if (name + note).count("\n") < MAX_RECORD_LINES
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=eol, quoting=quoting)
    writer.writerow(["Name", "Email", "Note"])
    writer.writerows(rows)
    expected, line = [], 2
    for name, email, note in rows:
        expected.append((line, email))
        line += 1 + (name + note).count("\n")
    assert emails_of(buffer.getvalue().encode()) == expected


@given(
    count=st.integers(1, 30),
    columns=st.sampled_from([2, 3]),
    data=st.data(),
)
def test_a_stray_quote_never_loses_a_row_silently(
    count: int, columns: int, data: st.DataObject
) -> None:
    lines = customers(count, columns=columns)
    for _ in range(data.draw(st.integers(1, 2), label="quotes")):
        number = data.draw(st.integers(0, len(lines) - 1), label="line")
        at = data.draw(st.integers(0, len(lines[number])), label="at")
        lines[number] = lines[number][:at] + '"' + lines[number][at:]
    outcome = _lines_or_error(("\n".join(lines) + "\n").encode())
    if isinstance(outcome, str):
        assert outcome.startswith("in.csv, line ")
    else:
        assert outcome == list(range(2, count + 2))


def _lines_or_error(data: bytes) -> list[int] | str:
    """The line of every row read, or the message of the error that stopped the reading."""
    try:
        return [row.line for row in read(data)[1]]
    except InputError as error:
        return error.message


# --- open_input ------------------------------------------------------------------------------


def test_open_input_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"email\na@b.co\n")
    with open_input(str(path)) as stream:
        _, rows = read_rows(stream, name=str(path))
        assert list(rows) == [InputRow(2, "a@b.co")]
    assert stream.closed


def test_open_input_dash_is_stdin_and_leaves_it_open() -> None:
    stdin = io.BytesIO(b"a@b.co\n")
    with open_input("-", stdin=stdin) as stream:
        assert stream is stdin
        _, rows = read_rows(stream, name="<stdin>")
        assert list(rows) == [InputRow(1, "a@b.co")]
    assert not stdin.closed


def test_open_input_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(InputError) as caught, open_input(str(path)):
        pass
    assert caught.value.message == f"Cannot read {path}: No such file or directory"
    assert caught.value.exit_code == ExitCode.USAGE


def test_open_input_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^Cannot read "), open_input(str(tmp_path)):
        pass


# --- the email policy ------------------------------------------------------------------------


@given(st.emails())
def test_generated_addresses_are_valid(email: str) -> None:
    assert is_valid_email(email)


@given(addresses, st.data())
def test_whitespace_makes_an_address_invalid(email: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(email)))
    space = data.draw(st.sampled_from([" ", "\t", "\u00a0", "\n"]))
    assert not is_valid_email(email[:at] + space + email[at:])


@given(addresses, addresses)
def test_two_ats_make_an_address_invalid(first: str, second: str) -> None:
    assert not is_valid_email(first.partition("@")[0] + "@" + second)


@given(st.lists(_atom, min_size=1, max_size=3), _label)
def test_a_domain_without_a_dot_is_invalid(local: list[str], domain: str) -> None:
    assert not is_valid_email(".".join(local) + "@" + domain)


@pytest.mark.parametrize(
    "email",
    [
        "a@b.co",
        "Grace.Hall@Example.com",
        "first.last+tag@sub.example.co.uk",
        "o'brien@example.ie",
        "!#$%&'*+/=?^_`{|}~-@example.com",
        '"john doe"@example.com',
        '"a@b"@example.com',
        '"with \\"escaped\\" quotes"@example.com',
        "josé@exämple.com",
        "用户@例子.广告",
        "x@1.2.3.example",
        "a@xn--p1ai.xn--p1ai",
        "a" * 64 + "@example.com",
        "a@" + "b" * 63 + ".com",
        "a@" + ".".join(["b" * 61] * 4) + ".co",  # 250 characters of domain, 252 in all
    ],
)
def test_valid_addresses(email: str) -> None:
    assert is_valid_email(email)


@pytest.mark.parametrize(
    "email",
    [
        "",
        "a",
        "@",
        "a@",
        "@b.co",
        "a@b",
        "a@@b.co",
        "a@b@c.co",
        "a b@c.co",
        " a@b.co",
        "a@b.co ",
        ".a@b.co",
        "a.@b.co",
        "a..b@c.co",
        "a@b..co",
        "a@.b.co",
        "a@b.co.",
        "a@-b.co",
        "a@b-.co",
        "a@b_c.co",
        "a@b.123",
        "a@[192.168.0.1]",
        "a(b)@c.co",
        "a,b@c.co",
        '"unclosed@b.co',
        '"a"b@c.co',
        '"tab\there"@b.co',
        "a\x00@b.co",
        "a" * 65 + "@example.com",
        "a@" + "b" * 64 + ".com",
        "a@" + ".".join(["b" * 63] * 4) + ".co",  # 258 characters of domain
        "a" * 64 + "@" + ".".join(["b" * 62] * 3) + ".co",  # 256 characters in all
    ],
)
def test_invalid_addresses(email: str) -> None:
    assert not is_valid_email(email)


def test_normalize_email_trims_every_kind_of_space_and_keeps_case() -> None:
    assert normalize_email("\u00a0 \tGrace@Example.com\u200b\ufeff\r\n") == "Grace@Example.com"
    assert normalize_email("a b@c.co") == "a b@c.co"


@given(st.one_of(st.text(alphabet=st.characters(max_codepoint=127)), st.emails()))
def test_an_ascii_cell_normalises_as_the_full_policy_does(cell: str) -> None:
    """The ASCII short cut (``str.strip``, no NFC) gives what the general path gives."""
    start, end = 0, len(cell)
    while start < end and (cell[start].isspace() or unicodedata.category(cell[start]) == "Cf"):
        start += 1
    while end > start and (cell[end - 1].isspace() or unicodedata.category(cell[end - 1]) == "Cf"):
        end -= 1
    general = unicodedata.normalize("NFC", cell[start:end])
    assert normalize_email(cell) == general
    assert email_key(cell) == unicodedata.normalize("NFC", general.lower())


def test_lookup_forms_examples() -> None:
    assert lookup_forms("Grace.Hall@Example.com") == [
        "Grace.Hall@Example.com",
        "grace.hall@example.com",
    ]
    assert lookup_forms("a@b.co") == ["a@b.co"]
    assert lookup_forms("  a@b.co\u00a0") == ["a@b.co"]


@given(st.one_of(addresses, st.emails(), st.text()))
def test_lookup_forms_properties(email: str) -> None:
    forms = lookup_forms(email)
    assert forms[0] == normalize_email(email)
    assert len(forms) == len(set(forms)) <= 2
    assert {email_key(form) for form in forms} == {email_key(email)}
    if len(forms) == 2:
        assert forms[1] == forms[0].lower()
    assert (len(forms) == 2) == (forms[0] != forms[0].lower())


@given(addresses, st.sampled_from(["", " ", "\u00a0", "\t"]))
def test_same_email_ignores_case_and_surrounding_space(email: str, space: str) -> None:
    assert same_email(email, space + email.upper() + space)
    assert email_key(space + email.swapcase()) == email.lower()


def test_different_addresses_are_not_the_same() -> None:
    assert not same_email("a@b.co", "a@b.com")
    assert not same_email("Straße@b.de", "strasse@b.de")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Grace@Example.com", "grace@example.com"),
        ("\u200bA@b.co\u200e", "a@b.co"),
        ("\ufeff a@b.co\u00a0\u2060", "a@b.co"),
        ("Jose\u0301@b.co", "jos\u00e9@b.co"),
        ("\u00c9LAN@b.co", "\u00e9lan@b.co"),
        ("STRASSE@b.de", "strasse@b.de"),
    ],
)
def test_the_same_address(a: str, b: str) -> None:
    assert email_key(a) == email_key(b)
    assert same_email(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Stra\u00dfe@b.de", "strasse@b.de"),  # MySQL collations disagree on the sharp s
        ("\u017fam@b.co", "sam@b.co"),  # casefold() would fold the long s; lower() does not
        ("a\u200b@b.co", "a@b.co"),  # only the surrounding invisible characters are trimmed
        ("a@b.co", "a@b.com"),
    ],
)
def test_not_the_same_address(a: str, b: str) -> None:
    assert email_key(a) != email_key(b)
    assert not same_email(a, b)


def test_an_input_row_carries_its_address_and_key() -> None:
    row = InputRow(3, " \u00a0Grace@Exa\u0301mple.com\u200b")
    assert row.key == " \u00a0Grace@Exa\u0301mple.com\u200b"
    assert row.address == "Grace@Ex\u00e1mple.com"
    assert row.canonical == "grace@ex\u00e1mple.com"
    assert row == InputRow(3, row.key)


@given(st.one_of(addresses, st.emails(), st.text()), st.text(" \t\u00a0\u200b\ufeff\u200e"))
def test_the_policy_is_one_function(raw: str, space: str) -> None:
    key = email_key(raw)
    address = normalize_email(raw)
    assert normalize_email(address) == address
    assert email_key(address) == key == email_key(key)
    assert email_key(space + raw.upper() + space) == email_key(raw.upper())
    assert InputRow(1, raw).canonical == key and InputRow(1, raw).address == address
    assert lookup_forms(raw)[-1] == key
    assert same_email(raw, space + raw + space)
