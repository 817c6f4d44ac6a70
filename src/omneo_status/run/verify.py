"""The spot-check at the end of a run: re-read a spread sample of the changed profiles of each
action and check each with ``decide.check_profile``."""

from __future__ import annotations

from collections.abc import Mapping

from omneo_status.api.client import OmneoClient
from omneo_status.events import Reporter, Step
from omneo_status.models import Action, Outcome, StatusDefinition
from omneo_status.run.decide import Check, check_profile
from omneo_status.run.resolver import read_profiles
from omneo_status.store.journal import RunJournal
from omneo_status.store.records import RowRecord
from omneo_status.summary import Verification


async def verify_sample(
    run: RunJournal,
    action: Action,
    wanted: int,
    *,
    client: OmneoClient,
    definitions: Mapping[str, StatusDefinition],
    reporter: Reporter,
    into: Verification,
) -> None:
    """Check up to ``wanted`` changed profiles of each action (a sync's both sides), spread
    over the run, and add what was found to ``into``. A tier move is checked as one change:
    the new status held, the siblings it removed gone, every other status kept."""
    if wanted <= 0:
        return
    sample: list[tuple[RowRecord, RowRecord | None]] = []
    params: tuple[str, ...]
    for side in (action, action.inverse):
        where, params = "l.outcome = ?", (side.done.value,)
        if side is Action.ASSIGN:  # a move whose status was there already changed it too
            where, params = "l.outcome = ? OR d.outcome = ?", (side.done.value, _REMOVED)
        candidates = [
            (row, then)
            for row, then in run.units(where, params, limit=wanted * 20)
            if (row.action or action) is side
        ]
        sample += candidates[:: max(1, len(candidates) // wanted)][:wanted]
    if not sample:
        return
    reporter.start(Step.VERIFY, len(sample))
    profiles = await read_profiles(client, [row.profile_id or "" for row, _ in sample])
    for (row, then), profile in zip(sample, profiles, strict=True):
        away = then.send if then is not None and then.outcome is Outcome.REMOVED else ()
        own = row.action or action
        check = check_profile(own, row.send, row.held, profile, definitions, away=away)
        _add_check(into, f"line {row.line} ({row.key})", check)
        reporter.advance(Step.VERIFY)
    reporter.finish(Step.VERIFY)


_REMOVED = Outcome.REMOVED.value


def _add_check(found: Verification, where: str, check: Check) -> None:
    found.checked += 1
    if check.problem is None:
        found.ok += 1
    else:
        found.problems.append(f"{where}: {check.problem}")
    found.notes.extend(f"{where}: {note}" for note in check.notes)
