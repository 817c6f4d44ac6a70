"""What a run shows when it ends, and what ``runs`` lists: both read from the journal alone.

``summarize`` is a pure function of the journal (it writes nothing); ``write_run_report`` is
the one function that writes a run's CSV report. A pending row is never left blank: it is
counted and reported with its effective outcome (``sent`` if its batch was accepted,
``failed`` otherwise, naming the state the run stopped in).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from omneo_status.errors import ExitCode
from omneo_status.keys import MatchKey
from omneo_status.models import SKIPPED, Action, Outcome
from omneo_status.moves import CHANGES, MovePair, fold
from omneo_status.options import LookupPlan
from omneo_status.report import ReportRow, write_report
from omneo_status.store.journal import RunJournal
from omneo_status.store.records import (
    LIVE,
    RESUMABLE,
    Part,
    RowRecord,
    RunInfo,
    RunState,
    Stage,
    SyncPlan,
)


@dataclass
class Verification:
    """The spot-check of changed profiles at the end of a run."""

    checked: int = 0
    ok: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Statuses gone for an explained reason (expired, replaced in their group): not problems."""

    def to_json(self) -> dict[str, Any]:
        """The ``verified`` object of the summary."""
        return asdict(self)

    @classmethod
    def from_json(cls, text: str | None) -> Verification:
        """The verification the journal keeps (empty when the run verified nothing)."""
        if not text:
            return cls()
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class BatchSummary:
    """One batch of a run, as the summary shows it."""

    batch_id: str
    status: str
    profiles: int
    success_count: int
    failed_count: int
    resent: int = 0
    """Its rows sent again in a later batch: the tenant lost this one (``lost``), or its
    profiles showed no change for the stall timeout (``stalled``)."""

    def to_json(self) -> dict[str, Any]:
        """The batch's entry in the summary's ``batches``."""
        return asdict(self)


@dataclass(frozen=True)
class ThisRun:
    """What one command did to its run, as opposed to the whole run's counts: a re-run of a
    finished job did nothing, and a resumed run did only what was left."""

    counts: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    """Rows this command gave their outcome, per outcome (every outcome, zeros included); a
    row it followed from ``sent`` to its end counts under its end."""
    batches: int = 0
    """Batches this command sent that the tenant accepted."""
    profiles_sent: int = 0
    """Profiles in those batches."""
    requests: int = 0
    """HTTP requests this command made."""

    def to_json(self) -> dict[str, Any]:
        """The ``this_run`` object of the summary."""
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    """Where a run stood when a command took it up: what ``this_run`` is measured from."""

    counts: dict[Outcome, int]
    sent: frozenset[int]
    """The lines whose outcome was ``sent`` (their batch not followed to its end)."""
    chunks: frozenset[int]
    """The chunks that had a batch id."""

    @classmethod
    def of(cls, run: RunJournal) -> Progress:
        """The run as the journal holds it now."""
        return cls(
            counts=run.counts(),
            sent=frozenset(row.line for row in run.rows_with_outcome([Outcome.SENT])),
            chunks=frozenset(chunk.chunk for chunk in run.chunks() if chunk.batch_id),
        )

    def since(self, run: RunJournal, *, requests: int) -> ThisRun:
        """What happened to the run since this point, by a command that made ``requests``.

        A row's outcome, once given, changes only from ``sent`` to its end; so every other
        outcome's growth is the rows given it now, and ``sent`` counts its new lines.
        """
        now = Progress.of(run)
        counts = {o.value: now.counts.get(o, 0) - self.counts.get(o, 0) for o in Outcome}
        counts[Outcome.SENT.value] = len(now.sent - self.sent)
        accepted = [c for c in run.chunks() if c.batch_id and c.chunk not in self.chunks]
        return ThisRun(
            counts=counts,
            batches=len(accepted),
            profiles_sent=sum(chunk.profiles for chunk in accepted),
            requests=requests,
        )


NOTHING_YET = Progress(counts={}, sent=frozenset(), chunks=frozenset())
"""A new run's starting point: everything it holds was done by the command that made it."""


@dataclass
class RunSummary:
    """Everything the summary table and ``--json`` show about a run.

    The flags say what happened without wording it; the CLI words them:
    ``already_finished`` (the same job had finished: nothing was done again), ``resumed``
    (an earlier run of the job was continued; ``this_run`` says what this command did),
    ``gave_up`` (batches were accepted but not
    awaited to their end: exit 5, the run can be resumed), ``no_wait`` (the run did not wait
    for its batches on purpose).
    """

    run_id: str
    action: Action
    handles: tuple[str, ...]
    dry_run: bool
    rows: int
    counts: dict[str, int]
    batches: list[BatchSummary]
    verified: Verification
    report: Path
    exit_code: ExitCode
    state: str
    lookup: LookupPlan | None = None
    """How emails were looked up in this attempt, and why; None if none were."""
    resumed: bool = False
    already_finished: bool = False
    gave_up: bool = False
    no_wait: bool = False
    this_run: ThisRun = field(default_factory=ThisRun)
    """What this command did (nothing, for a finished job shown again)."""
    sync: SyncPlan | None = None
    """A sync's plan (None for other runs)."""
    match: str = "email"
    """The key rows were matched by (``email``, ``mobile``, ``id``, ``identity:HANDLE``)."""
    undoes: str | None = None
    """For an undo, what the run it reverses did (``sync``, ``assign``, ``remove``); None
    otherwise."""
    input: str = ""
    """What the run read: the file (``-``: ``<stdin>``) and a workbook's sheet
    (``tiers.xlsx, sheet 'Customers'``), or ``undo of RUN_ID``."""
    status_column: str | None = None
    """The input column each row's status was read from (None: given on the command line)."""
    moves: list[MovePair] | None = None
    """With a status column: the rows that changed (or would), by pair (``silver -> gold``)."""

    @property
    def verb(self) -> str:
        """What the run did, as the summary names it: ``sync``, or its action."""
        return "sync" if self.sync is not None else self.action.value

    @property
    def what(self) -> str:
        """What the run did, as its title names it: its verb, or ``undo of sync`` (of
        ``assign``, of ``remove``) for an undo, whose own action is only half the story."""
        return f"undo of {self.undoes}" if self.undoes is not None else self.verb

    def to_json(self) -> dict[str, Any]:
        """The documented ``--json`` document (a sync's adds ``sync``, its plan; a run whose
        rows name their statuses adds ``moves``, its rows by pair)."""
        document: dict[str, Any] = {
            "action": self.verb,
            "handles": list(self.handles),
            "match": self.match,
            "input": self.input,
            "status_column": self.status_column,
            "dry_run": self.dry_run,
            "run_id": self.run_id,
            "state": self.state,
            "already_finished": self.already_finished,
            "resumed": self.resumed,
            "rows": self.rows,
            "counts": self.counts,
        }
        if self.moves is not None:
            document["moves"] = [pair.to_json() for pair in self.moves]
        document |= {
            "batches": [batch.to_json() for batch in self.batches],
            "verified": self.verified.to_json(),
            "lookup": (
                self.lookup.to_json()
                if self.lookup is not None
                else {"mode": None, "requests": 0, "reason": None, "warning": None}
            ),
            "this_run": self.this_run.to_json(),
            "report": str(self.report),
            "exit_code": int(self.exit_code),
        }
        if self.sync is not None:
            document["sync"] = self.sync.to_json()
        return document


@dataclass(frozen=True)
class RunView:
    """One run as ``omneo-status runs`` shows it."""

    run_id: str
    created_at: str
    updated_at: str
    action: str
    handles: tuple[str, ...]
    dry_run: bool
    input_name: str
    base_url: str
    state: str
    """As a person should read it: a dead ``running`` run is ``interrupted``."""
    rows: int
    """Every row of the run, a sync's holder rows included (the sum of ``counts``)."""
    counts: dict[str, int]
    """Rows per outcome, counted as the report counts them; while the run is live or can be
    resumed, rows not yet decided are counted under ``pending`` (the report of a stopped run
    calls them ``failed``: "not processed ... resume it to go on")."""
    report: str | None
    undo_of: str | None
    exit_code: int | None = None
    """The exit code the run ended with (None until it ended)."""
    match: str = "email"
    """The key its rows were matched by (``--match``)."""
    status_column: str | None = None
    """The input column its rows' statuses were read from (``--status-column``), or None."""

    def to_json(self) -> dict[str, Any]:
        """The run's entry in ``runs --json``: its fields in order, ``input_name`` as
        ``input``."""
        document = {
            "input" if name == "input_name" else name: value for name, value in asdict(self).items()
        }
        document["handles"] = list(self.handles)
        return document


def effective_outcome(
    outcome: Outcome | None, detail: str, *, stage: Stage, has_batch: bool, state: RunState
) -> tuple[Outcome, str]:
    """A row's outcome for the report and the counts, pending rows included."""
    if outcome is not None:
        return outcome, detail
    if stage is Stage.CHUNKED and has_batch:
        return Outcome.SENT, "batch accepted, not yet finished; resume the run to follow it"
    return Outcome.FAILED, f"not processed: the run stopped ({state.value}); resume it to go on"


def _effective(part: Part, detail: str, state: RunState) -> tuple[Outcome, str]:
    return effective_outcome(
        part.outcome, detail, stage=part.stage, has_batch=part.has_batch, state=state
    )


def _part_of(row: RowRecord) -> Part:
    return Part(row.outcome, row.stage, row.batch_id is not None)


def _pending(part: Part, then: Part | None) -> bool:
    """Whether a row (or the row that follows it) has no outcome yet."""
    return part.outcome is None or (then is not None and then.outcome is None)


def outcome_counts(
    run: RunJournal, state: RunState, *, live: bool = False, resumable: bool = False
) -> dict[str, int]:
    """Rows per outcome as the report counts them (every outcome present, zeros included); a
    tier move's two rows count once, as the input row's one outcome.

    With ``live`` (a process still works on the run), undecided rows count as ``pending``.
    With ``resumable`` (the run can be continued), so do the rows the report calls ``failed``
    only because the run stopped before them: resuming it decides them (rows in a batch the
    tenant accepted stay ``sent``).
    """
    counts = {outcome.value: 0 for outcome in Outcome}
    for tally in run.tally():
        undecided = _pending(tally.part, tally.then)
        if live and undecided:
            counts["pending"] = counts.get("pending", 0) + tally.count
            continue
        then = None if tally.then is None else _effective(tally.then, "", state)
        outcome, _ = fold(_effective(tally.part, "", state), then, to=(), away=())
        if resumable and undecided and outcome is Outcome.FAILED:
            counts["pending"] = counts.get("pending", 0) + tally.count
            continue
        counts[outcome.value] += tally.count
    return counts


def move_pairs(
    run: RunJournal, action: Action, state: RunState, *, live: bool = False
) -> list[MovePair]:
    """The rows that changed a profile (or would, or went out) by pair, most first: ``new gold``
    (assigned, no sibling to remove), ``silver -> gold`` (a move), ``gold -> none`` (removed).
    With ``live``, rows still to send count as what they are to do."""
    pairs: dict[tuple[str | None, str | None], int] = {}
    for tally in run.move_tally():
        pending = live and _pending(tally.part, tally.then)
        then = None if tally.then is None else _effective(tally.then, "", state)
        outcome, _ = fold(_effective(tally.part, "", state), then, to=(), away=())
        if not (pending or outcome in CHANGES):
            continue
        key: tuple[str | None, str | None]
        if (tally.action or action) is Action.REMOVE:
            key = (", ".join(tally.send), None)
        else:
            moved = bool(tally.then_send) and (pending or outcome not in _OWN_ONLY)
            key = (", ".join(tally.then_send) if moved else None, ", ".join(tally.send))
        pairs[key] = pairs.get(key, 0) + tally.count
    ranked = sorted(pairs.items(), key=lambda item: (-item[1], str(item[0])))
    return [MovePair(away, to, rows) for (away, to), rows in ranked]


_OWN_ONLY = frozenset({Outcome.ASSIGNED, Outcome.WOULD_ASSIGN})
"""Outcomes of a row with a follower that removed nothing (its siblings were gone already)."""


def default_report_path(journal_path: Path, run_id: str) -> Path:
    """Where a run's report goes when no path is given: ``reports/RUN_ID.csv`` in the state dir."""
    return journal_path.parent / "reports" / f"{run_id}.csv"


def write_run_report(run: RunJournal, path: Path | None) -> Path:
    """Write the run's CSV report (one row per input row, a tier move's two writes as one) and
    record where; returns the path."""
    info = run.info()
    target = path or default_report_path(run.journal.path, run.run_id)
    key_column = MatchKey.parse(info.match).column
    rows = (_report_row(row, then, info) for row, then in run.units())
    write_report(target, rows, key_column, statuses=info.status_column is not None)
    run.record_report(target)
    return target


def _report_row(row: RowRecord, then: RowRecord | None, info: RunInfo) -> ReportRow:
    state = info.state
    lead = _effective(_part_of(row), row.detail, state)
    follow = None if then is None else _effective(_part_of(then), then.detail, state)
    outcome, detail = fold(lead, follow, to=row.send, away=then.send if then else ())
    return ReportRow(
        line=None if row.holder else row.line,
        key=row.key,
        outcome=outcome,
        profile_id=row.profile_id,
        batch_id=row.batch_id or (then.batch_id if then else None),
        detail=detail,
        status="" if row.holder else ", ".join(row.send),
    )


def summarize(
    run: RunJournal,
    *,
    report: Path,
    strict: bool,
    lookup: LookupPlan | None = None,
    resumed: bool = False,
    already_finished: bool = False,
    no_wait: bool = False,
    this_run: ThisRun | None = None,
) -> RunSummary:
    """The run's summary from its journal; its exit code follows ``exit_code_of``.
    ``this_run`` is what this command did (None: nothing)."""
    info = run.info()
    counts = outcome_counts(run, info.state)
    batches = [
        BatchSummary(
            batch_id=chunk.batch_id,
            status=chunk.batch_status or "unknown",
            profiles=chunk.profiles,
            success_count=chunk.success_count or 0,
            failed_count=chunk.failed_count or 0,
            resent=chunk.resent,
        )
        for chunk in run.chunks()
        if chunk.batch_id
    ]
    summary = RunSummary(
        run_id=info.run_id,
        action=info.action,
        handles=info.handles,
        dry_run=info.dry_run,
        rows=sum(counts.values()),
        counts=counts,
        batches=batches,
        verified=Verification.from_json(info.verification),
        report=report,
        exit_code=ExitCode.OK,
        state=info.state.value,
        lookup=lookup,
        resumed=resumed,
        already_finished=already_finished,
        gave_up=info.state is RunState.GAVE_UP,
        no_wait=no_wait,
        this_run=this_run or ThisRun(),
        sync=SyncPlan.of(info.sync),
        match=info.match,
        undoes=_undone_verb(run, info.undo_of),
        input=info.input_name,
        status_column=info.status_column,
        moves=move_pairs(run, info.action, info.state) if info.status_column else None,
    )
    summary.exit_code = exit_code_of(summary, strict=strict)
    return summary


def _undone_verb(run: RunJournal, undo_of: str | None) -> str | None:
    """What the run an undo reverses did (None for a run that is no undo, or whose undone run
    was pruned from the journal: its title is then its own action's)."""
    undone = run.journal.run_info(undo_of) if undo_of is not None else None
    if undone is None:
        return None
    return "sync" if undone.sync is not None else undone.action.value


def exit_code_of(summary: RunSummary, *, strict: bool) -> ExitCode:
    """The documented exit code of a run that ended: 5 when it gave up waiting; 3 when a row
    failed or verification found a problem (or, with ``strict``, a row was skipped); else 0."""
    if summary.gave_up:
        return ExitCode.GAVE_UP_WAITING
    if summary.sync is not None and not summary.sync.allowed:
        return ExitCode.ROWS_FAILED  # a dry run the removal guard would stop
    if summary.counts.get(Outcome.FAILED.value, 0) or summary.verified.problems:
        return ExitCode.ROWS_FAILED
    if strict and any(summary.counts.get(o.value, 0) for o in SKIPPED):
        return ExitCode.ROWS_FAILED
    return ExitCode.OK


_WORDED = frozenset({"action", "state", "counts", "rows"})
"""The fields a ``RunView`` works out; it copies the others from the run's ``RunInfo``."""


def run_view(run: RunJournal, info: RunInfo, *, running: bool) -> RunView:
    """The run as ``runs`` lists it; ``running`` says whether a process holds its job now."""
    state = info.state
    if state in LIVE and not running:
        state = RunState.INTERRUPTED
    kept = {f.name: getattr(info, f.name) for f in fields(RunView) if f.name not in _WORDED}
    counts = outcome_counts(run, state, live=state in LIVE, resumable=state in RESUMABLE)
    return RunView(
        action="sync" if info.sync is not None else info.action.value,
        state=state.value,
        rows=sum(counts.values()),  # a sync's holder rows too, as its summary counts them
        counts=counts,
        **kept,
    )
