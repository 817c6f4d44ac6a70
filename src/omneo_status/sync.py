"""Sync: make the holders of one status equal the profiles an input lists.

The engine resolves and assigns the input as ``assign`` does; this module adds the other side
once every row is decided: it finds the status's current holders, plans its removal from the
holders the input does not list, and applies the removal guard before anything is written.

When the run's lookups scanned the whole tenant, that scan saw every profile's statuses and kept
the holders in the journal (``scan``): they are taken from there, without a request. Otherwise
they are found with ``filter[statuses.handle]``, which the docs only imply, so the answer is
proven: every profile listed must hold the status. A tenant that ignores the filter lists
profiles without it: the first page that does so ends the reading, that answer is never used,
and the holders are found by a tenant scan instead (journaled page by page like the lookups',
so a resumed run reads no page twice; at most ``TENANT_SCAN_MAX`` profiles, else exit 2 before
any write).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from omneo_status.api.client import OmneoClient
from omneo_status.errors import GuardrailError, UsageError
from omneo_status.events import Reporter, Step
from omneo_status.inputs import email_key, normalize_email
from omneo_status.models import Action, Profile
from omneo_status.options import CONCURRENCY, RemovalLimit
from omneo_status.run.scan import TenantScan
from omneo_status.store.journal import RunJournal
from omneo_status.store.records import FoundBy, NewRow, Stage, SyncPlan
from omneo_status.store.scanstore import listed_profiles
from omneo_status.wording import count

TENANT_SCAN_MAX = 250_000
"""Profiles read at most to find the holders on a tenant that ignores the status filter."""

SYNC_ONE = "sync one status at a time"


class RemovalGuardError(GuardrailError):
    """The removal guard stopped a sync before any write (exit 3); its ``--json`` document
    adds a ``guard`` object with the figures."""

    def __init__(self, message: str, *, hint: str, plan: SyncPlan) -> None:
        super().__init__(message, hint=hint)
        self.plan = plan

    def to_json(self) -> dict[str, Any]:
        """The error document plus ``guard``: holders, would_remove, max_remove."""
        document = super().to_json()
        plan = self.plan
        document["guard"] = {
            "holders": plan.holders,
            "would_remove": plan.would_remove,
            "max_remove": plan.max_remove,
        }
        return document


@dataclass(frozen=True)
class Holders:
    """The profiles holding a status, and how they were found."""

    profiles: tuple[Profile, ...]
    found_by: FoundBy
    requests: int
    """GET requests it took this time (0 when the lookups' scan had seen them)."""


async def find_holders(
    client: OmneoClient,
    run: RunJournal,
    handles: Sequence[str],
    reporter: Reporter,
    *,
    concurrency: int,
) -> Holders:
    """Every profile holding one of ``handles``, proven: from the run's tenant scan when it
    read every page unmoved, else from the status filter (one reading per handle) when every
    profile it lists holds the handle, else from a scan of the whole tenant (``UsageError``
    when the tenant has more than ``TENANT_SCAN_MAX`` profiles or does not say how many)."""
    before = client.governor.stats.requests
    scan = TenantScan(client, run, concurrency=concurrency, reporter=reporter)
    state = scan.started()
    what = ", ".join(handles)
    if state is not None and state.holders_of == ",".join(handles) and not state.moved:
        if state.complete:
            holders = tuple(scan.store.holders())
            reporter.info(
                f"{what}: {count(len(holders), 'holder')}, seen by the tenant scan of this run"
                " (no request of their own)"
            )
            return Holders(holders, "tenant_scan", 0)
        # A scan for the holders that an earlier attempt began (the filter proved ignored).
        return await _scanned(client, scan, what, reporter, before, fresh=False)
    found: dict[str, Profile] = {}
    reporter.start(Step.HOLDERS, None)
    for handle in handles:
        listed = await client.find_profiles(
            {"filter[statuses.handle]": handle},
            stop_at=_without(handle),
            on_page=_HoldersRead(reporter),
        )
        strangers = sum(1 for profile in listed.profiles if handle not in profile.statuses)
        if strangers:
            reporter.finish(Step.HOLDERS)
            reporter.warn(
                "The tenant ignores filter[statuses.handle]: it listed"
                f" {count(strangers, 'profile')} without {handle}; reading the whole tenant to"
                " find its holders"
            )
            return await _scanned(client, scan, what, reporter, before, fresh=True)
        found.update((profile.id, profile) for profile in listed.profiles)
    reporter.finish(Step.HOLDERS)
    spent = client.governor.stats.requests - before
    return Holders(tuple(found.values()), "filter", spent)


def _without(handle: str) -> Callable[[Sequence[Profile]], bool]:
    """Whether a page lists a profile without ``handle`` (the tenant ignores the filter)."""
    return lambda page: any(handle not in profile.statuses for profile in page)


async def _scanned(
    client: OmneoClient,
    scan: TenantScan,
    handle: str,
    reporter: Reporter,
    before: int,
    *,
    fresh: bool,
) -> Holders:
    """The holders seen by a scan of the whole tenant (``fresh``: a new one; else the one an
    earlier attempt began, continued)."""
    first = await scan.first_page() if fresh else None
    if first is not None and (first.total is None or first.total > TENANT_SCAN_MAX):
        if first.total is None:
            why = "its profile list does not say how many profiles it has (meta.total)"
        else:
            why = f"it has more than {TENANT_SCAN_MAX} profiles to read"
        raise UsageError(
            "This tenant cannot list the holders of a status: it ignores"
            f" filter[statuses.handle] and {why}; nothing was written",
            hint="Use assign and remove with files of your own instead of sync on this tenant.",
        )
    state = await scan.read(first, fresh=fresh)
    if state.moved:
        reporter.warn(
            "The tenant's profile list changed while it was read: a holder may have been missed"
            f" (it keeps {handle} until the next sync)"
        )
    spent = client.governor.stats.requests - before
    holders = tuple(scan.store.holders())
    reporter.info(
        f"Read the whole tenant ({count(state.total, 'profile')}, {count(spent, 'request')}):"
        f" {count(len(holders), 'holder')} of {handle}"
    )
    return Holders(holders, "tenant_scan", spent)


class _HoldersRead:
    """Reports the holders read by the status filter, page by page (``Step.HOLDERS``), with
    the list's total once its first page tells it."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.shown = 0
        self.total = False

    def __call__(self, seen: int, total: int | None) -> None:
        if total and not self.total:
            self.total = True
            self.reporter.extend(Step.HOLDERS, total)
        if seen > self.shown:  # a walk that switched dialects reads page 1 again
            self.reporter.advance(Step.HOLDERS, seen - self.shown)
            self.shown = seen


def guard(
    limit: RemovalLimit, *, handle: str, removals: int, holders: int, rows: int
) -> str | None:
    """Why the removal guard stops this sync (None when it lets it through): an input without
    rows unless every holder may go (``100%``), or more removals than ``limit`` allows."""
    if rows == 0 and not limit.everyone:
        return (
            f"The input has no rows: a sync would take {handle} from all"
            f" {count(holders, 'holder')}"
            " (an empty or truncated export?); nothing was written"
        )
    if not limit.allows(removals, holders):
        return (
            f"The sync would take {handle} from {removals:,} of {count(holders, 'holder')}, over"
            f" --max-remove {limit}; nothing was written"
        )
    return None


def guard_hint(*, rows: int, removals: int, holders: int) -> str:
    """How to allow what the guard stopped: the smallest count and share that let it through."""
    if rows == 0:
        return "To take the status from every holder, pass --max-remove 100%."
    share = -(-removals * 100 // max(holders, 1))  # rounded up, so that it allows this many
    return (
        f"If this is expected, allow it with --max-remove {removals} (or --max-remove"
        f" {share}%) and run the same command again."
    )


class SyncPlanner:
    """Plans the removal side of a sync run, once: holders found, guard applied, holder rows
    journaled with the plan (a resumed run that planned already is left as it is).

    A sync whose rows name their statuses (``--status-column``) has several handles: every
    status the column names and their siblings in their groups. A holder of any of them that
    the input does not list loses those it holds, and the guard counts over all of them."""

    def __init__(
        self,
        client: OmneoClient,
        handles: Sequence[str],
        limit: RemovalLimit,
        reporter: Reporter,
        *,
        dry_run: bool,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.client = client
        self.handles = tuple(handles)
        self.handle = ", ".join(handles)
        """The handles as messages name them."""
        self.limit = limit
        self.reporter = reporter
        self.dry_run = dry_run
        self.concurrency = concurrency

    async def plan(self, run: RunJournal) -> None:
        """Journal the holders to remove, or raise ``RemovalGuardError`` before any write
        (a dry run records the guard's verdict instead of raising)."""
        info = run.info()
        earlier = SyncPlan.of(info.sync)
        if earlier is not None and earlier.planned:
            return
        holders = await find_holders(
            self.client, run, self.handles, self.reporter, concurrency=self.concurrency
        )
        keys = [(p.id, email_key(p.email or "") or None) for p in holders.profiles]
        listed = listed_profiles(run, keys)
        unlisted = [p for p in holders.profiles if p.id not in listed]
        rows = info.rows
        stop = guard(
            self.limit,
            handle=self.handle,
            removals=len(unlisted),
            holders=len(holders.profiles),
            rows=rows,
        )
        plan = SyncPlan(
            holders=len(holders.profiles),
            would_remove=len(unlisted),
            max_remove=str(self.limit),
            allowed=stop is None,
            holders_found_by=holders.found_by,
            holder_requests=holders.requests,
        )
        self.reporter.info(
            f"{self.handle}: {count(len(holders.profiles), 'holder')}, {len(unlisted):,} not in"
            " the input"
            f" (--max-remove {self.limit}: {'allowed' if stop is None else 'over the limit'})"
        )
        if stop is not None:
            if not self.dry_run:
                run.record_sync(plan.stored())
                raise RemovalGuardError(
                    stop,
                    hint=guard_hint(
                        rows=rows, removals=len(unlisted), holders=len(holders.profiles)
                    ),
                    plan=plan,
                )
            self.reporter.warn(stop.replace("; nothing was written", ""))
        run.record_sync(replace(plan, planned=True).stored(), [self._row(p) for p in unlisted])

    def _row(self, profile: Profile) -> NewRow:
        email = profile.email or ""
        would = self.dry_run
        send = tuple(handle for handle in self.handles if handle in profile.statuses)
        return NewRow(
            line=None,
            key=email,
            address=normalize_email(email),
            canonical=email_key(email),
            stage=Stage.PLANNED,
            outcome=Action.REMOVE.would if would else None,
            detail=f"would remove {', '.join(send)}: not in the input" if would else "",
            profile_id=profile.id,
            held=profile.statuses,
            send=send,
            action=Action.REMOVE,
            holder=True,
        )
