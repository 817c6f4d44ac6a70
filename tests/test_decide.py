"""The pure decisions: what a row gets once its lookup is known, and what a re-read profile
says about the change (problems, and explained notes from the status definitions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omneo_status.models import Action, Outcome, Profile, StatusDefinition
from omneo_status.run.decide import Check, Match, Send, Settle, check_profile, decide, dropped

HANDLES = st.lists(st.sampled_from(["vip", "gold", "staff", "media", "tier1"]), unique=True)


def profile(*statuses: str, pid: str = "p1") -> Profile:
    return Profile(id=pid, email="ava@example.com", statuses=statuses)


def test_one_profile_lacking_the_handle_is_sent_only_what_it_lacks() -> None:
    decision = decide(Match((profile("gold"),)), Action.ASSIGN, ["vip", "gold"], dry_run=False)
    assert decision == Send(profile("gold"), ("vip",))


def test_remove_sends_only_the_handles_held() -> None:
    decision = decide(Match((profile("gold"),)), Action.REMOVE, ["vip", "gold"], dry_run=False)
    assert decision == Send(profile("gold"), ("gold",))


@pytest.mark.parametrize(
    ("action", "held", "outcome"),
    [(Action.ASSIGN, ("vip",), Outcome.ALREADY_HAD), (Action.REMOVE, (), Outcome.DID_NOT_HAVE)],
)
def test_nothing_to_send_is_settled_as_unneeded(
    action: Action, held: tuple[str, ...], outcome: Outcome
) -> None:
    decision = decide(Match((profile(*held),)), action, ["vip"], dry_run=False)
    assert isinstance(decision, Settle) and decision.outcome is outcome
    assert decision.profile == profile(*held)


def test_a_dry_run_settles_what_it_would_send() -> None:
    decision = decide(Match((profile(),)), Action.ASSIGN, ["vip"], dry_run=True)
    assert decision == Settle(Outcome.WOULD_ASSIGN, "would assign vip", profile())


def test_no_match_several_matches_and_a_failed_lookup() -> None:
    assert decide(Match(), Action.ASSIGN, ["vip"], dry_run=False) == Settle(
        Outcome.NOT_FOUND, "no profile has this email"
    )
    two = Match((profile(pid="a"), profile(pid="b")))
    ambiguous = decide(two, Action.ASSIGN, ["vip"], dry_run=False, key_name="mobile")
    assert ambiguous == Settle(Outcome.AMBIGUOUS, "2 profiles have this mobile: a, b")
    failed = decide(Match(error="boom"), Action.ASSIGN, ["vip"], dry_run=False)
    assert failed == Settle(Outcome.FAILED, "lookup failed: boom")


@given(held=HANDLES, wanted=HANDLES, action=st.sampled_from(Action), dry_run=st.booleans())
def test_decisions_send_exactly_what_makes_the_change(
    held: list[str], wanted: list[str], action: Action, dry_run: bool
) -> None:
    decision = decide(Match((profile(*held),)), action, wanted, dry_run=dry_run)
    if isinstance(decision, Send):
        assert not dry_run
        assert set(decision.handles) <= set(wanted)
        after = set(held) | set(decision.handles)
        if action is Action.REMOVE:
            after = set(held) - set(decision.handles)
        assert action.applied(after, wanted)
    else:
        assert decision.outcome in (action.unneeded, action.would)
        assert (decision.outcome is action.unneeded) == action.applied(held, wanted)


# -- verification ---------------------------------------------------------------------------

DEFINITIONS = {
    "vip": StatusDefinition(handle="vip", group_handle="tier", group_name="Tier"),
    "gold": StatusDefinition(handle="gold", group_handle="tier", group_name="Tier"),
    "promo": StatusDefinition(handle="promo", period="30", period_type="days"),
    "staff": StatusDefinition(handle="staff"),
}


def test_the_change_present_and_nothing_lost_is_clean() -> None:
    check = check_profile(Action.ASSIGN, ["vip"], ["staff"], profile("staff", "vip"), DEFINITIONS)
    assert check.problem is None and check.notes == ()


def test_a_missing_change_is_a_problem_in_either_direction() -> None:
    assert check_profile(Action.ASSIGN, ["vip"], [], profile(), DEFINITIONS).problem == (
        "vip not on the profile"
    )
    assert check_profile(Action.REMOVE, ["vip"], ["vip"], profile("vip"), DEFINITIONS).problem == (
        "vip still on the profile"
    )
    assert check_profile(Action.ASSIGN, ["vip"], [], None, DEFINITIONS).problem == (
        "profile not found on re-read"
    )


def test_an_unexplained_lost_status_is_a_problem() -> None:
    check = check_profile(Action.ASSIGN, ["vip"], ["staff"], profile("vip"), DEFINITIONS)
    assert check.problem == "held staff before the run and no longer does"


def test_a_time_limited_status_gone_is_a_note_not_a_problem() -> None:
    check = check_profile(Action.ASSIGN, ["vip"], ["promo"], profile("vip"), DEFINITIONS)
    assert check.problem is None
    assert check.notes == ("promo is gone: it is time-limited and may have expired",)


def test_a_status_replaced_within_its_group_is_a_note() -> None:
    check = check_profile(Action.ASSIGN, ["vip"], ["gold", "staff"], profile("vip"), DEFINITIONS)
    assert check.problem == "held staff before the run and no longer does"
    assert check.notes == ("gold is gone: it shares the group Tier with vip, which replaced it",)


def test_a_group_status_gone_without_a_rival_sent_is_a_problem() -> None:
    check = check_profile(Action.ASSIGN, ["staff"], ["gold"], profile("staff"), DEFINITIONS)
    assert check.problem == "held gold before the run and no longer does"


def test_a_move_is_checked_as_one_change() -> None:
    defs = {h: StatusDefinition(handle=h, group_handle="club") for h in ("silver", "gold")}
    before = ("silver", "staff")

    def check(now: tuple[str, ...]) -> Check:
        profile = Profile(id="p", statuses=now)
        return check_profile(Action.ASSIGN, ("gold",), before, profile, defs, away=("silver",))

    assert check(("staff", "gold")) == Check(None, ())  # moved: no note for the sibling
    assert check(("silver", "staff", "gold")).problem == "silver still on the profile"
    assert check(("staff", "silver")).problem == "gold not on the profile"
    assert check(("gold",)).problem == "held staff before the run and no longer does"


def test_only_an_assign_drops_the_rivals_a_profile_holds() -> None:
    held = ("vip", "silver", "platinum")
    assert dropped(Action.ASSIGN, held, {"silver", "platinum", "bronze"}) == ("silver", "platinum")
    assert dropped(Action.REMOVE, held, {"silver"}) == ()
