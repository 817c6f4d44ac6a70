"""``BatchWatcher`` on its own, on a virtual clock: every state a batch answers in (scripted
answers to ``GET /batches/{id}`` in front of the sandbox, whose profiles the watcher reads back),
a batch the tenant lost, a tenant without the batches endpoint, and the two deadlines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from omneo_status.api.client import OmneoClient
from omneo_status.models import Action, Outcome
from omneo_status.run.backoff import Backoff
from omneo_status.run.readback import ProfileReader
from omneo_status.run.watcher import NOT_APPLIED, BatchWatcher, Watched, reconcile
from omneo_status.sandbox import SandboxConfig, Tenant, generate_tenant
from omneo_status.store.records import RowRecord, Settled, Stage

from ._middle import PROFILES, Scripted, connect, json_answer
from .conftest import VirtualClock

pytestmark = pytest.mark.anyio

POLL, STALL = 600.0, 30.0
BATCH = "b-1"
VIP = ("vip",)
LOST = {"message": "No query results for model [Batch]."}
"""A 404 that shows the endpoint exists and the batch does not."""
NO_ENDPOINT = {"message": "Not Found"}
"""A 404 that shows the tenant has no batches endpoint."""
VAGUE = {"message": "Gone fishing"}
"""A 404 that tells nothing either way."""


def batch(status: str | None, **counts: Any) -> dict[str, Any]:
    """A batch answer: its status word, counts (``total_count``...) and ``items``."""
    return {"id": BATCH, "status": status, **counts}


def item(profile_id: str, status: str, error: str | None = None, *, entity: bool = True) -> Any:
    """A batch item for one profile (``entity=False``: only its ``external_id`` names it)."""
    return {
        "entity_id": profile_id if entity else None,
        "external_id": profile_id,
        "status": status,
        "error": error,
    }


@dataclass
class Batches:
    """Answers ``GET /batches/{id}`` from a script: a dict is the batch (200), a
    ``(404, body)`` pair a missing batch. The last answer repeats; ``polls`` counts them."""

    script: list[dict[str, Any] | tuple[int, dict[str, Any]]]
    polls: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response | None:
        if not request.url.path.startswith("/api/v3/batches/"):
            return None
        answer = self.script[min(self.polls, len(self.script) - 1)]
        self.polls += 1
        if isinstance(answer, tuple):
            return json_answer(*answer)
        return json_answer(200, {"data": answer})


@dataclass
class Floor:
    """A watcher of assign batches over a tenant of 20 profiles (none holding ``vip``)."""

    tenant: Tenant
    transport: Scripted
    client: OmneoClient
    clock: VirtualClock
    rows: list[RowRecord]
    backoffs: list[Backoff] = field(default_factory=list)

    def watcher(self, poll: float = POLL, stall: float = STALL) -> BatchWatcher:
        def backoff() -> Backoff:
            self.backoffs.append(Backoff(self.clock.monotonic, self.clock.sleep, poll, stall))
            return self.backoffs[-1]

        return BatchWatcher(self.client, Action.ASSIGN, backoff, ProfileReader(self.client))

    def script(self, *answers: dict[str, Any] | tuple[int, dict[str, Any]]) -> Batches:
        batches = Batches(list(answers))
        self.transport.before.append(batches)
        return batches

    def give(self, row: RowRecord, *handles: str) -> None:
        """The row's profile now holds ``handles`` (as if its batch had been applied)."""
        self.tenant.profiles[row.profile_id or ""].statuses[:] = list(handles)

    def profile_reads(self) -> int:
        return sum(1 for r in self.tenant.requests if r.path.startswith(PROFILES))


@pytest.fixture
async def floor() -> AsyncIterator[Floor]:
    tenant = generate_tenant(20, seed=4)
    for profile in tenant.profiles.values():
        profile.statuses[:] = []
    clock = VirtualClock()
    transport = Scripted(tenant, SandboxConfig(clock=clock.monotonic, wall_clock=clock.wall))
    rows = [
        RowRecord(n, p.email or "", p.email or "", Stage.CHUNKED, None, p.id, (), VIP, 1, BATCH, "")
        for n, p in enumerate(tenant.profiles.values(), start=2)
    ]
    async with connect(transport, clock) as client:
        yield Floor(tenant, transport, client, clock, rows)


def outcomes(watched: Watched) -> list[tuple[int, Outcome, str]]:
    return sorted((s.line, s.outcome, s.detail) for s in watched.settled)


def lines(rows: list[RowRecord]) -> list[int]:
    return [row.line for row in rows]


# -- the batch's own states -------------------------------------------------------------------


async def test_a_batch_is_followed_from_queued_through_running_to_done(floor: Floor) -> None:
    a, b = floor.rows[:2]
    batches = floor.script(
        batch("queued", total_count=2),
        batch("processing", total_count=2, processed_count=1),
        batch("success", total_count=2, success_count=2, failed_count=0, processed_count=2),
    )
    watched = await floor.watcher().watch(BATCH, [a, b])
    assert outcomes(watched) == [(a.line, Outcome.ASSIGNED, ""), (b.line, Outcome.ASSIGNED, "")]
    assert watched.batch is not None and watched.batch.status == "success"
    assert watched.gave_up is None and watched.unsent == []
    assert batches.polls == 3 and floor.clock.slept == [0.5, 0.8]  # the back-off grows
    assert floor.profile_reads() == 0  # a clean batch needs no read-back


async def test_a_removal_batch_settles_its_rows_as_removed(floor: Floor) -> None:
    floor.script(batch("completed", failed_count=0))
    watched = await floor.watcher().watch(BATCH, floor.rows[:1], Action.REMOVE)
    assert outcomes(watched) == [(floor.rows[0].line, Outcome.REMOVED, "")]


async def test_a_failed_batch_fails_its_failed_items_and_reads_back_the_rows_it_left(
    floor: Floor,
) -> None:
    failed, silent, applied, lacking = floor.rows[:4]
    floor.give(applied, "vip")
    floor.script(
        batch(
            "failed",
            failed_count=2,
            items=[
                item(failed.profile_id or "", "failed", "Injected failure"),
                item(silent.profile_id or "", "error"),
            ],
        )
    )
    watched = await floor.watcher().watch(BATCH, [failed, silent, applied, lacking])
    assert outcomes(watched) == [
        (failed.line, Outcome.FAILED, "Injected failure"),
        (silent.line, Outcome.FAILED, "the batch item failed"),
        (applied.line, Outcome.ASSIGNED, ""),
        (lacking.line, Outcome.FAILED, NOT_APPLIED),
    ]
    assert all(s.batch_id == BATCH for s in watched.settled)
    assert floor.profile_reads() == 2  # only the two rows no item accounts for


async def test_items_settle_the_rows_they_name_and_the_profiles_decide_the_others(
    floor: Floor,
) -> None:
    by_external, running, unnamed, gone = floor.rows[:4]
    floor.give(running, "vip")
    del floor.tenant.profiles[gone.profile_id or ""]
    floor.script(
        batch(
            "done",
            failed_count=1,  # not clean: a row no item names is not taken as done
            items=[
                item(by_external.profile_id or "", "success", entity=False),
                item(running.profile_id or "", "processing"),
            ],
        )
    )
    watched = await floor.watcher().watch(BATCH, [by_external, running, unnamed, gone])
    assert outcomes(watched) == [
        (by_external.line, Outcome.ASSIGNED, ""),
        (running.line, Outcome.ASSIGNED, ""),
        (unnamed.line, Outcome.FAILED, NOT_APPLIED),
        (gone.line, Outcome.FAILED, NOT_APPLIED),
    ]


async def test_a_clean_batch_settles_the_rows_its_items_leave_out_without_a_read(
    floor: Floor,
) -> None:
    named, unnamed = floor.rows[:2]
    floor.script(batch("success", failed_count=0, items=[item(named.profile_id or "", "success")]))
    watched = await floor.watcher().watch(BATCH, [named, unnamed])
    assert outcomes(watched) == [
        (named.line, Outcome.ASSIGNED, ""),
        (unnamed.line, Outcome.ASSIGNED, ""),
    ]
    assert floor.profile_reads() == 0


UNKNOWN_WORD = [
    pytest.param({"total_count": 2, "success_count": 1, "failed_count": 1}, 1, id="counts-add-up"),
    pytest.param({"total_count": 2, "processed_count": 2}, 1, id="processed-all"),
    pytest.param({"total_count": 2, "processed_count": 1}, 2, id="processed-some"),
    pytest.param({"total_count": 2, "success_count": 1}, 2, id="a-count-missing"),
    pytest.param({"processed_count": 2}, 2, id="no-total"),
    pytest.param({"total_count": 0, "processed_count": 0}, 2, id="empty"),
]


@pytest.mark.parametrize(("counts", "polls"), UNKNOWN_WORD)
async def test_an_unknown_status_word_is_finished_when_its_counts_add_up(
    floor: Floor, counts: dict[str, int], polls: int
) -> None:
    batches = floor.script(batch("archived", **counts), batch("success", failed_count=0))
    watched = await floor.watcher().watch(BATCH, floor.rows[:2])
    assert batches.polls == polls
    assert watched.batch is not None
    assert watched.batch.status == ("archived" if polls == 1 else "success")


async def test_a_resent_row_keeps_the_detail_that_says_so(floor: Floor) -> None:
    again = floor.rows[0]._replace(resent=True, detail="sent again: its batch was lost")
    floor.script(batch("success", failed_count=0))
    watched = await floor.watcher().watch(BATCH, [again])
    assert outcomes(watched) == [(again.line, Outcome.ASSIGNED, "sent again: its batch was lost")]


# -- the deadlines ------------------------------------------------------------------------------


class Endless:
    """A batch that never finishes: still ``processing``, its count moving on every poll or
    never."""

    def __init__(self, *, moving: bool) -> None:
        self.moving = moving
        self.polls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response | None:
        if not request.url.path.startswith("/api/v3/batches/"):
            return None
        self.polls += 1
        done = self.polls if self.moving else 0
        return json_answer(200, {"data": batch("processing", processed_count=done)})


@pytest.mark.parametrize(
    ("moving", "deadline", "why"),
    [
        (True, POLL, f"still not finished after {POLL:g}s (the poll timeout)"),
        (False, STALL, f"no progress for {STALL:g}s (the stall timeout)"),
    ],
)
async def test_a_batch_that_never_ends_is_given_up_at_the_deadline_that_fits(
    floor: Floor, moving: bool, deadline: float, why: str
) -> None:
    endless = Endless(moving=moving)
    floor.transport.before.append(endless)
    started = floor.clock.now
    watched = await floor.watcher().watch(BATCH, floor.rows[:2])
    assert watched.gave_up == why
    assert watched.settled == [] and watched.unsent == []  # the rows stay pending
    assert watched.batch is not None and watched.batch.processed_count == (
        endless.polls if moving else 0
    )
    waited = floor.clock.now - started
    assert deadline <= waited < deadline + 10.0  # given up at the first look past it


# -- a batch the tenant does not know ---------------------------------------------------------


async def test_a_lost_batch_sends_back_the_rows_lacking_the_change_at_once(floor: Floor) -> None:
    applied, lacking, gone = floor.rows[:3]
    floor.give(applied, "vip")
    del floor.tenant.profiles[gone.profile_id or ""]
    batches = floor.script((404, LOST))
    watcher = floor.watcher()
    watched = await watcher.watch(BATCH, [applied, lacking, gone])
    assert watched.gave_up is None and watched.batch is None
    assert lines(watched.unsent) == [lacking.line]
    assert outcomes(watched) == [
        (applied.line, Outcome.ASSIGNED, ""),
        (gone.line, Outcome.FAILED, "profile not found"),
    ]
    assert batches.polls == 1 and floor.clock.slept == []  # no waiting for a lost batch
    assert watcher.endpoint is True


async def test_a_vague_404_is_a_lost_batch_once_a_batch_answered(floor: Floor) -> None:
    watcher = floor.watcher()
    floor.script(batch("success", failed_count=0), (404, VAGUE))
    await watcher.watch(BATCH, floor.rows[:1])
    assert watcher.endpoint is True
    watched = await watcher.watch(BATCH, floor.rows[1:2])
    assert lines(watched.unsent) == [floor.rows[1].line] and watched.gave_up is None


class Applying:
    """Applies ``vip`` to one more waiting profile each time the watcher reads profiles back
    (from the ``after``-th read on), as a tenant that works slowly through a batch would."""

    def __init__(self, tenant: Tenant, rows: list[RowRecord], *, after: int = 0) -> None:
        self.tenant, self.waiting, self.after = tenant, list(rows), after
        self.reads = 0

    def __call__(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path.startswith(PROFILES):
            self.reads += 1
            if self.reads > self.after and self.waiting:
                row = self.waiting.pop(0)
                self.tenant.profiles[row.profile_id or ""].statuses[:] = ["vip"]
        return response


async def test_without_the_endpoint_the_profiles_decide_when_the_batch_is_done(
    floor: Floor,
) -> None:
    rows = floor.rows[:2]
    floor.transport.after.append(Applying(floor.tenant, rows, after=1))
    batches = floor.script((404, NO_ENDPOINT))
    watcher = floor.watcher()
    watched = await watcher.watch(BATCH, rows)
    assert outcomes(watched) == [(r.line, Outcome.ASSIGNED, "") for r in rows]
    assert watched.gave_up is None and watched.unsent == []
    assert watcher.endpoint is False and batches.polls == 1  # the profiles alone, from then on
    assert floor.clock.slept and floor.profile_reads() > len(rows)  # read, waited, read again


async def test_without_the_endpoint_profiles_standing_still_come_back_unsent(
    floor: Floor,
) -> None:
    applied, still = floor.rows[:2]
    floor.give(applied, "vip")
    floor.script((404, NO_ENDPOINT))
    started = floor.clock.now
    watched = await floor.watcher().watch(BATCH, [applied, still])
    assert watched.gave_up == (
        f"1 profile still lacks the change: no progress for {STALL:g}s (the stall timeout)"
    )
    assert lines(watched.unsent) == [still.line]  # may be sent again
    assert outcomes(watched) == [(applied.line, Outcome.ASSIGNED, "")]
    assert floor.clock.now - started >= STALL


async def test_without_the_endpoint_the_poll_timeout_leaves_moving_rows_pending(
    floor: Floor,
) -> None:
    rows = floor.rows[:12]
    floor.transport.after.append(Applying(floor.tenant, rows))
    floor.script((404, NO_ENDPOINT))
    watched = await floor.watcher(poll=20.0, stall=STALL).watch(BATCH, rows)
    assert watched.gave_up is not None and "(the poll timeout)" in watched.gave_up
    assert watched.unsent == []  # they were moving: not sent again, left pending
    assert 0 < len(watched.settled) < len(rows)


async def test_a_vague_404_first_is_followed_by_its_profiles(floor: Floor) -> None:
    floor.script((404, VAGUE))
    watcher = floor.watcher()
    watched = await watcher.watch(BATCH, floor.rows[:1])
    assert watcher.endpoint is None  # still unknown
    assert watched.gave_up is not None and lines(watched.unsent) == [floor.rows[0].line]


# -- a chunk in doubt -------------------------------------------------------------------------


async def test_reconcile_settles_the_applied_and_the_gone_and_returns_the_rest(
    floor: Floor,
) -> None:
    applied, lacking, gone = floor.rows[:3]
    floor.give(applied, "vip")
    del floor.tenant.profiles[gone.profile_id or ""]
    settled, again = await reconcile(
        ProfileReader(floor.client), Action.ASSIGN, [applied, lacking, gone]
    )
    assert sorted(settled, key=lambda s: s.line) == [
        Settled(applied.line, Outcome.ASSIGNED, "applied by an earlier attempt"),
        Settled(gone.line, Outcome.FAILED, "profile no longer exists"),
    ]
    assert lines(again) == [lacking.line]
