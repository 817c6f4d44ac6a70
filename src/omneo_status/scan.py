"""The tenant scan: every profile of the tenant read page by page and matched to the run's rows
locally, by the one email policy (``inputs.email_key``).

Memory stays bounded whatever the sizes: each page is matched against the run's rows with an
indexed query on their keys, and only the profiles some row asks for are kept, in the journal.
A page's matches and the fact that it was read are committed together, so after a crash the
pages already read are not read again.

A sync run's scan also keeps every profile holding the sync's status, committed with its
page: a scan that read the whole tenant has seen every holder, so the sync takes its holders
from it instead of reading the tenant again, and a resumed run finds them in the journal.

A tenant whose list changes while it is scanned may shift a page boundary: a profile then shows
on two pages (kept once: matches are keyed by profile id) or on none. A page that reports
another total than page 1 did, or that comes back short before the last page, marks the scan
*moved*; a row such a scan found no profile for is not trusted as ``not_found`` and is left for
a lookup by filter instead, and its holders are not trusted as all of them.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from omneo_status.client import OmneoClient, TenantPage
from omneo_status.decide import Match
from omneo_status.errors import BadResponse, UsageError, ValidationFailed
from omneo_status.inputs import email_key
from omneo_status.journal import RowRecord, RunJournal, Stage
from omneo_status.models import Profile
from omneo_status.options import MAX_PAGE_SIZE
from omneo_status.paging import PageStyle

MATCH_BATCH = 500
"""Rows matched per query in the final pass (and keys per ``IN`` list)."""


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
    """The status whose holders the scan keeps (a sync's), or None."""

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
        self.holders_of = info.handles[0] if info.sync is not None else None
        """The status whose holders this run's scan keeps: a sync's one handle."""

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

    def record_page(self, number: int, profiles: Sequence[Profile], *, moved: bool) -> None:
        """Keep the page's profiles that some row of the run asks for, and those holding the
        status whose holders the scan keeps, and mark the page read, in one transaction
        (``moved``: the page shows the list changed since the scan began)."""
        by_key: dict[str, list[Profile]] = {}
        for profile in profiles:
            if profile.email:
                by_key.setdefault(email_key(profile.email), []).append(profile)
        handle = self.holders_of
        holders = [p for p in profiles if handle is not None and handle in p.statuses]
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
        """The profiles the scan saw holding its status (each once), in profile id order."""
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


def email_rows_to_look_up(run: RunJournal) -> int:
    """How many rows of the run wait for an email lookup (undo rows know their profile)."""
    run.flush()
    cur = run.journal.read(
        "SELECT COUNT(*) FROM rows WHERE run_id=? AND stage=? AND profile_id IS NULL",
        (run.run_id, Stage.LOOKUP.value),
    )
    return int(cur.fetchone()[0])


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


class _PageMismatch(Exception):
    """The tenant answered another page than the one asked for."""


class TenantScan:
    """Reads every page of the tenant not yet read (``concurrency`` at a time), then gives each
    row waiting for a lookup its ``Match``."""

    def __init__(self, client: OmneoClient, run: RunJournal, *, concurrency: int) -> None:
        self.client = client
        self.run = run
        self.store = ScanStore(run)
        self.concurrency = max(1, concurrency)
        self.requests = 0
        """Pages read by this process (a resumed scan does not read again what it had)."""

    def started(self) -> ScanState | None:
        """The scan an earlier attempt of this run started, if any."""
        return self.store.state()

    async def first_page(self) -> TenantPage:
        """Page 1 of the tenant, the largest the tenant gives (its ``meta`` tells the plan)."""
        self.requests += 1
        return await self.client.tenant_page(1, MAX_PAGE_SIZE)

    async def widest_first_page(self) -> TenantPage:
        """Page 1 as :meth:`first_page` reads it or, when it holds fewer profiles than asked
        while the tenant has more, page 1 in the other pagination dialect if that one is larger
        (the client then keeps that dialect): a tenant that ignores a dialect answers with its
        default size, which is not the size a scan would read at."""
        first = await self.first_page()
        size = first.size or len(first.profiles)
        if size >= MAX_PAGE_SIZE or first.total is None or first.total <= size:
            return first
        other_style = self.client.page_style.other
        self.requests += 1
        try:
            other = await self.client.tenant_page(1, MAX_PAGE_SIZE, style=other_style)
        except (ValidationFailed, BadResponse):  # a tenant that refuses the other dialect
            return first
        if (other.size or len(other.profiles)) <= size:
            return first
        self.client.page_style = other_style
        return other

    async def read(self, first: TenantPage | None = None, *, fresh: bool = False) -> ScanState:
        """Read every page not read yet (``first``: page 1, already fetched; ``fresh``: start
        over even if an earlier scan of the run was begun); returns the scan."""
        state = None if fresh else self.store.state()
        if state is None:
            state = self._begin(first or await self.first_page())
        else:
            self.client.page_style = state.style
        done = self.store.pages_read()
        if state.pages > 1 and 2 not in done:
            try:
                await self._fetch(state, 2)
            except _PageMismatch:
                # The tenant ignored this pagination dialect: switch and start over with the
                # other one (its page size may differ); matches found so far stay valid.
                self.client.page_style = state.style.other
                state = self._begin(await self.first_page())
                try:
                    await self._fetch(state, 2)
                except _PageMismatch:
                    raise _unreadable() from None
            done = self.store.pages_read()
        todo = iter([n for n in range(1, state.pages + 1) if n not in done])
        workers = min(self.concurrency, state.pages)
        tasks = [asyncio.ensure_future(self._worker(state, todo)) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        return self.store.state() or state

    def _begin(self, first: TenantPage) -> ScanState:
        if first.total is None:
            raise UsageError(
                "The tenant's profile list does not say how many profiles it has (meta.total),"
                " so --lookup scan cannot plan its pages",
                hint="Use --lookup auto, bulk or single.",
            )
        size = first.size or len(first.profiles) or MAX_PAGE_SIZE
        state = self.store.start(self.client.page_style, size, first.total)
        self.store.record_page(1, first.profiles, moved=False)
        return state

    async def _worker(self, state: ScanState, todo: Iterator[int]) -> None:
        for number in todo:
            try:
                await self._fetch(state, number)
            except _PageMismatch:
                raise _unreadable() from None

    async def _fetch(self, state: ScanState, number: int) -> None:
        self.requests += 1
        page = await self.client.tenant_page(number, state.page_size)
        if page.number is not None and page.number != number:
            raise _PageMismatch(number)
        short = number < state.pages and len(page.profiles) < state.page_size
        moved = short or (page.total is not None and page.total != state.total)
        self.store.record_page(number, page.profiles, moved=moved)

    def matched(self, state: ScanState) -> Iterator[list[tuple[RowRecord, Match]]]:
        """The rows waiting for an email lookup with what the scan found, in batches. After a
        scan that saw the list move, rows it found nothing for are left out (to be looked up)."""
        rows = (r for r in self.run.rows_in_stage(Stage.LOOKUP) if not r.profile_id)
        while batch := list(islice(rows, MATCH_BATCH)):
            found = self.store.matches_of(sorted({email_key(r.address) for r in batch}))
            pairs = [(row, Match(tuple(found.get(email_key(row.address), ())))) for row in batch]
            yield [(row, match) for row, match in pairs if match.profiles or not state.moved]


def _unreadable() -> BadResponse:
    return BadResponse(
        "GET /v3/profiles answered another page than the one asked for, with page[number] and"
        " with page: the tool cannot read every page of this tenant's profiles",
        hint="Use --lookup bulk or single; run 'omneo-status doctor --json' and attach its"
        " output to a bug report.",
    )
