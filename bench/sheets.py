"""Reading a workbook: python-calamine against openpyxl, and the tool's own read, in time and
peak memory.

Writes a workbook of ``--rows`` rows (``email``, ``tier``, ``mobile`` as a number; 200,000 by
default) and the same rows as a CSV in a temporary directory, then runs each case in a process
of its own and reports its wall time, its CPU time and its peak RSS (``os.wait4``):

- ``python``: the interpreter alone (what every case's RSS starts from);
- ``calamine``: python-calamine opens the .xlsx and hands over every row;
- ``openpyxl``: openpyxl (``read_only=True, data_only=True``, its streaming mode) does the same;
- ``tool .xlsx``: ``source.prepared_input`` over the workbook, what a run does before its first
  request (every row read, checked, normalised and hashed);
- ``tool .csv``: the same over the CSV, for comparison;
- with ``--dry-run``, ``dry run .xlsx`` and ``dry run .csv``: ``omneo-status assign vip FILE
  --dry-run --lookup bulk`` against a sandbox of as many profiles (served on loopback by
  ``bench/throughput.py``'s helper), the whole run.

    uv run python bench/sheets.py               # 200,000 rows, about a minute on a loaded machine
    uv run python bench/sheets.py --dry-run     # and the dry runs, a few minutes more
    uv run python bench/sheets.py --rows 20000  # a smoke test
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TIERS = ("silver", "gold", "platinum")

READ_CALAMINE = """
import sys, python_calamine
book = python_calamine.CalamineWorkbook.from_path(sys.argv[1])
rows = sum(1 for _ in book.get_sheet_by_index(0).iter_rows())
print(rows)
"""
READ_OPENPYXL = """
import sys, openpyxl
book = openpyxl.load_workbook(sys.argv[1], read_only=True, data_only=True)
rows = sum(1 for _ in book.worksheets[0].iter_rows(values_only=True))
print(rows)
"""
READ_TOOL = """
import sys, tempfile
from pathlib import Path
from omneo_status.source import prepared_input
with prepared_input(sys.argv[1], None, state_dir=Path(tempfile.mkdtemp())) as read:
    print(read.rows + 1)  # and the header
"""


@dataclass(frozen=True)
class Measured:
    """One case: what it printed, and what it cost."""

    case: str
    rows: int
    wall: float
    cpu: float
    peak_mb: float


WRITE = """
import sys
from pathlib import Path
from openpyxl import Workbook
folder, rows = Path(sys.argv[1]), int(sys.argv[2])
book = Workbook(write_only=True)
sheet = book.create_sheet("Customers")
sheet.append(["email", "tier", "mobile"])
lines = ["email,tier,mobile"]
for n in range(1, rows + 1):  # the generated tenant's customer1 ... customerN
    email, tier, mobile = f"customer{n}@example.com", TIERS[n % 3], 61_400_000_000 + n
    sheet.append([email, tier, mobile])
    lines.append(f"{email},{tier},{mobile}")
book.save(folder / "customers.xlsx")
(folder / "customers.csv").write_text("\\n".join(lines) + "\\n", encoding="utf-8")
print(rows)
""".replace("TIERS", repr(TIERS))
"""Writes the workbook and the CSV, in a process of its own: the bench's own process stays
small, since a child's peak RSS starts from its parent's (the memory it was forked from)."""


def measure(case: str, code: str, *args: str) -> Measured:
    """Run ``code`` in a process of its own; its output, wall time, CPU and peak RSS."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    printed = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{case} failed")
    rows = int(printed.strip() or 0)
    return Measured(case, rows, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def dry_runs(work: Path, rows: int, *inputs: Path) -> list[Measured]:
    """``assign vip FILE --dry-run --lookup bulk`` over each input, against a sandbox of
    ``rows`` profiles. Imported last: the bench's process grows, and its children's peak RSS
    cannot start lower than it (these runs' own peaks are far above it)."""
    import throughput

    measured = []
    with throughput.sandbox(work, profiles=rows) as served:
        for path in inputs:
            print(f"dry run over {path.name} ...", file=sys.stderr)
            run = throughput.run_tool(served, work, path, ["--dry-run", "--lookup", "bulk"])
            throughput.accounted(run, rows)
            case = f"dry run {path.suffix}"
            measured.append(Measured(case, rows + 1, run.seconds, run.cpu, run.max_rss_mb))
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dry-run", action="store_true", help="also time whole dry runs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"writing {args.rows:,} rows ...", file=sys.stderr)
        measure("write", WRITE, tmp, str(args.rows))
        workbook, csv = Path(tmp) / "customers.xlsx", Path(tmp) / "customers.csv"
        size = workbook.stat().st_size / 1e6
        print(f"{workbook.name}: {size:.1f} MB; {csv.name}: {csv.stat().st_size / 1e6:.1f} MB")
        cases = [
            measure("python", "print(0)"),
            measure("calamine", READ_CALAMINE, str(workbook)),
            measure("openpyxl", READ_OPENPYXL, str(workbook)),
            measure("tool .xlsx", READ_TOOL, str(workbook)),
            measure("tool .csv", READ_TOOL, str(csv)),
        ]
        if args.dry_run:
            cases += dry_runs(Path(tmp), args.rows, workbook, csv)
    print("| case | rows | wall s | CPU s | peak RSS MB |\n| --- | ---: | ---: | ---: | ---: |")
    for m in cases:
        print(f"| {m.case} | {m.rows:,} | {m.wall:.2f} | {m.cpu:.2f} | {m.peak_mb:.0f} |")
    expected = args.rows + 1
    wrong = [m.case for m in cases[1:] if m.rows != expected]
    if wrong:
        print(f"these did not read {expected:,} rows: {', '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
