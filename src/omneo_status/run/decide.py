"""The decisions of a run, as pure functions: what to do with a row once its lookup is known,
and what a re-read profile says about a change that was sent.

Nothing here does I/O; the action's polarity comes from ``Action`` alone.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from omneo_status.models import Action, Outcome, Profile, StatusDefinition


@dataclass(frozen=True)
class Match:
    """What a lookup found for one row: the profiles whose key equals the row's, or why the
    lookup could not be trusted (``error``)."""

    profiles: tuple[Profile, ...] = ()
    error: str | None = None
    case_changed: bool = False
    """The profiles found hold the address in another case than the row's: a filter that
    compares case-sensitively could have missed a profile holding it in yet another case."""
    note: str | None = None
    """A caveat the row's report detail carries (see ``planner.CASE_NOTE``)."""
    deferred: bool = False
    """Nothing to decide yet: the row stays in the lookup stage for a later plan (the scan)."""


@dataclass(frozen=True)
class Send:
    """The row's profile needs ``handles`` sent to it."""

    profile: Profile
    handles: tuple[str, ...]
    note: str | None = None
    """The match's caveat, kept in the row's detail whatever its outcome."""


@dataclass(frozen=True)
class Settle:
    """The row is finished without a write: ``outcome``, explained by ``detail``."""

    outcome: Outcome
    detail: str = ""
    profile: Profile | None = None


Decision = Send | Settle


def decide(
    match: Match,
    action: Action,
    handles: Sequence[str],
    *,
    dry_run: bool,
    key_name: str = "email",
) -> Decision:
    """What to do with a row given what its lookup found.

    Exactly one profile is needed; the handles it lacks (assign) or holds (remove) are sent,
    in ``handles`` order. A dry run settles what it would send as ``would_*``. The match's
    ``note`` follows the one profile into the detail (or the ``Send``).
    """
    if match.error is not None:
        return Settle(Outcome.FAILED, f"lookup failed: {match.error}")
    if not match.profiles:
        return Settle(Outcome.NOT_FOUND, f"no profile has this {key_name}")
    if len(match.profiles) > 1:
        ids = ", ".join(p.id for p in match.profiles[:5])
        count = len(match.profiles)
        return Settle(Outcome.AMBIGUOUS, f"{count} profiles have this {key_name}: {ids}")
    [profile] = match.profiles
    to_send = action.to_send(profile.statuses, handles)
    if not to_send:
        return Settle(action.unneeded, _noted("", match.note), profile)
    if dry_run:
        would = f"would {action.value} {', '.join(to_send)}"
        return Settle(action.would, _noted(would, match.note), profile)
    return Send(profile, to_send, match.note)


def dropped(action: Action, held: Sequence[str], rivals: Collection[str]) -> tuple[str, ...]:
    """The statuses a profile holding ``held`` must lose for a row whose status has
    ``rivals`` (its siblings in its group): those it holds, when the row assigns (a tier
    move); none otherwise."""
    if action is not Action.ASSIGN:
        return ()
    return tuple(handle for handle in held if handle in rivals)


def _noted(detail: str, note: str | None) -> str:
    """A detail with a caveat after it."""
    if not note:
        return detail
    return f"{detail}; {note}" if detail else note


@dataclass(frozen=True)
class Check:
    """What a re-read profile says about one changed row: a ``problem`` (the change is not
    there, or something else the profile held is gone) and explained ``notes`` (a status gone
    for a reason that is not the run's doing)."""

    problem: str | None = None
    notes: tuple[str, ...] = ()


def check_profile(
    action: Action,
    sent: Sequence[str],
    held_before: Sequence[str],
    profile: Profile | None,
    definitions: Mapping[str, StatusDefinition],
    *,
    away: Sequence[str] = (),
) -> Check:
    """Whether ``profile`` (read after the run) shows the change and kept the rest.

    ``away`` are the siblings a tier move removed: they must be gone. A status the profile held
    before and no longer holds is a problem, unless its definition explains it: a time-limited
    status may have expired, and a status that shares its group with a handle that was sent may
    have been replaced by it. Those become notes.
    """
    if profile is None:
        return Check("profile not found on re-read")
    now = set(profile.statuses)
    missing = action.to_send(now, sent)
    if missing:
        # The handles still there were to go; the others were to come.
        where = "still on" if missing[0] in now else "not on"
        return Check(f"{', '.join(missing)} {where} the profile")
    kept = Action.REMOVE.to_send(now, away)
    if kept:
        return Check(f"{', '.join(kept)} still on the profile")
    lost = [h for h in held_before if h not in sent and h not in away and h not in now]
    notes: list[str] = []
    unexplained: list[str] = []
    for handle in lost:
        why = _why_gone(handle, sent, definitions)
        if why is None:
            unexplained.append(handle)
        else:
            notes.append(f"{handle} is gone: {why}")
    if unexplained:
        return Check(
            f"held {', '.join(unexplained)} before the run and no longer does", tuple(notes)
        )
    return Check(None, tuple(notes))


def _why_gone(
    handle: str, sent: Sequence[str], definitions: Mapping[str, StatusDefinition]
) -> str | None:
    definition = definitions.get(handle)
    if definition is None:
        return None
    if definition.time_limited:
        return "it is time-limited and may have expired"
    if definition.grouped:
        rivals = [
            h
            for h in sent
            if (other := definitions.get(h)) is not None
            and other.group_handle == definition.group_handle
        ]
        if rivals:
            group = definition.group_name or definition.group_handle
            return f"it shares the group {group} with {', '.join(rivals)}, which replaced it"
    return None
