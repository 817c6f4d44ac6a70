"""The input read once before any request: small files are parsed once, large ones twice, and
the journal gets the same rows either way."""

from __future__ import annotations

from pathlib import Path

import pytest

from omneo_status import source
from omneo_status.source import journal_rows, prepared_input


def write(path: Path, count: int) -> Path:
    lines = ["email", *(f"person{n}@example.com" for n in range(count)), "not an email"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_small_file_is_loaded_from_the_rows_read_first(tmp_path: Path) -> None:
    csv = write(tmp_path / "small.csv", 3)
    with prepared_input(str(csv), None, state_dir=tmp_path) as prepared:
        csv.unlink()  # the journal's rows come from memory: the file is not read again
        rows = list(journal_rows(prepared))
    assert prepared.kept is not None and prepared.rows == 4
    assert [row.line for row in rows] == [2, 3, 4, 5]
    assert rows[-1].outcome is not None  # "not an email" is settled at once, as before


def test_a_large_file_is_read_again_and_gives_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = write(tmp_path / "large.csv", 5)
    with prepared_input(str(csv), None, state_dir=tmp_path) as small:
        from_memory = list(journal_rows(small))
    monkeypatch.setattr(source, "KEPT_ROWS", 2)
    with prepared_input(str(csv), None, state_dir=tmp_path) as large:
        from_file = list(journal_rows(large))
    assert large.kept is None and small.kept is not None
    assert from_file == from_memory
    assert large.digest == small.digest
