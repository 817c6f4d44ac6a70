"""Tier moves: a row whose status belongs to a group moves its customer within the group.

With ``--status-column`` a row may name a status of a group (its ``group_handle``): the
customer ends holding that status and no other of the group, whatever the tenant does by
itself. A move is two writes, each a row of the run's journal with its own action: the input
row assigns the new status, and a row that *follows* it removes the siblings the profile holds,
sent only once the first write landed (so a customer holds both tiers for a moment, never
none). The report and the counts show the two rows as one: the input row's.

This module holds what every floor asks of a move: a status's siblings, the statuses a run may
change, how a row and the row that follows it add up to one outcome, and the moves by pair that
the plan and the summary show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from omneo_status.models import Action, Outcome, Profile, StatusDefinition
from omneo_status.store.records import NewRow, RowRecord, Stage

CHANGES = frozenset(
    {
        Outcome.MOVED,
        Outcome.WOULD_MOVE,
        Outcome.ASSIGNED,
        Outcome.WOULD_ASSIGN,
        Outcome.REMOVED,
        Outcome.WOULD_REMOVE,
        Outcome.SENT,
    }
)
"""Outcomes of a row that changed a profile (or would, or went out): what a pair counts."""


def siblings(handle: str, definitions: Mapping[str, StatusDefinition]) -> tuple[str, ...]:
    """The other statuses of ``handle``'s group, in the tenant's order (none without a
    group)."""
    status = definitions.get(handle)
    if status is None or not status.grouped:
        return ()
    return tuple(
        other.handle
        for other in definitions.values()
        if other.group_handle == status.group_handle and other.handle != handle
    )


def rivals(handles: Iterable[str], definitions: Mapping[str, StatusDefinition]) -> set[str]:
    """The statuses a profile must not keep beside ``handles`` (a row's statuses): their
    siblings in their groups."""
    wanted = set(handles)
    return {other for handle in wanted for other in siblings(handle, definitions)} - wanted


def scope(handles: Iterable[str], definitions: Mapping[str, StatusDefinition]) -> tuple[str, ...]:
    """Every status a run giving ``handles`` may change: each handle, then its siblings."""
    found: dict[str, None] = {}
    for handle in handles:
        found[handle] = None
        found.update(dict.fromkeys(siblings(handle, definitions)))
    return tuple(found)


def second_write(
    row: RowRecord, profile: Profile, away: tuple[str, ...], canonical: str, dry_run: bool
) -> NewRow:
    """The row that follows ``row`` (decided for ``profile``): ``away`` removed once the row's
    status is on the profile; a dry run settles it as it would go."""
    return NewRow(
        None,
        row.key,
        row.address,
        canonical,
        stage=Stage.PLANNED,
        outcome=Action.REMOVE.would if dry_run else None,
        detail=f"would remove {names(away)}" if dry_run else "",
        profile_id=profile.id,
        held=profile.statuses,
        send=away,
        action=Action.REMOVE,
        follows=row.line,
    )


def names(handles: Iterable[str]) -> str:
    """Handles as a pair shows them (``tier-silver, tier-gold``)."""
    return ", ".join(handles)


def fold(
    lead: tuple[Outcome, str],
    follow: tuple[Outcome, str] | None,
    *,
    to: Iterable[str],
    away: Iterable[str],
) -> tuple[Outcome, str]:
    """The one outcome (and detail) of a row and the row that follows it, from each one's own:
    ``lead`` assigned ``to``, ``follow`` removed ``away`` (a tier move). Without a follower
    the row's own outcome stands."""
    if follow is None:
        return lead
    outcome, detail = lead
    then, then_detail = follow
    if outcome in (Outcome.FAILED, Outcome.SENT):
        return lead  # the first write did not land (or is not seen to): the second waited
    pair = f"{names(away)} -> {names(to)}"
    if then is Outcome.REMOVED:
        return Outcome.MOVED, f"{pair}; {detail}" if detail else pair
    if then is Outcome.WOULD_REMOVE:
        return Outcome.WOULD_MOVE, f"would move {pair}"
    if then is Outcome.FAILED:
        return Outcome.FAILED, f"{names(to)} given but {names(away)} not removed: {then_detail}"
    if then is Outcome.SENT:
        return Outcome.SENT, f"{names(to)} given; removing {names(away)}: {then_detail}"
    return lead  # the siblings were gone already (did_not_have)


@dataclass(frozen=True)
class MovePair:
    """How many rows move (or would) from ``away`` to ``to``: ``new gold`` (nothing away),
    ``silver -> gold``, ``gold -> none`` (nothing to: a sync's holder, a removal)."""

    away: str | None
    to: str | None
    rows: int

    @property
    def label(self) -> str:
        """The pair as the plan shows it."""
        if self.away is None:
            return f"new {self.to}"
        return f"{self.away} -> {self.to or 'none'}"

    def to_json(self) -> dict[str, Any]:
        """The pair's entry in the summary's ``moves``."""
        return {"from": self.away, "to": self.to, "rows": self.rows}
