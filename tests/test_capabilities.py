"""Runs reuse what ``doctor`` learned about a tenant (issue 11 section 2): a fresh record per
base URL in the state dir; a missing, stale or broken one changes nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from omneo_status import capabilities
from omneo_status.api.doctor import Capabilities, EmailFilter, RateLimit
from omneo_status.api.paging import PageStyle
from omneo_status.run.planner import TenantFacts
from omneo_status.sandbox import generate_tenant
from omneo_status.settings import SANDBOX_BASE_URL

from .conftest import Sandbox, summary_of, write_csv

EMAILS = ["ava.nguyen@example.com", "ben.carter@example.com", "chloe.martin@example.com"]


def _state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_doctor_keeps_what_it_found_and_a_run_starts_from_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.config = replace(sandbox.config, page_style="per_page", email_in_filter=False)
    doctor = sandbox.invoke("doctor", "--sandbox", "--json")
    assert doctor.exit_code == 0, doctor.output
    learned = capabilities.recall(_state(tmp_path), SANDBOX_BASE_URL)
    assert learned is not None
    assert learned.page_style is PageStyle.PER_PAGE
    assert learned.capabilities.email_in_filter is False

    sandbox.tenant.requests.clear()
    run = sandbox.run("assign", "vip", str(write_csv(tmp_path / "in.csv", EMAILS)), "--json")
    assert run.exit_code == 0, run.output
    reads = [r for r in sandbox.tenant.requests if r.path.endswith("/profiles")]
    names = {name for r in reads for name, _ in r.query}
    # Neither the ignored dialect nor the ignored filter was tried again.
    assert "page[number]" not in names
    assert "filter[email][in]" not in names
    assert summary_of(run)["counts"]["assigned"] + summary_of(run)["counts"]["already_had"] == 3


def test_without_a_record_the_run_finds_out_itself(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.config = replace(sandbox.config, page_style="per_page", email_in_filter=False)
    run = sandbox.run("assign", "vip", str(write_csv(tmp_path / "in.csv", EMAILS)), "--json")
    assert run.exit_code == 0, run.output
    names = {name for r in sandbox.tenant.requests for name, _ in r.query}
    assert {"page[number]", "per_page"} <= names  # the ignored dialect tried, the other found
    reason = summary_of(run)["lookup"]["reason"]
    assert "31 profiles in 1 page of 100" in reason  # costed at the page size that works
    assert capabilities.recall(_state(tmp_path), SANDBOX_BASE_URL) is None


def test_a_failed_doctor_keeps_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.config = replace(sandbox.config, email_match="ignored")
    assert sandbox.invoke("doctor", "--sandbox", "--json").exit_code == 1
    assert capabilities.recall(_state(tmp_path), SANDBOX_BASE_URL) is None


def test_a_stale_or_broken_record_is_ignored(tmp_path: Path) -> None:
    url = "https://api.acme.getomneo.com/api"
    long_ago = datetime.now(UTC) - capabilities.FRESH_FOR - timedelta(hours=1)
    kept = Capabilities(page_style=PageStyle.PER_PAGE)
    path = capabilities.remember(tmp_path, url, kept, now=long_ago)
    assert path.stat().st_mode & 0o777 == 0o600
    assert capabilities.recall(tmp_path, url) is None
    assert capabilities.recall(tmp_path, url, now=long_ago) is not None
    path.write_text("{not json", encoding="utf-8")
    assert capabilities.recall(tmp_path, url) is None
    path.write_text(json.dumps({"base_url": "https://other/api"}), encoding="utf-8")
    assert capabilities.recall(tmp_path, url) is None
    fresh = datetime.now(UTC).isoformat()
    broken: list[Any] = [[], {"base_url": url, "checked_at": fresh, "capabilities": ["x"]}]
    for document in broken:
        path.write_text(json.dumps(document), encoding="utf-8")
        assert capabilities.recall(tmp_path, url) is None
    empty = {"base_url": url, "checked_at": fresh, "capabilities": {}}
    path.write_text(json.dumps(empty), encoding="utf-8")
    assert capabilities.recall(tmp_path, url) is not None  # nothing known, but a record


def test_both_styles_honoured_means_no_preference(tmp_path: Path) -> None:
    url = "https://api.acme.getomneo.com/api"
    capabilities.remember(tmp_path, url, Capabilities(page_style="both", email_in_filter=True))
    learned = capabilities.recall(tmp_path, url)
    assert learned is not None
    assert learned.page_style is None
    assert learned.capabilities.email_in_filter is True


# A record as doctor kept it before its capabilities were typed (the file's text, byte for byte).
KEPT = """{
  "base_url": "https://api.acme.getomneo.com/api",
  "checked_at": "2026-01-31T00:00:00+00:00",
  "capabilities": {
    "email_filter": "case_sensitive",
    "email_in_filter": false,
    "status_filter": true,
    "page_style": "per_page",
    "page_size": 100,
    "profiles": 1770,
    "rate_limit": {
      "limit": 1000,
      "remaining": 990
    },
    "batches_endpoint": null
  }
}"""


def test_a_kept_record_reads_back_whole_and_is_kept_in_the_same_words(tmp_path: Path) -> None:
    url = "https://api.acme.getomneo.com/api"
    day = datetime(2026, 1, 31, tzinfo=UTC)
    path = capabilities.record_path(tmp_path, url)
    path.parent.mkdir(parents=True)
    path.write_text(KEPT, encoding="utf-8")
    learned = capabilities.recall(tmp_path, url, now=day)
    assert learned is not None
    kept = learned.capabilities
    assert (kept.email_filter, kept.page_style) == (EmailFilter.CASE_SENSITIVE, PageStyle.PER_PAGE)
    assert (kept.rate_limit, kept.batches_endpoint) == (RateLimit(1000, 990), None)
    assert kept.to_json() == json.loads(KEPT)["capabilities"]
    path.unlink()
    assert capabilities.remember(tmp_path, url, learned.capabilities, now=day) == path
    assert path.read_text(encoding="utf-8") == KEPT


@pytest.mark.parametrize(
    ("record", "in_filter", "case", "size"),
    [
        ({"email_filter": "case_sensitive", "page_size": 100}, None, True, 100),
        ({"email_filter": "exact", "email_in_filter": False, "page_size": "50"}, False, False, 50),
        ({"email_filter": "ignored", "page_size": 0}, None, None, None),
        ({"email_filter": "fuzzy", "email_in_filter": "yes", "page_size": -5}, None, None, None),
        ({"page_style": 2, "rate_limit": {"limit": "x"}, "unknown": 1}, None, None, None),
        ({"page_style": ["both"], "email_filter": {"exact": 1}, "page_size": 50}, None, None, 50),
        ({}, None, None, None),
    ],
)
def test_the_record_becomes_facts_for_the_planner(
    tmp_path: Path,
    record: dict[str, Any],
    in_filter: bool | None,
    case: bool | None,
    size: int | None,
) -> None:
    url = "https://api.acme.getomneo.com/api"
    day = datetime(2026, 1, 31, tzinfo=UTC)
    kept = {"base_url": url, "checked_at": day.isoformat(), "capabilities": record}
    path = capabilities.record_path(tmp_path, url)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(kept), encoding="utf-8")  # as doctor kept it, or written by hand
    learned = capabilities.recall(tmp_path, url, now=day)
    assert learned is not None
    assert learned.facts() == TenantFacts(in_filter, case, size, "doctor, 2026-01-31")
    assert learned.page_style is None  # none of these names one style the client could use


# -- doctor's record gives the planner facts, never a plan (issue 18, point 3) ---------------


def _lookup_requests(
    sandbox: Sandbox, tmp_path: Path, emails: list[str]
) -> tuple[int, dict[str, Any]]:
    """The ``GET /v3/profiles`` requests of one dry run, and its plan."""
    sandbox.tenant.requests.clear()
    csv = write_csv(tmp_path / "in.csv", emails)
    run = sandbox.run("assign", "vip", str(csv), "--dry-run", "--json", "-v")
    assert run.exit_code == 0, run.output
    reads = [r for r in sandbox.tenant.requests if r.path == "/api/v3/profiles"]
    lookup = summary_of(run)["lookup"]
    assert isinstance(lookup, dict)
    return len(reads), lookup


@pytest.mark.parametrize(
    ("profiles", "addresses", "variant"),
    [
        (200, 84, {"email_in_filter": False}),
        (1770, 300, {"email_in_filter": False, "page_style": "per_page"}),
        (1770, 300, {"page_style": "per_page"}),
        (3000, 40, {"email_in_filter": False}),
    ],
)
def test_doctor_first_never_makes_a_run_dearer(
    sandbox: Sandbox, tmp_path: Path, profiles: int, addresses: int, variant: dict[str, Any]
) -> None:
    sandbox.tenant = generate_tenant(profiles, seed=18)
    sandbox.config = replace(sandbox.config, **variant)
    # The file's last customers: a tenant ignoring the in filter shows strangers on page 1.
    emails = [f"customer{n}@example.com" for n in range(profiles - addresses + 1, profiles + 1)]
    without, plain = _lookup_requests(sandbox, tmp_path, emails)
    assert plain["requests"] == without  # the plan costs what it said

    assert sandbox.invoke("doctor", "--sandbox", "--json").exit_code == 0
    after, informed = _lookup_requests(sandbox, tmp_path, emails)
    assert after <= without
    assert informed["requests"] == after
    assert informed["mode"] == plain["mode"]
    assert "--lookup" not in informed["reason"]  # names what was measured, not a flag
    if variant.get("email_in_filter") is False:
        assert "ignores filter[email][in] (doctor, " in informed["reason"]


def test_a_per_page_tenant_is_scanned_at_the_page_size_that_works(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(1770, seed=18)
    sandbox.config = replace(sandbox.config, email_in_filter=False, page_style="per_page")
    emails = [f"customer{n}@example.com" for n in range(1471, 1771)]
    requests, lookup = _lookup_requests(sandbox, tmp_path, emails)
    assert lookup["mode"] == "scan"
    assert "1,770 profiles in 18 pages of 100" in lookup["reason"]
    # Page 1 in each dialect, the ignored in filter once, then pages 2 to 18.
    assert requests == lookup["requests"] == 20


def test_forced_bulk_on_a_tenant_known_to_ignore_the_in_filter_does_not_probe_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.config = replace(sandbox.config, email_in_filter=False)
    assert sandbox.invoke("doctor", "--sandbox", "--json").exit_code == 0
    sandbox.tenant.requests.clear()
    csv = write_csv(tmp_path / "in.csv", EMAILS)
    run = sandbox.run("assign", "vip", str(csv), "--dry-run", "--json", "--lookup", "bulk")
    assert run.exit_code == 0, run.output
    lookup = summary_of(run)["lookup"]
    assert lookup["mode"] == "single"
    assert lookup["warning"].startswith("the tenant does not honour filter[email][in] (doctor, ")
    names = {name for r in sandbox.tenant.requests for name, _ in r.query}
    assert "filter[email][in]" not in names
