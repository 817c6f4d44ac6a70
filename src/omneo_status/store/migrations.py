"""The journal's schema as ordered migrations, keyed on SQLite's ``PRAGMA user_version``.

Each migration is a small function applied once, in order, inside one transaction that also
records its number; a journal written by an older version of the tool is brought up to date
when it is opened, and a current one is only read (no write lock is taken). Never edit a
migration that has shipped: add the next one.

A migration is frozen: it imports no rule of the live code (a policy, a default) but carries
its own copy of any rule it applies, as the rule was when it shipped, so a later change to the
policy cannot change what an old journal becomes.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from collections.abc import Callable
from itertools import dropwhile

Migration = Callable[[sqlite3.Connection], None]


def _initial_schema(db: sqlite3.Connection) -> None:
    """Migration 1: the schema journals had before migrations existed (hence IF NOT EXISTS)."""
    for statement in (
        """CREATE TABLE IF NOT EXISTS runs (
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
        )""",
        "CREATE INDEX IF NOT EXISTS runs_by_key ON runs (job_key, created_at)",
        """CREATE TABLE IF NOT EXISTS rows (
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
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS rows_by_stage ON rows (run_id, stage, line)",
        "CREATE INDEX IF NOT EXISTS rows_by_chunk ON rows (run_id, chunk)",
        """CREATE TABLE IF NOT EXISTS chunks (
            run_id        TEXT NOT NULL,
            chunk         INTEGER NOT NULL,
            state         TEXT NOT NULL,
            batch_id      TEXT,
            batch_status  TEXT,
            profiles      INTEGER NOT NULL,
            success_count INTEGER,
            failed_count  INTEGER,
            PRIMARY KEY (run_id, chunk)
        )""",
    ):
        db.execute(statement)


def _row_address(db: sqlite3.Connection) -> None:
    """Migration 2: each row keeps its normalised address, computed once at load."""
    db.execute("ALTER TABLE rows ADD COLUMN address TEXT NOT NULL DEFAULT ''")
    # Rows of older journals get theirs from the raw cell, by the policy of the time.
    db.create_function("normalized_email", 1, _normalize_email_v2, deterministic=True)
    db.execute("UPDATE rows SET address = normalized_email(email)")


def _normalize_email_v2(raw: str) -> str:
    """The email normaliser as it was when migration 2 shipped, frozen here: never edit it,
    whatever ``inputs.normalize_email`` becomes. Surrounding whitespace (NBSP included) and
    invisible format characters (zero-width spaces, byte order marks, direction marks) are
    trimmed, and the text is put in Unicode NFC; case is kept."""

    def blank(char: str) -> bool:
        return char.isspace() or unicodedata.category(char) == "Cf"

    chars = list(dropwhile(blank, raw))
    while chars and blank(chars[-1]):
        chars.pop()
    return unicodedata.normalize("NFC", "".join(chars))


def _sync_columns(db: sqlite3.Connection) -> None:
    """Migration 3: what a sync run needs. A row may carry its own action (a sync assigns to
    its input rows and removes from the holders it found; NULL: the run's action) and be a
    holder row (found on the tenant, not read from the file); a sync run keeps its plan (the
    holders found, the removal guard's verdict) as JSON in ``runs.sync`` (NULL: not a sync)."""
    db.execute("ALTER TABLE rows ADD COLUMN action TEXT")
    db.execute("ALTER TABLE rows ADD COLUMN holder INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE runs ADD COLUMN sync TEXT")


def _tenant_scan(db: sqlite3.Connection) -> None:
    """Migration 4: a tenant scan's progress and partial matches, and rows found by key."""
    for statement in (
        "CREATE INDEX IF NOT EXISTS rows_by_key ON rows (run_id, email_key)",
        """CREATE TABLE IF NOT EXISTS scans (
            run_id      TEXT PRIMARY KEY,
            style       TEXT NOT NULL,
            page_size   INTEGER NOT NULL,
            pages       INTEGER NOT NULL,
            total       INTEGER NOT NULL,
            moved       INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE IF NOT EXISTS scan_pages (
            run_id      TEXT NOT NULL,
            page        INTEGER NOT NULL,
            PRIMARY KEY (run_id, page)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS scan_matches (
            run_id      TEXT NOT NULL,
            email_key   TEXT NOT NULL,
            profile_id  TEXT NOT NULL,
            profile     TEXT NOT NULL,
            PRIMARY KEY (run_id, email_key, profile_id)
        ) WITHOUT ROWID""",
    ):
        db.execute(statement)


def _run_match_key(db: sqlite3.Connection) -> None:
    """Migration 5: each run keeps the key its rows are matched by (``--match``); every run
    before it matched by email."""
    db.execute("ALTER TABLE runs ADD COLUMN match TEXT NOT NULL DEFAULT 'email'")


def _scan_holders(db: sqlite3.Connection) -> None:
    """Migration 6: a sync run's tenant scan keeps the profiles holding its status, so the
    holders come from the scan that looked the rows up; ``scans.holders_of`` names that status
    (NULL: the scan kept no holders, as every scan before it)."""
    db.execute("ALTER TABLE scans ADD COLUMN holders_of TEXT")
    db.execute(
        """CREATE TABLE IF NOT EXISTS scan_holders (
            run_id      TEXT NOT NULL,
            profile_id  TEXT NOT NULL,
            profile     TEXT NOT NULL,
            PRIMARY KEY (run_id, profile_id)
        ) WITHOUT ROWID"""
    )


def _resends(db: sqlite3.Connection) -> None:
    """Migration 7: rows sent again because their batch was lost or stood still. A chunk
    counts its rows that went out again in a later chunk (``chunks.resent``); a row says
    whether it was sent again (``rows.resent``): it never is a second time."""
    db.execute("ALTER TABLE chunks ADD COLUMN resent INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE rows ADD COLUMN resent INTEGER NOT NULL DEFAULT 0")


def _status_column(db: sqlite3.Connection) -> None:
    """Migration 8: statuses per row, and tier moves. A run may read each row's status from a
    column of its input (``runs.status_column``, its name; NULL: the statuses were given on the
    command line, as for every run before it). A row may follow another (``rows.follows``,
    that row's line): it is the second write of a tier move, sent once the first landed. The
    index holds the followers only, so runs without moves pay nothing for it."""
    db.execute("ALTER TABLE runs ADD COLUMN status_column TEXT")
    db.execute("ALTER TABLE rows ADD COLUMN follows INTEGER")
    db.execute(
        "CREATE INDEX IF NOT EXISTS rows_by_follows ON rows (run_id, follows)"
        " WHERE follows IS NOT NULL"
    )


MIGRATIONS: tuple[Migration, ...] = (
    _initial_schema,
    _row_address,
    _sync_columns,
    _tenant_scan,
    _run_match_key,
    _scan_holders,
    _resends,
    _status_column,
)
"""Every migration in order; migration N is ``MIGRATIONS[N - 1]``."""


def schema_version(db: sqlite3.Connection) -> int:
    """The number of the last migration applied to this database (0 for a new file)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection) -> int:
    """Apply the migrations this database lacks, each once and in order; returns the version.

    ``db`` must be in autocommit mode (``isolation_level=None``). Each migration runs in its own
    immediate transaction that re-reads the version, so two processes opening a new journal at
    once apply each migration exactly once.
    """
    if schema_version(db) >= len(MIGRATIONS):
        return schema_version(db)
    for number, step in enumerate(MIGRATIONS, start=1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(db) < number:
                step(db)
                db.execute(f"PRAGMA user_version={number:d}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return schema_version(db)
