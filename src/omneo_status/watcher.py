"""Following one batch to its end and settling its rows.

The batch's own state (``Batch.state``/``BatchItem.state``) says how each row ended. Rows it
does not account for are settled by reading their profiles; a tenant without the batch
endpoint (404) is followed through the profiles alone. The watcher writes nothing: it returns
what it learned and the engine journals it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from omneo_status.backoff import Backoff
from omneo_status.client import OmneoClient
from omneo_status.journal import RowRecord, Settled
from omneo_status.models import Action, Batch, BatchItem, BatchState, Outcome
from omneo_status.resolver import read_profiles

NOT_APPLIED = "the batch finished but the change is not on the profile"


@dataclass
class Watched:
    """What the watcher learned about one batch."""

    settled: list[Settled] = field(default_factory=list)
    batch: Batch | None = None
    """The batch's last state; None when the tenant has no batch endpoint."""
    gave_up: str | None = None
    """Why the wait ended before every row was settled (the rest stay pending)."""


class BatchWatcher:
    """Polls batches of one action with the run's back-off and deadlines."""

    def __init__(self, client: OmneoClient, action: Action, backoff: Callable[[], Backoff]) -> None:
        self.client = client
        self.action = action
        self.backoff = backoff

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
            if batch is None:
                return await self._by_profiles(action, batch_id, rows, wait)
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
                watched.settled.append(Settled(row.line, action.done, batch_id=batch.id))
            else:
                unsure.append(row)
        if unsure:  # the batch did not say: the profiles do
            profiles = await read_profiles(self.client, [r.profile_id or "" for r in unsure])
            for row, profile in zip(unsure, profiles, strict=True):
                applied = profile is not None and action.applied(profile.statuses, row.send)
                outcome, detail = (action.done, "") if applied else (Outcome.FAILED, NOT_APPLIED)
                watched.settled.append(Settled(row.line, outcome, detail, batch_id=batch.id))
        return watched

    async def _by_profiles(
        self, action: Action, batch_id: str, rows: Sequence[RowRecord], wait: Backoff
    ) -> Watched:
        """No batch endpoint: wait until every profile shows the change (or a deadline)."""
        watched = Watched()
        waiting = list(rows)
        while waiting:
            still: list[RowRecord] = []
            profiles = await read_profiles(self.client, [r.profile_id or "" for r in waiting])
            for row, profile in zip(waiting, profiles, strict=True):
                if profile is None:
                    settled = Settled(
                        row.line, Outcome.FAILED, "profile not found", batch_id=batch_id
                    )
                    watched.settled.append(settled)
                elif action.applied(profile.statuses, row.send):
                    watched.settled.append(Settled(row.line, action.done, batch_id=batch_id))
                else:
                    still.append(row)
            if len(still) < len(waiting):
                wait.progressed()
            waiting = still
            if waiting and (reason := wait.expired()) is not None:
                watched.gave_up = f"{len(waiting)} profile(s) still lack the change: {reason}"
                return watched
            if waiting:
                await wait.pause()
        return watched


async def reconcile(
    client: OmneoClient, action: Action, rows: Sequence[RowRecord]
) -> tuple[list[Settled], list[RowRecord]]:
    """Rows of a chunk that may or may not have been sent (a run died mid-request), settled
    from their profiles: applied, or gone; the rest are returned to be sent again (safe: the
    endpoint merges)."""
    settled: list[Settled] = []
    again: list[RowRecord] = []
    profiles = await read_profiles(client, [row.profile_id or "" for row in rows])
    for row, profile in zip(rows, profiles, strict=True):
        if profile is None:
            settled.append(Settled(row.line, Outcome.FAILED, "profile no longer exists"))
        elif action.applied(profile.statuses, row.send):
            settled.append(Settled(row.line, action.done, "applied by an earlier attempt"))
        else:
            again.append(row)
    return settled, again


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
