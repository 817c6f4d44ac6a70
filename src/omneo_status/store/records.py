"""The journal's named records: where a row, a chunk and a run are in their lives, and the
records the store takes and gives (no SQL here; the store is ``journal.py`` and the modules
beside it).

A row names its profile by the run's match key (``--match``): an email, a mobile number, a
profile id or an identity's identifier. Its fields say so: ``key`` is that cell as read,
``address`` the cell as the key's rule normalises it (what lookups send), and ``canonical`` the
form two rows are compared by (``inputs.email_key`` for emails). The stored columns keep the
names they had when every run matched by email (``rows.email``, ``rows.email_key``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from omneo_status.models import Action, Outcome


class Stage(StrEnum):
    """Where a row is in its run (the ``rows.stage`` column)."""

    LOOKUP = "lookup"
    """Waiting to be resolved."""
    PLANNED = "planned"
    """Resolved; a change is to be sent."""
    CHUNKED = "chunked"
    """Part of a chunk that was (or is being) sent."""
    DONE = "done"
    """Has its final outcome."""


class ChunkState(StrEnum):
    """The life of a chunk (the ``chunks.state`` column)."""

    QUEUED = "queued"
    """Cut from the planned rows and waiting for its turn to be sent: none of it went out."""
    POSTING = "posting"
    """Written before its request; if a run dies here the request may or may not have landed."""
    ACCEPTED = "accepted"
    """The API answered with a batch id; the batch is to be watched."""
    DONE = "done"
    """Every row of it has its outcome."""
    RECONCILED = "reconciled"
    """Was ``posting`` when a run died; its profiles were read back and its rows settled."""


class RunState(StrEnum):
    """The life of a run (the ``runs.state`` column)."""

    LOADING = "loading"
    RUNNING = "running"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    GAVE_UP = "gave_up_waiting"
    SENT = "sent"
    FAILED = "failed"
    FINISHED = "finished"


RESUMABLE = frozenset(
    {
        RunState.RUNNING,
        RunState.STOPPED,
        RunState.INTERRUPTED,
        RunState.GAVE_UP,
        RunState.FAILED,
        RunState.SENT,
    }
)
"""States a run can be continued from."""
LIVE = frozenset({RunState.LOADING, RunState.RUNNING})
"""States a run is in while a process works on it (or until it is seen to have died)."""


@dataclass(frozen=True)
class RunInfo:
    """One run as the journal knows it."""

    run_id: str
    job_key: str
    action: Action
    handles: tuple[str, ...]
    base_url: str
    input_name: str
    dry_run: bool
    undo_of: str | None
    state: RunState
    rows: int
    exit_code: int | None
    report: str | None
    detail: str
    verification: str | None
    created_at: str
    updated_at: str
    sync: dict[str, Any] | None = None
    """A sync run's plan (holders found, the removal guard's verdict); None for other runs."""
    match: str = "email"
    """The match key of its rows (``--match``: ``email``, ``mobile``, ``id``,
    ``identity:HANDLE``)."""
    status_column: str | None = None
    """The input column its rows' statuses were read from (``--status-column``); None when the
    statuses were given on the command line."""


class RowRecord(NamedTuple):
    """One row as the journal knows it (a named tuple: every pass over a run's rows makes one
    per row, at a third of a frozen dataclass's cost)."""

    line: int
    key: str
    """The match key's cell as read (an email, a mobile, a profile id, an identifier)."""
    address: str
    """The normalised cell (what lookups send)."""
    stage: Stage
    outcome: Outcome | None
    profile_id: str | None
    held: tuple[str, ...]
    send: tuple[str, ...]
    chunk: int | None
    batch_id: str | None
    detail: str
    action: Action | None = None
    """The row's own action when it is not the run's (a sync's holder rows, their undo)."""
    holder: bool = False
    """Found on the tenant as a holder of the status, not read from the input."""
    resent: bool = False
    """Sent again after its first batch was lost or stood still (it never is twice)."""
    follows: int | None = None
    """The line of the row whose write must land before this one is sent: this row is the
    second write of a tier move (the siblings removed once the new status is there)."""


class NewRow(NamedTuple):
    """A row to load into a run. The three kinds differ only in what they carry: an input row
    waits for its lookup (or is settled at once, ``outcome``: an invalid cell); an undo's row
    knows its profile and the handles to send; a sync's holder row was found on the tenant and
    is ``planned`` (or settled at once: a dry run). A tier move's second write is added when its
    input row is decided (``follows`` names that row)."""

    line: int | None
    """Its input line; None for a holder row (numbered after the input's last line)."""
    key: str
    """The match key's cell as read."""
    address: str
    """The normalised cell."""
    canonical: str
    """What two rows are compared by: rows with equal ones name the same profile key."""
    stage: Stage = Stage.LOOKUP
    """Where it starts (``done`` whatever this says when ``outcome`` is given)."""
    outcome: Outcome | None = None
    detail: str = ""
    profile_id: str | None = None
    held: tuple[str, ...] = ()
    send: tuple[str, ...] = ()
    action: Action | None = None
    """Its own action when it is not the run's."""
    holder: bool = False
    follows: int | None = None
    """The line of the row it follows (a tier move's second write)."""


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk of a run."""

    chunk: int
    state: ChunkState
    batch_id: str | None
    batch_status: str | None
    profiles: int
    success_count: int | None
    failed_count: int | None
    resent: int = 0
    """Its rows that were sent again in a later chunk (its batch was lost or stood still)."""


@dataclass(frozen=True)
class Planned:
    """A resolved row whose profile needs ``send``."""

    line: int
    profile_id: str
    held: tuple[str, ...]
    send: tuple[str, ...]
    note: str = ""
    """A caveat of the match, kept in the row's detail through to its outcome (empty: the
    row's detail is left as it is)."""


@dataclass(frozen=True)
class Settled:
    """A row's final outcome (``profile_id``/``held``/``batch_id`` kept when not given)."""

    line: int
    outcome: Outcome
    detail: str = ""
    profile_id: str | None = None
    held: tuple[str, ...] | None = None
    batch_id: str | None = None


class Part(NamedTuple):
    """Where one row stands: its outcome (None while pending), its stage, and whether it has
    a batch."""

    outcome: Outcome | None
    stage: Stage
    has_batch: bool


@dataclass(frozen=True)
class Tally:
    """How many of a run's units share an outcome, a stage and whether they have a batch (a
    unit is a row that follows none, with the row that follows it, if any)."""

    outcome: Outcome | None
    stage: Stage
    has_batch: bool
    count: int
    then: Part | None = None
    """Where the row that follows stands (a tier move's second write); None when none does."""

    @property
    def part(self) -> Part:
        """Where the unit's own row stands."""
        return Part(self.outcome, self.stage, self.has_batch)


@dataclass(frozen=True)
class MoveTally:
    """How many units of a run share their handles and where their rows stand: what the plan's
    moves by pair are counted from."""

    action: Action | None
    """The unit's own action (None: the run's)."""
    send: tuple[str, ...]
    part: Part
    then_send: tuple[str, ...]
    """The handles of the row that follows (a move's siblings), empty when none does."""
    then: Part | None
    count: int


FoundBy = Literal["filter", "tenant_scan"]
"""How a sync found the holders: ``filter`` (the tenant honoured ``filter[statuses.handle]``)
or ``tenant_scan`` (a scan of the whole tenant saw them: the lookups' own, or one made for the
holders)."""


@dataclass(frozen=True)
class SyncPlan:
    """The removal side of a sync, planned once every row is decided: the summary's ``sync``
    object, and what the run's journal keeps of it (with ``planned``)."""

    holders: int
    """Profiles holding the status."""
    would_remove: int
    """Holders the input does not list: the ones the status is taken from."""
    max_remove: str
    """The removal guard's limit, as ``--max-remove`` gives it."""
    allowed: bool
    """The guard's verdict: False when it stops the sync (a dry run reports it instead)."""
    holders_found_by: FoundBy
    holder_requests: int
    """GET requests it took to find the holders (0 when the lookups' scan had seen them)."""
    planned: bool = False
    """Whether the holder rows are journaled with it (False: the guard stopped the sync, and a
    resumed run plans again)."""

    def to_json(self) -> dict[str, Any]:
        """The summary's ``sync`` object: every figure but ``planned``."""
        document = self.stored()
        del document["planned"]
        return document

    def stored(self) -> dict[str, Any]:
        """The plan as the run's journal keeps it (``planned`` included)."""
        return asdict(self)

    @classmethod
    def of(cls, stored: Mapping[str, Any] | None) -> SyncPlan | None:
        """The plan a run's journal keeps; None for a run that is not a sync, and for a sync
        that has not planned yet (it starts with an empty plan)."""
        if not stored:
            return None
        return cls(**{f.name: stored[f.name] for f in fields(cls) if f.name in stored})
