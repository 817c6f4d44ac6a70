"""The run journal: every run's rows, chunks and batches in one SQLite file under the state dir.

The journal is written before each batch is sent (the chunk and its profiles) and after each
answer, so a process killed at any instant leaves enough behind to finish the run without
repeating a write it need not repeat. Per-row state lives here rather than in memory, which
also keeps a run over a million rows small.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from omneo_status.errors import ConfigError
from omneo_status.models import Action, Outcome

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    job_key     TEXT NOT NULL,
    action      TEXT NOT NULL,
    handles     TEXT NOT NULL,
    base_url    TEXT NOT NULL,
    input_name  TEXT NOT NULL,
    dry_run     INTEGER NOT NULL,
    undo_of     TEXT,
    state       TEXT NOT NULL,
    rows        INTEGER NOT NULL DEFAULT 0,
    exit_code   INTEGER,
    report      TEXT,
    detail      TEXT NOT NULL DEFAULT '',
    verification TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs (job_key, created_at);
CREATE TABLE IF NOT EXISTS rows (
    run_id      TEXT NOT NULL,
    line        INTEGER NOT NULL,
    email       TEXT NOT NULL,
    email_key   TEXT NOT NULL,
    stage       TEXT NOT NULL,
    outcome     TEXT,
    profile_id  TEXT,
    held        TEXT,
    send        TEXT,
    chunk       INTEGER,
    batch_id    TEXT,
    detail      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, line)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rows_by_stage ON rows (run_id, stage, line);
CREATE INDEX IF NOT EXISTS rows_by_chunk ON rows (run_id, chunk);
CREATE TABLE IF NOT EXISTS chunks (
    run_id        TEXT NOT NULL,
    chunk         INTEGER NOT NULL,
    state         TEXT NOT NULL,
    batch_id      TEXT,
    batch_status  TEXT,
    profiles      INTEGER NOT NULL,
    success_count INTEGER,
    failed_count  INTEGER,
    PRIMARY KEY (run_id, chunk)
);
"""


_ROW_COLUMNS = "line, email, stage, outcome, profile_id, held, send, chunk, batch_id, detail"


class Stage:
    """Where a row is in its run (the ``rows.stage`` column)."""

    LOOKUP = "lookup"
    """Waiting to be resolved."""
    PLANNED = "planned"
    """Resolved; a change is to be sent."""
    CHUNKED = "chunked"
    """Part of a chunk that was (or is being) sent."""
    DONE = "done"
    """Has its final outcome."""


class ChunkState:
    """The life of a chunk (the ``chunks.state`` column)."""

    POSTING = "posting"
    """Written before its request; if a run dies here the request may or may not have landed."""
    ACCEPTED = "accepted"
    """The API answered with a batch id; the batch is to be polled."""
    DONE = "done"
    """Every row of it has its outcome."""
    RECONCILED = "reconciled"
    """Was ``posting`` when a run died; its profiles were read back and settled."""


class RunState:
    """The life of a run (the ``runs.state`` column)."""

    LOADING = "loading"
    RUNNING = "running"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    GAVE_UP = "gave_up_waiting"
    SENT = "sent"
    FAILED = "failed"
    FINISHED = "finished"

    RESUMABLE = (RUNNING, STOPPED, INTERRUPTED, GAVE_UP, FAILED, SENT)


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
    state: str
    rows: int
    exit_code: int | None
    report: str | None
    detail: str
    verification: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class RowRecord:
    """One row as the journal knows it."""

    line: int
    email: str
    stage: str
    outcome: Outcome | None
    profile_id: str | None
    held: tuple[str, ...]
    send: tuple[str, ...]
    chunk: int | None
    batch_id: str | None
    detail: str


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk of a run."""

    chunk: int
    state: str
    batch_id: str | None
    batch_status: str | None
    profiles: int
    success_count: int | None
    failed_count: int | None


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(job_key: str) -> str:
    """A sortable, readable run id: UTC time plus part of the job key."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{job_key[:6]}-{os.urandom(2).hex()}"


class Journal:
    """The SQLite journal of every run in one state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"Cannot open the run journal {path}: {exc}",
                hint="Point --state-dir (or OMNEO_STATE_DIR) at a writable directory.",
            ) from None
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._in_tx = False

    def close(self) -> None:
        """Commit what is pending and close the file."""
        self.commit()
        self._db.close()

    # -- transactions ----------------------------------------------------------------------

    def _begin(self) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN")
            self._in_tx = True

    def commit(self) -> None:
        """Make everything written so far durable."""
        if self._in_tx:
            self._db.execute("COMMIT")
            self._in_tx = False

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
    ) -> str:
        """Record a new run and return its id."""
        run_id = new_run_id(job_key)
        stamp = now_iso()
        self._begin()
        self._db.execute(
            "INSERT INTO runs (run_id, job_key, action, handles, base_url, input_name, dry_run,"
            " undo_of, state, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id,
                job_key,
                action.value,
                json.dumps(list(handles)),
                base_url,
                input_name,
                int(dry_run),
                undo_of,
                RunState.LOADING,
                stamp,
                stamp,
            ),
        )
        self.commit()
        return run_id

    def latest_run(self, job_key: str) -> RunInfo | None:
        """The newest run of that job, if any."""
        row = self._db.execute(
            "SELECT * FROM runs WHERE job_key=? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (job_key,),
        ).fetchone()
        return _run_info(row, self._columns("runs")) if row else None

    def run(self, run_id: str) -> RunInfo | None:
        """The run with that id (a unique prefix of it is accepted)."""
        rows = self._db.execute(
            "SELECT * FROM runs WHERE run_id=? OR run_id LIKE ? ORDER BY run_id LIMIT 2",
            (run_id, run_id.replace("%", "").replace("_", "\\_") + "%"),
        ).fetchall()
        exact = [r for r in rows if r[0] == run_id]
        chosen = exact[0] if exact else (rows[0] if len(rows) == 1 else None)
        return _run_info(chosen, self._columns("runs")) if chosen else None

    def runs(self, limit: int = 20) -> list[RunInfo]:
        """The newest runs first."""
        cols = self._columns("runs")
        cur = self._db.execute(
            "SELECT * FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
        )
        return [_run_info(r, cols) for r in cur.fetchall()]

    def prune(self, *, older_than_days: int) -> int:
        """Forget runs that ended (finished, or dry runs) that many days ago; returns how many.

        Unfinished runs are kept whatever their age: they may still be resumed.
        """
        cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
        before = cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
        self._begin()
        ids = [
            row[0]
            for row in self._db.execute(
                "SELECT run_id FROM runs WHERE updated_at < ? AND (state=? OR dry_run=1)",
                (before, RunState.FINISHED),
            ).fetchall()
        ]
        for table in ("rows", "chunks", "runs"):
            self._db.executemany(f"DELETE FROM {table} WHERE run_id=?", [(i,) for i in ids])  # noqa: S608
        self.commit()
        if ids:
            self._db.execute("VACUUM")
        return len(ids)

    def set_run(self, run_id: str, **fields: Any) -> None:
        """Update fields of a run (state, rows, exit_code, report, detail)."""
        fields["updated_at"] = now_iso()
        names = ", ".join(f"{name}=?" for name in fields)
        self._begin()
        self._db.execute(f"UPDATE runs SET {names} WHERE run_id=?", (*fields.values(), run_id))  # noqa: S608
        self.commit()

    # -- rows ------------------------------------------------------------------------------

    def add_rows(
        self, run_id: str, rows: Iterable[tuple[int, str, str, str, str | None, str]]
    ) -> int:
        """Insert (line, email, key, stage, outcome, detail) rows; returns how many."""
        count = 0
        self._begin()
        batch: list[tuple[Any, ...]] = []
        for line, email, key, stage, outcome, detail in rows:
            batch.append((run_id, line, email, key, stage, outcome, detail))
            if len(batch) >= 5000:
                count += self._insert_rows(batch)
                batch = []
        count += self._insert_rows(batch)
        self.commit()
        return count

    def _insert_rows(self, batch: list[tuple[Any, ...]]) -> int:
        self._db.executemany(
            "INSERT INTO rows (run_id, line, email, email_key, stage, outcome, detail)"
            " VALUES (?,?,?,?,?,?,?)",
            batch,
        )
        return len(batch)

    def add_known_rows(
        self, run_id: str, rows: Iterable[tuple[int, str, str, str, Sequence[str]]]
    ) -> int:
        """Insert rows whose profile and handles are known: (line, email, key, profile_id, send).

        These are the rows of an undo run; they are read back by id instead of by email.
        """
        self._begin()
        cur = self._db.executemany(
            "INSERT INTO rows (run_id, line, email, email_key, stage, profile_id, send)"
            " VALUES (?,?,?,?,?,?,?)",
            [
                (run_id, line, email, key, Stage.LOOKUP, profile_id, json.dumps(list(send)))
                for line, email, key, profile_id, send in rows
            ],
        )
        self.commit()
        return cur.rowcount

    def mark_duplicates(self, run_id: str) -> int:
        """Give ``duplicate`` to every pending row whose key an earlier row already has."""
        self._begin()
        self._db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS firsts (email_key TEXT PRIMARY KEY, line INTEGER)"
        )
        self._db.execute("DELETE FROM firsts")
        self._db.execute(
            "INSERT INTO firsts SELECT email_key, MIN(line) FROM rows"
            " WHERE run_id=? AND stage=? GROUP BY email_key",
            (run_id, Stage.LOOKUP),
        )
        cur = self._db.execute(
            "UPDATE rows SET stage=?, outcome=?, detail='same address as line ' ||"
            " (SELECT f.line FROM firsts f WHERE f.email_key = rows.email_key)"
            " WHERE run_id=? AND stage=? AND line >"
            " (SELECT f.line FROM firsts f WHERE f.email_key = rows.email_key)",
            (Stage.DONE, Outcome.DUPLICATE.value, run_id, Stage.LOOKUP),
        )
        self.commit()
        return cur.rowcount

    def rows_in_stage(self, run_id: str, stage: str, *, batch: int = 2000) -> Iterator[RowRecord]:
        """Rows in that stage, in input order; reads ahead in pages so memory stays small."""
        return self._paged("run_id=? AND stage=?", (run_id, stage), batch)

    def all_rows(self, run_id: str, *, batch: int = 5000) -> Iterator[RowRecord]:
        """Every row of the run in input order."""
        return self._paged("run_id=?", (run_id,), batch)

    def _paged(self, where: str, params: tuple[Any, ...], batch: int) -> Iterator[RowRecord]:
        # Keyset pages: rows may change stage while the caller walks them.
        last = -1
        while True:
            page = self._db.execute(
                f"SELECT {_ROW_COLUMNS} FROM rows WHERE {where} AND line>? ORDER BY line LIMIT ?",  # noqa: S608
                (*params, last, batch),
            ).fetchall()
            if not page:
                return
            for row in page:
                yield _row_record(row)
            last = page[-1][0]

    def rows_of_chunk(self, run_id: str, chunk: int) -> list[RowRecord]:
        """The rows sent in one chunk."""
        cur = self._db.execute(
            f"SELECT {_ROW_COLUMNS} FROM rows WHERE run_id=? AND chunk=? ORDER BY line",  # noqa: S608
            (run_id, chunk),
        )
        return [_row_record(r) for r in cur.fetchall()]

    def settle(
        self,
        run_id: str,
        line: int,
        outcome: Outcome,
        *,
        profile_id: str | None = None,
        held: Sequence[str] | None = None,
        detail: str = "",
    ) -> None:
        """Give a row its final outcome (not committed until ``commit``)."""
        self._begin()
        self._db.execute(
            "UPDATE rows SET stage=?, outcome=?, profile_id=COALESCE(?, profile_id),"
            " held=COALESCE(?, held), detail=? WHERE run_id=? AND line=?",
            (
                Stage.DONE,
                outcome.value,
                profile_id,
                json.dumps(list(held)) if held is not None else None,
                detail,
                run_id,
                line,
            ),
        )

    def plan(
        self, run_id: str, line: int, profile_id: str, held: Sequence[str], send: Sequence[str]
    ) -> None:
        """Record that a row's profile needs ``send`` handles (not committed until ``commit``)."""
        self._begin()
        self._db.execute(
            "UPDATE rows SET stage=?, outcome=NULL, profile_id=?, held=?, send=?, chunk=NULL,"
            " batch_id=NULL WHERE run_id=? AND line=?",
            (
                Stage.PLANNED,
                profile_id,
                json.dumps(list(held)),
                json.dumps(list(send)),
                run_id,
                line,
            ),
        )

    def settle_many(
        self, run_id: str, settled: Iterable[tuple[int, Outcome, str | None, str]]
    ) -> None:
        """Final outcomes for many rows: (line, outcome, batch_id, detail)."""
        self._begin()
        self._db.executemany(
            "UPDATE rows SET stage=?, outcome=?, batch_id=COALESCE(?, batch_id), detail=?"
            " WHERE run_id=? AND line=?",
            [
                (Stage.DONE, outcome.value, batch_id, detail, run_id, line)
                for line, outcome, batch_id, detail in settled
            ],
        )

    def counts(self, run_id: str) -> dict[str, int]:
        """Rows per outcome (pending rows under the key ``""``)."""
        cur = self._db.execute(
            "SELECT COALESCE(outcome, ''), COUNT(*) FROM rows WHERE run_id=? GROUP BY 1", (run_id,)
        )
        return {outcome: count for outcome, count in cur.fetchall()}

    def stage_count(self, run_id: str, stage: str) -> int:
        """How many rows are in that stage."""
        cur = self._db.execute(
            "SELECT COUNT(*) FROM rows WHERE run_id=? AND stage=?", (run_id, stage)
        )
        return int(cur.fetchone()[0])

    def rows_with_outcome(
        self, run_id: str, outcomes: Sequence[Outcome], *, limit: int | None = None
    ) -> list[RowRecord]:
        """Rows with one of these outcomes, in input order."""
        marks = ",".join("?" for _ in outcomes)
        sql = (
            f"SELECT {_ROW_COLUMNS} FROM rows WHERE run_id=? AND outcome IN ({marks}) ORDER BY line"  # noqa: S608
        )
        params: list[Any] = [run_id, *(o.value for o in outcomes)]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_row_record(r) for r in self._db.execute(sql, params).fetchall()]

    # -- chunks ----------------------------------------------------------------------------

    def open_chunk(self, run_id: str, lines: Sequence[int]) -> int:
        """Record a chunk about to be sent, with its rows, and commit before the request."""
        self._begin()
        cur = self._db.execute(
            "SELECT COALESCE(MAX(chunk), 0) + 1 FROM chunks WHERE run_id=?", (run_id,)
        )
        chunk = int(cur.fetchone()[0])
        self._db.execute(
            "INSERT INTO chunks (run_id, chunk, state, profiles) VALUES (?,?,?,?)",
            (run_id, chunk, ChunkState.POSTING, len(lines)),
        )
        self._db.executemany(
            "UPDATE rows SET stage=?, chunk=? WHERE run_id=? AND line=?",
            [(Stage.CHUNKED, chunk, run_id, line) for line in lines],
        )
        self.commit()
        return chunk

    def accept_chunk(self, run_id: str, chunk: int, batch_id: str) -> None:
        """Record the batch id the API gave a chunk, and commit."""
        self._begin()
        self._db.execute(
            "UPDATE chunks SET state=?, batch_id=?, batch_status='pending'"
            " WHERE run_id=? AND chunk=?",
            (ChunkState.ACCEPTED, batch_id, run_id, chunk),
        )
        self._db.execute(
            "UPDATE rows SET batch_id=? WHERE run_id=? AND chunk=?", (batch_id, run_id, chunk)
        )
        self.commit()

    def finish_chunk(
        self,
        run_id: str,
        chunk: int,
        *,
        state: str,
        batch_status: str | None,
        success_count: int | None,
        failed_count: int | None,
    ) -> None:
        """Record a chunk's end (its rows are settled in the same transaction), and commit."""
        self._begin()
        self._db.execute(
            "UPDATE chunks SET state=?, batch_status=?, success_count=?, failed_count=?"
            " WHERE run_id=? AND chunk=?",
            (state, batch_status, success_count, failed_count, run_id, chunk),
        )
        self.commit()

    def chunks(self, run_id: str, state: str | None = None) -> list[ChunkRecord]:
        """The run's chunks in order, optionally only those in one state."""
        sql = (
            "SELECT chunk, state, batch_id, batch_status, profiles, success_count, failed_count"
            " FROM chunks WHERE run_id=?"
        )
        params: list[Any] = [run_id]
        if state is not None:
            sql += " AND state=?"
            params.append(state)
        cur = self._db.execute(sql + " ORDER BY chunk", params)
        return [ChunkRecord(*r) for r in cur.fetchall()]

    def _columns(self, table: str) -> list[str]:
        return [r[1] for r in self._db.execute(f"PRAGMA table_info({table})").fetchall()]


def _run_info(row: Sequence[Any], cols: list[str]) -> RunInfo:
    data = dict(zip(cols, row, strict=True))
    return RunInfo(
        run_id=data["run_id"],
        job_key=data["job_key"],
        action=Action(data["action"]),
        handles=tuple(json.loads(data["handles"])),
        base_url=data["base_url"],
        input_name=data["input_name"],
        dry_run=bool(data["dry_run"]),
        undo_of=data["undo_of"],
        state=data["state"],
        rows=data["rows"],
        exit_code=data["exit_code"],
        report=data["report"],
        detail=data["detail"],
        verification=data["verification"],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
    )


def _row_record(row: Sequence[Any]) -> RowRecord:
    line, email, stage, outcome, profile_id, held, send, chunk, batch_id, detail = row
    return RowRecord(
        line=line,
        email=email,
        stage=stage,
        outcome=Outcome(outcome) if outcome else None,
        profile_id=profile_id,
        held=tuple(json.loads(held)) if held else (),
        send=tuple(json.loads(send)) if send else (),
        chunk=chunk,
        batch_id=batch_id,
        detail=detail,
    )
