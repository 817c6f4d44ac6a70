"""The plan says when a target status changes on its own (issue 11: time-limited or grouped)."""

from __future__ import annotations

from pathlib import Path

from omneo_status.jobs import status_caveats
from omneo_status.models import StatusDefinition

from .conftest import EXAMPLES, Sandbox, write_csv


def _definitions(*statuses: StatusDefinition) -> dict[str, StatusDefinition]:
    return {status.handle: status for status in statuses}


def test_a_plain_status_has_no_caveat() -> None:
    assert status_caveats(_definitions(StatusDefinition(handle="vip")), ["vip"]) == []


def test_time_limited_and_grouped_statuses_are_called_out() -> None:
    definitions = _definitions(
        StatusDefinition(handle="welcome", period="30", period_type="days"),
        StatusDefinition(handle="promo", absolute_expiry="2027-01-31"),
        StatusDefinition(handle="silver", group_handle="tier", group_name="Tier"),
        StatusDefinition(handle="gold", group_handle="tier", group_name="Tier"),
    )
    welcome, promo, silver = status_caveats(definitions, ["welcome", "promo", "silver"])
    assert "time-limited (it lasts 30 days)" in welcome
    assert "expires on 2027-01-31" in promo
    assert "group Tier" in silver
    assert "(gold)" in silver


def test_the_plan_warns_before_a_dry_run(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "welcome", str(EXAMPLES / "emails.csv"), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert "Warning: `welcome` is time-limited" in result.stderr


def test_the_summary_shows_verification_notes(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.config.group_rule = True
    ava = sandbox.tenant.by_email("ava.nguyen@example.com")[0]
    ava.statuses[:] = ["tier-silver"]
    csv = write_csv(tmp_path / "a.csv", [ava.email or ""])
    result = sandbox.run("assign", "tier-platinum", str(csv))
    assert result.exit_code == 0, result.output
    assert "Verified: 1/1 profile, all good" in result.stdout
    assert "note: line 2 (ava.nguyen@example.com): tier-silver is gone" in result.stdout
