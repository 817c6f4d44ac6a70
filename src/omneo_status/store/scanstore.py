"""What a run learns of the tenant, as the journal keeps it: a tenant scan's progress, the
profiles it matched to the run's rows, the holders of a sync's status it saw, and which of a
sync's holders the run's input lists.

The queries only: which profile matches which row is the scan's business (``scan.py``, by the
email policy), and what a sync does with its holders is ``sync.py``'s.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from omneo_status.api.paging import PageStyle
from omneo_status.models import Profile
from omneo_status.store.journal import RunJournal

MATCH_BATCH = 500
"""Keys per ``IN`` list (and rows matched per query in a scan's final pass)."""


@dataclass(frozen=True)
class ScanState:
    """A run's scan as the journal keeps it."""

    style: PageStyle
    page_size: int
    pages: int
    total: int
    moved: bool
    read: int
    """Pages read so far."""
    holders_of: str | None = None
    """The statuses whose holders the scan keeps (a sync's, comma-separated), or None."""

    @property
    def complete(self) -> bool:
        """Whether every page was read."""
        return self.read >= self.pages


class ScanStore:
    """The journal's scan tables for one run: progress, partial matches, and the keys asked."""

    def __init__(self, run: RunJournal) -> None:
        self.run = run
        self.journal = run.journal
        info = run.info()
        self.holding = frozenset(info.handles if info.sync is not None else ())
        """The statuses whose holders this run's scan keeps: a sync's handles."""
        self.holders_of = ",".join(info.handles) if info.sync is not None else None
        """How the scan's record names them (a sync's handles, comma-separated)."""

    def state(self) -> ScanState | None:
        """The run's scan, or None when none was started."""
        found = self.journal.read(
            "SELECT style, page_size, pages, total, moved,"
            " (SELECT COUNT(*) FROM scan_pages p WHERE p.run_id = s.run_id), holders_of"
            " FROM scans s WHERE run_id=?",
            (self.run.run_id,),
        ).fetchone()
        if found is None:
            return None
        style, size, pages, total, moved, read, holders_of = found
        return ScanState(PageStyle(style), size, pages, total, bool(moved), read, holders_of)

    def start(self, style: PageStyle, page_size: int, total: int) -> ScanState:
        """Record a new scan (forgetting the pages and holders of an earlier start) and
        return it."""
        pages = max(1, math.ceil(total / page_size))
        run_id = self.run.run_id

        def begin(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM scan_pages WHERE run_id=?", (run_id,))
            db.execute("DELETE FROM scan_holders WHERE run_id=?", (run_id,))
            db.execute(
                "INSERT OR REPLACE INTO scans"
                " (run_id, style, page_size, pages, total, moved, holders_of)"
                " VALUES (?,?,?,?,?,0,?)",
                (run_id, style.value, page_size, pages, total, self.holders_of),
            )

        self.journal.write(begin)
        return ScanState(style, page_size, pages, total, False, 0, self.holders_of)

    def pages_read(self) -> set[int]:
        """The numbers of the pages already read."""
        cur = self.journal.read("SELECT page FROM scan_pages WHERE run_id=?", (self.run.run_id,))
        return {number for (number,) in cur.fetchall()}

    def record_page(
        self,
        number: int,
        by_key: Mapping[str, Sequence[Profile]],
        holders: Sequence[Profile],
        *,
        moved: bool,
    ) -> None:
        """Keep the page's profiles (``by_key``: by their canonical key) that some row of the
        run asks for, and its ``holders`` of the status the scan keeps, and mark the page read,
        in one transaction (``moved``: the page shows the list changed since the scan began)."""
        run_id = self.run.run_id

        def record(db: sqlite3.Connection) -> None:
            wanted = _keys_present(db, run_id, list(by_key))
            db.executemany(
                "INSERT OR REPLACE INTO scan_matches (run_id, email_key, profile_id, profile)"
                " VALUES (?,?,?,?)",
                [
                    (run_id, key, profile.id, profile.model_dump_json())
                    for key in wanted
                    for profile in by_key[key]
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO scan_holders (run_id, profile_id, profile) VALUES (?,?,?)",
                [(run_id, profile.id, profile.model_dump_json()) for profile in holders],
            )
            db.execute("INSERT OR IGNORE INTO scan_pages VALUES (?,?)", (run_id, number))
            if moved:
                db.execute("UPDATE scans SET moved=1 WHERE run_id=?", (run_id,))

        self.journal.write(record)

    def holders(self) -> list[Profile]:
        """The profiles the scan saw holding one of its statuses (each once), in profile id
        order."""
        cur = self.journal.read(
            "SELECT profile FROM scan_holders WHERE run_id=? ORDER BY profile_id",
            (self.run.run_id,),
        )
        return [Profile.model_validate_json(text) for (text,) in cur.fetchall()]

    def matches_of(self, keys: Sequence[str]) -> dict[str, list[Profile]]:
        """The profiles the scan found for each of these keys (each profile once)."""
        found: dict[str, list[Profile]] = {}
        marks = ",".join("?" for _ in keys)
        cur = self.journal.read(
            f"SELECT email_key, profile FROM scan_matches WHERE run_id=? AND email_key IN ({marks})"  # noqa: S608
            " ORDER BY email_key, profile_id",
            (self.run.run_id, *keys),
        )
        for key, text in cur.fetchall():
            found.setdefault(key, []).append(Profile.model_validate_json(text))
        return found


def _keys_present(db: sqlite3.Connection, run_id: str, keys: list[str]) -> list[str]:
    """Those of ``keys`` that some row of the run has (one indexed query per ``MATCH_BATCH``)."""
    present: list[str] = []
    for start in range(0, len(keys), MATCH_BATCH):
        part = keys[start : start + MATCH_BATCH]
        marks = ",".join("?" for _ in part)
        cur = db.execute(
            f"SELECT DISTINCT email_key FROM rows WHERE run_id=? AND email_key IN ({marks})",  # noqa: S608
            (run_id, *part),
        )
        present.extend(key for (key,) in cur.fetchall())
    return present


def listed_profiles(run: RunJournal, holders: Sequence[tuple[str, str | None]]) -> set[str]:
    """The ids among ``holders`` (``(profile_id, canonical key)`` pairs) that the run's input
    lists: a row resolved to that profile, or a row with that key whatever its outcome."""
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
