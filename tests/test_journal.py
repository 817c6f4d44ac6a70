"""The journal alone: migrations on ``user_version``, the handle bound to one run, when it
commits, and other connections reading and writing while a run is mid-way."""

from __future__ import annotations

import sqlite3
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omneo_status import inputs
from omneo_status.errors import JournalBusy, UsageError
from omneo_status.models import Action, Outcome
from omneo_status.options import JobSpec
from omneo_status.store import migrations
from omneo_status.store.journal import FLUSH_ROWS, FLUSH_SECONDS, Journal, RunJournal
from omneo_status.store.migrations import MIGRATIONS, schema_version
from omneo_status.store.records import ChunkState, NewRow, Planned, RunState, Settled, Stage


class Ticks:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def new_run(journal: Journal, rows: int = 3) -> RunJournal:
    run = journal.create_run(
        "k" * 64,
        JobSpec(Action.ASSIGN, ("vip",)),
        base_url="http://t/api",
        input_name="in.csv",
        dry_run=False,
    )
    run.load(
        (
            NewRow(line, f"p{line}@x.com", f"p{line}@x.com", f"p{line}@x.com")
            for line in range(2, rows + 2)
        ),
    )
    run.update(state=RunState.RUNNING)
    return run


def stage_seen_by_another_connection(path: Path, line: int) -> str:
    with sqlite3.connect(path) as other:
        return str(other.execute("SELECT stage FROM rows WHERE line=?", (line,)).fetchone()[0])


# -- migrations -------------------------------------------------------------------------------


def test_a_new_journal_gets_every_migration(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        new_run(journal)
    with sqlite3.connect(tmp_path / "j.sqlite") as db:
        assert schema_version(db) == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_journal_of_the_version_before_migrations_opens_with_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        MIGRATIONS[0](db)  # what every journal looked like before migrations existed
        db.execute("PRAGMA user_version=1")
        db.execute(
            "INSERT INTO runs (run_id, job_key, action, handles, base_url, input_name, dry_run,"
            " state, created_at, updated_at) VALUES ('r1','k','assign','[\"vip\"]','u','in.csv',"
            "0,'finished','2024-01-01T00:00:00Z','2024-01-01T00:00:00Z')"
        )
        db.execute(
            "INSERT INTO rows (run_id, line, email, email_key, stage, outcome)"
            " VALUES ('r1', 2, ' Ava@Example.com ', 'ava@example.com', 'done', 'assigned')"
        )
    with Journal(path) as journal:
        assert journal.find_run("r1").state is RunState.FINISHED
        assert journal.find_run("r1").match == "email"  # every run before --match was by email
        [row] = journal.run_journal("r1").all_rows()
    assert row.address == "Ava@Example.com" and row.outcome is Outcome.ASSIGNED
    with Journal(path), sqlite3.connect(path) as db:  # a second open migrates nothing again
        assert schema_version(db) == len(MIGRATIONS)


# Cells whose address a change of the email policy could change: blanks and invisible marks
# around them, a decomposed accent, case. The addresses are those migration 2 gave them when
# it shipped.
OLD_CELLS = {
    2: (" Ava@Example.com ", "Ava@Example.com"),
    3: ("\u00a0\u200bZo\u0065\u0301@Example.com\ufeff", "Zo\u00e9@Example.com"),
    4: ("\u200eDan.Lee@x.co\u200f\t", "Dan.Lee@x.co"),
    5: ("mailto:a@b.co", "mailto:a@b.co"),
    6: ("\u2003", ""),
}


def old_journal(path: Path) -> Path:
    """A journal at migration 1 whose rows are ``OLD_CELLS``."""
    with sqlite3.connect(path) as db:
        MIGRATIONS[0](db)
        db.execute("PRAGMA user_version=1")
        db.execute(
            "INSERT INTO runs (run_id, job_key, action, handles, base_url, input_name, dry_run,"
            " state, created_at, updated_at) VALUES ('r1','k','assign','[\"vip\"]','u','in.csv',"
            "0,'finished','2024-01-01T00:00:00Z','2024-01-01T00:00:00Z')"
        )
        db.executemany(
            "INSERT INTO rows (run_id, line, email, email_key, stage) VALUES ('r1',?,?,?,'done')",
            [(line, cell, cell.lower()) for line, (cell, _) in OLD_CELLS.items()],
        )
    return path


def test_migration_2_gives_old_rows_the_addresses_it_gave_when_it_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Change the live email policy everywhere it is bound: a frozen migration does not notice.
    live = inputs.normalize_email
    for module in [m for m in sys.modules.values() if m and m.__name__.startswith("omneo_")]:
        if getattr(module, "normalize_email", None) is live:
            monkeypatch.setattr(module, "normalize_email", lambda raw: raw.upper())
    with Journal(old_journal(tmp_path / "old.sqlite")) as journal:
        rows = {row.line: (row.key, row.address) for row in journal.run_journal("r1").all_rows()}
    assert rows == OLD_CELLS


def shipped_normalize_email(raw: str) -> str:
    """``inputs.normalize_email`` word for word as it was when migration 2 shipped."""
    start, end = 0, len(raw)
    while start < end and _is_blank(raw[start]):
        start += 1
    while end > start and _is_blank(raw[end - 1]):
        end -= 1
    return unicodedata.normalize("NFC", raw[start:end])


def _is_blank(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) == "Cf"


@given(st.text(st.characters(codec="utf-8")), st.text(" \t\u00a0\u200b\ufeff\u200e\u2028"))
def test_migration_2_carries_the_normaliser_it_shipped_with(text: str, blanks: str) -> None:
    for raw in (text, blanks + text + blanks, blanks):
        assert migrations._normalize_email_v2(raw) == shipped_normalize_email(raw)


def test_opening_a_current_journal_takes_no_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    Journal(path).close()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        with Journal(path, busy_timeout=0) as journal:
            assert journal.runs() == []
    finally:
        writer.execute("ROLLBACK")
        writer.close()


# -- the bound handle and its commit points ---------------------------------------------------


def test_resolved_rows_wait_in_memory_until_a_flush_point(tmp_path: Path) -> None:
    ticks = Ticks()
    path = tmp_path / "j.sqlite"
    with Journal(path, clock=ticks) as journal:
        run = new_run(journal, rows=FLUSH_ROWS + 5)
        run.plan(Planned(2, "p2", (), ("vip",)))
        assert stage_seen_by_another_connection(path, 2) == "lookup"
        ticks.now += FLUSH_SECONDS  # half a second later, the next row writes both
        run.settle(Settled(3, Outcome.NOT_FOUND, "no profile"))
        assert stage_seen_by_another_connection(path, 2) == "planned"
        assert stage_seen_by_another_connection(path, 3) == "done"
        for line in range(4, 4 + FLUSH_ROWS - 1):
            run.settle(Settled(line, Outcome.NOT_FOUND))
        assert stage_seen_by_another_connection(path, 4) == "lookup"
        run.settle(Settled(4 + FLUSH_ROWS - 1, Outcome.NOT_FOUND))  # the 200th row
        assert stage_seen_by_another_connection(path, 4) == "done"


def test_a_chunk_is_committed_before_its_request_and_reads_see_buffered_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path, clock=Ticks()) as journal:
        run = new_run(journal)
        run.plan(Planned(2, "p2", ("gold",), ("vip",)))
        [planned] = run.rows_in_stage(Stage.PLANNED)  # a read flushes first
        assert planned.profile_id == "p2" and planned.held == ("gold",)
        chunk = run.open_chunk([2])
        assert stage_seen_by_another_connection(path, 2) == "chunked"
        run.accept_chunk(chunk, "b-1")
        [accepted] = run.chunks(ChunkState.ACCEPTED)
        assert accepted.batch_id == "b-1"
        run.finish_chunk(
            chunk,
            state=ChunkState.DONE,
            batch_status="success",
            settled=[Settled(2, Outcome.ASSIGNED)],
        )
        assert run.counts() == {Outcome.ASSIGNED: 1}
        assert run.rows_of_chunk(chunk)[0].batch_id == "b-1"


def test_every_kind_of_row_loads_through_the_one_loader(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.create_run(
            "k",
            JobSpec(Action.ASSIGN, ("vip",), sync=True),
            base_url="u",
            input_name="in",
            dry_run=False,
        )
        loaded = run.load(
            [
                NewRow(2, " A@x.com", "A@x.com", "a@x.com"),  # waits for its lookup
                NewRow(3, "nope", "nope", "nope", outcome=Outcome.INVALID_EMAIL, detail="no @"),
                NewRow(7, "b@x.com", "b@x.com", "b@x.com", profile_id="p-b", send=("vip",)),
            ]
        )
        holder = NewRow(
            None,
            "h@x.com",
            "h@x.com",
            "h@x.com",
            stage=Stage.PLANNED,
            profile_id="p-h",
            held=("vip", "gold"),
            send=("vip",),
            action=Action.REMOVE,
            holder=True,
        )
        run.record_sync({"planned": True}, [holder])
        info = run.info()
        rows = {row.line: row for row in run.all_rows()}
    assert loaded == info.rows == 3  # the holder row is not one of the input's
    assert info.sync == {"planned": True}
    assert (rows[2].key, rows[2].address, rows[2].stage) == (" A@x.com", "A@x.com", Stage.LOOKUP)
    assert (rows[3].stage, rows[3].outcome, rows[3].detail) == (
        Stage.DONE,
        Outcome.INVALID_EMAIL,
        "no @",
    )
    assert (rows[7].stage, rows[7].profile_id, rows[7].send) == (Stage.LOOKUP, "p-b", ("vip",))
    found = rows[8]  # numbered after the input's last line
    assert found == (
        8,
        "h@x.com",
        "h@x.com",
        Stage.PLANNED,
        None,
        "p-h",
        ("vip", "gold"),
        ("vip",),
        None,
        None,
        "",
        Action.REMOVE,
        True,
        False,
        None,
    )


def test_duplicates_keep_the_first_line(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        run = journal.create_run(
            "k",
            JobSpec(Action.ASSIGN, ("vip",)),
            base_url="u",
            input_name="in",
            dry_run=False,
        )
        run.load(
            [
                NewRow(2, "a@x.com", "a@x.com", "a@x.com"),
                NewRow(3, "A@X.com", "A@X.com", "a@x.com"),
                NewRow(4, "b@x.com", "b@x.com", "b@x.com"),
            ],
        )
        run.mark_duplicates()
        rows = {row.line: row for row in run.all_rows()}
    assert rows[3].outcome is Outcome.DUPLICATE and rows[3].detail == "same address as line 2"
    assert rows[2].stage is Stage.LOOKUP and rows[4].stage is Stage.LOOKUP


def test_another_process_reads_and_writes_while_a_run_is_mid_way(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path, clock=Ticks()) as first:
        run = new_run(first)
        run.plan(Planned(2, "p2", (), ("vip",)))  # buffered: no transaction is open
        with Journal(path, busy_timeout=0) as second:
            assert [info.run_id for info in second.runs()] == [run.run_id]
            other = new_run(second)
            other.settle_now([Settled(2, Outcome.NOT_FOUND)])
        run.flush()
        assert {info.run_id for info in first.runs()} == {run.run_id, other.run_id}


def test_a_writer_that_stays_locked_out_gets_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path, busy_timeout=0) as journal:
        run = new_run(journal)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(JournalBusy, match="stayed locked by another process"):
                run.settle_now([Settled(2, Outcome.NOT_FOUND)])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        run.settle_now([Settled(2, Outcome.NOT_FOUND)])  # and works once the lock is gone
        assert run.counts() == {Outcome.NOT_FOUND: 1}


# -- finding and forgetting runs --------------------------------------------------------------


def test_a_prefix_of_several_runs_is_ambiguous_and_names_them(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        ids = {new_run(journal).run_id for _ in range(3)}
        stamp = next(iter(ids))[:8]
        with pytest.raises(UsageError) as caught:
            journal.find_run(stamp)
        assert "ambiguous" in caught.value.message
        assert all(run_id in caught.value.message for run_id in ids)
        one = sorted(ids)[0]
        assert journal.find_run(one).run_id == one
        with pytest.raises(UsageError, match="No run 'zzz'"):
            journal.find_run("zzz")


def test_prune_with_a_huge_number_of_days_forgets_nothing(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        run = new_run(journal)
        run.update(state=RunState.FINISHED)
        with sqlite3.connect(journal.path) as db:
            db.execute("UPDATE runs SET updated_at='2001-01-01T00:00:00Z'")
        assert journal.prune(older_than_days=10**12) == 0
        assert journal.prune(older_than_days=365) == 1
        with pytest.raises(UsageError):
            journal.prune(older_than_days=-1)


# -- a row that follows another (a tier move's second write) -----------------------------------


def follower(of: int, handle: str = "silver") -> NewRow:
    return NewRow(
        None,
        f"p{of}@x.com",
        f"p{of}@x.com",
        f"p{of}@x.com",
        stage=Stage.PLANNED,
        profile_id=f"id{of}",
        send=(handle,),
        action=Action.REMOVE,
        follows=of,
    )


def test_a_follower_is_written_with_the_decision_it_follows_and_waits_for_it(
    tmp_path: Path,
) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        run = new_run(journal, rows=3)  # lines 2, 3, 4
        for line in (2, 3, 4):
            run.plan(Planned(line, f"id{line}", ("silver",), ("gold",)))
            run.follow(follower(line))
        # Both wait in memory: after a crash here neither the plan nor the follower is there.
        assert stage_seen_by_another_connection(tmp_path / "j.sqlite", 2) == "lookup"
        run.flush()
        assert [r.line for r in run.sendable(limit=10)] == [2, 3, 4]  # the followers wait
        run.settle_now(
            [
                Settled(2, Outcome.ASSIGNED),
                Settled(3, Outcome.FAILED, "Injected failure"),
                Settled(4, Outcome.ALREADY_HAD),
            ]
        )
        assert run.release() == 2
        units = {row.line: then for row, then in run.units()}
        ready = [r.follows for r in run.sendable(limit=10)]
    assert ready == [2, 4]  # lines 5 and 7 follow 2 and 4
    assert units[3] is not None and units[3].outcome is Outcome.FAILED
    assert units[3].detail == "not sent: the write it follows failed"
    assert units[2] is not None and (units[2].line, units[2].stage) == (5, Stage.PLANNED)


def test_the_tally_counts_a_row_and_its_follower_as_one_unit(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        run = new_run(journal, rows=2)
        run.plan(Planned(2, "id2", ("silver",), ("gold",)))
        run.follow(follower(2))
        run.settle(Settled(3, Outcome.NOT_FOUND))
        tally = sorted(run.tally(), key=lambda t: t.stage)
        [move] = [t for t in run.move_tally() if t.send == ("gold",)]
    assert [(t.outcome, t.stage, t.count, t.then) for t in tally] == [
        (Outcome.NOT_FOUND, Stage.DONE, 1, None),
        (None, Stage.PLANNED, 1, (None, Stage.PLANNED, False)),
    ]
    assert (move.then_send, move.count) == (("silver",), 1)


def test_a_journal_of_migration_7_opens_with_runs_that_name_no_status_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v7.sqlite"
    with sqlite3.connect(path) as db:
        for step in MIGRATIONS[:7]:
            step(db)
        db.execute("PRAGMA user_version=7")
        db.execute(
            "INSERT INTO runs (run_id, job_key, action, handles, base_url, input_name, dry_run,"
            " state, created_at, updated_at) VALUES ('r1','k','assign','[\"vip\"]','u','in.csv',"
            "0,'finished','2024-01-01T00:00:00Z','2024-01-01T00:00:00Z')"
        )
        db.execute(
            "INSERT INTO rows (run_id, line, email, email_key, stage, outcome, send)"
            " VALUES ('r1', 2, 'a@x.com', 'a@x.com', 'done', 'assigned', '[\"vip\"]')"
        )
    with Journal(path) as journal:
        info = journal.find_run("r1")
        run = journal.run_journal("r1")
        [(row, then)] = list(run.units())
        tally = run.tally()
    assert info.status_column is None
    assert (row.outcome, row.follows, then) == (Outcome.ASSIGNED, None, None)
    assert [(t.outcome, t.count, t.then) for t in tally] == [(Outcome.ASSIGNED, 1, None)]
    with sqlite3.connect(path) as db:
        assert schema_version(db) == len(MIGRATIONS) == 8
