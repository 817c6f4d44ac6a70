"""The statements on a run's rows and chunks, and a stored row turned back into its record.

Each function here runs inside one write transaction of the journal (``Journal.write``), called
by the ``RunJournal`` method that owns it; nothing else writes these tables. The stored columns
keep the names they had when every run matched by email: ``rows.email`` holds a row's key as
read, ``rows.email_key`` its canonical form (see ``records``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from omneo_status.models import Action, Outcome
from omneo_status.store.records import ChunkState, NewRow, Planned, RowRecord, Settled, Stage

ROW_COLUMNS = (
    "line, email, address, stage, outcome, profile_id, held, send, chunk, batch_id, detail,"
    " action, holder, resent, follows"
)
"""The columns a ``RowRecord`` is read from, in its order."""

_INSERT_ROW = (
    "INSERT INTO rows (run_id, line, email, address, email_key, stage, outcome, detail,"
    " profile_id, held, send, action, holder, follows) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def insert_rows(db: sqlite3.Connection, run_id: str, rows: Sequence[NewRow]) -> None:
    """Add rows to the run; a row without a line is numbered after the run's last line."""
    after: int | None = None
    cells: list[tuple[Any, ...]] = []
    for row in rows:
        line = row.line
        if line is None:
            if after is None:
                cur = db.execute(
                    "SELECT COALESCE(MAX(line), 0) FROM rows WHERE run_id=?", (run_id,)
                )
                after = int(cur.fetchone()[0])
            after += 1
            line = after
        cells.append(_cells(run_id, line, row))
    db.executemany(_INSERT_ROW, cells)


def _cells(run_id: str, line: int, row: NewRow) -> tuple[Any, ...]:
    outcome = row.outcome
    return (
        run_id,
        line,
        row.key,
        row.address,
        row.canonical,
        (row.stage if outcome is None else Stage.DONE).value,
        None if outcome is None else outcome.value,
        row.detail,
        row.profile_id,
        handles_text(row.held) if row.held else None,
        handles_text(row.send) if row.send else None,
        None if row.action is None else row.action.value,
        int(row.holder),
        row.follows,
    )


def mark_duplicates(db: sqlite3.Connection, run_id: str, what: str) -> None:
    """Give ``duplicate`` to every pending row whose canonical key an earlier row has; the
    detail says "same ``what`` as line N"."""
    # A keyed temporary table keeps this linear for a million rows of any key mix.
    db.execute("CREATE TEMP TABLE IF NOT EXISTS firsts (email_key TEXT PRIMARY KEY, line INTEGER)")
    db.execute("DELETE FROM firsts")
    db.execute(
        "INSERT INTO firsts SELECT email_key, MIN(line) FROM rows"
        " WHERE run_id=? AND stage=? GROUP BY email_key",
        (run_id, Stage.LOOKUP.value),
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
            run_id,
            Stage.LOOKUP.value,
        ),
    )


def insert_chunk(db: sqlite3.Connection, run_id: str, lines: Sequence[int]) -> int:
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


def move_to_new_chunk(
    db: sqlite3.Connection, run_id: str, chunk: int, again: Sequence[int], status: str, detail: str
) -> int | None:
    """Move the lines ``again`` of ``chunk`` (marked as sent again, with ``detail``) into a new
    ``queued`` chunk, count them on the old one (which takes the batch ``status`` and is done
    once none of its rows is pending); returns the new chunk (None when ``again`` is empty)."""
    number = insert_chunk(db, run_id, again) if again else None
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
            "status": status,
            "run": run_id,
            "chunk": chunk,
            "done": Stage.DONE.value,
            "finished": ChunkState.DONE.value,
        },
    )
    return number


def apply(db: sqlite3.Connection, run_id: str, records: Sequence[Planned | Settled]) -> None:
    """Write resolved rows: plans first, then outcomes."""
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
                handles_text(record.held),
                handles_text(record.send),
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
                handles_text(record.held) if record.held is not None else None,
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


def handles_text(handles: Sequence[str]) -> str:
    """Handles as the journal stores them: a JSON list."""
    return json.dumps(list(handles))


def handles_of(text: str | None) -> tuple[str, ...]:
    """The handles of a stored JSON list (empty for NULL)."""
    return _handles(text) if text else ()


@lru_cache(maxsize=256)
def _handles(text: str) -> tuple[str, ...]:
    """The handles of a stored JSON list; a run holds few distinct lists, parsed once each."""
    return tuple(json.loads(text))


def row_record(row: Sequence[Any]) -> RowRecord:
    """The record of a row read as ``ROW_COLUMNS``."""
    line, key, address, stage, outcome, profile_id, held, send, chunk, batch_id, detail = row[:11]
    action, holder, resent, follows = row[11:]
    return RowRecord(
        line,
        key,
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
        follows,
    )


# Stored values to members by dictionary: an enum's constructor costs twenty times as much,
# and every pass over a run's rows converts three per row.
_STAGES = {member.value: member for member in Stage}
_OUTCOMES = {member.value: member for member in Outcome}
_ACTIONS = {member.value: member for member in Action}
