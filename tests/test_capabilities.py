"""Runs reuse what ``doctor`` learned about a tenant (issue 11 section 2): a fresh record per
base URL in the state dir; a missing, stale or broken one changes nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from omneo_status import capabilities
from omneo_status.client import PageStyle
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
    assert learned.email_in_filter is False

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
    assert "filter[email][in]" in names  # probed, found ignored, fell back
    assert capabilities.recall(_state(tmp_path), SANDBOX_BASE_URL) is None


def test_a_failed_doctor_keeps_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.config = replace(sandbox.config, email_match="ignored")
    assert sandbox.invoke("doctor", "--sandbox", "--json").exit_code == 1
    assert capabilities.recall(_state(tmp_path), SANDBOX_BASE_URL) is None


def test_a_stale_or_broken_record_is_ignored(tmp_path: Path) -> None:
    url = "https://api.acme.getomneo.com/api"
    long_ago = datetime.now(UTC) - capabilities.FRESH_FOR - timedelta(hours=1)
    path = capabilities.remember(tmp_path, url, {"page_style": "per_page"}, now=long_ago)
    assert path.stat().st_mode & 0o777 == 0o600
    assert capabilities.recall(tmp_path, url) is None
    assert capabilities.recall(tmp_path, url, now=long_ago) is not None
    path.write_text("{not json", encoding="utf-8")
    assert capabilities.recall(tmp_path, url) is None
    path.write_text(json.dumps({"base_url": "https://other/api"}), encoding="utf-8")
    assert capabilities.recall(tmp_path, url) is None


def test_both_styles_honoured_means_no_preference(tmp_path: Path) -> None:
    url = "https://api.acme.getomneo.com/api"
    capabilities.remember(tmp_path, url, {"page_style": "both", "email_in_filter": True})
    learned = capabilities.recall(tmp_path, url)
    assert learned is not None
    assert learned.page_style is None
    assert learned.email_in_filter is True
