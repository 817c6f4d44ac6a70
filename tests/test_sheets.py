"""Workbooks read as they are (.xlsx, .xls, .ods): the sheet's rows as the CSV reader's records,
its row numbers as lines, cells turned into text honestly, and every problem one clear error.

The workbooks in tests/workbooks/ were saved by LibreOffice (scripts/make_workbooks.py): the
same workbook in the three formats. Its sheet ``Customers``:

    row 1  email                            | mobile            | tier
    row 2  ava.nguyen@example.com           | 61412000001 (a number)
    row 3  Ben.Carter@Example.com           | '+61412000002 (text)
    row 4  (blank)
    row 5  =LOWER("CHLOE.MARTIN@...")       | =61412000000+3    (formulas: their saved values)
    row 6  =NA()                            | =NA()             (error cells)
    row 7  grace.hall@example.com           | 61412000004.5     (not a whole number)
    row 8  isla.wright@example.com          | 6141200000412345  (more than 15 digits)

``Archive`` has its header (``E-mail Address``, ``Note``) on row 3 and two rows; ``Empty`` is
empty. ``protected.xlsx`` is ``customers.xlsx`` encrypted with a password.
"""

from __future__ import annotations

import datetime
import io
import json
from pathlib import Path
from typing import cast

import pytest
from typer.testing import CliRunner

from omneo_status import cli, source
from omneo_status.errors import InputError, UsageError
from omneo_status.inputs import InputRow, read_rows
from omneo_status.keys import MatchKey
from omneo_status.sheets import BLANK, EMPTY, Refused, cell_text
from omneo_status.source import journal_rows, prepared_input

from .conftest import Sandbox, report_rows, summary_of

WORKBOOKS = Path(__file__).resolve().parent / "workbooks"
FORMATS = ["xlsx", "xls", "ods"]
MOBILE = MatchKey.parse("mobile")
FRACTION = "a number cell with a fraction, not digits: store the column as text"
DIGITS = (
    "a number cell of more than 15 digits: a spreadsheet keeps only 15 exactly, so the last ones"
    " may be lost; store the column as text"
)


def book(suffix: str) -> Path:
    return WORKBOOKS / f"customers.{suffix}"


def rows_of(
    data: bytes, *, sheet: str | None = None, column: str | None = None, match: str = "email"
) -> list[InputRow]:
    _, rows = read_rows(
        io.BytesIO(data), name="book", column=column, rule=MatchKey.parse(match).rule, sheet=sheet
    )
    return list(rows)


def error_of(data: bytes, *, sheet: str | None = None) -> InputError:
    with pytest.raises(InputError) as caught:
        rows_of(data, sheet=sheet)
    return caught.value


# -- the cell policy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("ava@example.com", "ava@example.com"),
        (" kept as read ", " kept as read "),
        (61400000001.0, "61400000001"),  # shown as 6.14E+10: its digits are exact
        (6.14e10, "61400000000"),
        (61412000003, "61412000003"),
        (-5.0, "-5"),
        (999_999_999_999_999.0, "999999999999999"),  # 15 digits: still exact
    ],
)
def test_text_and_whole_numbers_become_their_text(value: str | float, text: str) -> None:
    cell = cell_text(value)
    assert cell == text and not isinstance(cell, Refused)


@pytest.mark.parametrize(
    ("value", "text", "reason"),
    [
        (61412000004.5, "61412000004.5", FRACTION),
        (6141200000412345.0, "6141200000412345.0", DIGITS),
        (10**15, "1000000000000000", DIGITS),
        (True, "TRUE", "a TRUE/FALSE cell, not text"),
        (False, "FALSE", "a TRUE/FALSE cell, not text"),
        (datetime.date(2026, 1, 31), "2026-01-31", "a date cell, not text"),
        (datetime.datetime(2026, 1, 31, 9, 30), "2026-01-31T09:30:00", "a date cell, not text"),
        (datetime.time(9, 30), "09:30:00", "a time cell, not text"),
        (datetime.timedelta(hours=36), "1 day, 12:00:00", "a duration cell, not text"),
        ("", "", EMPTY.reason),
    ],
)
def test_cells_that_cannot_be_a_key_are_refused_with_the_reason(
    value: bool | float | datetime.date | datetime.time | datetime.timedelta | str,
    text: str,
    reason: str,
) -> None:
    cell = cell_text(value)
    assert isinstance(cell, Refused)
    assert (str(cell), cell.reason) == (text, reason)


def test_a_refused_cell_settles_its_row_whatever_the_key_rule_thinks_of_its_text(
    tmp_path: Path,
) -> None:
    row = InputRow(7, Refused("61412000004.5", FRACTION), MatchKey.parse("identity:shop").rule)
    assert row.refused == FRACTION and type(row.key) is str and row.key == "61412000004.5"
    # As an identifier "61412000004.5" would be valid: the reason wins.
    assert row.rule.is_valid(row.address)
    assert InputRow(2, "a@b.co").refused is None


# -- a sheet's rows as records ----------------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
def test_the_first_sheet_by_its_header_with_the_sheets_row_numbers(suffix: str) -> None:
    layout, rows = read_rows(io.BytesIO(book(suffix).read_bytes()), name="customers")
    found = [(row.line, row.key, row.refused) for row in rows]
    assert layout.sheet == "Customers" and layout.has_header and layout.column_name == "email"
    assert found == [
        (2, "ava.nguyen@example.com", None),
        (3, "Ben.Carter@Example.com", None),
        (4, "", BLANK.reason),  # a blank row among the rows is a row: it may be all errors
        (5, "chloe.martin@example.com", None),  # the formula's saved value
        (6, "", EMPTY.reason),  # =NA(): the reader reads an error cell as empty
        (7, "grace.hall@example.com", None),
        (8, "isla.wright@example.com", None),
    ]


@pytest.mark.parametrize("suffix", FORMATS)
def test_mobiles_stored_as_numbers_are_their_digits_only_when_exact(suffix: str) -> None:
    rows = rows_of(book(suffix).read_bytes(), match="mobile")
    found = {row.line: (row.address, row.refused) for row in rows}
    assert found == {
        2: ("61412000001", None),
        3: ("+61412000002", None),
        4: ("", BLANK.reason),
        5: ("61412000003", None),  # a formula: its value
        6: ("", EMPTY.reason),
        7: ("61412000004.5", FRACTION),
        8: (found[8][0], DIGITS),
    }
    # LibreOffice's .xlsx keeps 15 digits (...2350); its .xls and .ods the value typed (...2345)
    assert found[8][0] in {"6141200000412345.0", "6141200000412350.0"}


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("sheet", ["Archive", "archive", " 2 "])
def test_sheet_by_name_or_number_and_the_header_found_below_blank_rows(
    suffix: str, sheet: str
) -> None:
    layout, rows = read_rows(io.BytesIO(book(suffix).read_bytes()), name="b", sheet=sheet)
    assert layout.sheet == "Archive" and layout.column_name == "E-mail Address"
    assert [(row.line, row.key) for row in rows] == [
        (4, "old.one@example.com"),
        (5, "old.two@example.com"),
    ]


def test_the_column_is_named_with_column_as_in_a_csv() -> None:
    data = book("xlsx").read_bytes()
    assert [row.key for row in rows_of(data, sheet="Archive", column="note")] == ["left in May", ""]
    with pytest.raises(InputError) as caught:
        rows_of(data, column="Phone")
    assert caught.value.message == (
        "book, sheet 'Customers', line 1: no column named 'Phone' (header: email, mobile, tier)"
    )


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("sheet", ["Nope", "0", "4"])
def test_an_unknown_sheet_lists_the_sheets(suffix: str, sheet: str) -> None:
    error = error_of(book(suffix).read_bytes(), sheet=sheet)
    assert error.message == (
        f"book: no sheet {sheet!r}; the workbook has 3 sheets: 1 'Customers', 2 'Archive',"
        " 3 'Empty'"
    )
    assert error.hint == "Pick one with --sheet NAME or --sheet NUMBER (1 is the first)."


@pytest.mark.parametrize("suffix", FORMATS)
def test_an_empty_sheet_is_an_error(suffix: str) -> None:
    error = error_of(book(suffix).read_bytes(), sheet="Empty")
    assert error.message == "book, sheet 'Empty': the sheet is empty"


def test_sheet_is_refused_for_a_csv() -> None:
    with pytest.raises(UsageError) as caught:
        rows_of(b"email\na@b.co\n", sheet="1")
    assert caught.value.message == "--sheet '1': book is read as a CSV, not a workbook"


class _Pipe:
    """A stream that cannot seek, read a few bytes at a time."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 100) if size >= 0 else -1)


def test_a_workbook_from_a_pipe_is_read_whole() -> None:
    pipe = cast(io.BytesIO, _Pipe(book("ods").read_bytes()))
    _, rows = read_rows(pipe, name="-")
    assert [row.line for row in rows] == [2, 3, 4, 5, 6, 7, 8]


# -- workbooks that cannot be read ------------------------------------------------------------


def test_a_password_protected_workbook() -> None:
    error = error_of((WORKBOOKS / "protected.xlsx").read_bytes())
    assert error.message == "book: the workbook is password-protected"
    assert error.hint and "without the password" in error.hint


def test_a_password_protected_opendocument_workbook() -> None:
    import zipfile

    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr(
            "META-INF/manifest.xml",
            '<manifest:manifest><manifest:file-entry manifest:full-path="content.xml">'
            "<manifest:encryption-data/></manifest:file-entry></manifest:manifest>",
        )
        archive.writestr("content.xml", b"\x8f\x12 encrypted bytes")
    assert error_of(data.getvalue()).message == "book: the workbook is password-protected"


@pytest.mark.parametrize(
    ("suffix", "size"),
    [("xlsx", 3000), ("ods", 9000), ("xls", 5632), ("xls", 1024)],
    ids=["xlsx", "ods", "xls-panics", "xls-sectors"],
)
def test_a_damaged_workbook_is_one_clear_error(suffix: str, size: int) -> None:
    error = error_of(book(suffix).read_bytes()[:size])
    assert error.message.startswith(
        "book: this looks like a workbook (.xlsx, .xls or .ods) but it cannot be read:"
        " damaged, or password-protected? ("
    )


def test_an_excel_97_file_cut_short_says_so() -> None:
    error = error_of(book("xls").read_bytes()[:5000])
    assert error.message == (
        "book: the workbook is cut short (5,000 bytes, where an Excel 97-2003 file is made of"
        " whole 512-byte sectors)"
    )


def test_a_workbook_without_a_worksheet() -> None:
    import re
    import zipfile

    source, data = zipfile.ZipFile(book("xlsx")), io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for item in source.infolist():
            part = source.read(item.filename)
            if item.filename == "xl/workbook.xml":  # its list of sheets emptied
                part = re.sub(rb"<sheets>.*</sheets>", b"<sheets/>", part, flags=re.DOTALL)
            archive.writestr(item, part)
    assert error_of(data.getvalue()).message == "book: the workbook has no worksheet"


def test_a_zip_that_is_no_workbook() -> None:
    import zipfile

    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("emails.csv", "email\na@b.co\n")
    assert "cannot be read" in error_of(data.getvalue()).message


# -- the input of a run -----------------------------------------------------------------------


def test_another_sheet_is_another_job_and_the_same_sheet_by_number_the_same(
    tmp_path: Path,
) -> None:
    path = str(book("xlsx"))
    digests = {}
    for sheet in (None, "Customers", "1", "Archive", "2"):
        with prepared_input(path, None, state_dir=tmp_path, sheet=sheet) as prepared:
            digests[sheet] = prepared.digest
            assert prepared.label == f"{path}, sheet {prepared.sheet!r}"
    assert digests[None] == digests["Customers"] == digests["1"]
    assert digests["Archive"] == digests["2"] != digests[None]


def test_a_large_sheet_is_read_again_by_its_name_and_gives_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(book("ods"))
    with prepared_input(path, None, state_dir=tmp_path, sheet="2") as small:
        from_memory = list(journal_rows(small))
    monkeypatch.setattr(source, "KEPT_ROWS", 1)
    with prepared_input(path, None, state_dir=tmp_path, sheet="2") as large:
        from_file = list(journal_rows(large))
    assert large.kept is None and large.sheet == "Archive"
    assert from_file == from_memory and [row.line for row in from_file] == [4, 5]


def test_refused_cells_are_settled_with_their_reason(tmp_path: Path) -> None:
    with prepared_input(str(book("xls")), None, state_dir=tmp_path, match=MOBILE) as prepared:
        settled = {row.line: (row.outcome, row.detail) for row in journal_rows(prepared)}
    assert settled[2] == (None, "") and settled[5] == (None, "")
    assert settled[7] == (MOBILE.invalid, FRACTION)
    assert settled[8] == (MOBILE.invalid, DIGITS)
    assert settled[6] == (MOBILE.invalid, EMPTY.reason)


# -- end to end, against the sandbox ----------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
def test_assign_from_a_workbook(sandbox: Sandbox, tmp_path: Path, suffix: str) -> None:
    report = tmp_path / "report.csv"
    result = sandbox.run("assign", "vip", str(book(suffix)), "--json", "--report", str(report))
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["input"] == f"{book(suffix)}, sheet 'Customers'"
    rows = {int(row["line"]): row for row in report_rows(report)}
    assert sorted(rows) == [2, 3, 4, 5, 6, 7, 8]
    assert rows[5]["email"] == "chloe.martin@example.com"
    assert (rows[4]["outcome"], rows[4]["detail"]) == ("invalid_email", BLANK.reason)
    assert (rows[6]["outcome"], rows[6]["detail"]) == ("invalid_email", EMPTY.reason)
    assert doc["counts"]["invalid_email"] == 2 and doc["rows"] == 7
    assert "vip" in sandbox.statuses("ava.nguyen@example.com")


def test_by_mobile_a_number_cell_matches_its_digits_and_an_inexact_one_is_refused(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    tenant = sandbox.tenant
    [ava] = tenant.by_email("ava.nguyen@example.com")
    tenant.set_mobile(ava.id, "61412000001")  # the tenant stores it as the cell's digits
    report = tmp_path / "report.csv"
    args = ["assign", "vip", str(book("ods")), "--match", "mobile", "--report", str(report)]
    result = sandbox.run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    rows = {int(row["line"]): row for row in report_rows(report)}
    assert (rows[2]["mobile"], rows[2]["outcome"]) == ("61412000001", "assigned")
    assert rows[3]["outcome"] == "assigned"  # text '+61412000002' is Ben's number as written
    assert (rows[7]["outcome"], rows[7]["detail"]) == ("invalid_key", FRACTION)
    assert (rows[8]["outcome"], rows[8]["detail"]) == ("invalid_key", DIGITS)
    asked = [r.path for r in tenant.requests if "mobile" in r.path]
    assert not any("61412000004" in path or "6141200000412" in path for path in asked)
    assert ava.statuses == ["vip"]


def test_the_column_of_another_sheet_by_column(sandbox: Sandbox) -> None:
    args = ["remove", "vip", str(book("xls")), "--sheet", "Archive", "--column", "E-mail Address"]
    result = sandbox.run(*args, "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["input"].endswith(", sheet 'Archive'") and doc["rows"] == 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--sheet", "Nope"), "no sheet 'Nope'; the workbook has 3 sheets: 1 'Customers'"),
        (("--sheet", "Empty"), "sheet 'Empty': the sheet is empty"),
    ],
)
def test_sheet_errors_are_one_line_and_exit_2(
    sandbox: Sandbox, args: tuple[str, ...], says: str
) -> None:
    result = sandbox.run("sync", "vip", str(book("xlsx")), *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and says in lines[0]
    assert all(line.startswith(("Error: ", "Hint: ")) for line in lines)
    assert sandbox.writes() == []


def test_a_protected_workbook_as_json(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", str(WORKBOOKS / "protected.xlsx"), "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"].endswith("the workbook is password-protected")
    assert "Traceback" not in result.stderr


def test_a_workbook_on_standard_input(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "assign", "vip", "-", "--dry-run", "--json", input=book("xls").read_bytes()
    )
    assert result.exit_code == 0, result.stderr
    assert summary_of(result)["input"] == "<stdin>, sheet 'Customers'"


def test_the_plan_and_the_runs_list_name_the_sheet(
    monkeypatch: pytest.MonkeyPatch, runtime: cli.Runtime
) -> None:
    from omneo_status.sandbox import ServerThread, create_app, demo_tenant

    runtime.interactive = lambda: True
    runner = CliRunner()
    path = str(WORKBOOKS / "customers.xlsx")
    with ServerThread(create_app(demo_tenant())) as server:
        monkeypatch.setenv("OMNEO_BASE_URL", server.base_url)
        monkeypatch.setenv("OMNEO_TOKEN", "sandbox-token")
        asked = runner.invoke(cli.app, ["assign", "vip", path, "--sheet", "1"], input="n\n")
    assert asked.exit_code == 1
    assert f"Input: {path}, sheet 'Customers'" in " ".join(asked.stderr.split())
    listed = runner.invoke(cli.app, ["runs", "--json"])
    assert json.loads(listed.stdout)[0]["input"] == f"{path}, sheet 'Customers'"
