"""The tier-move policy alone: a status's siblings, the statuses a run may change, how a row
and the row that follows it add up to one outcome, and how a pair is named."""

from __future__ import annotations

import pytest

from omneo_status.models import Outcome, StatusDefinition
from omneo_status.moves import MovePair, fold, rivals, scope, siblings

DEFINITIONS = {
    status.handle: status
    for status in (
        StatusDefinition(handle="vip"),
        StatusDefinition(handle="bronze", group_handle="club"),
        StatusDefinition(handle="silver", group_handle="club"),
        StatusDefinition(handle="gold", group_handle="club"),
        StatusDefinition(handle="tier-a", group_handle="tier"),
    )
}


def test_siblings_scope_and_rivals_follow_the_groups() -> None:
    assert siblings("silver", DEFINITIONS) == ("bronze", "gold")
    assert siblings("vip", DEFINITIONS) == siblings("nope", DEFINITIONS) == ()
    assert scope(["gold", "vip", "silver"], DEFINITIONS) == ("gold", "bronze", "silver", "vip")
    assert rivals(["gold"], DEFINITIONS) == {"bronze", "silver"}
    assert rivals(["gold", "silver"], DEFINITIONS) == {"bronze"}


DONE, REMOVED = (Outcome.ASSIGNED, ""), (Outcome.REMOVED, "")


@pytest.mark.parametrize(
    ("lead", "follow", "expected"),
    [
        (DONE, None, DONE),
        (DONE, REMOVED, (Outcome.MOVED, "silver -> gold")),
        ((Outcome.ALREADY_HAD, ""), REMOVED, (Outcome.MOVED, "silver -> gold")),
        ((Outcome.ASSIGNED, "a note"), REMOVED, (Outcome.MOVED, "silver -> gold; a note")),
        (
            (Outcome.WOULD_ASSIGN, "would assign gold"),
            (Outcome.WOULD_REMOVE, ""),
            (Outcome.WOULD_MOVE, "would move silver -> gold"),
        ),
        ((Outcome.FAILED, "Injected failure"), (Outcome.FAILED, "not sent"), None),
        ((Outcome.SENT, "batch accepted"), (Outcome.FAILED, "not processed"), None),
        (
            DONE,
            (Outcome.FAILED, "not processed: the run stopped (interrupted)"),
            (
                Outcome.FAILED,
                "gold given but silver not removed: not processed: the run stopped (interrupted)",
            ),
        ),
        (
            DONE,
            (Outcome.SENT, "batch accepted"),
            (Outcome.SENT, "gold given; removing silver: batch accepted"),
        ),
        (DONE, (Outcome.DID_NOT_HAVE, ""), DONE),
    ],
)
def test_a_row_and_its_follower_fold_into_one_outcome(
    lead: tuple[Outcome, str],
    follow: tuple[Outcome, str] | None,
    expected: tuple[Outcome, str] | None,
) -> None:
    folded = fold(lead, follow, to=("gold",), away=("silver",))
    assert folded == (expected or lead)


def test_a_pair_is_named_as_the_plan_shows_it() -> None:
    assert MovePair(None, "gold", 3).label == "new gold"
    assert MovePair("silver", "gold", 3).label == "silver -> gold"
    assert MovePair("gold", None, 3).label == "gold -> none"
    assert MovePair("gold", None, 3).to_json() == {"from": "gold", "to": None, "rows": 3}
