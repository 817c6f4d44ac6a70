"""The lookup planner: the way of resolving a run's emails that costs the fewest requests.

Every plan resolves each address exactly, by the one email policy; they differ in cost:

- ``single``: one ``filter[email]`` request per address: N requests for N addresses;
- ``bulk``: one ``filter[email][in]`` request per group of up to a page of addresses (URL length
  permitting): about N / G, on a tenant that honours the filter;
- ``scan``: every page of the tenant, matched locally: T / P for T profiles in pages of P.

``auto`` reads page 1 of the tenant, which tells T and P for one request (and is the scan's
first page should the scan be chosen). When the scan costs less than bulk would even on a tenant
that honours the filter, it scans; otherwise it tries one group in bulk (which resolves that
group) and keeps bulk if the answer proves the filter honoured, or else takes the cheaper of the
scan and single lookups. A scan an earlier attempt of the run began is continued: its pages are
paid for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import islice

from omneo_status.client import MAX_PAGE_SIZE, OmneoClient, TenantPage
from omneo_status.decide import Match
from omneo_status.journal import RowRecord, RunJournal, Stage
from omneo_status.options import LookupMode, LookupPlan
from omneo_status.resolver import BulkEmailResolver, Resolver, SingleEmailResolver
from omneo_status.scan import TenantScan, email_rows_to_look_up


@dataclass
class Chosen:
    """The plan, and what carrying it out needs."""

    plan: LookupPlan | None
    """None when no row needs an email lookup."""
    resolver: Resolver
    """Looks up the rows left in the lookup stage (after a scan: those it could not settle)."""
    scan: TenantScan | None = None
    first: TenantPage | None = None
    """Page 1 of the tenant, when it was read to plan."""
    settled: list[tuple[RowRecord, Match]] = field(default_factory=list)
    """Rows resolved while planning (the group tried in bulk)."""
    warning: str | None = None
    """Something the user asked for that the tenant does not allow."""


class LookupPlanner:
    """Chooses how a run's emails are looked up (see the module's docstring)."""

    def __init__(
        self, client: OmneoClient, run: RunJournal, *, mode: LookupMode, concurrency: int
    ) -> None:
        self.client = client
        self.run = run
        self.mode = mode
        self.scan = TenantScan(client, run, concurrency=concurrency)
        self.single = SingleEmailResolver(client)

    async def choose(self) -> Chosen:
        """The plan for the rows waiting for an email lookup; may read page 1 of the tenant and
        look one group up in bulk (whose rows come back in ``settled``)."""
        count = email_rows_to_look_up(self.run)
        mode = self.mode
        if count == 0:
            return Chosen(None, self.single)
        started = self.scan.started() if mode in (LookupMode.AUTO, LookupMode.SCAN) else None
        if started is not None:
            left = started.pages - started.read
            reason = (
                f"continuing the tenant scan an earlier attempt began ({started.read} of"
                f" {started.pages} pages read)"
            )
            return self._scanning(left, reason, started.page_size)
        if mode is LookupMode.SINGLE:
            return Chosen(
                LookupPlan(mode, count, "--lookup single: one request per address"), self.single
            )
        if mode is LookupMode.BULK:
            return await self._bulk_forced(count)
        if mode is LookupMode.AUTO and count < 2:
            return Chosen(
                LookupPlan(LookupMode.SINGLE, count, "one address: one request"), self.single
            )
        first = await self.scan.first_page()
        if mode is LookupMode.SCAN:
            pages, size = _pages(first)
            reason = f"--lookup scan: {_tenant(first, pages, size)}"
            return self._scanning(pages or 1, reason, size, first)
        return await self._auto(count, first)

    async def _auto(self, count: int, first: TenantPage) -> Chosen:
        pages, size = _pages(first)
        bulk = BulkEmailResolver(self.client, size)
        rows = self._sample(size)
        group = bulk.fit([row.address for row in rows])[0]
        groups = math.ceil(count / len(group))
        tenant = _tenant(first, pages, size)
        if pages is not None and pages < 1 + groups:
            reason = (
                f"{count} addresses, {tenant}: fewer requests than {_count(groups, 'bulk lookup')}"
            )
            return self._scanning(pages, reason, size, first)
        found = await bulk.try_group(group)
        if found is not None:
            settled = list(zip(rows, found, strict=False))
            versus = f", fewer than {pages} pages" if pages is not None else ""
            reason = (
                f"the tenant honours filter[email][in]: {groups} requests of up to"
                f" {len(group)} addresses{versus}"
            )
            return Chosen(LookupPlan(LookupMode.BULK, 1 + groups, reason), bulk, settled=settled)
        ignored = "the tenant ignores filter[email][in]"
        if pages is not None and pages - 1 < count:
            reason = f"{ignored}: {tenant} costs fewer requests than {count} single lookups"
            return self._scanning(pages + 1, reason, size, first)
        versus = f" than {tenant}" if pages is not None else " (its list does not say its size)"
        reason = f"{ignored}: {count} single lookups cost fewer requests{versus}"
        return Chosen(LookupPlan(LookupMode.SINGLE, 2 + count, reason), self.single)

    async def _bulk_forced(self, count: int) -> Chosen:
        bulk = BulkEmailResolver(self.client)
        rows = self._sample(bulk.group_size)
        group = bulk.fit([row.address for row in rows])[0]
        found = await bulk.try_group(group)
        if found is None:
            reason = "the tenant does not honour filter[email][in]; looking emails up one by one"
            plan = LookupPlan(LookupMode.SINGLE, 1 + count, reason)
            return Chosen(plan, self.single, warning=reason)
        groups = math.ceil(count / len(group))
        plan = LookupPlan(LookupMode.BULK, groups, "--lookup bulk: the tenant honours the filter")
        return Chosen(plan, bulk, settled=list(zip(rows, found, strict=False)))

    def _scanning(
        self, requests: int, reason: str, size: int, first: TenantPage | None = None
    ) -> Chosen:
        # Rows a moved scan could not settle are looked up in bulk (single where ignored).
        fallback = BulkEmailResolver(self.client, size)
        plan = LookupPlan(LookupMode.SCAN, requests, reason)
        return Chosen(plan, fallback, scan=self.scan, first=first)

    def _sample(self, size: int) -> list[RowRecord]:
        rows = (r for r in self.run.rows_in_stage(Stage.LOOKUP) if not r.profile_id)
        return list(islice(rows, size))


def _pages(first: TenantPage) -> tuple[int | None, int]:
    """How many pages the tenant's profiles fill (None when it does not say), and their size."""
    size = first.size or len(first.profiles) or MAX_PAGE_SIZE
    if first.total is None:
        return None, size
    return max(1, math.ceil(first.total / size)), size


def _tenant(first: TenantPage, pages: int | None, size: int) -> str:
    if pages is None:
        return "the tenant's list does not say its size"
    return f"reading the tenant's {first.total} profiles in {_count(pages, 'page')} of {size}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
