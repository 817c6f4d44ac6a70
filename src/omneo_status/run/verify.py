"""The spot-check at the end of a run: re-read a spread sample of the changed profiles of each
action and check each with ``decide.check_profile``."""

from __future__ import annotations

from collections.abc import Mapping

from omneo_status.api.client import OmneoClient
from omneo_status.events import Reporter, Step
from omneo_status.models import Action, StatusDefinition
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
    over the run, and add what was found to ``into``."""
    if wanted <= 0:
        return
    sample: list[RowRecord] = []
    for side in (action, action.inverse):
        candidates = [
            row
            for row in run.rows_with_outcome([side.done], limit=wanted * 20)
            if (row.action or action) is side
        ]
        sample += candidates[:: max(1, len(candidates) // wanted)][:wanted]
    if not sample:
        return
    reporter.start(Step.VERIFY, len(sample))
    profiles = await read_profiles(client, [row.profile_id or "" for row in sample])
    for row, profile in zip(sample, profiles, strict=True):
        check = check_profile(row.action or action, row.send, row.held, profile, definitions)
        _add_check(into, f"line {row.line} ({row.key})", check)
        reporter.advance(Step.VERIFY)
    reporter.finish(Step.VERIFY)


def _add_check(found: Verification, where: str, check: Check) -> None:
    found.checked += 1
    if check.problem is None:
        found.ok += 1
    else:
        found.problems.append(f"{where}: {check.problem}")
    found.notes.extend(f"{where}: {note}" for note in check.notes)
