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

What ``doctor`` measured (``TenantFacts``) enters these sums and never chooses a plan: a filter
known to be ignored is not tried again, and a page size known to work is not probed for.

A filter that compares case-sensitively finds an address only in the cases asked for (as
written, and in lower case), so only the scan can rule out a second profile holding the same
address in another case. On such a tenant the scan is preferred while it costs at most
``CASE_SCAN_FACTOR`` times the lookups by filter; otherwise the plan carries a warning and each
row matched after a change of case says so. A run that learns the rule from its own lookups
(``CaseGuard``) does the same before it decides the rows concerned.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice

from omneo_status.api.client import OmneoClient, TenantPage
from omneo_status.events import Reporter
from omneo_status.options import MAX_PAGE_SIZE, LookupMode, LookupPlan
from omneo_status.run.decide import Match
from omneo_status.run.resolver import BulkEmailResolver, EmailCase, Resolver, SingleEmailResolver
from omneo_status.run.scan import TenantScan
from omneo_status.store.journal import RunJournal
from omneo_status.store.records import RowRecord, Stage
from omneo_status.wording import count as counted
from omneo_status.wording import number

CASE_SCAN_FACTOR = 3
"""On a tenant whose email filter is case-sensitive, the scan is chosen while its requests are
at most this many times those of the lookups by filter it replaces: the one plan that sees
every case of an address is worth that much more."""

CASE_NOTE = (
    "matched after a change of case; another profile may hold this address in a different"
    " case: `--lookup scan` rules it out"
)
"""The detail of a row matched by filter through a change of case when the tenant's filter is
(or may be) case-sensitive and the scan was out of reach."""

_DEFERRED = Match(deferred=True)


@dataclass(frozen=True)
class TenantFacts:
    """What a run knows of the tenant before its first lookup (doctor's record): facts for the
    planner's sums, never a choice of plan. None: not measured."""

    email_in_filter: bool | None = None
    """Whether ``filter[email][in]`` is honoured."""
    case_sensitive: bool | None = None
    """Whether ``filter[email]`` compares case-sensitively."""
    page_size: int | None = None
    """The page size the tenant gives in the pagination dialect the client uses."""
    measured: str = ""
    """Who measured them, as a reason names it ("doctor, 2026-01-31")."""


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


class LookupPlanner:
    """Chooses how a run's emails are looked up (see the module's docstring)."""

    def __init__(
        self,
        client: OmneoClient,
        run: RunJournal,
        *,
        mode: LookupMode,
        concurrency: int,
        reporter: Reporter,
        facts: TenantFacts | None = None,
        on_change: Callable[[LookupPlan], None] | None = None,
    ) -> None:
        self.client = client
        self.run = run
        self.mode = mode
        self.facts = facts or TenantFacts()
        self.case = EmailCase(self.facts.case_sensitive, self.facts.measured)
        self.scan = TenantScan(client, run, concurrency=concurrency, reporter=reporter)
        self.single = SingleEmailResolver(client, self.case)
        self.on_change = on_change
        """Told when the plan changes during the lookups (a case rule learned on the way)."""
        self.plan: LookupPlan | None = None
        self.first: TenantPage | None = None
        self.guard: CaseGuard | None = None
        self._chosen = False
        self._planned_reads = 0

    async def choose(self) -> Chosen:
        """The plan for the rows waiting for an email lookup; may read page 1 of the tenant and
        look one group up in bulk (whose rows come back in ``settled``)."""
        chosen = await self._choose()
        if chosen.plan is not None and self.plan is not None:
            chosen.plan = self.plan  # as the group screened while planning left it
        self.plan = chosen.plan
        self._chosen = True
        return chosen

    async def _choose(self) -> Chosen:
        count = self.run.lookups_left()
        mode = self.mode
        if count == 0:
            return Chosen(None, self.single)
        started = self.scan.started() if mode in (LookupMode.AUTO, LookupMode.SCAN) else None
        if started is not None:
            left = started.pages - started.read
            reason = (
                f"continuing the tenant scan an earlier attempt began ({number(started.read)} of"
                f" {counted(started.pages, 'page')} read)"
            )
            return self._scanning(left, reason, started.page_size)
        if mode is LookupMode.SINGLE:
            plan = LookupPlan(mode, count, "--lookup single: one request per address")
            return await self._by_filter(plan, self.single)
        if mode is LookupMode.BULK:
            return await self._bulk_forced(count)
        if mode is LookupMode.AUTO and count < 2 and self.case.sensitive is not True:
            plan = LookupPlan(LookupMode.SINGLE, count, "one address: one request")
            return await self._by_filter(plan, self.single)
        first = await self._first_page()
        if mode is LookupMode.SCAN:
            pages, size = _pages(first)
            reason = f"--lookup scan: {_tenant(first, pages, size)}"
            return self._scanning(self.scan.requests + (pages or 1) - 1, reason, size, first)
        return await self._auto(count, first)

    async def _auto(self, count: int, first: TenantPage) -> Chosen:
        pages, size = _pages(first)
        bulk = BulkEmailResolver(self.client, size, self.case)
        rows = self._sample(size)
        group = bulk.fit([row.address for row in rows])[0]
        groups = math.ceil(count / len(group))
        tenant = _tenant(first, pages, size)
        spent = self.scan.requests  # page 1 (in both dialects, when the size was probed)
        if self.facts.email_in_filter is False:
            ignored = f"the tenant ignores filter[email][in] ({self.facts.measured})"
        else:
            if pages is not None and pages < 1 + groups:
                reason = (
                    f"{counted(count, 'address')}, {tenant}:"
                    f" fewer requests than {counted(groups, 'bulk lookup')}"
                )
                return self._scanning(spent + pages - 1, reason, size, first)
            if self._twin_scan(pages, groups):
                reason = self._case_reason(tenant, counted(groups, "bulk lookup"))
                return self._scanning(spent + (pages or 1) - 1, reason, size, first)
            found = await bulk.try_group(group)
            if found is not None:
                versus = f", fewer than {counted(pages, 'page')}" if pages is not None else ""
                reason = (
                    f"the tenant honours filter[email][in]: {counted(groups, 'request')} of up"
                    f" to {counted(len(group), 'address')}{versus}"
                )
                plan = LookupPlan(LookupMode.BULK, spent + groups, reason)
                return await self._by_filter(plan, bulk, rows, found)
            ignored = "the tenant ignores filter[email][in]"
            spent += 1
        if pages is not None and pages - 1 < count:
            singles = counted(count, "single lookup")
            reason = f"{ignored}: {tenant} costs fewer requests than {singles}"
            return self._scanning(spent + pages - 1, reason, size, first)
        if self._twin_scan(pages, count):
            reason = f"{ignored}; {self._case_reason(tenant, counted(count, 'single lookup'))}"
            return self._scanning(spent + (pages or 1) - 1, reason, size, first)
        versus = f" than {tenant}" if pages is not None else " (its list does not say its size)"
        costs = "costs" if count == 1 else "cost"
        reason = f"{ignored}: {counted(count, 'single lookup')} {costs} fewer requests{versus}"
        return await self._by_filter(
            LookupPlan(LookupMode.SINGLE, spent + count, reason), self.single
        )

    async def _bulk_forced(self, count: int) -> Chosen:
        bulk = BulkEmailResolver(self.client, case=self.case)
        if self.facts.email_in_filter is False:
            reason = (
                f"the tenant does not honour filter[email][in] ({self.facts.measured});"
                " looking emails up one by one"
            )
            return await self._by_filter(
                LookupPlan(LookupMode.SINGLE, count, reason, warning=reason), self.single
            )
        rows = self._sample(bulk.group_size)
        group = bulk.fit([row.address for row in rows])[0]
        found = await bulk.try_group(group)
        if found is None:
            reason = "the tenant does not honour filter[email][in]; looking emails up one by one"
            plan = LookupPlan(LookupMode.SINGLE, 1 + count, reason, warning=reason)
            return await self._by_filter(plan, self.single)
        groups = math.ceil(count / len(group))
        plan = LookupPlan(LookupMode.BULK, groups, "--lookup bulk: the tenant honours the filter")
        return await self._by_filter(plan, bulk, rows, found)

    async def _by_filter(
        self,
        plan: LookupPlan,
        resolver: Resolver,
        rows: Sequence[RowRecord] = (),
        found: Sequence[Match] = (),
    ) -> Chosen:
        """A plan of lookups by filter, screened by a ``CaseGuard``; on a tenant known to
        compare case-sensitively it says what it cannot rule out."""
        if self.case.sensitive is True and plan.warning is None:
            plan = replace(plan, warning=self._case_warning(plan))
        self.plan = plan
        self._planned_reads = self.scan.requests
        self.guard = CaseGuard(resolver, self, switchable=self.mode is LookupMode.AUTO)
        rows = rows[: len(found)]  # the group that fitted one URL
        settled = await self.guard.screen([row.address for row in rows], found)
        return Chosen(plan, self.guard, settled=list(zip(rows, settled, strict=True)))

    def _scanning(
        self, requests: int, reason: str, size: int, first: TenantPage | None = None
    ) -> Chosen:
        plan = LookupPlan(LookupMode.SCAN, requests, reason)
        return Chosen(plan, self._after_scan(size), scan=self.scan, first=first)

    def _after_scan(self, size: int) -> Resolver:
        """The resolver of the rows a moved scan could not settle: bulk (single where the
        filter is ignored), screened without a way back to the scan."""
        return CaseGuard(BulkEmailResolver(self.client, size, self.case), self, switchable=False)

    def _sample(self, size: int) -> list[RowRecord]:
        rows = (r for r in self.run.rows_in_stage(Stage.LOOKUP) if not r.profile_id)
        return list(islice(rows, size))

    async def _first_page(self) -> TenantPage:
        """Page 1 of the tenant (read once), at the page size that works: probed for unless
        doctor measured it."""
        if self.first is None:
            known = self.facts.page_size is not None
            read = self.scan.first_page if known else self.scan.widest_first_page
            self.first = await read()
        return self.first

    # -- the case rule -----------------------------------------------------------------------

    def _twin_scan(self, pages: int | None, lookups: int) -> bool:
        """Whether the tenant is known to compare case-sensitively and the rest of the scan
        costs at most ``CASE_SCAN_FACTOR`` times ``lookups`` requests."""
        return (
            self.case.sensitive is True
            and pages is not None
            and pages - 1 <= CASE_SCAN_FACTOR * lookups
        )

    def _case_reason(self, tenant: str, lookups: str) -> str:
        return (
            f"the tenant's email filter {self._rule()}: {tenant}"
            " rules out another profile holding an address in another case, for at most"
            f" {CASE_SCAN_FACTOR} times the requests of {lookups}"
        )

    def _case_warning(self, plan: LookupPlan) -> str:
        """What a plan of lookups by filter cannot promise on a case-sensitive tenant, and why
        the scan was not chosen instead."""
        if self.mode is not LookupMode.AUTO:
            why = f"--lookup {self.mode.value} was asked for"
        elif self.first is None or self.first.total is None:
            why = "the tenant's list does not say its size, so it cannot be scanned"
        else:
            pages, size = _pages(self.first)
            why = (
                f"{_tenant(self.first, pages, size)} would cost more than {CASE_SCAN_FACTOR}"
                f" times the {counted(plan.requests, 'request')} of this plan"
            )
        return (
            f"The tenant's email filter {self._rule()}: a lookup by filter cannot rule out another"
            f" profile holding an address in another case, and {why}. Rows matched after a"
            " change of case say so in their detail; --lookup scan rules it out."
        )

    def _rule(self) -> str:
        """The tenant's case rule in words, with what showed it."""
        if self.case.sensitive:
            return f"is case-sensitive ({self.case.shown_by})"
        return "may be case-sensitive (an address found in another case could not be checked)"

    async def scan_in_reach(self) -> bool:
        """Whether the rest of a scan costs at most ``CASE_SCAN_FACTOR`` times this plan's
        requests (page 1 is read if the plan did not read it)."""
        pages, _ = _pages(await self._first_page())
        requests = self.plan.requests if self.plan is not None else 1
        return pages is not None and pages - 1 <= CASE_SCAN_FACTOR * requests

    def switch_to_scan(self) -> None:
        """The plan becomes the scan (the guard leaves the rows to it); says so."""
        first = self.first
        assert first is not None and self.plan is not None  # scan_in_reach read page 1
        pages, size = _pages(first)
        reason = (
            f"the tenant's email filter {self._rule()}: {_tenant(first, pages, size)}"
            " rules out another profile holding an address in another case"
        )
        read = self.scan.requests - self._planned_reads  # page 1, when read only now
        requests = self.plan.requests + read + (pages or 1) - 1
        self._changed(LookupPlan(LookupMode.SCAN, requests, reason))

    def warn_of_case(self) -> None:
        """The plan stays, with the warning of what it cannot rule out; says so."""
        if self.plan is not None and self.plan.warning is None:
            self._changed(replace(self.plan, warning=self._case_warning(self.plan)))

    def _changed(self, plan: LookupPlan) -> None:
        self.plan = plan
        if self._chosen and self.on_change is not None:  # while choosing, choose() returns it
            self.on_change(plan)

    def rest(self) -> Chosen | None:
        """After the lookups by filter: the scan the guard switched to (the rows it left wait
        in the lookup stage), or None when it did not."""
        if self.guard is None or not self.guard.switched or self.first is None:
            return None
        _, size = _pages(self.first)
        return Chosen(self.plan, self._after_scan(size), scan=self.scan, first=self.first)


class CaseGuard:
    """Lookups by filter screened for the tenant's case rule (a ``Resolver``).

    A match found through a change of case cannot rule out a twin on a tenant that compares
    case-sensitively. The first such match settles the rule (one lookup as written, unless an
    answer already proved it); on a case-sensitive tenant the guard then hands this row and
    every later one to the scan, when the planner can afford it and may change plans, and
    otherwise notes the rows (``CASE_NOTE``) under the plan's warning.
    """

    key_name = "email"

    def __init__(self, inner: Resolver, planner: LookupPlanner, *, switchable: bool) -> None:
        self.inner = inner
        self.group_size = inner.group_size
        self.planner = planner
        self.switchable = switchable
        self.switched = False
        """Rows are left for the scan from now on."""
        self._settled = planner.case.sensitive is True  # the plan already said what it can do
        self._asked = False
        self._lock = asyncio.Lock()

    async def resolve(self, keys: Sequence[str]) -> list[Match]:
        """Each address's match, screened; after a switch, deferred without a request."""
        if self.switched:
            return [_DEFERRED for _ in keys]
        return await self.screen(keys, await self.inner.resolve(keys))

    async def screen(self, keys: Sequence[str], matches: Sequence[Match]) -> list[Match]:
        """The matches of ``keys`` as the run may decide them (see the class docstring)."""
        return [await self._screened(key, match) for key, match in zip(keys, matches, strict=True)]

    async def _screened(self, address: str, match: Match) -> Match:
        if match.case_changed and len(match.profiles) == 1:
            async with self._lock:
                await self._settle_rule(address)
            if self.planner.case.sensitive is not False and not self.switched:
                return replace(match, note=CASE_NOTE)
        return _DEFERRED if self.switched else match

    async def _settle_rule(self, address: str) -> None:
        case = self.planner.case
        if case.sensitive is None and not self._asked:
            self._asked = True
            await self.planner.single.learn_case(address)
        if case.sensitive is False or self._settled:
            return
        self._settled = True
        if self.switchable and await self.planner.scan_in_reach():
            self.switched = True
            self.planner.switch_to_scan()
        else:
            self.planner.warn_of_case()


def _pages(first: TenantPage) -> tuple[int | None, int]:
    """How many pages the tenant's profiles fill (None when it does not say), and their size."""
    size = first.size or len(first.profiles) or MAX_PAGE_SIZE
    if first.total is None:
        return None, size
    return max(1, math.ceil(first.total / size)), size


def _tenant(first: TenantPage, pages: int | None, size: int) -> str:
    if pages is None or first.total is None:
        return "the tenant's list does not say its size"
    profiles = counted(first.total, "profile")
    return f"reading the tenant's {profiles} in {counted(pages, 'page')} of {size}"
