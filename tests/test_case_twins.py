"""Case twins (two profiles holding one address in two cases) on a tenant whose email filter is
case-sensitive: the outcome never depends on the plan. A run that knows the rule (doctor's
record) or learns it (a lookup that needed another case) prefers the scan, which sees every case;
where the scan is out of reach, the plan and each row matched through a change of case say what
a lookup by filter cannot rule out."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from omneo_status.cli import boundary
from omneo_status.cli.sandbox import _sandbox_tenant
from omneo_status.run.planner import CASE_NOTE
from omneo_status.sandbox import add_case_twins, create_app, generate_tenant

from .conftest import Sandbox, report_rows, summary_of, write_csv

TWIN = "TWIN0@EXAMPLE.COM"
"""A row naming the twins' address in a third case."""
PROFILES = "/api/v3/profiles"


def twins_tenant(sandbox: Sandbox, profiles: int, *, case_sensitive: bool = True) -> None:
    sandbox.tenant = generate_tenant(profiles, seed=18)
    add_case_twins(sandbox.tenant, 1)
    sandbox.config = replace(
        sandbox.config, email_match="case_sensitive" if case_sensitive else "case_insensitive"
    )


def customers(count: int) -> list[str]:
    return [f"customer{n}@example.com" for n in range(1, count + 1)]


def dry_run(sandbox: Sandbox, tmp_path: Path, emails: list[str], *extra: str) -> dict[str, Any]:
    report = tmp_path / "report.csv"
    csv = write_csv(tmp_path / "in.csv", emails)
    result = sandbox.run(
        "assign", "vip", str(csv), "--dry-run", "--json", "--report", str(report), *extra
    )
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    doc["rows_of"] = {row["email"]: row for row in report_rows(report)}
    doc["stderr"] = result.stderr
    return doc


def profile_reads(sandbox: Sandbox) -> list[dict[str, str]]:
    return [dict(r.query) for r in sandbox.tenant.requests if r.path == PROFILES]


@pytest.mark.parametrize(
    ("profiles", "addresses", "first_plan"),
    [
        (300, 150, "bulk"),  # one group tried in bulk shows the case change
        (300, 1, "single"),  # the lower-case retry of the one lookup shows it
        (1000, 5, "single"),  # the filter ignored: single lookups, then the retry
    ],
)
def test_a_run_that_learns_the_rule_scans_and_finds_the_twins_ambiguous(
    sandbox: Sandbox, tmp_path: Path, profiles: int, addresses: int, first_plan: str
) -> None:
    twins_tenant(sandbox, profiles)
    if profiles == 1000:
        sandbox.config = replace(sandbox.config, email_in_filter=False)
    emails = [TWIN, *customers(addresses - 1)]
    doc = dry_run(sandbox, tmp_path, emails)
    assert doc["rows_of"][TWIN]["outcome"] == "ambiguous"
    assert doc["lookup"]["mode"] == "scan"
    assert "case-sensitive" in doc["lookup"]["reason"]
    assert doc["lookup"]["warning"] is None
    assert doc["counts"]["would_assign"] + doc["counts"]["already_had"] == addresses - 1
    # The filter lookups ran first (the plan it learned the rule under), then every page.
    reads = profile_reads(sandbox)
    used = "filter[email][in]" if first_plan == "bulk" else "filter[email]"
    assert any(used in q for q in reads)
    pages = [q for q in reads if not any(k.startswith("filter") for k in q)]
    assert len({q.get("page[number]") for q in pages}) == -(-(profiles + 2) // 100)


def test_a_run_that_knows_the_rule_from_doctor_scans_from_the_start(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    twins_tenant(sandbox, 300)
    assert sandbox.invoke("doctor", "--sandbox", "--json").exit_code == 0
    sandbox.tenant.requests.clear()
    doc = dry_run(sandbox, tmp_path, [TWIN, *customers(149)])
    assert doc["rows_of"][TWIN]["outcome"] == "ambiguous"
    assert doc["lookup"]["mode"] == "scan"
    assert doc["lookup"]["reason"].startswith(
        "the tenant's email filter is case-sensitive (doctor,"
    )
    assert not any(k.startswith("filter") for q in profile_reads(sandbox) for k in q)


@pytest.mark.parametrize("mode", ["auto", "scan", "single", "bulk"])
def test_a_tenant_that_ignores_case_finds_both_twins_whatever_the_plan(
    sandbox: Sandbox, tmp_path: Path, mode: str
) -> None:
    twins_tenant(sandbox, 300, case_sensitive=False)
    doc = dry_run(sandbox, tmp_path, [TWIN, *customers(149)], "--lookup", mode)
    assert doc["rows_of"][TWIN]["outcome"] == "ambiguous"
    assert doc["lookup"]["warning"] is None
    assert "case" not in doc["lookup"]["reason"]


def test_out_of_reach_the_plan_warns_and_the_row_says_so(sandbox: Sandbox, tmp_path: Path) -> None:
    twins_tenant(sandbox, 3000)
    report = tmp_path / "report.csv"
    csv = write_csv(tmp_path / "in.csv", [TWIN, *customers(9)])
    result = sandbox.run("assign", "vip", str(csv), "--json", "--report", str(report))
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["lookup"]["mode"] == "bulk"
    warning = doc["lookup"]["warning"]
    assert warning.startswith(f"The tenant's email filter is case-sensitive ({TWIN} was found")
    assert "would cost more than 3 times" in warning
    assert warning in " ".join(result.stderr.split()), result.stderr
    rows = {row["email"]: row for row in report_rows(report)}
    assert rows[TWIN]["outcome"] == "assigned"
    assert rows[TWIN]["detail"] == CASE_NOTE  # kept through the batch to the outcome
    assert all(rows[e]["detail"] == "" for e in customers(9) if rows[e]["outcome"] == "assigned")
    # One lookup as written settled the rule; no page past the first was read.
    reads = profile_reads(sandbox)
    assert {"filter[email]": TWIN, "page[size]": "100", "page[number]": "1"} in reads
    assert not [q for q in reads if q.get("page[number]") not in (None, "1")]


def test_doctor_known_rule_out_of_reach_warns_before_any_lookup(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    twins_tenant(sandbox, 3000)
    assert sandbox.invoke("doctor", "--sandbox", "--json").exit_code == 0
    doc = dry_run(sandbox, tmp_path, [TWIN, "twin0@example.com", *customers(8)])
    assert doc["lookup"]["mode"] == "bulk"
    assert doc["lookup"]["warning"].startswith(
        "The tenant's email filter is case-sensitive (doctor"
    )
    row = doc["rows_of"][TWIN]
    # The bulk lookup asks for both forms: the lower-case twin is found, the other is not.
    assert row["outcome"] == "would_assign"
    assert row["detail"] == f"would assign vip; {CASE_NOTE}"
    assert doc["rows_of"]["twin0@example.com"]["outcome"] == "duplicate"


def test_forced_single_on_a_known_case_sensitive_tenant_warns_and_asks_both_forms(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    twins_tenant(sandbox, 300)
    sandbox.tenant.add_profile("TWIN0@EXAMPLE.COM")  # a third case: found as written
    assert sandbox.invoke("doctor", "--sandbox", "--json").exit_code == 0
    sandbox.tenant.requests.clear()
    doc = dry_run(sandbox, tmp_path, [TWIN], "--lookup", "single")
    assert "--lookup single was asked for" in doc["lookup"]["warning"]
    # Found as written, and again in lower case: two profiles, so no guess.
    assert doc["rows_of"][TWIN]["outcome"] == "ambiguous"
    assert [q["filter[email]"] for q in profile_reads(sandbox)] == [TWIN, TWIN.lower()]


def without_totals(inner: Any) -> Any:
    """The sandbox app with ``meta.total`` taken out of every list answer."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        start: dict[str, Any] = {}

        async def patched(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body = json.loads(message["body"] or b"null")
            if isinstance(body, dict) and isinstance(body.get("meta"), dict):
                body["meta"].pop("total", None)
                body["meta"].pop("last_page", None)
            data = json.dumps(body).encode()
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", b"%d" % len(data))]})
            await send({"type": "http.response.body", "body": data})

        await inner(scope, receive, patched)

    return app


def test_a_list_without_its_size_cannot_be_scanned_so_the_plan_warns(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    twins_tenant(sandbox, 300)
    app = without_totals(create_app(sandbox.tenant, sandbox.config))
    boundary.runtime().sandbox_transport = lambda: httpx.ASGITransport(app=app)
    doc = dry_run(sandbox, tmp_path, [TWIN, *customers(3)])
    assert "cannot be scanned" in doc["lookup"]["warning"]
    assert doc["rows_of"][TWIN]["detail"] == f"would assign vip; {CASE_NOTE}"


def test_the_summary_shows_the_plan_s_warning(sandbox: Sandbox, tmp_path: Path) -> None:
    twins_tenant(sandbox, 3000)
    csv = write_csv(tmp_path / "in.csv", [TWIN, *customers(2)])
    result = sandbox.run("assign", "vip", str(csv), "--dry-run")
    assert result.exit_code == 0, result.stderr
    shown = " ".join(result.stdout.split())
    assert "Lookup: bulk" in shown
    assert "warning: The tenant's email filter is case-sensitive" in shown


def test_the_sandbox_serves_case_twins_on_any_tenant() -> None:
    tenant = _sandbox_tenant(None, 10, case_twins=2)
    assert len(tenant.profiles) == 14
    assert [p.email for p in tenant.by_email("TWIN1@EXAMPLE.COM")] == [
        "Twin1@Example.com",
        "twin1@example.com",
    ]
    assert len(_sandbox_tenant(None, None, case_twins=1).by_email("twin0@example.com")) == 2
    with pytest.raises(ValueError, match="negative"):
        add_case_twins(tenant, -1)


def test_doctor_known_rule_weighs_the_scan_against_single_lookups_too(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    twins_tenant(sandbox, 1000)
    sandbox.config = replace(sandbox.config, email_in_filter=False)
    assert sandbox.invoke("doctor", "--sandbox", "--json").exit_code == 0
    sandbox.tenant.requests.clear()
    # Five single lookups cost fewer requests than 11 pages, but not 3 times fewer.
    doc = dry_run(sandbox, tmp_path, [TWIN, *customers(4)])
    assert doc["rows_of"][TWIN]["outcome"] == "ambiguous"
    assert doc["lookup"]["mode"] == "scan"
    reason = doc["lookup"]["reason"]
    assert reason.startswith("the tenant ignores filter[email][in] (doctor, ")
    assert "case-sensitive (doctor, " in reason and "5 single lookups" in reason
    assert len(profile_reads(sandbox)) == doc["lookup"]["requests"] == 11
