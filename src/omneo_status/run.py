"""The pipeline of one run: resolve every row, decide, send chunks, poll batches, verify.

Everything here works from and into the journal, so the same code starts a run, resumes one
that died, and finishes one that gave up waiting. Lookups run concurrently; in pipelined mode
a chunk is sent as soon as it is full and polled while lookups go on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from omneo_status.client import OmneoClient
from omneo_status.errors import (
    ApiError,
    BadResponse,
    GuardrailError,
    NotFoundError,
    OmneoStatusError,
    ValidationFailed,
)
from omneo_status.events import Reporter, Step
from omneo_status.inputs import lookup_forms, normalize_email, same_email
from omneo_status.journal import ChunkState, Journal, RowRecord, Stage
from omneo_status.models import Action, Batch, BatchItem, Outcome, Profile

ROW_LEVEL_ERRORS = (ValidationFailed, NotFoundError, BadResponse)
"""API errors that fail one row (or one chunk) rather than the whole run."""

RUNNING_STATES = frozenset({"pending", "queued", "processing", "running", "in_progress", "started"})
DONE_STATES = frozenset({"success", "completed", "complete", "done", "succeeded", "finished"})
FAILED_STATES = frozenset({"failed", "error", "errored"})

BULK_GROUP = 40
"""Addresses per bulk lookup: keeps the URL well under common 8 KB limits."""

SKIPPED = (Outcome.NOT_FOUND, Outcome.AMBIGUOUS, Outcome.INVALID_EMAIL)


class LookupMode(StrEnum):
    """How emails are resolved to profiles."""

    AUTO = "auto"
    SINGLE = "single"
    BULK = "bulk"


@dataclass(frozen=True)
class RunOptions:
    """The knobs of the pipeline (the CLI's flags)."""

    action: Action
    handles: tuple[str, ...]
    dry_run: bool = False
    chunk_size: int = 250
    verify: int = 5
    poll_timeout: float = 1800.0
    stall_timeout: float = 600.0
    no_wait: bool = False
    strict: bool = False
    max_unmatched: float | None = None
    lookup: LookupMode = LookupMode.AUTO
    concurrency: int = 8


@dataclass(frozen=True)
class Preview:
    """The plan's counts, shown before the first write when a person is asked to go on."""

    counts: dict[str, int]
    to_send: int


Confirm = Callable[[Preview], bool]


@dataclass
class Verification:
    """The spot-check of profiles after the batches finished."""

    checked: int = 0
    ok: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class EngineOutcome:
    """What the engine leaves for the summary besides the journal's rows."""

    verification: Verification = field(default_factory=Verification)
    gave_up: bool = False
    lookup_mode: LookupMode = LookupMode.SINGLE


class _GaveUp(Exception):
    """A batch stopped moving, or the poll timeout ran out."""


@dataclass
class _Resolution:
    outcome: Outcome | None
    profile: Profile | None = None
    send: tuple[str, ...] = ()
    detail: str = ""


class Engine:
    """Runs one journaled run to its end (or to the first fatal error)."""

    def __init__(
        self,
        *,
        run_id: str,
        options: RunOptions,
        client: OmneoClient,
        journal: Journal,
        reporter: Reporter,
        confirm: Confirm | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = run_id
        self.options = options
        self.client = client
        self.journal = journal
        self.reporter = reporter
        self.confirm = confirm
        self._sleep = sleep
        self._clock = clock
        self._outbox: list[RowRecord] = []
        self._pending_writes = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._send_slots = asyncio.Semaphore(2)
        self._result = EngineOutcome()
        self._fatal: BaseException | None = None

    @property
    def pipelined(self) -> bool:
        """Whether chunks go out while lookups go on (not when a person or guardrail decides)."""
        return (
            not self.options.dry_run and self.confirm is None and self.options.max_unmatched is None
        )

    async def execute(self) -> EngineOutcome:
        """Take the run from wherever the journal says it is to its end."""
        try:
            return await self._execute()
        finally:
            for task in list(self._tasks):
                task.cancel()
            self.journal.commit()

    async def _execute(self) -> EngineOutcome:
        await self._reconcile()
        await self._resume_accepted()
        await self._resolve_all()
        if not self.options.dry_run:
            self._check_guardrail()
            self._ask_to_proceed()
            await self._send_planned()
        await self._drain()
        if self._result.gave_up:
            return self._result
        if not self.options.dry_run and not self.options.no_wait:
            await self._verify()
        return self._result

    # -- resume ----------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Settle chunks whose request may or may not have reached the API before a crash."""
        posting = self.journal.chunks(self.run_id, ChunkState.POSTING)
        if not posting:
            return
        self.reporter.start(Step.RECONCILE, sum(chunk.profiles for chunk in posting))
        self.reporter.info(
            f"{len(posting)} chunk(s) may or may not have been sent before the last run stopped:"
            " reading their profiles back"
        )
        for chunk in posting:
            rows = self.journal.rows_of_chunk(self.run_id, chunk.chunk)
            for row, profile in zip(rows, await self._read_profiles(rows), strict=True):
                if profile is not None and self._applied(profile, row.send):
                    self.journal.settle(
                        self.run_id,
                        row.line,
                        self._done_outcome(),
                        detail="applied by an earlier attempt",
                    )
                elif profile is None:
                    self.journal.settle(
                        self.run_id, row.line, Outcome.FAILED, detail="profile no longer exists"
                    )
                else:
                    self.journal.plan(
                        self.run_id, row.line, row.profile_id or "", row.held, row.send
                    )
                self.reporter.advance(Step.RECONCILE)
            self.journal.finish_chunk(
                self.run_id,
                chunk.chunk,
                state=ChunkState.RECONCILED,
                batch_status=None,
                success_count=None,
                failed_count=None,
            )
        self.reporter.finish(Step.RECONCILE)

    async def _resume_accepted(self) -> None:
        """Poll the batches an earlier attempt had sent but not seen to their end."""
        if self.options.no_wait:
            return
        for chunk in self.journal.chunks(self.run_id, ChunkState.ACCEPTED):
            self.reporter.start(Step.WAIT, None)
            self._spawn(self._await_chunk(chunk.chunk, chunk.batch_id or ""))

    # -- resolve ---------------------------------------------------------------------------

    async def _resolve_all(self) -> None:
        total = self.journal.stage_count(self.run_id, Stage.LOOKUP)
        self.reporter.start(Step.RESOLVE, total)
        if total == 0:
            self.reporter.finish(Step.RESOLVE)
            return
        mode = self.options.lookup
        if mode is not LookupMode.SINGLE:
            mode = await self._choose_lookup(mode)
        rows = self.journal.rows_in_stage(self.run_id, Stage.LOOKUP)
        self._result.lookup_mode = mode
        queue: asyncio.Queue[list[RowRecord] | None] = asyncio.Queue(
            maxsize=self.options.concurrency * 4
        )
        workers = [
            asyncio.create_task(self._lookup_worker(queue, mode))
            for _ in range(self.options.concurrency)
        ]
        try:
            group: list[RowRecord] = []
            size = BULK_GROUP if mode is LookupMode.BULK else 1
            for row in rows:
                if row.profile_id:  # undo rows know their profile already
                    await queue.put([row])
                    continue
                group.append(row)
                if len(group) >= size:
                    await queue.put(group)
                    group = []
                self._raise_fatal()
            if group:
                await queue.put(group)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
        self._raise_fatal()
        self.journal.commit()
        self.reporter.finish(Step.RESOLVE)

    async def _choose_lookup(self, mode: LookupMode) -> LookupMode:
        """Try one bulk lookup; keep bulk only if the answer proves the filter was honoured."""
        sample: list[RowRecord] = []
        for row in self.journal.rows_in_stage(self.run_id, Stage.LOOKUP, batch=BULK_GROUP):
            if not row.profile_id:
                sample.append(row)
            if len(sample) >= BULK_GROUP:
                break
        if len(sample) < 2:
            return LookupMode.SINGLE
        try:
            found = await self._bulk_lookup(sample)
        except ROW_LEVEL_ERRORS:
            found = None
        if found is None:
            message = "The tenant does not honour filter[email][in]; looking emails up one by one"
            if mode is LookupMode.BULK:
                self.reporter.warn(message)
            else:
                self.reporter.info(message)
            return LookupMode.SINGLE
        self.reporter.info("The tenant honours filter[email][in]; looking emails up in groups")
        await self._apply_bulk(sample, found)
        return LookupMode.BULK

    async def _lookup_worker(
        self, queue: asyncio.Queue[list[RowRecord] | None], mode: LookupMode
    ) -> None:
        while (group := await queue.get()) is not None:
            if self._fatal is not None:
                continue
            try:
                if mode is LookupMode.BULK and len(group) > 1:
                    await self._resolve_bulk(group)
                else:
                    for row in group:
                        await self._resolve_row(row)
            except (ApiError, OmneoStatusError) as exc:
                self._fatal = exc

    async def _resolve_row(self, row: RowRecord) -> None:
        try:
            resolution = await self._lookup_one(row)
        except ROW_LEVEL_ERRORS as exc:
            resolution = _Resolution(Outcome.FAILED, detail=f"lookup failed: {exc.message}")
        self._record(row, resolution)

    async def _lookup_one(self, row: RowRecord) -> _Resolution:
        if row.profile_id:
            profile = await self.client.get_profile(row.profile_id)
            return self._decide(row, [profile] if profile else [])
        email = normalize_email(row.email)
        matches: list[Profile] = []
        for form in lookup_forms(email):
            matches = await self._find_by_email(form)
            if matches:
                break
        return self._decide(row, matches)

    async def _find_by_email(self, email: str) -> list[Profile]:
        """Profiles whose email equals ``email`` (ignoring case), over every page of the answer."""
        matches: list[Profile] = []
        page_number = 1
        while True:
            page = await self.client.profiles_page({"filter[email]": email}, page_number)
            strangers = [p for p in page.profiles if not same_email(p.email or "", email)]
            if strangers:
                # A server that ignored the filter lists other customers: never guess from it.
                raise BadResponse(
                    "the API answered filter[email] with profiles of other addresses,"
                    " so this address could not be looked up safely"
                )
            matches.extend(page.profiles)
            if not page.has_next or not page.profiles:
                return matches
            page_number += 1

    async def _resolve_bulk(self, group: list[RowRecord]) -> None:
        try:
            found = await self._bulk_lookup(group)
        except ROW_LEVEL_ERRORS:
            found = None
        if found is None:  # fall back for this group rather than guess
            for row in group:
                await self._resolve_row(row)
            return
        await self._apply_bulk(group, found)

    async def _apply_bulk(self, group: list[RowRecord], found: dict[str, list[Profile]]) -> None:
        for row in group:
            key = normalize_email(row.email).casefold()
            matches = found.get(key, [])
            if not matches and normalize_email(row.email) != normalize_email(row.email).lower():
                await self._resolve_row(row)  # as written found nothing: try lower-case once
                continue
            self._record(row, self._decide(row, matches))

    async def _bulk_lookup(self, group: Sequence[RowRecord]) -> dict[str, list[Profile]] | None:
        """Profiles by email key for a group, or None if the answer shows the filter ignored."""
        emails = [normalize_email(row.email) for row in group]
        asked = {email.casefold() for email in emails}
        found: dict[str, list[Profile]] = {}
        page_number = 1
        seen = 0
        while True:
            page = await self.client.profiles_page(
                {"filter[email][in]": ",".join(emails)}, page_number
            )
            if page.total is not None and page.total > 3 * len(asked):
                return None
            for profile in page.profiles:
                key = (profile.email or "").strip().casefold()
                if key not in asked:
                    return None
                found.setdefault(key, []).append(profile)
            seen += len(page.profiles)
            if not page.has_next or not page.profiles or seen > 3 * len(asked):
                return found
            page_number += 1

    def _decide(self, row: RowRecord, matches: list[Profile]) -> _Resolution:
        if not matches:
            return _Resolution(Outcome.NOT_FOUND, detail="no profile has this email")
        if len(matches) > 1:
            ids = ", ".join(p.id for p in matches[:5])
            return _Resolution(
                Outcome.AMBIGUOUS, detail=f"{len(matches)} profiles have this email: {ids}"
            )
        profile = matches[0]
        wanted = row.send or self.options.handles
        held = set(profile.statuses)
        if self.options.action is Action.ASSIGN:
            send = tuple(h for h in wanted if h not in held)
            if not send:
                return _Resolution(Outcome.ALREADY_HAD, profile, detail="")
            verb, outcome = "add", Outcome.WOULD_ASSIGN
        else:
            send = tuple(h for h in wanted if h in held)
            if not send:
                return _Resolution(Outcome.DID_NOT_HAVE, profile, detail="")
            verb, outcome = "remove", Outcome.WOULD_REMOVE
        if self.options.dry_run:
            return _Resolution(outcome, profile, send, detail=f"would {verb} {', '.join(send)}")
        return _Resolution(None, profile, send)

    def _record(self, row: RowRecord, resolution: _Resolution) -> None:
        profile = resolution.profile
        held = profile.statuses if profile else None
        if resolution.outcome is None and profile is not None:
            self.journal.plan(self.run_id, row.line, profile.id, profile.statuses, resolution.send)
            if self.pipelined:
                self._outbox.append(
                    RowRecord(
                        line=row.line,
                        email=row.email,
                        stage=Stage.PLANNED,
                        outcome=None,
                        profile_id=profile.id,
                        held=profile.statuses,
                        send=resolution.send,
                        chunk=None,
                        batch_id=None,
                        detail="",
                    )
                )
                if len(self._outbox) >= self.options.chunk_size:
                    self._launch_chunk(self._outbox)
                    self._outbox = []
        else:
            outcome = resolution.outcome or Outcome.FAILED
            self.journal.settle(
                self.run_id,
                row.line,
                outcome,
                profile_id=profile.id if profile else None,
                held=held,
                detail=resolution.detail,
            )
            if outcome is Outcome.FAILED:
                self.reporter.row_failed(row.line, row.email, resolution.detail)
        self._pending_writes += 1
        if self._pending_writes >= 500:
            self.journal.commit()
            self._pending_writes = 0
        self.reporter.advance(Step.RESOLVE)

    # -- guardrails ------------------------------------------------------------------------

    def _check_guardrail(self) -> None:
        limit = self.options.max_unmatched
        if limit is None:
            return
        counts = self.journal.counts(self.run_id)
        total = sum(counts.values())
        skipped = sum(counts.get(o.value, 0) for o in SKIPPED)
        if total and skipped * 100 > limit * total:
            raise GuardrailError(
                f"{skipped} of {total} rows ({skipped * 100 / total:.1f}%) would be skipped"
                f" (not found, ambiguous or invalid), over --max-unmatched {limit:g}%;"
                " nothing was written",
                hint="Check that the file and the tenant belong together, then re-run with a"
                " higher --max-unmatched if this is expected.",
            )

    def _ask_to_proceed(self) -> None:
        if self.confirm is None:
            return
        to_send = self.journal.stage_count(self.run_id, Stage.PLANNED)
        if to_send == 0:
            return
        preview = Preview(self.journal.counts(self.run_id), to_send)
        if not self.confirm(preview):
            raise Cancelled("Cancelled at the prompt; nothing was written")

    # -- send ------------------------------------------------------------------------------

    async def _send_planned(self) -> None:
        if self._outbox:
            self._launch_chunk(self._outbox)
            self._outbox = []
        group: list[RowRecord] = []
        for row in self.journal.rows_in_stage(self.run_id, Stage.PLANNED):
            group.append(row)
            if len(group) >= self.options.chunk_size:
                self._launch_chunk(group)
                group = []
        if group:
            self._launch_chunk(group)

    def _launch_chunk(self, rows: list[RowRecord]) -> None:
        chunk = self.journal.open_chunk(self.run_id, [row.line for row in rows])
        self._pending_writes = 0
        self.reporter.start(Step.SEND, None)
        self.reporter.extend(Step.SEND, len(rows))
        self._spawn(self._send_chunk(chunk, rows))

    async def _send_chunk(self, chunk: int, rows: list[RowRecord]) -> None:
        items = [(row.profile_id or "", row.send) for row in rows]
        async with self._send_slots:
            try:
                batch_id = await self.client.send_batch(self.options.action, items)
            except ValidationFailed as exc:
                detail = f"batch refused: {exc.message}"
                self.journal.settle_many(
                    self.run_id, [(row.line, Outcome.FAILED, None, detail) for row in rows]
                )
                self.journal.finish_chunk(
                    self.run_id,
                    chunk,
                    state=ChunkState.DONE,
                    batch_status="refused",
                    success_count=0,
                    failed_count=len(rows),
                )
                for row in rows:
                    self.reporter.row_failed(row.line, row.email, detail)
                self.reporter.advance(Step.SEND, len(rows))
                return
        self.journal.accept_chunk(self.run_id, chunk, batch_id)
        self.reporter.advance(Step.SEND, len(rows))
        self.reporter.info(f"chunk {chunk}: {len(rows)} profiles queued as batch {batch_id}")
        if self.options.no_wait:
            self.journal.settle_many(
                self.run_id,
                [
                    (row.line, Outcome.SENT, batch_id, "queued; not awaited (--no-wait)")
                    for row in rows
                ],
            )
            self.journal.commit()
            return
        await self._await_chunk(chunk, batch_id)

    # -- wait ------------------------------------------------------------------------------

    async def _await_chunk(self, chunk: int, batch_id: str) -> None:
        rows = self.journal.rows_of_chunk(self.run_id, chunk)
        self.reporter.start(Step.WAIT, None)
        self.reporter.extend(Step.WAIT, len(rows))
        try:
            batch = await self._poll(batch_id)
        except _GaveUp as exc:
            self._result.gave_up = True
            self.reporter.warn(f"batch {batch_id}: {exc}")
            return
        if batch is None:
            await self._confirm_by_profiles(chunk, batch_id, rows)
            return
        await self._settle_batch(chunk, batch, rows)

    async def _poll(self, batch_id: str) -> Batch | None:
        """The batch once terminal; None if the tenant has no batch endpoint (404)."""
        started = last_change = self._clock()
        delay = 0.5
        seen: tuple[object, ...] | None = None
        while True:
            batch = await self.client.get_batch(batch_id)
            if batch is None:
                return None
            state = (batch.status or "").strip().lower()
            if state in DONE_STATES or state in FAILED_STATES:
                return batch
            if state not in RUNNING_STATES and _counts_complete(batch):
                return batch
            now = self._clock()
            progress = (state, batch.processed_count, batch.success_count, batch.failed_count)
            if progress != seen:
                seen, last_change = progress, now
            if now - started >= self.options.poll_timeout:
                raise _GaveUp(f"still {state or 'unfinished'} after --poll-timeout")
            if now - last_change >= self.options.stall_timeout:
                raise _GaveUp(f"no progress for {self.options.stall_timeout:g}s (--stall-timeout)")
            await self._sleep(delay)
            delay = min(delay * 1.6, 10.0)

    async def _settle_batch(self, chunk: int, batch: Batch, rows: list[RowRecord]) -> None:
        items: dict[str, BatchItem] = {}
        for item in batch.items:
            for key in (item.entity_id, item.external_id):
                if key:
                    items[key] = item
        state = (batch.status or "").strip().lower()
        clean = state in DONE_STATES and not batch.failed_count
        settled: list[tuple[int, Outcome, str | None, str]] = []
        unsure: list[RowRecord] = []
        for row in rows:
            found = items.get(row.profile_id or "")
            item_state = (found.status or "").strip().lower() if found else ""
            if found is not None and item_state in FAILED_STATES:
                detail = found.error or "the batch item failed"
                settled.append((row.line, Outcome.FAILED, batch.id, detail))
                self.reporter.row_failed(row.line, row.email, detail)
            elif (found is not None and item_state in DONE_STATES) or (found is None and clean):
                settled.append((row.line, self._done_outcome(), batch.id, ""))
            else:
                unsure.append(row)
        self.journal.settle_many(self.run_id, settled)
        if unsure:  # the batch did not say: ask the profiles themselves
            await self._confirm_by_profiles(chunk, batch.id, unsure, final=True)
        self.journal.finish_chunk(
            self.run_id,
            chunk,
            state=ChunkState.DONE,
            batch_status=batch.status,
            success_count=batch.success_count,
            failed_count=batch.failed_count,
        )
        self.reporter.advance(Step.WAIT, len(rows) - len(unsure))

    async def _confirm_by_profiles(
        self, chunk: int, batch_id: str, rows: list[RowRecord], *, final: bool = False
    ) -> None:
        """Learn a chunk's outcome from its profiles (no batch endpoint, or a mute batch)."""
        started = last_change = self._clock()
        delay = 0.5
        waiting = list(rows)
        while waiting:
            still: list[RowRecord] = []
            for row, profile in zip(waiting, await self._read_profiles(waiting), strict=True):
                if profile is None:
                    self.journal.settle_many(
                        self.run_id, [(row.line, Outcome.FAILED, batch_id, "profile not found")]
                    )
                elif self._applied(profile, row.send):
                    self.journal.settle_many(
                        self.run_id, [(row.line, self._done_outcome(), batch_id, "")]
                    )
                else:
                    still.append(row)
            self.reporter.advance(Step.WAIT, len(waiting) - len(still))
            if len(still) < len(waiting):
                last_change = self._clock()
            waiting = still
            if not waiting:
                break
            if final:
                detail = "the batch finished but the change is not on the profile"
                self.journal.settle_many(
                    self.run_id, [(row.line, Outcome.FAILED, batch_id, detail) for row in waiting]
                )
                for row in waiting:
                    self.reporter.row_failed(row.line, row.email, detail)
                self.reporter.advance(Step.WAIT, len(waiting))
                break
            now = self._clock()
            if (
                now - started >= self.options.poll_timeout
                or now - last_change >= self.options.stall_timeout
            ):
                self._result.gave_up = True
                self.reporter.warn(
                    f"batch {batch_id}: {len(waiting)} profile(s) still lack the change"
                )
                self.journal.commit()
                return
            await self._sleep(delay)
            delay = min(delay * 1.6, 10.0)
        if not final:
            self.journal.finish_chunk(
                self.run_id,
                chunk,
                state=ChunkState.DONE,
                batch_status="unknown",
                success_count=None,
                failed_count=None,
            )

    # -- verify ----------------------------------------------------------------------------

    async def _verify(self) -> None:
        wanted = self.options.verify
        done = self._done_outcome()
        if wanted <= 0:
            return
        candidates = self.journal.rows_with_outcome(self.run_id, [done], limit=wanted * 20)
        if not candidates:
            return
        step = max(1, len(candidates) // wanted)
        sample = candidates[::step][:wanted]
        self.reporter.start(Step.VERIFY, len(sample))
        check = self._result.verification
        for row, profile in zip(sample, await self._read_profiles(sample), strict=True):
            check.checked += 1
            problem = self._verify_problem(row, profile)
            if problem is None:
                check.ok += 1
            else:
                check.problems.append(f"line {row.line} ({row.email}): {problem}")
            self.reporter.advance(Step.VERIFY)
        self.reporter.finish(Step.VERIFY)

    def _verify_problem(self, row: RowRecord, profile: Profile | None) -> str | None:
        if profile is None:
            return "profile not found on re-read"
        now = set(profile.statuses)
        if self.options.action is Action.ASSIGN:
            missing = [h for h in row.send if h not in now]
            if missing:
                return f"{', '.join(missing)} not on the profile"
            lost = [h for h in row.held if h not in now]
            if lost:
                return f"held {', '.join(lost)} before the run and no longer does"
            return None
        left = [h for h in row.send if h in now]
        if left:
            return f"{', '.join(left)} still on the profile"
        lost = [h for h in row.held if h not in row.send and h not in now]
        if lost:
            return f"held {', '.join(lost)} before the run and no longer does"
        return None

    # -- helpers ---------------------------------------------------------------------------

    async def _read_profiles(self, rows: Sequence[RowRecord]) -> list[Profile | None]:
        """Each row's profile as it is now, read concurrently (the governor bounds how much)."""
        return list(
            await asyncio.gather(*(self.client.get_profile(row.profile_id or "") for row in rows))
        )

    def _applied(self, profile: Profile, send: Sequence[str]) -> bool:
        held = set(profile.statuses)
        if self.options.action is Action.ASSIGN:
            return all(h in held for h in send)
        return not any(h in held for h in send)

    def _done_outcome(self) -> Outcome:
        return Outcome.ASSIGNED if self.options.action is Action.ASSIGN else Outcome.REMOVED

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except (ApiError, OmneoStatusError) as exc:
                if self._fatal is None:
                    self._fatal = exc

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        try:
            while self._tasks:
                await asyncio.gather(*list(self._tasks))
        finally:
            for task in list(self._tasks):
                task.cancel()
        self.journal.commit()
        self._raise_fatal()
        self.reporter.finish(Step.SEND)
        self.reporter.finish(Step.WAIT)

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal


class Cancelled(OmneoStatusError):
    """The person at the prompt said no; nothing was written."""


def _counts_complete(batch: Batch) -> bool:
    total = batch.total_count
    processed = batch.processed_count
    if processed is None and batch.success_count is not None and batch.failed_count is not None:
        processed = batch.success_count + batch.failed_count
    return total is not None and total > 0 and processed is not None and processed >= total


__all__ = [
    "Cancelled",
    "Confirm",
    "Engine",
    "EngineOutcome",
    "LookupMode",
    "Preview",
    "RunOptions",
    "Verification",
]
