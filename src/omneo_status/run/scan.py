"""The tenant scan: every profile of the tenant read page by page and matched to the run's rows
locally, by the one email policy (``inputs.email_key``).

Memory stays bounded whatever the sizes: each page is matched against the run's rows with an
indexed query on their keys, and only the profiles some row asks for are kept, in the journal.
A page's matches and the fact that it was read are committed together, so after a crash the
pages already read are not read again.

A sync run's scan also keeps every profile holding one of the sync's statuses, committed with
its page: a scan that read the whole tenant has seen every holder, so the sync takes its
holders from it instead of reading the tenant again, and a resumed run finds them in the
journal.

A tenant whose list changes while it is scanned may shift a page boundary: a profile then shows
on two pages (kept once: matches are keyed by profile id) or on none. A page that reports
another total than page 1 did, or that comes back short before the last page, marks the scan
*moved*; a row such a scan found no profile for is not trusted as ``not_found`` and is left for
a lookup by filter instead, and its holders are not trusted as all of them.

The pages are read and matched here; what the journal keeps of them is ``scanstore``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from itertools import islice

from omneo_status.api.client import OmneoClient, TenantPage
from omneo_status.errors import BadResponse, UsageError, ValidationFailed
from omneo_status.events import Reporter, Step
from omneo_status.inputs import email_key
from omneo_status.models import Profile
from omneo_status.options import MAX_PAGE_SIZE
from omneo_status.run.decide import Match
from omneo_status.store.journal import RunJournal
from omneo_status.store.records import RowRecord, Stage
from omneo_status.store.scanstore import MATCH_BATCH, ScanState, ScanStore


class _PageMismatch(Exception):
    """The tenant answered another page than the one asked for."""


class TenantScan:
    """Reads every page of the tenant not yet read (``concurrency`` at a time), reporting them
    as ``Step.SCAN``'s pages, then gives each row waiting for a lookup its ``Match``."""

    def __init__(
        self, client: OmneoClient, run: RunJournal, *, concurrency: int, reporter: Reporter
    ) -> None:
        self.client = client
        self.run = run
        self.reporter = reporter
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
        # Pages read before this point (page 1 and 2, or an earlier attempt's) count as done.
        self.reporter.start(Step.SCAN, state.pages, done=len(done))
        todo = iter([n for n in range(1, state.pages + 1) if n not in done])
        workers = min(self.concurrency, state.pages)
        tasks = [asyncio.ensure_future(self._worker(state, todo)) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        self.reporter.finish(Step.SCAN)
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
        self._record(1, first.profiles, moved=False)
        return state

    async def _worker(self, state: ScanState, todo: Iterator[int]) -> None:
        for number in todo:
            try:
                await self._fetch(state, number)
            except _PageMismatch:
                raise _unreadable() from None
            self.reporter.advance(Step.SCAN)

    async def _fetch(self, state: ScanState, number: int) -> None:
        self.requests += 1
        page = await self.client.tenant_page(number, state.page_size)
        if page.number is not None and page.number != number:
            raise _PageMismatch(number)
        short = number < state.pages and len(page.profiles) < state.page_size
        moved = short or (page.total is not None and page.total != state.total)
        self._record(number, page.profiles, moved=moved)

    def _record(self, number: int, profiles: Sequence[Profile], *, moved: bool) -> None:
        """Journal a page: its profiles by email key (the store keeps those some row asks
        for) and those holding a status whose holders the scan keeps."""
        by_key: dict[str, list[Profile]] = {}
        for profile in profiles:
            if profile.email:
                by_key.setdefault(email_key(profile.email), []).append(profile)
        holding = self.store.holding
        holders = [p for p in profiles if holding.intersection(p.statuses)]
        self.store.record_page(number, by_key, holders, moved=moved)

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
