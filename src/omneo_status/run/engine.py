"""The pipeline of one run, orchestrated: reconcile, resolve, decide, send, watch, verify.

The engine works from and into the run's journal, so the same code starts a run, resumes one
that died, and finishes one that gave up waiting. A decided row is planned in the journal, and
the ``Outbox`` cuts chunks from the planned rows, sends them and follows their batches, one way
whether they go out while lookups go on (pipelined) or after every row is decided (a dry run, a
guardrail, a prompt).
Lookups run ``concurrency`` at a time; the governor in the client paces every request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from omneo_status.api.client import OmneoClient
from omneo_status.errors import Cancelled, GuardrailError
from omneo_status.events import Reporter, Step
from omneo_status.keys import KeyKind
from omneo_status.models import SKIPPED, Action, Outcome, StatusDefinition
from omneo_status.moves import MovePair, rivals, second_write
from omneo_status.options import JobSpec, LookupMode, LookupPlan, RunOptions
from omneo_status.run.backoff import Backoff, Clock, Sleep
from omneo_status.run.decide import Decision, Match, Send, decide, dropped
from omneo_status.run.outbox import Outbox
from omneo_status.run.planner import Chosen, LookupPlanner, TenantFacts
from omneo_status.run.readback import ProfileReader
from omneo_status.run.resolver import (
    ProfileIdResolver,
    Resolver,
    key_resolver,
)
from omneo_status.run.verify import verify_sample
from omneo_status.run.watcher import BatchWatcher
from omneo_status.store.journal import FLUSH_SECONDS, RunJournal
from omneo_status.store.records import Planned, RowRecord, RunState, Settled, Stage
from omneo_status.summary import Verification, move_pairs, outcome_counts
from omneo_status.wording import count as counted

SCAN_MOVED = (
    "The tenant's profile list changed during the scan: addresses it did not find are looked"
    " up by filter instead"
)


@dataclass(frozen=True)
class Preview:
    """The plan, shown before the first write when a person is asked to go on: every row of
    the run is in exactly one of ``counts``, ``to_send`` and ``in_flight``."""

    spec: JobSpec
    """The job: its action, handles and whether it is a sync."""
    counts: dict[str, int]
    """Rows with their outcome already, by outcome."""
    to_send: int
    """Rows with a write to send now (a tier move counts once)."""
    in_flight: int = 0
    """Rows an earlier attempt of the run sent already (their batches are followed)."""
    moves: tuple[MovePair, ...] = ()
    """The moves by pair, for a run whose rows name their statuses (``--status-column``)."""

    @property
    def rows(self) -> int:
        """Every row of the run."""
        return sum(self.counts.values()) + self.to_send + self.in_flight


Confirm = Callable[[Preview], bool]


class Planner(Protocol):
    """Adds rows to a run once every input row is decided and before anything is sent (a
    sync's removals); raises to stop the run before any write."""

    async def plan(self, run: RunJournal) -> None:
        """Plan (or settle) the extra rows in the run's journal."""
        ...


_Work = asyncio.Queue[tuple[Resolver, list[RowRecord]] | None]
"""Groups of rows for the lookup workers (None: no more work)."""


@dataclass
class EngineResult:
    """What the engine leaves for the summary besides the journal's rows."""

    verification: Verification = field(default_factory=Verification)
    gave_up: bool = False
    lookup: LookupPlan | None = None
    """How emails were looked up, and why (None when no email needed a lookup)."""


class _Crew:
    """The run's background tasks: the first error stops them all and is raised by ``check``."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.error: BaseException | None = None

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:  # re-raised by check(), in the engine's own task
                self.fail(exc)

        task = asyncio.ensure_future(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        # A task cancelled before it started never awaits ``work``: close it, or Python warns
        # that it was never awaited (closing one that ran is a no-op).
        task.add_done_callback(lambda _: work.close())

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.cancel()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.check()


class Engine:
    """Runs one journaled run to its end (or to the first fatal error)."""

    def __init__(
        self,
        *,
        run: RunJournal,
        spec: JobSpec,
        options: RunOptions,
        client: OmneoClient,
        reporter: Reporter,
        definitions: Mapping[str, StatusDefinition],
        confirm: Confirm | None = None,
        planner: Planner | None = None,
        facts: TenantFacts | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        moves: bool = False,
    ) -> None:
        self.run = run
        self.planner = planner
        self.moves = moves
        """Whether a row assigning a status of a group moves its customer within the group
        (``--status-column``; never in an undo, which only reverses)."""
        self.facts = facts
        """What doctor measured on the tenant, for the lookup planner's sums."""
        self._lookups: LookupPlanner | None = None
        self.spec = spec
        self.options = options
        self.client = client
        self.reporter = reporter
        self.definitions = definitions
        self.confirm = confirm
        self._sleep = sleep
        # Read-backs go by email in bulk unless the run matches by another key, or was told
        # to look emails up one by one.
        reader = ProfileReader(
            client,
            by_email=spec.match.kind is KeyKind.EMAIL,
            in_filter=False if options.lookup is LookupMode.SINGLE else None,
        )
        self.by_id = ProfileIdResolver(client)
        self.result = EngineResult()
        self._crew = _Crew()
        self.outbox = Outbox(
            run=run,
            options=options,
            client=client,
            reporter=reporter,
            crew=self._crew,
            watcher=BatchWatcher(
                client,
                spec.action,
                lambda: Backoff(clock, sleep, options.poll_timeout, options.stall_timeout),
                reader,
            ),
            reader=reader,
            action_of=self.action_of,
        )

    @property
    def pipelined(self) -> bool:
        """Whether chunks go out while lookups go on (not when a person, a guardrail or a
        planner decides)."""
        return (
            not self.options.dry_run
            and self.confirm is None
            and self.options.max_unmatched is None
            and self.planner is None
        )

    def action_of(self, row: RowRecord) -> Action:
        """The row's action: its own (a sync's holder rows) or the run's."""
        return row.action or self.spec.action

    async def execute(self) -> EngineResult:
        """Take the run from wherever the journal says it is to its end."""
        try:
            await self.outbox.reconcile()
            self.outbox.resume()
            await self._resolve_all()
            self._check_identity_handle()
            check_unmatched(self.run, self.options.max_unmatched)
            if self.planner is not None:
                await self.planner.plan(self.run)
            if not self.options.dry_run:
                ask_to_proceed(self.run, self.spec, self.confirm)
                self.outbox.launch(full_only=False)
            await self._crew.drain()
            while self.run.release():  # the second writes of moves whose first write landed
                self.outbox.launch(full_only=False)
                await self._crew.drain()
            self.result.gave_up = self.outbox.gave_up
            self.reporter.finish(Step.SEND)
            self.reporter.finish(Step.WAIT)
            if not (self.result.gave_up or self.options.dry_run or self.options.no_wait):
                await self._verify()
            return self.result
        finally:
            self._crew.cancel()
            self.run.flush()

    # -- resolve and decide ----------------------------------------------------------------

    async def _resolve_all(self) -> None:
        total = self.run.stage_count(Stage.LOOKUP)
        self.reporter.start(Step.RESOLVE, total)
        if total:
            by_key = key_resolver(self.spec.match, self.client)
            if by_key is None:
                by_key = await self._email_resolver()
            elif self.options.lookup is not LookupMode.AUTO:
                self.reporter.warn(
                    f"--lookup {self.options.lookup.value} applies to emails only:"
                    f" each {self.spec.match.rule.name} is looked up on its own"
                )
            await self._lookup_pass(by_key)
            rest = self._lookups.rest() if self._lookups is not None else None
            if rest is not None:  # the lookups left their rows to a scan
                self.run.flush()
                await self._lookup_pass(await self._scanned(rest))
        self.run.flush()
        self.reporter.finish(Step.RESOLVE)

    async def _lookup_pass(self, by_key: Resolver) -> None:
        """Look up every row left in the lookup stage, ``concurrency`` at a time."""
        queue: _Work = asyncio.Queue(maxsize=self.options.concurrency * 4)
        workers = [self._lookup_worker(queue) for _ in range(self.options.concurrency)]
        tasks = [asyncio.ensure_future(work) for work in workers]
        flusher = asyncio.ensure_future(self._flush_while_waiting())
        try:
            await self._feed(queue, by_key)
            for _ in tasks:
                await queue.put(None)
            await asyncio.gather(*tasks)
        finally:
            for task in [*tasks, flusher]:
                task.cancel()
        self._crew.check()

    async def _feed(self, queue: _Work, by_key: Resolver) -> None:
        group: list[RowRecord] = []
        for row in self.run.rows_in_stage(Stage.LOOKUP):
            self._crew.check()
            if row.profile_id:  # an undo row knows its profile
                await queue.put((self.by_id, [row]))
                continue
            group.append(row)
            if len(group) >= by_key.group_size:
                await queue.put((by_key, group))
                group = []
        if group:
            await queue.put((by_key, group))

    async def _flush_while_waiting(self) -> None:
        """Write resolved rows at least every ``FLUSH_SECONDS``, also while lookups wait."""
        while True:
            await self._sleep(FLUSH_SECONDS)
            try:
                self.run.flush()
            except Exception as exc:  # re-raised by check(), in the engine's own task
                self._crew.fail(exc)

    async def _lookup_worker(self, queue: _Work) -> None:
        while (work := await queue.get()) is not None:
            if self._crew.error is not None:
                continue  # keep taking work so the feeder never blocks
            resolver, rows = work
            try:
                await self._resolve(resolver, rows)
            except Exception as exc:  # re-raised by check(), in the engine's own task
                self._crew.fail(exc)

    async def _resolve(self, resolver: Resolver, rows: list[RowRecord]) -> None:
        keys = [row.profile_id or "" if resolver is self.by_id else row.address for row in rows]
        matches = await resolver.resolve(keys)
        for row, match in zip(rows, matches, strict=True):
            self._decide(row, match, resolver.key_name)

    async def _email_resolver(self) -> Resolver:
        """The resolver for the emails left to look up, once the planner has chosen (and, for
        a scan, once the scan has read the tenant and settled the rows it can)."""
        planner = self._lookups = LookupPlanner(
            self.client,
            self.run,
            mode=self.options.lookup,
            concurrency=self.options.concurrency,
            reporter=self.reporter,
            facts=self.facts,
            on_change=self._show_plan,
        )
        chosen = await planner.choose()
        if chosen.plan is not None:
            self._show_plan(chosen.plan)
        for row, match in chosen.settled:
            self._decide(row, match)
        return await self._scanned(chosen)

    def _show_plan(self, plan: LookupPlan) -> None:
        """Keep the lookup plan for the summary and say it (a warning, when it has one)."""
        self.result.lookup = plan
        if plan.warning is not None:
            self.reporter.warn(plan.warning)
        else:
            self.reporter.info(
                f"Lookup: {plan.mode.value}, about {counted(plan.requests, 'request')}:"
                f" {plan.reason}"
            )

    async def _scanned(self, chosen: Chosen) -> Resolver:
        """Read the chosen scan (if any) and settle the rows it can; the resolver of the rest."""
        if chosen.scan is not None:
            state = await chosen.scan.read(chosen.first)
            if state.moved:
                self.reporter.warn(SCAN_MOVED)
            for batch in chosen.scan.matched(state):
                for row, match in batch:
                    self._decide(row, match)
                await asyncio.sleep(0)  # let chunks cut meanwhile go out
        return chosen.resolver

    def _decide(self, row: RowRecord, match: Match, key_name: str = "email") -> None:
        """Decide a looked-up row (an undo row sends what it knows) and record the decision;
        a deferred match leaves the row in the lookup stage."""
        if match.deferred:
            return
        action, handles = self.action_of(row), row.send or self.spec.handles
        dry_run = self.options.dry_run
        decision = decide(match, action, handles, dry_run=dry_run, key_name=key_name)
        self._record(row, decision)
        if self.moves and not row.holder and decision.profile is not None:
            others = rivals(row.send, self.definitions)
            away = dropped(action, decision.profile.statuses, others)
            if away:
                canonical = self.spec.match.rule.key(row.address)
                self.run.follow(second_write(row, decision.profile, away, canonical, dry_run))

    def _record(self, row: RowRecord, decision: Decision) -> None:
        if isinstance(decision, Send):
            target = decision.profile
            note = decision.note or ""
            self.run.plan(Planned(row.line, target.id, target.statuses, decision.handles, note))
            self.outbox.planned(pipelined=self.pipelined)
        else:
            profile = decision.profile
            self.run.settle(
                Settled(
                    row.line,
                    decision.outcome,
                    decision.detail,
                    profile_id=profile.id if profile else None,
                    held=profile.statuses if profile else None,
                )
            )
            if decision.outcome is Outcome.FAILED:
                self.reporter.row_failed(row.line, row.key, decision.detail)
        self.reporter.advance(Step.RESOLVE)

    def _check_identity_handle(self) -> None:
        """Warn when an identity run found no profile for any row it looked up: the handle is
        most likely not one the tenant has (a typo), not every customer missing."""
        if self.spec.match.kind is not KeyKind.IDENTITY:
            return
        counts = self.run.counts()
        skipped = counts.get(Outcome.INVALID_KEY, 0) + counts.get(Outcome.DUPLICATE, 0)
        looked_up = sum(tally.count for tally in self.run.tally()) - skipped
        if looked_up and counts.get(Outcome.NOT_FOUND, 0) == looked_up:
            self.reporter.warn(
                f"no profile was found by the identity `{self.spec.match.handle}`; check the handle"
            )

    async def _verify(self) -> None:
        await verify_sample(
            self.run,
            self.spec.action,
            self.options.verify,
            client=self.client,
            definitions=self.definitions,
            reporter=self.reporter,
            into=self.result.verification,
        )


def check_unmatched(run: RunJournal, limit: float | None) -> None:
    """Raise ``GuardrailError`` when more than ``limit`` percent of the rows are skipped (not
    found, ambiguous, invalid, no status). Dry runs are checked too: they preview the real
    decision."""
    if limit is None:
        return
    total = sum(tally.count for tally in run.tally())
    skipped = sum(n for outcome, n in run.counts().items() if outcome in SKIPPED)
    if total and skipped * 100 > limit * total:
        raise GuardrailError(
            f"{skipped} of {total} rows ({skipped * 100 / total:.1f}%) would be skipped"
            f" (not found, ambiguous, invalid or without a status), over the limit of"
            f" {limit:g}%;"
            " nothing was written",
            hint="Check that the file and the tenant belong together, then raise the"
            " unmatched limit if this is expected.",
        )


def ask_to_proceed(run: RunJournal, spec: JobSpec, confirm: Confirm | None) -> None:
    """Show the plan to the person (when one is asked) and raise ``Cancelled`` if they say no."""
    if confirm is None or run.stage_count(Stage.PLANNED) == 0:
        return
    counts = outcome_counts(run, RunState.RUNNING, live=True)
    pending = counts.pop("pending", 0)
    in_flight = min(pending, run.stage_count(Stage.CHUNKED))
    moves = move_pairs(run, spec.action, RunState.RUNNING, live=True) if spec.status_column else []
    shown = {outcome: n for outcome, n in counts.items() if n}
    if not confirm(Preview(spec, shown, pending - in_flight, in_flight, tuple(moves))):
        raise Cancelled("Cancelled at the prompt; nothing was written")
