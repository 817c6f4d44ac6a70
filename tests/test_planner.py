"""The lookup planner and the tenant scan, over the sandbox: which plan ``auto`` picks and why,
that a scan keeps every guarantee of the lookups (exact keys, case, ambiguity, not found,
duplicates), that it survives a list moving under it, resumes without reading a page twice, and
that bulk groups are as large as a page and no longer than the URL allows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from omneo_status.cli import boundary
from omneo_status.resolver import URL_MAX
from omneo_status.sandbox import Tenant, create_app, generate_tenant

from .conftest import Sandbox, report_rows, summary_of, write_csv

PROFILES = "/api/v3/profiles"


def lookups(tenant: Tenant) -> list[dict[str, str]]:
    """The query of every profile list request, in order."""
    return [dict(r.query) for r in tenant.requests if r.path == PROFILES and r.method == "GET"]


def scan_pages(tenant: Tenant) -> list[int]:
    """The page numbers of every unfiltered profile list request (the scan's reads)."""
    return [
        int(q.get("page[number]", "1"))
        for q in lookups(tenant)
        if not any(k.startswith("filter") for k in q)
    ]


def customers(tenant: Tenant, count: int, start: int = 0) -> list[str]:
    return [p.email for p in tenant.profiles.values()][start : start + count]


def run_json(sandbox: Sandbox, csv: Path, *extra: str) -> dict[str, Any]:
    result = sandbox.run("assign", "vip", str(csv), "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return summary_of(result)


# -- the planner's choices ----------------------------------------------------------------


def test_a_small_file_against_a_large_tenant_is_looked_up_in_bulk(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(3000, seed=3)
    csv = write_csv(tmp_path / "in.csv", customers(sandbox.tenant, 150, start=500))
    doc = run_json(sandbox, csv)
    assert doc["lookup"]["mode"] == "bulk"
    assert "honours filter[email][in]" in doc["lookup"]["reason"]
    in_filter = [q for q in lookups(sandbox.tenant) if "filter[email][in]" in q]
    assert len(in_filter) == 2  # 150 addresses in groups as large as a page (100)
    assert scan_pages(sandbox.tenant) == [1]  # only the probe of the tenant's size
    assert doc["lookup"]["requests"] == 3
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == 150


def test_a_file_covering_much_of_a_small_tenant_scans_it(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.tenant = generate_tenant(300, seed=4)
    emails = [*customers(sandbox.tenant, 250), "nobody@example.com"]
    csv = write_csv(tmp_path / "in.csv", emails)
    doc = run_json(sandbox, csv)
    assert doc["lookup"] == {
        "mode": "scan",
        "requests": 3,
        "reason": "251 addresses, reading the tenant's 300 profiles in 3 pages of 100:"
        " fewer requests than 3 bulk lookups",
        "warning": None,
    }
    assert sorted(scan_pages(sandbox.tenant)) == [1, 2, 3]
    assert not any(any(k.startswith("filter") for k in q) for q in lookups(sandbox.tenant))
    assert doc["counts"]["not_found"] == 1
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == 250
    for email in emails[:250]:
        assert "vip" in sandbox.statuses(email)


@pytest.mark.parametrize(
    ("addresses", "mode"),
    [(150, "scan"), (5, "single")],
)
def test_without_the_in_filter_the_cheaper_of_scan_and_single_wins(
    sandbox: Sandbox, tmp_path: Path, addresses: int, mode: str
) -> None:
    sandbox.tenant = generate_tenant(1000, seed=5)
    sandbox.config.email_in_filter = False
    csv = write_csv(tmp_path / "in.csv", customers(sandbox.tenant, addresses, start=100))
    doc = run_json(sandbox, csv)
    assert doc["lookup"]["mode"] == mode
    assert "ignores filter[email][in]" in doc["lookup"]["reason"]
    tried = [q for q in lookups(sandbox.tenant) if "filter[email][in]" in q]
    assert len(tried) == 1  # the ignored filter is seen on one page
    singles = [q for q in lookups(sandbox.tenant) if "filter[email]" in q]
    if mode == "scan":
        assert sorted(scan_pages(sandbox.tenant)) == list(range(1, 11))
        assert singles == []
    else:
        assert scan_pages(sandbox.tenant) == [1]
        assert len(singles) == addresses
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == addresses


def test_the_plan_shows_in_the_summary_and_at_verbose(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.tenant = generate_tenant(300, seed=4)
    csv = write_csv(tmp_path / "in.csv", customers(sandbox.tenant, 250))
    result = sandbox.run("assign", "vip", str(csv), "-v")
    assert result.exit_code == 0, result.stderr
    assert "Lookup: scan (about 3 requests): 250 addresses" in result.stdout
    assert "Lookup: scan, about 3 requests" in result.stderr


def test_forced_modes_are_obeyed(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.tenant = generate_tenant(300, seed=4)
    csv = write_csv(tmp_path / "in.csv", customers(sandbox.tenant, 3))
    doc = run_json(sandbox, csv, "--lookup", "scan")
    assert doc["lookup"]["mode"] == "scan" and doc["lookup"]["reason"].startswith("--lookup scan")
    assert sorted(scan_pages(sandbox.tenant)) == [1, 2, 3]
    single = run_json(sandbox, csv, "--lookup", "single", "--fresh")
    assert single["lookup"] == {
        "mode": "single",
        "requests": 3,
        "reason": "--lookup single: one request per address",
        "warning": None,
    }


# -- the scan's guarantees ----------------------------------------------------------------


def tricky_tenant() -> Tenant:
    tenant = generate_tenant(250, seed=6)
    tenant.add_profile("Mixed.Case@Example.com")
    tenant.add_profile("twin@example.com")
    tenant.add_profile("TWIN@example.com")
    tenant.add_profile("straße@example.com")
    tenant.add_profile("near@example.co")
    return tenant


TRICKY = [
    "mixed.case@example.com",  # found whatever the case
    "twin@example.com",  # two profiles: ambiguous
    "strasse@example.com",  # lower(), not casefold(): not the same address
    "near@example.com",  # a near miss is not a match
    "nobody@example.com",
    "MIXED.CASE@example.com",  # the same address again: duplicate
]


@pytest.mark.parametrize("mode", ["scan", "single", "bulk"])
def test_every_mode_gives_the_same_outcomes(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    sandbox.tenant = tricky_tenant()
    sandbox.config.email_in_filter = mode != "single"
    report = tmp_path / f"{mode}.csv"
    csv = write_csv(tmp_path / "in.csv", TRICKY)
    doc = run_json(sandbox, csv, "--lookup", mode, "--report", str(report))
    assert doc["lookup"]["mode"] == mode
    outcomes = [(r["email"], r["outcome"]) for r in report_rows(report)]
    assert outcomes == [
        ("mixed.case@example.com", "assigned"),
        ("twin@example.com", "ambiguous"),
        ("strasse@example.com", "not_found"),
        ("near@example.com", "not_found"),
        ("nobody@example.com", "not_found"),
        ("MIXED.CASE@example.com", "duplicate"),
    ]
    assert sandbox.statuses("Mixed.Case@Example.com") == ["vip"]


def shifting(sandbox: Sandbox, shift: Callable[[Tenant], None]) -> None:
    """Serve the sandbox, shifting its profile list once, right after page 1 of a scan."""
    inner = create_app(sandbox.tenant, sandbox.config)
    done: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await inner(scope, receive, send)
        query = scope.get("query_string", b"").decode()
        if scope.get("path") == PROFILES and "filter" not in query and not done:
            done.append(True)
            shift(sandbox.tenant)

    boundary.runtime().sandbox_transport = lambda: httpx.ASGITransport(app=app)


def insert_first(tenant: Tenant) -> None:
    profile = tenant.add_profile("newcomer@example.com")
    tenant.profiles = {profile.id: profile} | {
        k: v for k, v in tenant.profiles.items() if k != profile.id
    }


def delete_first(tenant: Tenant) -> None:
    first = next(iter(tenant.profiles))
    del tenant.profiles[first]


@pytest.mark.parametrize("shift", [insert_first, delete_first])
def test_a_list_moving_under_the_scan_loses_and_doubles_nobody(
    sandbox: Sandbox, tmp_path: Path, shift: Callable[[Tenant], None]
) -> None:
    sandbox.tenant = generate_tenant(300, seed=7)
    # The profiles on both sides of each page boundary: a shift repeats or skips one of them.
    everyone = customers(sandbox.tenant, 300)
    emails = [e for i, e in enumerate(everyone) if i % 100 in (0, 1, 98, 99)][1:]
    shifting(sandbox, shift)
    csv = write_csv(tmp_path / "in.csv", emails)
    result = sandbox.run("assign", "vip", str(csv), "--lookup", "scan", "--json")
    assert result.exit_code == 0, result.stderr
    assert "changed during the scan" in result.stderr
    doc = summary_of(result)
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == len(emails)
    assert doc["counts"]["ambiguous"] == 0 and doc["counts"]["not_found"] == 0
    for email in emails:
        assert "vip" in sandbox.statuses(email)


def test_a_scan_stopped_by_an_error_resumes_without_reading_a_page_twice(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(2000, seed=8)
    inner = create_app(sandbox.tenant, sandbox.config)
    served: list[str] = []

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        query = scope.get("query_string", b"").decode()
        if scope.get("path") == PROFILES and "filter" not in query:
            served.append(query)
            if len(served) == 8:  # the 8th page read is refused: the run stops there
                scope = {**scope, "headers": []}
        await inner(scope, receive, send)

    boundary.runtime().sandbox_transport = lambda: httpx.ASGITransport(app=failing)
    csv = write_csv(tmp_path / "in.csv", customers(sandbox.tenant, 1500))
    args = ("assign", "vip", str(csv), "--lookup", "scan", "--json", "--concurrency", "1")
    stopped = sandbox.run(*args)
    assert stopped.exit_code == 1, stopped.stderr  # refused (401): the run stops, saved
    before = sorted(scan_pages(sandbox.tenant))
    assert before == list(range(1, 9))
    assert sandbox.writes() == []

    sandbox.tenant.requests.clear()
    resumed = sandbox.run(*args)
    assert resumed.exit_code == 0, resumed.stderr
    again = sorted(scan_pages(sandbox.tenant))
    assert again == list(range(8, 21))  # the refused page and those never read, only
    doc = summary_of(resumed)
    assert doc["lookup"]["reason"].startswith("continuing the tenant scan")
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == 1500


# -- bulk groups -----------------------------------------------------------------------------


def test_bulk_groups_never_outgrow_the_url(sandbox: Sandbox, tmp_path: Path) -> None:
    tenant = generate_tenant(10, seed=9)
    long = [f"{'x' * 50}.{n}@a-rather-long-domain-name.example.com" for n in range(120)]
    for email in long:
        tenant.add_profile(email)
    sandbox.tenant = tenant
    csv = write_csv(tmp_path / "in.csv", long)
    doc = run_json(sandbox, csv, "--lookup", "bulk")
    assert doc["lookup"]["mode"] == "bulk"
    groups = [q["filter[email][in]"].split(",") for q in lookups(sandbox.tenant) if q]
    assert len(groups) > 2 and sum(len(g) for g in groups) == 120
    for group in groups:
        query = {"filter[email][in]": ",".join(group), "page[size]": "100", "page[number]": "1"}
        url = f"http://sandbox.test/api/v3/profiles?{httpx.QueryParams(query)}"
        assert len(url) <= URL_MAX
    assert doc["counts"]["assigned"] == 120
