"""The per-row CSV report."""

from __future__ import annotations

import csv
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omneo_status.errors import ExitCode, OmneoStatusError
from omneo_status.models import Outcome
from omneo_status.report import (
    REPORT_COLUMNS,
    ReportError,
    ReportRow,
    check_report_target,
    read_report,
    safe_cell,
    write_report,
)

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

ROWS = [
    ReportRow(2, "a@b.co", Outcome.ASSIGNED, profile_id="p-1", batch_id="b-1"),
    ReportRow(3, "Grace@Example.com", Outcome.ALREADY_HAD, profile_id="p-2"),
    ReportRow(4, "not an email", Outcome.INVALID_EMAIL, detail="no @"),
    ReportRow(5, "", Outcome.INVALID_EMAIL, detail='said "hi", then\nleft'),
    ReportRow(6, "zoë@exämple.com", Outcome.NOT_FOUND),
]


def test_header_and_rows_in_order(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    assert write_report(path, ROWS) == len(ROWS)
    data = path.read_bytes()
    assert data.startswith(b"line,email,outcome,profile_id,batch_id,detail\n")
    assert b"\r\n" not in data
    assert not data.startswith(b"\xef\xbb\xbf")
    with path.open(encoding="utf-8", newline="") as stream:
        cells = list(csv.reader(stream))
    assert tuple(cells[0]) == REPORT_COLUMNS
    assert cells[1:] == [
        ["2", "a@b.co", "assigned", "p-1", "b-1", ""],
        ["3", "Grace@Example.com", "already_had", "p-2", "", ""],
        ["4", "not an email", "invalid_email", "", "", "no @"],
        ["5", "", "invalid_email", "", "", 'said "hi", then\nleft'],
        ["6", "zoë@exämple.com", "not_found", "", "", ""],
    ]


def test_line_breaks_are_written_as_newlines(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write_report(path, [ReportRow(2, "a@b.co", Outcome.FAILED, detail="one\rtwo\r\nthree")])
    assert read_report(path)[0].detail == "one\ntwo\nthree"


def test_quoting_is_minimal(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write_report(path, [ReportRow(2, "a@b.co", Outcome.FAILED, detail="a, b")])
    assert path.read_text(encoding="utf-8").splitlines()[1] == '2,a@b.co,failed,,,"a, b"'


def test_read_report_gives_the_rows_back(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write_report(path, ROWS)
    assert read_report(path) == ROWS


def test_an_empty_report_has_the_header_only(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    assert write_report(path, []) == 0
    assert path.read_text(encoding="utf-8") == ",".join(REPORT_COLUMNS) + "\n"
    assert read_report(path) == []


def test_rows_are_streamed(tmp_path: Path) -> None:
    def rows() -> Iterator[ReportRow]:
        for line in range(2, 100_002):
            yield ReportRow(line, f"user{line}@example.com", Outcome.SENT)

    path = tmp_path / "report.csv"
    assert write_report(path, rows()) == 100_000
    with path.open(encoding="utf-8") as stream:
        assert sum(1 for _ in stream) == 100_001


def test_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "report.csv"
    write_report(path, ROWS[:1])
    assert read_report(path) == ROWS[:1]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_the_report_is_private(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    path.write_text("old")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_report(path, ROWS)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_formula_cells_are_made_safe(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    rows = [
        ReportRow(
            2,
            '=HYPERLINK("http://x")',
            Outcome.INVALID_EMAIL,
            profile_id="+1",
            batch_id="-2",
            detail="@SUM(A1)",
        ),
        ReportRow(3, "\tx@b.co", Outcome.INVALID_EMAIL, detail="\rx"),
    ]
    write_report(path, rows)
    assert read_report(path) == [
        ReportRow(
            2,
            '\'=HYPERLINK("http://x")',
            Outcome.INVALID_EMAIL,
            profile_id="'+1",
            batch_id="'-2",
            detail="'@SUM(A1)",
        ),
        ReportRow(3, "'\tx@b.co", Outcome.INVALID_EMAIL, detail="'\nx"),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+61 400", "'+61 400"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        ("a@b.co", "a@b.co"),
        ("'quoted", "'quoted"),
        ("", ""),
    ],
)
def test_safe_cell_examples(value: str, expected: str) -> None:
    assert safe_cell(value) == expected


@given(st.text())
def test_safe_cell_never_starts_a_formula(value: str) -> None:
    safe = safe_cell(value)
    assert not safe.startswith(FORMULA_STARTS)
    assert safe in (value, "'" + value)
    assert (safe == value) == (not value.startswith(FORMULA_STARTS))


def test_an_existing_report_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write_report(path, ROWS)
    write_report(path, ROWS[:1])
    assert read_report(path) == ROWS[:1]
    assert os.listdir(tmp_path) == ["report.csv"]


def test_a_failing_row_source_leaves_the_old_report_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write_report(path, ROWS)
    before = path.read_bytes()

    def rows() -> Iterator[ReportRow]:
        yield ROWS[0]
        raise RuntimeError("journal gone")

    with pytest.raises(RuntimeError, match="journal gone"):
        write_report(path, rows())
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["report.csv"]


def test_the_new_report_is_invisible_until_complete(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write_report(path, ROWS)
    before = path.read_bytes()
    seen: list[bytes] = []

    def rows() -> Iterator[ReportRow]:
        yield ROWS[0]
        seen.append(path.read_bytes())
        yield ROWS[1]

    write_report(path, rows())
    assert seen == [before]
    assert read_report(path) == ROWS[:2]


def test_a_parent_that_is_a_file_is_a_report_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    path = blocker / "report.csv"
    with pytest.raises(ReportError) as caught:
        write_report(path, ROWS)
    assert caught.value.message.startswith(f"Cannot write the report to {path}: ")
    assert caught.value.exit_code == ExitCode.FATAL
    assert isinstance(caught.value, OmneoStatusError)


def test_a_directory_in_the_way_is_a_report_error(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    path.mkdir()
    with pytest.raises(ReportError, match=r"^Cannot write the report to "):
        write_report(path, ROWS)
    assert sorted(os.listdir(tmp_path)) == ["report.csv"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_directory_is_a_report_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ReportError, match="Permission denied"):
        write_report(locked / "report.csv", ROWS)


def test_read_report_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"^Cannot read the report "):
        read_report(tmp_path / "missing.csv")
    path = tmp_path / "other.csv"
    path.write_text("email\na@b.co\n")
    with pytest.raises(ReportError, match="is not a report"):
        read_report(path)
    header = ",".join(REPORT_COLUMNS)
    path.write_text(f"{header}\n2,a@b.co,assigned\n")
    with pytest.raises(ReportError, match=r"line 2: 3 cells, not 6"):
        read_report(path)
    path.write_text(f"{header}\n2,a@b.co,exploded,,,\n")
    with pytest.raises(ReportError, match=r"line 2: 'exploded' is not a valid Outcome"):
        read_report(path)


def test_a_report_target_that_is_the_input_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("email\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OmneoStatusError) as caught:
        check_report_target(Path("./sub/../in.csv"), source=source)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "is the input file" in caught.value.message
    check_report_target(tmp_path / "report.csv", source=source)  # another name is fine


def test_a_report_target_must_be_a_writable_file(tmp_path: Path) -> None:
    with pytest.raises(OmneoStatusError, match="is a directory") as caught:
        check_report_target(tmp_path)
    assert caught.value.exit_code == ExitCode.USAGE
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OmneoStatusError, match="Cannot write the report"):
        check_report_target(blocker / "report.csv")
    check_report_target(tmp_path / "new" / "dir" / "report.csv")
    assert (tmp_path / "new" / "dir").is_dir()
    assert list((tmp_path / "new" / "dir").iterdir()) == []  # the probe left nothing behind


def test_a_report_of_statuses_per_row_has_a_status_column(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    rows = [
        ReportRow(2, "a@b.co", Outcome.MOVED, "p1", "b1", "silver -> gold", status="gold"),
        ReportRow(3, "c@d.co", Outcome.NO_STATUS, detail="the tier cell is empty", status=""),
    ]
    write_report(path, rows, statuses=True)
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header == "line,email,status,outcome,profile_id,batch_id,detail"
    assert read_report(path) == rows
    plain = tmp_path / "plain.csv"
    write_report(plain, [ReportRow(2, "a@b.co", Outcome.ASSIGNED, status="gold")])
    assert "status" not in plain.read_text(encoding="utf-8")
    assert read_report(plain)[0].status is None
