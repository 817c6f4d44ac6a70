"""A run's outbox: planned rows cut into chunks, sent, and followed to their end.

A chunk is written to the journal when it is cut (``queued``: nothing sent), marked ``posting``
just before its request goes out, and ``accepted`` with the batch id of the answer. After an
interruption the journal therefore tells rows never sent (they are simply sent), rows in doubt
(only the chunks that were ``posting``: read back, as cheaply as the tenant allows) and batches
to follow. A batch the tenant lost, or a chunk whose profiles stood still on a tenant without
the batches endpoint, is sent again once, in a chunk of its own, journaled before it goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from omneo_status.api.client import OmneoClient
from omneo_status.errors import ValidationFailed
from omneo_status.events import Reporter, Step
from omneo_status.models import Action, Outcome
from omneo_status.options import RunOptions
from omneo_status.run.readback import ProfileReader
from omneo_status.run.watcher import BatchWatcher, Watched, reconcile
from omneo_status.store.journal import RunJournal
from omneo_status.store.records import ChunkState, Planned, RowRecord, Settled
from omneo_status.wording import count

RECONCILING = (
    "{chunks} may or may not have been sent before the last run stopped: reading their"
    " profiles back"
)
LOST = "the tenant no longer knows batch {batch} (404)"
STOOD_STILL = "the profiles of batch {batch} showed no change for {stall:g}s (the stall timeout)"
LOST_AGAIN = (
    "{why}, and this row was sent again already: it is not sent a third time (re-run with"
    " --fresh to look it up and send it anew)"
)

SENDS_AT_ONCE = 2
"""Batch requests in flight at once: enough to overlap, few enough to leave room for lookups."""


class Crew(Protocol):
    """Where the outbox's background work runs (the engine's tasks)."""

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` beside the rest; its error stops the run."""
        ...


@dataclass(kw_only=True)
class Outbox:
    """Sends one run's planned rows in chunks and follows each batch to its end."""

    run: RunJournal
    options: RunOptions
    client: OmneoClient
    reporter: Reporter
    crew: Crew
    watcher: BatchWatcher
    reader: ProfileReader
    action_of: Callable[[RowRecord], Action]
    gave_up: bool = False
    """Whether some batch was not seen to its end (the run can be resumed)."""
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(SENDS_AT_ONCE))
    _ready: int = 0

    # -- an earlier attempt's chunks -------------------------------------------------------

    async def reconcile(self) -> None:
        """Settle the chunks whose request may or may not have reached the API before the
        last run stopped; their rows lacking the change are planned again."""
        posting = self.run.chunks(ChunkState.POSTING)
        if not posting:
            return
        self.reporter.start(Step.RECONCILE, sum(chunk.profiles for chunk in posting))
        self.reporter.info(RECONCILING.format(chunks=count(len(posting), "chunk")))
        for chunk in posting:
            rows = self.run.rows_of_chunk(chunk.chunk)
            if not rows:
                continue
            settled, again = await reconcile(self.reader, self.action_of(rows[0]), rows)
            for row in again:
                self.run.plan(Planned(row.line, row.profile_id or "", row.held, row.send))
            self.run.finish_chunk(chunk.chunk, state=ChunkState.RECONCILED, settled=settled)
            self.reporter.advance(Step.RECONCILE, len(rows))
        self.reporter.finish(Step.RECONCILE)

    def resume(self) -> None:
        """Send the chunks an earlier attempt cut but never sent, and watch the batches it
        sent but did not see to their end."""
        for chunk in self.run.chunks(ChunkState.QUEUED):
            self._spawn_send(chunk.chunk, self.run.rows_of_chunk(chunk.chunk))
        if self.options.no_wait:
            return
        for chunk in self.run.chunks(ChunkState.ACCEPTED):
            rows = self.run.rows_of_chunk(chunk.chunk)
            self.crew.spawn(self._watch(chunk.chunk, chunk.batch_id or "", rows))

    # -- send ------------------------------------------------------------------------------

    def planned(self, *, pipelined: bool) -> None:
        """One more row was planned: while lookups go on (``pipelined``), each full chunk
        goes out at once."""
        self._ready += 1
        if pipelined and self._ready >= self.options.chunk_size:
            self.launch(full_only=True)

    def launch(self, *, full_only: bool) -> None:
        """Cut chunks from the planned rows that may go now (only full ones while lookups go
        on; a tier move's second write once its first landed) and send each; a chunk holds rows
        of one action (it is sent with that action's method): the first row's, and the rows of
        the other action among the next ``chunk_size`` wait for a chunk of their own (an undo
        of moves mixes them line by line)."""
        size = self.options.chunk_size
        while rows := list(self.run.sendable(limit=size)):
            first = self.action_of(rows[0])
            rows = [row for row in rows if self.action_of(row) is first]
            if full_only and len(rows) < size:
                return
            self._ready = max(0, self._ready - len(rows))
            self._spawn_send(self.run.open_chunk([row.line for row in rows]), rows)

    def _spawn_send(self, chunk: int, rows: list[RowRecord]) -> None:
        self.reporter.start(Step.SEND, None)
        self.reporter.extend(Step.SEND, len(rows))
        self.crew.spawn(self._send(chunk, rows))

    async def _send(self, chunk: int, rows: list[RowRecord]) -> None:
        items = [(row.profile_id or "", row.send) for row in rows]
        async with self._slots:
            self.run.post_chunk(chunk)  # in doubt from here until the answer is journaled
            try:
                batch_id = await self.client.send_batch(self.action_of(rows[0]), items)
            except ValidationFailed as exc:
                _refuse(self.run, self.reporter, chunk, rows, f"batch refused: {exc.message}")
                return
        self.run.accept_chunk(chunk, batch_id)
        self.reporter.advance(Step.SEND, len(rows))
        self.reporter.info(f"chunk {chunk}: {len(rows)} profiles queued as batch {batch_id}")
        if self.options.no_wait:
            detail = "queued; the run did not wait for the batch"
            self.run.settle_now(
                Settled(r.line, Outcome.SENT, detail, batch_id=batch_id) for r in rows
            )
            return
        await self._watch(chunk, batch_id, rows)  # the watcher reads line, profile and send

    # -- watch -----------------------------------------------------------------------------

    async def _watch(self, chunk: int, batch_id: str, rows: list[RowRecord]) -> None:
        self.reporter.start(Step.WAIT, None)
        self.reporter.extend(Step.WAIT, len(rows))
        watched = await self.watcher.watch(batch_id, rows, self.action_of(rows[0]))
        _report_failures(self.reporter, rows, watched.settled)
        self.reporter.advance(Step.WAIT, len(watched.settled))
        if watched.unsent:
            await self._send_again(chunk, batch_id, watched)
            return
        if watched.gave_up is not None:
            self._give_up(batch_id, watched.gave_up)
            self.run.settle_now(watched.settled)
            return
        batch = watched.batch
        self.run.finish_chunk(
            chunk,
            state=ChunkState.DONE,
            batch_status=batch.status if batch else "unknown",
            success_count=batch.success_count if batch else None,
            failed_count=batch.failed_count if batch else None,
            settled=watched.settled,
        )

    async def _send_again(self, chunk: int, batch_id: str, watched: Watched) -> None:
        """Send the unsent rows of a batch the tenant lost (or whose profiles stood still)
        once more, in a chunk of their own journaled first. A row sent again already is not
        sent a third time: it fails when its batch was lost, and stays pending (the run gave
        up waiting) when it stood still."""
        lost = watched.gave_up is None
        why = (
            LOST.format(batch=batch_id)
            if lost
            else STOOD_STILL.format(batch=batch_id, stall=self.options.stall_timeout)
        )
        again = [row for row in watched.unsent if not row.resent]
        twice = [row for row in watched.unsent if row.resent]
        settled = list(watched.settled)
        if twice and lost:
            detail = LOST_AGAIN.format(why=why)
            failed = [Settled(r.line, Outcome.FAILED, detail, batch_id=batch_id) for r in twice]
            _report_failures(self.reporter, twice, failed)
            settled += failed
        elif twice:
            self._give_up(batch_id, watched.gave_up or why)
        if again:
            self.reporter.warn(
                f"{why}: its {count(len(again), 'row')} lacking the change are sent again, once"
            )
        new = self.run.resend_chunk(
            chunk,
            batch_status="lost" if lost else "stalled",
            settled=settled,
            again=[row.line for row in again],
            detail=f"sent again: {why}",
        )
        if new is not None:
            self.reporter.start(Step.SEND, None)
            self.reporter.extend(Step.SEND, len(again))
            await self._send(new, self.run.rows_of_chunk(new))

    def _give_up(self, batch_id: str, why: str) -> None:
        self.gave_up = True
        self.reporter.warn(f"batch {batch_id}: {why}")


def _refuse(
    run: RunJournal, reporter: Reporter, chunk: int, rows: list[RowRecord], detail: str
) -> None:
    """Settle a chunk the API refused (422): every row failed, with the API's reason."""
    settled = [Settled(row.line, Outcome.FAILED, detail) for row in rows]
    run.finish_chunk(
        chunk,
        state=ChunkState.DONE,
        batch_status="refused",
        success_count=0,
        failed_count=len(rows),
        settled=settled,
    )
    _report_failures(reporter, rows, settled)
    reporter.advance(Step.SEND, len(rows))


def _report_failures(
    reporter: Reporter, rows: Iterable[RowRecord], settled: Iterable[Settled]
) -> None:
    keys = {row.line: row.key for row in rows}
    for record in settled:
        if record.outcome is Outcome.FAILED:
            reporter.row_failed(record.line, keys.get(record.line, ""), record.detail)
