"""The run journal: every run's rows, chunks and batches in one SQLite file under the state dir.

The journal is written ahead of each batch (the chunk and its profiles, before the request)
and after each answer, so a process killed at any instant leaves enough behind to finish the
run without repeating a write it need not repeat. Per-row state lives here rather than in
memory, which also keeps a run over a million rows small.

Many processes share one journal (a nightly job, a manual run, ``runs``): the file is in WAL
mode, so readers never wait; a write transaction is only ever open for the few statements of
one write, never across a network wait; rows resolved between two write-ahead points are kept
in memory and written in small batches. ``Journal`` is the file; ``RunJournal`` is a handle
bound to one run, whose methods need no run id (its reads are those of ``RunReads``).

This is the store's front door: every query of the journal is a method of ``Journal``, of
``RunJournal`` (whose statements on a run's rows and chunks are in ``rowstore``) or of
``scanstore`` (a tenant scan's tables, a sync's holders), each bound to a run; the records they
take and give are in ``records``. No other module holds SQL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from omneo_status.errors import ConfigError, JournalBusy, OmneoStatusError, UsageError
from omneo_status.models import LANDED, Action, Outcome
from omneo_status.options import JobSpec
from omneo_status.store import rowstore
from omneo_status.store.migrations import migrate
from omneo_status.store.records import (
    ChunkRecord,
    ChunkState,
    MoveTally,
    NewRow,
    Part,
    Planned,
    RowRecord,
    RunInfo,
    RunState,
    Settled,
    Stage,
    Tally,
)

JOURNAL_FILE = "journal.sqlite"
BUSY_TIMEOUT = 5.0
"""Seconds SQLite waits for another process's write before it reports the file busy."""
WRITE_ATTEMPTS = 3
"""Busy timeouts a write sits out before it gives up with ``JournalBusy``."""
FLUSH_ROWS = 200
"""Resolved rows kept in memory before they are written."""
FLUSH_SECONDS = 0.5
"""How long a resolved row may wait in memory before it is written."""
LOAD_BATCH = 5000
"""Input rows loaded per write transaction."""


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(job_key: str) -> str:
    """A sortable, readable run id: UTC time plus part of the job key."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{job_key[:6]}-{os.urandom(2).hex()}"


class Journal:
    """The SQLite journal of every run in one state directory."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self.clock = clock
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"Cannot open the run journal {path}: {exc}",
                hint="Point the state directory at a writable place.",
            ) from None
        self._guarded(self._prepare)

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> Journal:
        """The journal of the runs in that state directory (created when missing)."""
        return cls(state_dir / JOURNAL_FILE)

    def _prepare(self) -> None:
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        migrate(self._db)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (every write has been committed by then)."""
        self._db.close()

    # -- runs ------------------------------------------------------------------------------

    def create_run(
        self,
        job_key: str,
        spec: JobSpec,
        *,
        base_url: str,
        input_name: str,
        dry_run: bool,
        undo_of: str | None = None,
    ) -> RunJournal:
        """Record a new run of ``spec`` (``loading``) and return the handle bound to it; a sync
        run starts with an empty plan."""
        run_id = new_run_id(job_key)
        stamp = now_iso()
        self.write(
            lambda db: db.execute(
                "INSERT INTO runs (run_id, job_key, action, handles, base_url, input_name,"
                " dry_run, undo_of, state, created_at, updated_at, sync, match, status_column)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    job_key,
                    spec.action.value,
                    json.dumps(list(spec.handles)),
                    base_url,
                    input_name,
                    int(dry_run),
                    undo_of,
                    RunState.LOADING.value,
                    stamp,
                    stamp,
                    "{}" if spec.sync else None,
                    str(spec.match),
                    spec.status_column,
                ),
            )
        )
        return self.run_journal(run_id)

    def run_journal(self, run_id: str) -> RunJournal:
        """The handle bound to one run (which must exist)."""
        return RunJournal(self, run_id)

    def latest_run(self, job_key: str) -> RunInfo | None:
        """The newest run of that job, if any."""
        found = self._runs("WHERE job_key=? ORDER BY created_at DESC, rowid DESC LIMIT 1", job_key)
        return found[0] if found else None

    def run_info(self, run_id: str) -> RunInfo | None:
        """The run with exactly that id."""
        found = self._runs("WHERE run_id=?", run_id)
        return found[0] if found else None

    def find_run(self, run_id: str) -> RunInfo:
        """The run with that id or the one run whose id starts with it.

        Raises ``UsageError`` when no run matches, or when several do (naming them).
        """
        exact = self.run_info(run_id)
        if exact is not None:
            return exact
        pattern = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        found = self._runs("WHERE run_id LIKE ? ESCAPE '\\' ORDER BY run_id LIMIT 11", pattern)
        if len(found) == 1:
            return found[0]
        if not found:
            raise UsageError(f"No run {run_id!r} in this state directory")
        shown = ", ".join(info.run_id for info in found[:10])
        more = " and more" if len(found) > 10 else ""
        raise UsageError(
            f"Run id {run_id!r} is ambiguous: it starts {len(found)}{'+' if more else ''} runs"
            f" ({shown}{more})",
            hint="Give more of the run id.",
        )

    def runs(self, limit: int = 20) -> list[RunInfo]:
        """The newest runs first."""
        return self._runs("ORDER BY created_at DESC, rowid DESC LIMIT ?", limit)

    def _runs(self, where: str, *params: Any) -> list[RunInfo]:
        cur = self.read(f"SELECT * FROM runs {where}", params)  # noqa: S608
        names = [column[0] for column in cur.description]
        return [_run_info(dict(zip(names, row, strict=True))) for row in cur.fetchall()]

    def prune(self, *, older_than_days: int) -> int:
        """Forget runs that ended (finished, or dry runs) that many days ago; returns how many.

        Unfinished runs are kept whatever their age: they may still be resumed. A number of
        days reaching before the calendar begins forgets nothing; a negative one is refused.
        """
        if older_than_days < 0:
            raise UsageError(f"Cannot forget runs older than {older_than_days} days")
        try:
            cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
        except OverflowError:
            return 0
        before = cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
        ids = [
            row[0]
            for row in self.read(
                "SELECT run_id FROM runs WHERE updated_at < ? AND (state=? OR dry_run=1)",
                (before, RunState.FINISHED.value),
            ).fetchall()
        ]

        def forget(db: sqlite3.Connection) -> None:
            for table in (
                *("rows", "chunks", "scans", "scan_pages", "scan_matches", "scan_holders"),
                "runs",
            ):
                db.executemany(f"DELETE FROM {table} WHERE run_id=?", [(i,) for i in ids])  # noqa: S608

        if ids:
            self.write(forget)
        return len(ids)

    # -- plumbing --------------------------------------------------------------------------

    def write(self, statements: Callable[[sqlite3.Connection], object]) -> None:
        """Run ``statements`` in one short write transaction and commit it.

        While another process writes, SQLite waits up to the busy timeout; the write is tried
        ``WRITE_ATTEMPTS`` times before ``JournalBusy`` is raised. No traceback either way.
        """
        for _ in range(WRITE_ATTEMPTS):
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    continue
                raise self._failure(exc) from None
            try:
                statements(self._db)
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                if not (isinstance(exc, sqlite3.OperationalError) and _is_busy(exc)):
                    raise self._failure(exc) from None
        waited = self._busy_timeout * WRITE_ATTEMPTS
        raise JournalBusy(
            f"The run journal {self.path} stayed locked by another process for {waited:g}s;"
            " this run stopped there",
            hint="Another omneo-status process is writing to the same state directory."
            " Run this one again when that one has finished; it goes on where it stopped.",
        )

    def read(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one query outside any transaction (in WAL mode it never waits for a writer)."""
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._failure(exc) from None

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except sqlite3.Error as exc:
            self._db.close()
            raise self._failure(exc) from None

    def _failure(self, exc: sqlite3.Error) -> OmneoStatusError:
        if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
            return JournalBusy(f"The run journal {self.path} is locked by another process: {exc}")
        return OmneoStatusError(
            f"The run journal {self.path} cannot be used: {exc}",
            hint="Point the state directory at a writable place, or move the damaged file away.",
        )


_FOLLOWER = (
    "LEFT JOIN rows d INDEXED BY rows_by_follows"
    " ON d.run_id = l.run_id AND d.follows = l.line AND d.follows IS NOT NULL"
)
"""Joins a row (``l``) to the row that follows it (``d``), by the index of followers (named:
without statistics SQLite would scan the run's rows for each row)."""
_LEAD_COLUMNS = ", ".join(f"l.{name.strip()}" for name in rowstore.ROW_COLUMNS.split(","))
_FOLLOW_COLUMNS = ", ".join(f"d.{name.strip()}" for name in rowstore.ROW_COLUMNS.split(","))
_LANDED = tuple(outcome.value for outcome in LANDED)
_LANDED_MARKS = ",".join("?" for _ in _LANDED)
_READY = (
    "(follows IS NULL OR EXISTS (SELECT 1 FROM rows l WHERE l.run_id = rows.run_id"  # noqa: S608
    f" AND l.line = rows.follows AND l.outcome IN ({_LANDED_MARKS})))"
)
"""A planned row that may be sent: it follows none, or the row it follows landed (its
parameters are the ``LANDED`` outcomes)."""
_ORPHANED = (
    "run_id=? AND stage=? AND follows IS NOT NULL AND EXISTS (SELECT 1 FROM rows l"  # noqa: S608
    " WHERE l.run_id = rows.run_id AND l.line = rows.follows AND l.stage=?"
    f" AND l.outcome NOT IN ({_LANDED_MARKS}))"
)
"""A row (of a run, in a stage) following one that ended without landing (its parameters are
the run, the stage, ``done`` and the ``LANDED`` outcomes)."""


def _part(outcome: str | None, stage: str, has_batch: int) -> Part:
    return Part(Outcome(outcome) if outcome else None, Stage(stage), bool(has_batch))


def _then(then: Sequence[Any]) -> Part | None:
    """The follower's part of a joined row (None when no row follows)."""
    outcome, stage, has_batch = then
    return None if stage is None else _part(outcome, stage, has_batch)


class RunReads:
    """The reads of one run's journal, in line order where rows come back; each flushes
    first (``RunJournal``, which adds the writes, buffers resolved rows), so it sees every row
    written so far."""

    journal: Journal
    run_id: str

    def flush(self) -> None:
        """Write what waits in memory before a read (``RunJournal`` buffers resolved rows)."""

    def rows_in_stage(self, stage: Stage, *, limit: int | None = None) -> Iterator[RowRecord]:
        """Rows in that stage, in input order (at most ``limit``); reads ahead in pages."""
        return self._paged("stage=?", (stage.value,), limit)

    def sendable(self, *, limit: int) -> Iterator[RowRecord]:
        """Planned rows that may be sent now, in line order (at most ``limit``): every one but
        a row following another whose write has not landed yet."""
        return self._paged(f"stage=? AND {_READY}", (Stage.PLANNED.value, *_LANDED), limit)

    def all_rows(self) -> Iterator[RowRecord]:
        """Every row of the run in input order."""
        return self._paged("1=1", (), None)

    def units(
        self, where: str = "1=1", params: tuple[Any, ...] = (), *, limit: int | None = None
    ) -> Iterator[tuple[RowRecord, RowRecord | None]]:
        """Every row that follows none, in line order, with the row that follows it (a tier
        move's second write) or None; ``where`` may name the row's columns as ``l.`` and the
        follower's as ``d.``."""
        last, left = -1, limit
        while left is None or left > 0:
            self.flush()
            size = 2000 if left is None else min(left, 2000)
            page = self.journal.read(
                f"SELECT {_LEAD_COLUMNS}, {_FOLLOW_COLUMNS} FROM rows l {_FOLLOWER}"  # noqa: S608
                f" WHERE l.run_id=? AND l.follows IS NULL AND ({where}) AND l.line>?"
                " ORDER BY l.line LIMIT ?",
                (self.run_id, *params, last, size),
            ).fetchall()
            if not page:
                return
            width = len(page[0]) // 2
            for row in page:
                follower = row[width:]
                yield (
                    rowstore.row_record(row[:width]),
                    rowstore.row_record(follower) if follower[0] is not None else None,
                )
            last = page[-1][0]
            left = None if left is None else left - len(page)

    def _paged(self, where: str, params: tuple[Any, ...], limit: int | None) -> Iterator[RowRecord]:
        # Keyset pages: rows may change stage while the caller walks them.
        last, left = -1, limit
        while left is None or left > 0:
            self.flush()
            size = 2000 if left is None else min(left, 2000)
            page = self.journal.read(
                f"SELECT {rowstore.ROW_COLUMNS} FROM rows WHERE run_id=? AND {where} AND line>?"  # noqa: S608
                " ORDER BY line LIMIT ?",
                (self.run_id, *params, last, size),
            ).fetchall()
            if not page:
                return
            for row in page:
                yield rowstore.row_record(row)
            last = page[-1][0]
            left = None if left is None else left - len(page)

    def rows_of_chunk(self, chunk: int) -> list[RowRecord]:
        """The rows sent in one chunk, in input order."""
        return list(self._paged("chunk=?", (chunk,), None))

    def rows_with_outcome(
        self, outcomes: Sequence[Outcome], *, limit: int | None = None
    ) -> list[RowRecord]:
        """Rows with one of these outcomes, in input order (at most ``limit``)."""
        marks = ",".join("?" for _ in outcomes)
        return list(self._paged(f"outcome IN ({marks})", tuple(o.value for o in outcomes), limit))

    def counts(self) -> dict[Outcome, int]:
        """Rows per final outcome (rows still pending are not counted)."""
        self.flush()
        cur = self.journal.read(
            "SELECT outcome, COUNT(*) FROM rows WHERE run_id=? AND outcome IS NOT NULL GROUP BY 1",
            (self.run_id,),
        )
        return {Outcome(outcome): count for outcome, count in cur.fetchall()}

    def tally(self) -> list[Tally]:
        """Units (rows that follow none, with their follower) grouped by where each of their
        rows stands: outcome, stage and whether it has a batch (for summaries)."""
        self.flush()
        cur = self.journal.read(
            "SELECT l.outcome, l.stage, l.batch_id IS NOT NULL, d.outcome, d.stage,"  # noqa: S608
            f" d.batch_id IS NOT NULL, COUNT(*) FROM rows l {_FOLLOWER}"
            " WHERE l.run_id=? AND l.follows IS NULL GROUP BY 1, 2, 3, 4, 5, 6",
            (self.run_id,),
        )
        return [
            Tally(*_part(outcome, stage, has_batch), count, _then(then))
            for outcome, stage, has_batch, *then, count in cur.fetchall()
        ]

    def move_tally(self) -> list[MoveTally]:
        """Units grouped by their action and handles (their follower's too) and where their
        rows stand: what the moves by pair are counted from."""
        self.flush()
        cur = self.journal.read(
            "SELECT l.action, l.send, l.outcome, l.stage, l.batch_id IS NOT NULL, d.send,"  # noqa: S608
            f" d.outcome, d.stage, d.batch_id IS NOT NULL, COUNT(*) FROM rows l {_FOLLOWER}"
            " WHERE l.run_id=? AND l.follows IS NULL GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9",
            (self.run_id,),
        )
        return [
            MoveTally(
                Action(action) if action else None,
                rowstore.handles_of(send),
                _part(outcome, stage, has_batch),
                rowstore.handles_of(then_send),
                _then(then),
                count,
            )
            for action, send, outcome, stage, has_batch, then_send, *then, count in cur
        ]

    def stage_count(self, stage: Stage) -> int:
        """How many rows are in that stage."""
        self.flush()
        cur = self.journal.read(
            "SELECT COUNT(*) FROM rows WHERE run_id=? AND stage=?", (self.run_id, stage.value)
        )
        return int(cur.fetchone()[0])

    def lookups_left(self) -> int:
        """How many rows wait for a lookup by their key (an undo's rows know their profile)."""
        self.flush()
        cur = self.journal.read(
            "SELECT COUNT(*) FROM rows WHERE run_id=? AND stage=? AND profile_id IS NULL",
            (self.run_id, Stage.LOOKUP.value),
        )
        return int(cur.fetchone()[0])

    def chunks(self, state: ChunkState | None = None) -> list[ChunkRecord]:
        """The run's chunks in order, optionally only those in one state."""
        sql = (
            "SELECT chunk, state, batch_id, batch_status, profiles, success_count, failed_count,"
            " resent FROM chunks WHERE run_id=?"
        )
        params: list[Any] = [self.run_id]
        if state is not None:
            sql += " AND state=?"
            params.append(state.value)
        cur = self.journal.read(sql + " ORDER BY chunk", params)
        return [
            ChunkRecord(chunk, ChunkState(st), batch_id, status, profiles, ok, failed, resent)
            for chunk, st, batch_id, status, profiles, ok, failed, resent in cur.fetchall()
        ]


class RunJournal(RunReads):
    """The journal of one run: every method applies to that run.

    It owns when it commits. Chunks and their answers are written and committed at once (the
    write-ahead points). Resolved rows (``plan``, ``settle``) wait in memory and are written
    in one short transaction every ``FLUSH_ROWS`` rows or ``FLUSH_SECONDS``, whichever comes
    first, before any read of the run, and on ``flush()``.
    """

    def __init__(self, journal: Journal, run_id: str) -> None:
        self.journal = journal
        self.run_id = run_id
        self._pending: list[Planned | Settled] = []
        self._following: list[NewRow] = []
        self._pending_since = 0.0

    # -- the run itself --------------------------------------------------------------------

    def info(self) -> RunInfo:
        """The run as the journal knows it now."""
        info = self.journal.run_info(self.run_id)
        if info is None:
            raise UsageError(f"No run {self.run_id!r} in this state directory")
        return info

    def update(
        self, state: RunState, detail: str | None = None, *, verification: str | None = None
    ) -> None:
        """Move the run to ``state`` (``detail``: why it stopped; ``verification``: what its
        spot-check found), committed at once."""
        self._set({"state": state.value, "detail": detail, "verification": verification})

    def record_report(self, path: Path) -> None:
        """Record where the run's report was written, committed at once."""
        self._set({"report": str(path)})

    def record_exit(self, code: int) -> None:
        """Record the exit code the run ended with, committed at once."""
        self._set({"exit_code": code})

    def _set(self, fields: dict[str, Any]) -> None:
        self.flush()
        self.journal.write(lambda db: _set_run(db, self.run_id, fields))

    def record_sync(self, plan: dict[str, Any], holder_rows: Sequence[NewRow] = ()) -> None:
        """Record a sync's plan with the holder rows it adds, in one transaction: after a crash
        either both are there or neither."""
        self.flush()

        def record(db: sqlite3.Connection) -> None:
            rowstore.insert_rows(db, self.run_id, holder_rows)
            _set_run(db, self.run_id, {"sync": json.dumps(plan)})

        self.journal.write(record)

    # -- loading ---------------------------------------------------------------------------

    def load(self, rows: Iterable[NewRow]) -> int:
        """Add the run's rows (its input's, or an undo's), committed every ``LOAD_BATCH``, and
        record how many it has; returns that number."""
        count, source = 0, iter(rows)
        while batch := list(islice(source, LOAD_BATCH)):
            self.journal.write(partial(rowstore.insert_rows, run_id=self.run_id, rows=batch))
            count += len(batch)
        self._set({"rows": count})
        return count

    def mark_duplicates(self, what: str = "address") -> None:
        """Give ``duplicate`` to every pending row whose canonical key an earlier row already
        has; the detail says "same ``what`` as line N"."""
        self.journal.write(lambda db: rowstore.mark_duplicates(db, self.run_id, what))

    # -- resolved rows (buffered) ----------------------------------------------------------

    def plan(self, planned: Planned) -> None:
        """Record that a row's profile needs a change (written with the next flush)."""
        self._buffer(planned)

    def settle(self, settled: Settled) -> None:
        """Give a row its final outcome (written with the next flush)."""
        self._buffer(settled)

    def follow(self, row: NewRow) -> None:
        """Add a row that follows a decided one (a tier move's second write), written with the
        next flush in the same transaction as that decision: after a crash, either both are
        there or neither is."""
        self._following.append(row)

    def _buffer(self, record: Planned | Settled) -> None:
        if not self._pending:
            self._pending_since = self.journal.clock()
        self._pending.append(record)
        if (
            len(self._pending) >= FLUSH_ROWS
            or self.journal.clock() - self._pending_since >= FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        """Write and commit every buffered row now."""
        if not self._pending and not self._following:
            return
        pending, self._pending = self._pending, []
        following, self._following = self._following, []

        def write(db: sqlite3.Connection) -> None:
            rowstore.insert_rows(db, self.run_id, following)
            rowstore.apply(db, self.run_id, pending)

        self.journal.write(write)

    def release(self) -> int:
        """Settle as ``failed`` the rows following one whose write did not land (a move's
        siblings stay where they are), and commit; returns how many following rows are now
        ready to be sent."""
        self.flush()
        failed = (Stage.DONE.value, Outcome.FAILED.value, "not sent: the write it follows failed")
        self.journal.write(
            lambda db: db.execute(
                f"UPDATE rows SET stage=?, outcome=?, detail=? WHERE {_ORPHANED}",  # noqa: S608
                (*failed, self.run_id, Stage.PLANNED.value, Stage.DONE.value, *_LANDED),
            )
        )
        cur = self.journal.read(
            f"SELECT COUNT(*) FROM rows WHERE run_id=? AND stage=? AND follows IS NOT NULL AND {_READY}",  # noqa: S608, E501
            (self.run_id, Stage.PLANNED.value, *_LANDED),
        )
        return int(cur.fetchone()[0])

    # -- write-ahead points (committed at once) --------------------------------------------

    def settle_now(self, settled: Iterable[Settled]) -> None:
        """Give rows their final outcomes and commit (after an answer about them)."""
        records = list(settled)
        self.flush()
        if records:
            self.journal.write(lambda db: rowstore.apply(db, self.run_id, records))

    def open_chunk(self, lines: Sequence[int]) -> int:
        """Record a chunk cut from planned rows (``queued``: none of it sent yet), and commit."""
        self.flush()
        numbers: list[int] = []
        self.journal.write(lambda db: numbers.append(rowstore.insert_chunk(db, self.run_id, lines)))
        return numbers[-1]

    def post_chunk(self, chunk: int) -> None:
        """Record that the chunk's request goes out now (``posting``), and commit before it."""
        self.journal.write(
            lambda db: db.execute(
                "UPDATE chunks SET state=? WHERE run_id=? AND chunk=?",
                (ChunkState.POSTING.value, self.run_id, chunk),
            )
        )

    def accept_chunk(self, chunk: int, batch_id: str) -> None:
        """Record the batch id the API gave a chunk, and commit."""

        def accept(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE chunks SET state=?, batch_id=?, batch_status='pending'"
                " WHERE run_id=? AND chunk=?",
                (ChunkState.ACCEPTED.value, batch_id, self.run_id, chunk),
            )
            db.execute(
                "UPDATE rows SET batch_id=? WHERE run_id=? AND chunk=?",
                (batch_id, self.run_id, chunk),
            )

        self.flush()
        self.journal.write(accept)

    def finish_chunk(
        self,
        chunk: int,
        state: ChunkState,
        settled: Iterable[Settled] = (),
        *,
        batch_status: str | None = None,
        success_count: int | None = None,
        failed_count: int | None = None,
    ) -> None:
        """Record a chunk's end and settle its rows in the same transaction, and commit."""
        records = list(settled)

        def finish(db: sqlite3.Connection) -> None:
            rowstore.apply(db, self.run_id, records)
            db.execute(
                "UPDATE chunks SET state=?, batch_status=?, success_count=?, failed_count=?"
                " WHERE run_id=? AND chunk=?",
                (state.value, batch_status, success_count, failed_count, self.run_id, chunk),
            )

        self.flush()
        self.journal.write(finish)

    def resend_chunk(
        self,
        chunk: int,
        *,
        batch_status: str,
        settled: Iterable[Settled],
        again: Sequence[int],
        detail: str,
    ) -> int | None:
        """Settle rows of a chunk whose batch was lost or stood still, and
        move the lines ``again`` (marked as sent again, with ``detail``) into a new ``queued``
        chunk, in one transaction that also counts them on the old chunk, done once none of its
        rows is pending. Returns the new chunk (None when nothing is sent again)."""
        records = list(settled)
        numbers: list[int | None] = []

        def move(db: sqlite3.Connection) -> None:
            rowstore.apply(db, self.run_id, records)
            numbers.append(
                rowstore.move_to_new_chunk(db, self.run_id, chunk, again, batch_status, detail)
            )

        self.flush()
        self.journal.write(move)
        return numbers[-1]


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _set_run(db: sqlite3.Connection, run_id: str, fields: dict[str, Any]) -> None:
    """Set the run's given columns (a None value is left as it is) and its ``updated_at``."""
    given = {name: value for name, value in fields.items() if value is not None}
    given["updated_at"] = now_iso()
    names = ", ".join(f"{name}=?" for name in given)
    db.execute(f"UPDATE runs SET {names} WHERE run_id=?", (*given.values(), run_id))  # noqa: S608


def _run_info(data: dict[str, Any]) -> RunInfo:
    return RunInfo(
        run_id=data["run_id"],
        job_key=data["job_key"],
        action=Action(data["action"]),
        handles=tuple(json.loads(data["handles"])),
        base_url=data["base_url"],
        input_name=data["input_name"],
        dry_run=bool(data["dry_run"]),
        undo_of=data["undo_of"],
        state=RunState(data["state"]),
        rows=data["rows"],
        exit_code=data["exit_code"],
        report=data["report"],
        detail=data["detail"],
        verification=data["verification"],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        sync=json.loads(data["sync"]) if data.get("sync") is not None else None,
        match=data.get("match") or "email",
        status_column=data.get("status_column"),
    )
