"""Following one batch to its end and settling its rows.

The batch's own state (``Batch.state``/``BatchItem.state``) says how each row ended. Rows it
does not account for are settled by reading their profiles back. A 404 for the batch means one
of two things, told apart by the answer (``MissingBatch.endpoint``) or by another batch that
answered in this run: the tenant lost the batch (its rows whose profiles lack the change come
back ``unsent``, at once), or the tenant has no batch endpoint (the profiles alone are followed;
if they stand still for the stall timeout, the rows come back ``unsent`` too). The watcher
writes nothing: it returns what it learned and the engine journals it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from omneo_status.api.client import MissingBatch, OmneoClient
from omneo_status.models import Action, Batch, BatchItem, BatchState, Outcome, Profile
from omneo_status.run.backoff import Backoff
from omneo_status.run.readback import ProfileReader
from omneo_status.store.records import RowRecord, Settled
from omneo_status.wording import count

NOT_APPLIED = "the batch finished but the change is not on the profile"


@dataclass
class Watched:
    """What the watcher learned about one batch."""

    settled: list[Settled] = field(default_factory=list)
    batch: Batch | None = None
    """The batch's last state; None when the tenant did not answer for it (404)."""
    gave_up: str | None = None
    """Why the wait ended before every row was settled (the rest stay pending)."""
    unsent: list[RowRecord] = field(default_factory=list)
    """Rows the tenant shows no sign of having received, which may be sent again (the
    endpoint merges): their batch is lost (``gave_up`` is None) or, without a batch endpoint,
    their profiles stood still for the stall timeout (``gave_up`` says so)."""


class BatchWatcher:
    """Polls batches of one action with the run's back-off and deadlines."""

    def __init__(
        self,
        client: OmneoClient,
        action: Action,
        backoff: Callable[[], Backoff],
        reader: ProfileReader | None = None,
    ) -> None:
        self.client = client
        self.action = action
        self.backoff = backoff
        self.reader = reader or ProfileReader(client)
        self.endpoint: bool | None = None
        """Whether the tenant has the batches endpoint, as far as this run has seen."""

    async def watch(
        self, batch_id: str, rows: Sequence[RowRecord], action: Action | None = None
    ) -> Watched:
        """Follow the batch to its end (or a deadline) and settle the rows it accounts for;
        ``action`` is the batch's when it is not the watcher's (a sync's removals)."""
        action = action or self.action
        wait = self.backoff()
        seen: tuple[object, ...] | None = None
        while True:
            batch = await self.client.get_batch(batch_id)
            if isinstance(batch, MissingBatch):
                if batch.endpoint is not None:
                    self.endpoint = batch.endpoint
                if self.endpoint:
                    return await self._lost(action, batch_id, rows)
                return await self._by_profiles(action, batch_id, rows, wait)
            self.endpoint = True
            if _finished(batch):
                return await self._settle(action, batch, rows)
            progress = (
                batch.status,
                batch.processed_count,
                batch.success_count,
                batch.failed_count,
            )
            if progress != seen:
                seen = progress
                wait.progressed()
            reason = wait.expired()
            if reason is not None:
                return Watched(batch=batch, gave_up=reason)
            await wait.pause()

    async def _settle(self, action: Action, batch: Batch, rows: Sequence[RowRecord]) -> Watched:
        items: dict[str, BatchItem] = {}
        for item in batch.items:
            for key in (item.entity_id, item.external_id):
                if key:
                    items[key] = item
        clean = batch.state is BatchState.DONE and not batch.failed_count
        watched = Watched(batch=batch)
        unsure: list[RowRecord] = []
        for row in rows:
            found = items.get(row.profile_id or "")
            state = found.state if found is not None else None
            if found is not None and state is BatchState.FAILED:
                detail = found.error or "the batch item failed"
                watched.settled.append(Settled(row.line, Outcome.FAILED, detail, batch_id=batch.id))
            elif state is BatchState.DONE or (found is None and clean):
                watched.settled.append(_done(row, action, batch.id))
            else:
                unsure.append(row)
        if unsure:  # the batch did not say: the profiles do
            profiles = await self.reader.read(unsure)
            for row, profile in zip(unsure, profiles, strict=True):
                if profile is not None and action.applied(profile.statuses, row.send):
                    watched.settled.append(_done(row, action, batch.id))
                else:
                    failed = Settled(row.line, Outcome.FAILED, NOT_APPLIED, batch_id=batch.id)
                    watched.settled.append(failed)
        return watched

    async def _lost(self, action: Action, batch_id: str, rows: Sequence[RowRecord]) -> Watched:
        """The tenant no longer knows the batch: one read of the profiles settles the rows
        that have the change (or whose profile is gone); the others are unsent."""
        watched = Watched()
        profiles = await self.reader.read(rows)
        watched.unsent = _sort(action, rows, profiles, batch_id, into=watched.settled)
        return watched

    async def _by_profiles(
        self, action: Action, batch_id: str, rows: Sequence[RowRecord], wait: Backoff
    ) -> Watched:
        """No batch endpoint: wait until every profile shows the change (or a deadline)."""
        watched = Watched()
        waiting = list(rows)
        while waiting:
            profiles = await self.reader.read(waiting)
            still = _sort(action, waiting, profiles, batch_id, into=watched.settled)
            if len(still) < len(waiting):
                wait.progressed()
            waiting = still
            if waiting and (reason := wait.expired()) is not None:
                lack = "lacks" if len(waiting) == 1 else "lack"
                lacking = f"{count(len(waiting), 'profile')} still {lack}"
                watched.gave_up = f"{lacking} the change: {reason}"
                if wait.stalled:
                    watched.unsent = waiting
                return watched
            if waiting:
                await wait.pause()
        return watched


async def reconcile(
    reader: ProfileReader, action: Action, rows: Sequence[RowRecord]
) -> tuple[list[Settled], list[RowRecord]]:
    """Rows of a chunk that may or may not have been sent (a run died mid-request), settled
    from their profiles: applied, or gone; the rest are returned to be sent again (safe: the
    endpoint merges)."""
    settled: list[Settled] = []
    again: list[RowRecord] = []
    for row, profile in zip(rows, await reader.read(rows), strict=True):
        if profile is None:
            settled.append(Settled(row.line, Outcome.FAILED, "profile no longer exists"))
        elif action.applied(profile.statuses, row.send):
            settled.append(Settled(row.line, action.done, "applied by an earlier attempt"))
        else:
            again.append(row)
    return settled, again


def _sort(
    action: Action,
    rows: Sequence[RowRecord],
    profiles: Sequence[Profile | None],
    batch_id: str,
    *,
    into: list[Settled],
) -> list[RowRecord]:
    """Settle (``into``) the rows whose profile shows the change or is gone; returns the
    rows whose profile still lacks it."""
    lacking: list[RowRecord] = []
    for row, profile in zip(rows, profiles, strict=True):
        if profile is None:
            into.append(Settled(row.line, Outcome.FAILED, "profile not found", batch_id=batch_id))
        elif action.applied(profile.statuses, row.send):
            into.append(_done(row, action, batch_id))
        else:
            lacking.append(row)
    return lacking


def _done(row: RowRecord, action: Action, batch_id: str) -> Settled:
    """A row its batch applied; one sent again keeps the detail that says so."""
    return Settled(row.line, action.done, row.detail if row.resent else "", batch_id=batch_id)


def _finished(batch: Batch) -> bool:
    """Whether a batch is over: its state says so, or (an unknown word) its counts add up."""
    if batch.state in (BatchState.DONE, BatchState.FAILED):
        return True
    if batch.state is BatchState.RUNNING:
        return False
    total, processed = batch.total_count, batch.processed_count
    if processed is None and batch.success_count is not None and batch.failed_count is not None:
        processed = batch.success_count + batch.failed_count
    return total is not None and total > 0 and processed is not None and processed >= total
