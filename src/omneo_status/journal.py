"""The run journal: every run's rows, chunks and batches in one SQLite file under the state dir.

The journal is written ahead of each batch (the chunk and its profiles, before the request)
and after each answer, so a process killed at any instant leaves enough behind to finish the
run without repeating a write it need not repeat. Per-row state lives here rather than in
memory, which also keeps a run over a million rows small.

Many processes share one journal (a nightly job, a manual run, ``runs``): the file is in WAL
mode, so readers never wait; a write transaction is only ever open for the few statements of
one write, never across a network wait; rows resolved between two write-ahead points are kept
in memory and written in small batches. ``Journal`` is the file; ``RunJournal`` is a handle
bound to one run, whose methods need no run id.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from omneo_status.errors import ConfigError, JournalBusy, OmneoStatusError, UsageError
from omneo_status.migrations import migrate
from omneo_status.models import Action, Outcome

JOURNAL_FILE = "journal.sqlite"
BUSY_TIMEOUT = 5.0
"""Seconds SQLite waits for another process's write before it reports the file busy."""
WRITE_ATTEMPTS = 3
"""Busy timeouts a write sits out before it gives up with ``JournalBusy``."""
FLUSH_ROWS = 200
"""Resolved rows kept in memory before they are written."""
FLUSH_SECONDS = 0.5
"""How long a resolved row may wait in memory before it is written."""
_LOAD_BATCH = 5000


class Stage(StrEnum):
    """Where a row is in its run (the ``rows.stage`` column)."""

    LOOKUP = "lookup"
    """Waiting to be resolved."""
    PLANNED = "planned"
    """Resolved; a change is to be sent."""
    CHUNKED = "chunked"
    """Part of a chunk that was (or is being) sent."""
    DONE = "done"
    """Has its final outcome."""


class ChunkState(StrEnum):
    """The life of a chunk (the ``chunks.state`` column)."""

    QUEUED = "queued"
    """Cut from the planned rows and waiting for its turn to be sent: none of it went out."""
    POSTING = "posting"
    """Written before its request; if a run dies here the request may or may not have landed."""
    ACCEPTED = "accepted"
    """The API answered with a batch id; the batch is to be watched."""
    DONE = "done"
    """Every row of it has its outcome."""
    RECONCILED = "reconciled"
    """Was ``posting`` when a run died; its profiles were read back and its rows settled."""


class RunState(StrEnum):
    """The life of a run (the ``runs.state`` column)."""

    LOADING = "loading"
    RUNNING = "running"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    GAVE_UP = "gave_up_waiting"
    SENT = "sent"
    FAILED = "failed"
    FINISHED = "finished"


RESUMABLE = frozenset(
    {
        RunState.RUNNING,
        RunState.STOPPED,
        RunState.INTERRUPTED,
        RunState.GAVE_UP,
        RunState.FAILED,
        RunState.SENT,
    }
)
"""States a run can be continued from."""
LIVE = frozenset({RunState.LOADING, RunState.RUNNING})
"""States a run is in while a process works on it (or until it is seen to have died)."""


@dataclass(frozen=True)
class RunInfo:
    """One run as the journal knows it."""

    run_id: str
    job_key: str
    action: Action
    handles: tuple[str, ...]
    base_url: str
    input_name: str
    dry_run: bool
    undo_of: str | None
    state: RunState
    rows: int
    exit_code: int | None
    report: str | None
    detail: str
    verification: str | None
    created_at: str
    updated_at: str
    sync: dict[str, Any] | None = None
    """A sync run's plan (holders found, the removal guard's verdict); None for other runs."""
    match: str = "email"
    """The match key of its rows (``--match``: ``email``, ``mobile``, ``id``,
    ``identity:HANDLE``)."""


class RowRecord(NamedTuple):
    """One row as the journal knows it (a named tuple: every pass over a run's rows makes one
    per row, at a third of a frozen dataclass's cost)."""

    line: int
    email: str
    """The cell as read."""
    address: str
    """The normalised address (what lookups send)."""
    stage: Stage
    outcome: Outcome | None
    profile_id: str | None
    held: tuple[str, ...]
    send: tuple[str, ...]
    chunk: int | None
    batch_id: str | None
    detail: str
    action: Action | None = None
    """The row's own action when it is not the run's (a sync's holder rows, their undo)."""
    holder: bool = False
    """Found on the tenant as a holder of the status, not read from the input."""
    resent: bool = False
    """Sent again after its first batch was lost or stood still (it never is twice)."""


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk of a run."""

    chunk: int
    state: ChunkState
    batch_id: str | None
    batch_status: str | None
    profiles: int
    success_count: int | None
    failed_count: int | None
    resent: int = 0
    """Its rows that were sent again in a later chunk (its batch was lost or stood still)."""


@dataclass(frozen=True)
class NewRow:
    """An input row to load: settled at once when ``outcome`` is given (an invalid cell)."""

    line: int
    email: str
    address: str
    key: str
    outcome: Outcome | None = None
    detail: str = ""


@dataclass(frozen=True)
class KnownRow:
    """A row whose profile and handles are known already (the rows of an undo run)."""

    line: int
    email: str
    address: str
    key: str
    profile_id: str
    send: tuple[str, ...]
    action: Action | None = None
    holder: bool = False


@dataclass(frozen=True)
class HolderRow:
    """A profile found holding a sync's status that the input does not list: the change it
    needs (``send`` by ``action``), or the outcome it settles with at once (a dry run)."""

    email: str
    address: str
    key: str
    profile_id: str
    held: tuple[str, ...]
    send: tuple[str, ...]
    action: Action
    outcome: Outcome | None = None
    detail: str = ""


@dataclass(frozen=True)
class Planned:
    """A resolved row whose profile needs ``send``."""

    line: int
    profile_id: str
    held: tuple[str, ...]
    send: tuple[str, ...]
    note: str = ""
    """A caveat of the match, kept in the row's detail through to its outcome (empty: the
    row's detail is left as it is)."""


@dataclass(frozen=True)
class Settled:
    """A row's final outcome (``profile_id``/``held``/``batch_id`` kept when not given)."""

    line: int
    outcome: Outcome
    detail: str = ""
    profile_id: str | None = None
    held: tuple[str, ...] | None = None
    batch_id: str | None = None


@dataclass(frozen=True)
class Tally:
    """How many rows of a run share an outcome, a stage and whether they have a batch."""

    outcome: Outcome | None
    stage: Stage
    has_batch: bool
    count: int


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
        *,
        job_key: str,
        action: Action,
        handles: Sequence[str],
        base_url: str,
        input_name: str,
        dry_run: bool,
        undo_of: str | None = None,
        sync: bool = False,
        match: str = "email",
    ) -> RunJournal:
        """Record a new run (``loading``) and return the handle bound to it; a ``sync`` run
        starts with an empty plan."""
        run_id = new_run_id(job_key)
        stamp = now_iso()
        self.write(
            lambda db: db.execute(
                "INSERT INTO runs (run_id, job_key, action, handles, base_url, input_name,"
                " dry_run, undo_of, state, created_at, updated_at, sync, match)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    job_key,
                    action.value,
                    json.dumps(list(handles)),
                    base_url,
                    input_name,
                    int(dry_run),
                    undo_of,
                    RunState.LOADING.value,
                    stamp,
                    stamp,
                    "{}" if sync else None,
                    match,
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


class RunJournal:
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
        self._pending_since = 0.0

    # -- the run itself --------------------------------------------------------------------

    def info(self) -> RunInfo:
        """The run as the journal knows it now."""
        info = self.journal.run_info(self.run_id)
        if info is None:
            raise UsageError(f"No run {self.run_id!r} in this state directory")
        return info

    def update(
        self,
        *,
        state: RunState | None = None,
        rows: int | None = None,
        detail: str | None = None,
        report: Path | None = None,
        exit_code: int | None = None,
        verification: str | None = None,
        sync: dict[str, Any] | None = None,
    ) -> None:
        """Change the given fields of the run (and its ``updated_at``), committed at once."""
        fields: dict[str, Any] = {
            "sync": json.dumps(sync) if sync is not None else None,
            "state": state.value if state is not None else None,
            "rows": rows,
            "detail": detail,
            "report": str(report) if report is not None else None,
            "exit_code": exit_code,
            "verification": verification,
        }
        fields = {name: value for name, value in fields.items() if value is not None}
        fields["updated_at"] = now_iso()
        names = ", ".join(f"{name}=?" for name in fields)
        self.flush()
        self.journal.write(
            lambda db: db.execute(
                f"UPDATE runs SET {names} WHERE run_id=?",  # noqa: S608
                (*fields.values(), self.run_id),
            )
        )

    # -- resolved rows (buffered) ----------------------------------------------------------

    def plan(self, planned: Planned) -> None:
        """Record that a row's profile needs a change (written with the next flush)."""
        self._buffer(planned)

    def settle(self, settled: Settled) -> None:
        """Give a row its final outcome (written with the next flush)."""
        self._buffer(settled)

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
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self.journal.write(lambda db: _apply(db, self.run_id, pending))

    # -- write-ahead points (committed at once) --------------------------------------------

    def settle_now(self, settled: Iterable[Settled]) -> None:
        """Give rows their final outcomes and commit (after an answer about them)."""
        records = list(settled)
        self.flush()
        if records:
            self.journal.write(lambda db: _apply(db, self.run_id, records))

    def open_chunk(self, lines: Sequence[int]) -> int:
        """Record a chunk cut from planned rows (``queued``: none of it sent yet), and commit."""
        self.flush()
        numbers: list[int] = []
        self.journal.write(lambda db: numbers.append(_insert_chunk(db, self.run_id, lines)))
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
        *,
        state: ChunkState,
        batch_status: str | None = None,
        success_count: int | None = None,
        failed_count: int | None = None,
        settled: Iterable[Settled] = (),
    ) -> None:
        """Record a chunk's end and settle its rows in the same transaction, and commit."""
        records = list(settled)

        def finish(db: sqlite3.Connection) -> None:
            _apply(db, self.run_id, records)
            db.execute(
                "UPDATE chunks SET state=?, batch_status=?, success_count=?, failed_count=?"
                " WHERE run_id=? AND chunk=?",
                (state.value, batch_status, success_count, failed_count, self.run_id, chunk),
            )

        self.flush()
        self.journal.write(finish)

    # -- reads (each flushes first, so it sees every row written so far) --------------------

    def rows_in_stage(self, stage: Stage, *, limit: int | None = None) -> Iterator[RowRecord]:
        """Rows in that stage, in input order (at most ``limit``); reads ahead in pages."""
        return self._paged("stage=?", (stage.value,), limit)

    def all_rows(self) -> Iterator[RowRecord]:
        """Every row of the run in input order."""
        return self._paged("1=1", (), None)

    def _paged(self, where: str, params: tuple[Any, ...], limit: int | None) -> Iterator[RowRecord]:
        # Keyset pages: rows may change stage while the caller walks them.
        last, left = -1, limit
        while left is None or left > 0:
            self.flush()
            size = 2000 if left is None else min(left, 2000)
            page = self.journal.read(
                f"SELECT {_ROW_COLUMNS} FROM rows WHERE run_id=? AND {where} AND line>?"  # noqa: S608
                " ORDER BY line LIMIT ?",
                (self.run_id, *params, last, size),
            ).fetchall()
            if not page:
                return
            for row in page:
                yield _row_record(row)
            last = page[-1][0]
            left = None if left is None else left - len(page)

    def rows_of_chunk(self, chunk: int) -> list[RowRecord]:
        """The rows sent in one chunk."""
        self.flush()
        cur = self.journal.read(
            f"SELECT {_ROW_COLUMNS} FROM rows WHERE run_id=? AND chunk=? ORDER BY line",  # noqa: S608
            (self.run_id, chunk),
        )
        return [_row_record(r) for r in cur.fetchall()]

    def rows_with_outcome(
        self, outcomes: Sequence[Outcome], *, limit: int | None = None
    ) -> list[RowRecord]:
        """Rows with one of these outcomes, in input order."""
        self.flush()
        marks = ",".join("?" for _ in outcomes)
        sql = (
            f"SELECT {_ROW_COLUMNS} FROM rows WHERE run_id=? AND outcome IN ({marks}) ORDER BY line"  # noqa: S608
        )
        params: list[Any] = [self.run_id, *(o.value for o in outcomes)]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_row_record(r) for r in self.journal.read(sql, params).fetchall()]

    def counts(self) -> dict[Outcome, int]:
        """Rows per final outcome (rows still pending are not counted)."""
        self.flush()
        cur = self.journal.read(
            "SELECT outcome, COUNT(*) FROM rows WHERE run_id=? AND outcome IS NOT NULL GROUP BY 1",
            (self.run_id,),
        )
        return {Outcome(outcome): count for outcome, count in cur.fetchall()}

    def tally(self) -> list[Tally]:
        """Rows grouped by outcome, stage and whether they have a batch (for summaries)."""
        self.flush()
        cur = self.journal.read(
            "SELECT outcome, stage, batch_id IS NOT NULL, COUNT(*) FROM rows WHERE run_id=?"
            " GROUP BY 1, 2, 3",
            (self.run_id,),
        )
        return [
            Tally(Outcome(outcome) if outcome else None, Stage(stage), bool(has_batch), count)
            for outcome, stage, has_batch, count in cur.fetchall()
        ]

    def stage_count(self, stage: Stage) -> int:
        """How many rows are in that stage."""
        self.flush()
        cur = self.journal.read(
            "SELECT COUNT(*) FROM rows WHERE run_id=? AND stage=?", (self.run_id, stage.value)
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


def load_rows(run: RunJournal, rows: Iterable[NewRow]) -> int:
    """Load a run's input rows (committed every few thousand rows); returns how many."""
    count = 0
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        stage = Stage.LOOKUP if row.outcome is None else Stage.DONE
        outcome = row.outcome.value if row.outcome is not None else None
        cells = (row.line, row.email, row.address, row.key, stage.value, outcome, row.detail)
        batch.append((run.run_id, *cells))
        if len(batch) >= _LOAD_BATCH:
            count += _insert(run, batch)
            batch = []
    return count + _insert(run, batch)


def _insert(run: RunJournal, batch: list[tuple[Any, ...]]) -> int:
    if batch:
        run.journal.write(
            lambda db: db.executemany(
                "INSERT INTO rows (run_id, line, email, address, email_key, stage, outcome,"
                " detail) VALUES (?,?,?,?,?,?,?,?)",
                batch,
            )
        )
    return len(batch)


def load_known_rows(run: RunJournal, rows: Iterable[KnownRow]) -> int:
    """Load rows whose profile and handles are known (an undo run's: read back by id)."""
    batch = [
        (
            run.run_id,
            row.line,
            row.email,
            row.address,
            row.key,
            Stage.LOOKUP.value,
            row.profile_id,
            _handles_text(row.send),
            row.action.value if row.action is not None else None,
            int(row.holder),
        )
        for row in rows
    ]
    if batch:
        run.journal.write(
            lambda db: db.executemany(
                "INSERT INTO rows (run_id, line, email, address, email_key, stage,"
                " profile_id, send, action, holder) VALUES (?,?,?,?,?,?,?,?,?,?)",
                batch,
            )
        )
    return len(batch)


def listed_profiles(run: RunJournal, holders: Sequence[tuple[str, str | None]]) -> set[str]:
    """The ids among ``holders`` (``(profile_id, email_key)`` pairs) that the run's input
    lists: a row resolved to that profile, or a row with that email key whatever its outcome."""
    run.flush()
    found: list[str] = []

    def match(db: sqlite3.Connection) -> None:
        # Keyed temporary tables: one pass over the run's rows, each probing an index.
        db.execute("CREATE TEMP TABLE IF NOT EXISTS holder_ids (id TEXT PRIMARY KEY)")
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS holder_keys (email_key TEXT, id TEXT,"
            " PRIMARY KEY (email_key, id))"
        )
        db.execute("DELETE FROM holder_ids")
        db.execute("DELETE FROM holder_keys")
        db.executemany("INSERT OR IGNORE INTO holder_ids VALUES (?)", [(i,) for i, _ in holders])
        db.executemany(
            "INSERT OR IGNORE INTO holder_keys VALUES (?, ?)", [(k, i) for i, k in holders]
        )
        cur = db.execute(
            "SELECT h.id FROM rows r JOIN holder_ids h ON h.id = r.profile_id"
            " WHERE r.run_id=? AND r.holder=0"
            " UNION SELECT k.id FROM rows r JOIN holder_keys k ON k.email_key = r.email_key"
            " WHERE r.run_id=? AND r.holder=0",
            (run.run_id, run.run_id),
        )
        found.extend(row[0] for row in cur.fetchall())
        db.execute("DELETE FROM holder_ids")
        db.execute("DELETE FROM holder_keys")

    run.journal.write(match)
    return set(found)


def add_holder_rows(run: RunJournal, rows: Sequence[HolderRow], plan: dict[str, Any]) -> None:
    """Append the holder rows after the input's last line and record the sync's ``plan``, in
    one transaction: after a crash either both are there or neither."""
    run.flush()

    def add(db: sqlite3.Connection) -> None:
        cur = db.execute("SELECT COALESCE(MAX(line), 0) FROM rows WHERE run_id=?", (run.run_id,))
        first = int(cur.fetchone()[0]) + 1
        db.executemany(
            "INSERT INTO rows (run_id, line, email, address, email_key, stage, outcome,"
            " profile_id, held, send, action, holder, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?,1,?)",
            [
                (
                    run.run_id,
                    first + n,
                    row.email,
                    row.address,
                    row.key,
                    (Stage.PLANNED if row.outcome is None else Stage.DONE).value,
                    row.outcome.value if row.outcome is not None else None,
                    row.profile_id,
                    _handles_text(row.held),
                    _handles_text(row.send),
                    row.action.value,
                    row.detail,
                )
                for n, row in enumerate(rows)
            ],
        )
        db.execute(
            "UPDATE runs SET sync=?, updated_at=? WHERE run_id=?",
            (json.dumps(plan), now_iso(), run.run_id),
        )

    run.journal.write(add)


def resend_chunk(
    run: RunJournal,
    chunk: int,
    *,
    batch_status: str,
    settled: Iterable[Settled],
    again: Sequence[int],
    detail: str,
) -> int | None:
    """Settle rows of a chunk whose batch was lost or stood still, and move the lines ``again``
    (marked as sent again, with ``detail``) into a new ``queued`` chunk, in one transaction
    that also counts them on the old chunk, done once none of its rows is pending. Returns the
    new chunk (None when nothing is sent again)."""
    records = list(settled)
    numbers: list[int] = []
    run_id = run.run_id

    def move(db: sqlite3.Connection) -> None:
        _apply(db, run_id, records)
        if again:
            numbers.append(_insert_chunk(db, run_id, again))
            db.executemany(
                "UPDATE rows SET resent=1, batch_id=NULL, detail=? WHERE run_id=? AND line=?",
                [(detail, run_id, line) for line in again],
            )
        db.execute(
            "UPDATE chunks SET resent=resent+:moved, batch_status=:status, state=CASE WHEN"
            " EXISTS (SELECT 1 FROM rows WHERE run_id=:run AND chunk=:chunk AND stage<>:done)"
            " THEN state ELSE :finished END WHERE run_id=:run AND chunk=:chunk",
            {
                "moved": len(again),
                "status": batch_status,
                "run": run_id,
                "chunk": chunk,
                "done": Stage.DONE.value,
                "finished": ChunkState.DONE.value,
            },
        )

    run.flush()
    run.journal.write(move)
    return numbers[-1] if numbers else None


def mark_duplicates(run: RunJournal, what: str = "address") -> None:
    """Give ``duplicate`` to every pending row whose key an earlier row already has; the
    detail says "same ``what`` as line N"."""

    def mark(db: sqlite3.Connection) -> None:
        # A keyed temporary table keeps this linear for a million rows of any key mix.
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS firsts (email_key TEXT PRIMARY KEY, line INTEGER)"
        )
        db.execute("DELETE FROM firsts")
        db.execute(
            "INSERT INTO firsts SELECT email_key, MIN(line) FROM rows"
            " WHERE run_id=? AND stage=? GROUP BY email_key",
            (run.run_id, Stage.LOOKUP.value),
        )
        db.execute(
            "UPDATE rows SET stage=?, outcome=?, detail=? ||"
            " (SELECT f.line FROM firsts f WHERE f.email_key = rows.email_key)"
            " WHERE run_id=? AND stage=? AND line >"
            " (SELECT f.line FROM firsts f WHERE f.email_key = rows.email_key)",
            (
                Stage.DONE.value,
                Outcome.DUPLICATE.value,
                f"same {what} as line ",
                run.run_id,
                Stage.LOOKUP.value,
            ),
        )

    run.journal.write(mark)


_ROW_COLUMNS = (
    "line, email, address, stage, outcome, profile_id, held, send, chunk, batch_id, detail,"
    " action, holder, resent"
)


def _insert_chunk(db: sqlite3.Connection, run_id: str, lines: Sequence[int]) -> int:
    """Add the run's next chunk (``queued``) holding ``lines``; returns its number."""
    cur = db.execute("SELECT COALESCE(MAX(chunk), 0) + 1 FROM chunks WHERE run_id=?", (run_id,))
    number = int(cur.fetchone()[0])
    db.execute(
        "INSERT INTO chunks (run_id, chunk, state, profiles) VALUES (?,?,?,?)",
        (run_id, number, ChunkState.QUEUED.value, len(lines)),
    )
    db.executemany(
        "UPDATE rows SET stage=?, chunk=? WHERE run_id=? AND line=?",
        [(Stage.CHUNKED.value, number, run_id, line) for line in lines],
    )
    return number


def _apply(db: sqlite3.Connection, run_id: str, records: Sequence[Planned | Settled]) -> None:
    # Plans are written before outcomes: a row planned and settled in the same batch ends
    # settled, and no row is planned again after its outcome within a run.
    planned = [record for record in records if isinstance(record, Planned)]
    settled = [record for record in records if not isinstance(record, Planned)]
    db.executemany(
        "UPDATE rows SET stage=?, outcome=NULL, profile_id=?, held=?, send=?, chunk=NULL,"
        " batch_id=NULL, detail=CASE WHEN ?='' THEN detail ELSE ? END"
        " WHERE run_id=? AND line=?",
        [
            (
                Stage.PLANNED.value,
                record.profile_id,
                _handles_text(record.held),
                _handles_text(record.send),
                record.note,
                record.note,
                run_id,
                record.line,
            )
            for record in planned
        ],
    )
    # A planned row's note (its detail until then) follows its first outcome's detail.
    db.executemany(
        "UPDATE rows SET stage=?, outcome=?, profile_id=COALESCE(?, profile_id),"
        " held=COALESCE(?, held), batch_id=COALESCE(?, batch_id),"
        " detail=CASE WHEN stage=? OR detail='' THEN ? WHEN ?='' THEN detail"
        " ELSE ? || '; ' || detail END"
        " WHERE run_id=? AND line=?",
        [
            (
                Stage.DONE.value,
                record.outcome.value,
                record.profile_id,
                _handles_text(record.held) if record.held is not None else None,
                record.batch_id,
                Stage.DONE.value,
                record.detail,
                record.detail,
                record.detail,
                run_id,
                record.line,
            )
            for record in settled
        ],
    )


def _handles_text(handles: Sequence[str]) -> str:
    """Handles as the journal stores them: a JSON list."""
    return json.dumps(list(handles))


@lru_cache(maxsize=256)
def _handles(text: str) -> tuple[str, ...]:
    """The handles of a stored JSON list; a run holds few distinct lists, parsed once each."""
    return tuple(json.loads(text))


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


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
    )


def _row_record(row: Sequence[Any]) -> RowRecord:
    line, email, address, stage, outcome, profile_id, held, send, chunk, batch_id, detail = row[:11]
    action, holder, resent = row[11:]
    return RowRecord(
        line,
        email,
        address,
        _STAGES[stage],
        _OUTCOMES[outcome] if outcome else None,
        profile_id,
        _handles(held) if held else (),
        _handles(send) if send else (),
        chunk,
        batch_id,
        detail,
        _ACTIONS[action] if action else None,
        bool(holder),
        bool(resent),
    )


# Stored values to members by dictionary: an enum's constructor costs twenty times as much,
# and every pass over a run's rows converts three per row.
_STAGES = {member.value: member for member in Stage}
_OUTCOMES = {member.value: member for member in Outcome}
_ACTIONS = {member.value: member for member in Action}
