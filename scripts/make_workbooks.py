"""Write the workbooks the tests read (tests/workbooks/) and the example (examples/tiers.xlsx).

The test workbooks are saved by LibreOffice, as a spreadsheet saves them: a formula keeps the
value it last showed, an error cell is a real ``#N/A``, and the .xls and .ods are the same
workbook in those formats. They are committed, so neither the tests nor CI need LibreOffice;
run this only to change them (it needs ``soffice`` on the PATH, e.g. Debian's
``libreoffice-calc-nogui``, and msoffcrypto-tool for the password-protected one):

    uv run --with msoffcrypto-tool python scripts/make_workbooks.py

``tests/test_sheets.py`` says what each row holds and what it must give.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from openpyxl import Workbook

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests" / "workbooks"
EXAMPLE = ROOT / "examples" / "tiers.xlsx"
PASSWORD = "secret"  # noqa: S105 - the protected fixture's, on purpose

CUSTOMERS: list[list[Any]] = [
    ["email", "mobile", "tier"],
    ["ava.nguyen@example.com", 61412000001, "gold"],  # a mobile stored as a number
    ["Ben.Carter@Example.com", "+61412000002", "silver"],  # stored as text
    [None, None, None],  # a blank row in the middle: row 5 is still row 5
    ['=LOWER("CHLOE.MARTIN@EXAMPLE.COM")', "=61412000000+3", "gold"],  # formulas
    ["=NA()", "=NA()", "platinum"],  # error cells
    ["grace.hall@example.com", 61412000004.5, "gold"],  # not a whole number
    ["isla.wright@example.com", 6141200000412345, "silver"],  # more digits than kept exactly
]
ARCHIVE: list[list[Any]] = [
    [],
    [],
    ["E-mail Address", "Note"],  # the header on row 3, under two blank rows
    ["old.one@example.com", "left in May"],
    ["old.two@example.com", None],
]
TIERS: list[list[Any]] = [
    row.split(",") for row in (ROOT / "examples" / "tiers.csv").read_text().splitlines()
]
"""The example's first sheet: the rows of examples/tiers.csv, so the two give the same run."""
LEFT: list[list[Any]] = [["email", "left on"], ["member01@example.com", "2026-05-31"]]


def workbook(sheets: dict[str, list[list[Any]]]) -> Workbook:
    """A workbook with these sheets, in order, each filled row by row."""
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    return book


def saved_by_libreoffice(source: Path, suffix: str, out: Path) -> Path:
    """``source`` opened and saved again by LibreOffice as ``suffix`` (formulas calculated)."""
    subprocess.run(
        ["soffice", "--headless", "--convert-to", suffix, "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        env={"HOME": str(out), "PATH": "/usr/bin:/bin"},
    )
    return out / f"{source.stem}.{suffix}"


def encrypted(plain: Path, target: Path) -> None:
    """``plain`` (an .xlsx) encrypted with :data:`PASSWORD`, as Excel's "Encrypt with
    Password" does."""
    from msoffcrypto.format.ooxml import OOXMLFile

    with plain.open("rb") as source, target.open("wb") as out:
        OOXMLFile(source).encrypt(PASSWORD, out)


def main() -> int:
    if shutil.which("soffice") is None:
        print("soffice (LibreOffice) is needed: apt-get install libreoffice-calc-nogui")
        return 1
    TESTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "customers.xlsx"
        workbook({"Customers": CUSTOMERS, "Archive": ARCHIVE, "Empty": []}).save(source)
        out = work / "out"
        for suffix in ("xlsx", "xls", "ods"):
            shutil.copy(saved_by_libreoffice(source, suffix, out), TESTS / f"customers.{suffix}")
        encrypted(TESTS / "customers.xlsx", TESTS / "protected.xlsx")
    workbook({"Customers": TIERS, "Left": LEFT}).save(EXAMPLE)
    for path in [*sorted(TESTS.glob("*.*")), EXAMPLE]:
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
