"""``sync``: the holders of one status made equal to a list, against the sandbox: the end state,
the removal guard, dry runs, a tenant that ignores the status filter, undo, kill -9 and re-run."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from omneo_status import sync
from omneo_status.cli import boundary
from omneo_status.options import RemovalLimit
from omneo_status.sandbox import SandboxConfig, Tenant, create_app, generate_tenant

from .conftest import POSIX_ONLY, Sandbox, report_rows, summary_of, write_csv
from .test_planner import delete_first, shifting
from .test_resilience import Served, count, kill_then_rerun, served

__all__ = ["served"]  # the fixture, imported for the kill -9 test

BATCH_PATH = "/api/v3/profile/status/batch.json"

# The demo tenant: seven profiles hold vip.
KEEP = [  # five of the holders
    "chloe.martin@example.com",
    "henry.king@example.com",
    "member04@example.com",
    "member16@example.com",
    "member20@example.com",
]
ADD = ["ben.carter@example.com", "ava.nguyen@example.com"]  # staff, and no status
UNKNOWN = ["nobody@example.com"]


def holders(tenant: Tenant, handle: str = "vip") -> set[str]:
    return {p.email for p in tenant.profiles.values() if handle in p.statuses}


def snapshot(tenant: Tenant) -> dict[str, list[str]]:
    return {p.id: sorted(p.statuses) for p in tenant.profiles.values()}


def without(state: dict[str, list[str]], handle: str) -> dict[str, list[str]]:
    return {pid: [h for h in held if h != handle] for pid, held in state.items()}


@pytest.fixture
def listed(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "tonight.csv", KEEP + ADD + UNKNOWN)


def test_the_demo_tenant_has_the_holders_these_tests_count_on(sandbox: Sandbox) -> None:
    gone = holders(sandbox.tenant) - set(KEEP)
    assert len(holders(sandbox.tenant)) == 7 and len(gone) == 2
    assert not set(ADD) & holders(sandbox.tenant)


def test_sync_leaves_exactly_the_listed_profiles_holding_the_status(
    sandbox: Sandbox, listed: Path, tmp_path: Path
) -> None:
    before = snapshot(sandbox.tenant)
    gone = holders(sandbox.tenant) - set(KEEP)
    report = tmp_path / "report.csv"
    result = sandbox.run(
        "sync", "vip", str(listed), "--max-remove", "2", "--json", "--report", str(report)
    )
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["action"] == "sync"
    counts = doc["counts"]
    assert (counts["assigned"], counts["already_had"], counts["removed"]) == (2, 5, 2)
    assert counts["not_found"] == 1 and counts["failed"] == 0
    assert doc["rows"] == 10
    assert doc["lookup"]["mode"] == "scan"  # the demo tenant is one page
    assert doc["sync"] == {
        "holders": 7,
        "would_remove": 2,
        "max_remove": "2",
        "allowed": True,
        "holders_found_by": "tenant_scan",  # the lookups' scan saw them
        "holder_requests": 0,
    }
    assert not [r for r in sandbox.tenant.requests if "filter[statuses.handle]" in str(r.query)]
    assert holders(sandbox.tenant) == set(KEEP + ADD)
    # Every other status on every profile is as it was.
    assert without(snapshot(sandbox.tenant), "vip") == without(before, "vip")
    assert {(w.method, w.path) for w in sandbox.writes()} == {
        ("POST", BATCH_PATH),
        ("DELETE", BATCH_PATH),
    }
    rows = report_rows(report)
    assert [r["email"] for r in rows[:8]] == KEEP + ADD + UNKNOWN
    holder_rows = rows[8:]
    assert {r["email"] for r in holder_rows} == gone
    assert all(r["line"] == "" and r["outcome"] == "removed" for r in holder_rows)
    assert doc["verified"]["checked"] == 4 and not doc["verified"]["problems"]


def test_the_default_guard_stops_two_of_seven_removals_before_any_write(
    sandbox: Sandbox, listed: Path
) -> None:
    result = sandbox.run("sync", "vip", str(listed), "--json")
    assert result.exit_code == 3
    assert sandbox.writes() == []
    assert "take vip from 2 of 7 holders, over --max-remove 10%" in result.stderr
    assert "--max-remove 2" in result.stderr
    doc = summary_of(result)
    assert doc["exit_code"] == 3
    assert doc["guard"] == {"holders": 7, "would_remove": 2, "max_remove": "10%"}
    assert doc["run_id"]


def test_max_remove_lets_the_stopped_sync_through_when_run_again(
    sandbox: Sandbox, listed: Path
) -> None:
    assert sandbox.run("sync", "vip", str(listed)).exit_code == 3
    again = sandbox.run("sync", "vip", str(listed), "--max-remove", "2", "--json")
    assert again.exit_code == 0, again.stderr
    assert summary_of(again)["counts"]["removed"] == 2
    assert holders(sandbox.tenant) == set(KEEP + ADD)


def test_resume_with_a_higher_max_remove_lets_the_stopped_sync_through(
    sandbox: Sandbox, listed: Path
) -> None:
    stopped = sandbox.run("sync", "vip", str(listed), "--json")
    run_id = summary_of(stopped)["run_id"]
    assert sandbox.run("resume", run_id, "--json").exit_code == 3  # the default 10% again
    assert sandbox.writes() == []
    bad = sandbox.run("resume", run_id, "--max-remove", "lots", "--json")
    assert bad.exit_code == 2 and "Traceback" not in bad.stderr
    through = sandbox.run("resume", run_id, "--max-remove", "30%", "--json")
    assert through.exit_code == 0, through.stderr
    assert summary_of(through)["counts"]["removed"] == 2
    assert holders(sandbox.tenant) == set(KEEP + ADD)


def test_a_share_that_covers_the_removals_lets_them_through(sandbox: Sandbox, listed: Path) -> None:
    result = sandbox.run("sync", "vip", str(listed), "--max-remove", "30%", "--json")
    assert result.exit_code == 0, result.stderr
    assert holders(sandbox.tenant) == set(KEEP + ADD)


def test_a_dry_run_writes_nothing_and_shows_both_sides_and_the_verdict(
    sandbox: Sandbox, listed: Path, tmp_path: Path
) -> None:
    report = tmp_path / "dry.csv"
    over = sandbox.run("sync", "vip", str(listed), "--dry-run", "--json", "--report", str(report))
    assert over.exit_code == 3
    doc = summary_of(over)
    assert doc["dry_run"] and doc["action"] == "sync"
    assert (doc["counts"]["would_assign"], doc["counts"]["would_remove"]) == (2, 2)
    assert doc["sync"]["allowed"] is False
    assert "over --max-remove 10%" in over.stderr
    assert [r["outcome"] for r in report_rows(report) if r["line"] == ""] == ["would_remove"] * 2
    within = sandbox.run("sync", "vip", str(listed), "--dry-run", "--max-remove", "2", "--json")
    assert within.exit_code == 0, within.stderr
    assert summary_of(within)["sync"]["allowed"] is True
    assert sandbox.writes() == []


def test_holders_are_found_with_the_status_filter_when_the_lookups_did_not_scan(
    sandbox: Sandbox, listed: Path
) -> None:
    args = ("sync", "vip", str(listed), "--max-remove", "2", "--lookup", "bulk", "--json")
    result = sandbox.run(*args)
    assert result.exit_code == 0, result.stderr
    plan = summary_of(result)["sync"]
    assert (plan["holders_found_by"], plan["holder_requests"]) == ("filter", 1)
    assert holders(sandbox.tenant) == set(KEEP + ADD)


def test_a_tenant_ignoring_the_status_filter_is_synced_from_a_full_read(
    sandbox: Sandbox, listed: Path
) -> None:
    sandbox.config.status_filter = False
    before = snapshot(sandbox.tenant)
    args = ("sync", "vip", str(listed), "--max-remove", "2", "--lookup", "bulk", "--json")
    result = sandbox.run(*args)
    assert result.exit_code == 0, result.stderr
    plan = summary_of(result)["sync"]
    assert plan["holders"] == 7 and plan["holders_found_by"] == "tenant_scan"
    assert plan["holder_requests"] == 2  # the ignored filter's answer, then the tenant
    assert "ignores filter[statuses.handle]" in result.stderr
    assert holders(sandbox.tenant) == set(KEEP + ADD)
    assert without(snapshot(sandbox.tenant), "vip") == without(before, "vip")


# -- a tenant ignoring the status filter is read once (a 2,000-profile tenant, 20 pages) ------


def tenant_reads(sandbox: Sandbox) -> list[Any]:
    """The requests that listed the tenant's profiles: without a filter, or with the ignored
    status filter."""
    return [
        r
        for r in sandbox.tenant.requests
        if r.method == "GET"
        and r.path == "/api/v3/profiles"
        and not any(name in ("filter[email][in]", "filter[email]") for name, _ in r.query)
    ]


def pages_read(requests: list[Any], *, status_filter: bool) -> list[int]:
    """The page numbers of these requests, with the status filter or without it."""
    return [
        int(dict(r.query)["page[number]"])
        for r in requests
        if ("filter[statuses.handle]" in dict(r.query)) is status_filter
    ]


@pytest.fixture
def big_ignoring(sandbox: Sandbox, tmp_path: Path) -> Path:
    """A 2,000-profile tenant that ignores filter[statuses.handle], and a file of every one of
    its addresses (and a few again): enough for the lookups to scan the tenant."""
    sandbox.tenant = generate_tenant(2000, seed=4)
    sandbox.config.status_filter = False
    emails = [p.email for p in sandbox.tenant.profiles.values()]
    return write_csv(tmp_path / "dups.csv", emails + emails[:50])


def test_a_sync_whose_lookups_scanned_the_tenant_takes_the_holders_from_that_scan(
    sandbox: Sandbox, big_ignoring: Path
) -> None:
    vips = holders(sandbox.tenant)
    result = sandbox.run(
        "sync", "vip", str(big_ignoring), "--dry-run", "--max-remove", "100%", "--json"
    )
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["lookup"]["mode"] == "scan"
    assert doc["sync"]["holders"] == len(vips) > 150
    assert (doc["sync"]["holders_found_by"], doc["sync"]["holder_requests"]) == ("tenant_scan", 0)
    reads = tenant_reads(sandbox)
    assert sorted(pages_read(reads, status_filter=False)) == list(range(1, 21))  # each once
    assert pages_read(reads, status_filter=True) == []
    assert len(sandbox.tenant.requests) == 21  # GET /statuses, then the 20 pages
    assert doc["counts"]["already_had"] == len(vips) and doc["counts"]["duplicate"] == 50


def test_the_ignored_status_filter_is_read_for_one_page_then_the_tenant_once(
    sandbox: Sandbox, big_ignoring: Path
) -> None:
    vips = holders(sandbox.tenant)
    result = sandbox.run(
        "sync",
        "vip",
        str(big_ignoring),
        "--dry-run",
        "--max-remove",
        "100%",
        "--lookup",
        "bulk",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    plan = summary_of(result)["sync"]
    assert (plan["holders"], plan["holders_found_by"]) == (len(vips), "tenant_scan")
    assert plan["holder_requests"] == 21  # one page of the ignored filter, then 20 pages
    reads = tenant_reads(sandbox)
    assert pages_read(reads, status_filter=True) == [1]  # page 1 proved it ignored
    assert sorted(pages_read(reads, status_filter=False)) == list(range(1, 21))
    said = re.search(r"ignores filter\[statuses\.handle\]: it listed (\d+) profile", result.stderr)
    assert said is not None and 0 < int(said[1]) <= 100  # strangers of that one page


@pytest.mark.parametrize("lookup", ["auto", "bulk"])
def test_a_resumed_sync_does_not_read_the_tenant_again_for_its_holders(
    sandbox: Sandbox, big_ignoring: Path, lookup: str
) -> None:
    emails = [p.email for p in sandbox.tenant.profiles.values()]
    vips = holders(sandbox.tenant)
    gone = {email for email in vips if email in emails[1950:]}
    csv = write_csv(big_ignoring, emails[:1950])
    stopped = sandbox.run(
        "sync", "vip", str(csv), "--max-remove", "1", "--lookup", lookup, "--json"
    )
    assert stopped.exit_code == 3  # the guard: more than one removal
    assert summary_of(stopped)["guard"]["would_remove"] == len(gone) > 1
    asked = len(sandbox.tenant.requests)
    run_id = summary_of(stopped)["run_id"]
    resumed = sandbox.run("resume", run_id, "--max-remove", "100%", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert summary_of(resumed)["counts"]["removed"] == len(gone)
    again = sandbox.tenant.requests[asked:]
    assert not [r for r in again if r.path == "/api/v3/profiles"]  # the journal had them
    assert holders(sandbox.tenant) == set(emails[:1950])


@pytest.mark.parametrize("honoured", [True, False])
def test_holders_are_not_taken_from_a_lookup_scan_that_saw_the_list_move(
    sandbox: Sandbox, tmp_path: Path, honoured: bool
) -> None:
    sandbox.tenant = generate_tenant(300, seed=7)
    sandbox.config.status_filter = honoured
    csv = write_csv(tmp_path / "in.csv", [p.email for p in sandbox.tenant.profiles.values()])
    shifting(sandbox, delete_first)  # right after the scan's page 1
    args = ("sync", "vip", str(csv), "--lookup", "scan", "--dry-run", "--max-remove", "100%")
    result = sandbox.run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    assert "changed during the scan" in result.stderr
    plan = summary_of(result)["sync"]
    assert plan["holders"] == len(holders(sandbox.tenant))
    found = ("filter", 1) if honoured else ("tenant_scan", 1 + 3)  # read again, 3 pages
    assert (plan["holders_found_by"], plan["holder_requests"]) == found


def test_a_holder_scan_that_saw_the_list_move_says_a_holder_may_have_been_missed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(300, seed=7)
    sandbox.config.status_filter = False
    csv = write_csv(tmp_path / "in.csv", [p.email for p in sandbox.tenant.profiles.values()])
    shifting(sandbox, delete_first)  # right after the holder scan's page 1
    args = ("sync", "vip", str(csv), "--lookup", "bulk", "--dry-run", "--max-remove", "100%")
    result = sandbox.run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    assert "changed while it was read: a holder may have been missed" in result.stderr
    assert summary_of(result)["sync"]["holders_found_by"] == "tenant_scan"


def test_a_holder_scan_stopped_by_an_error_resumes_without_reading_a_page_twice(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(2000, seed=8)
    sandbox.config.status_filter = False
    vips = holders(sandbox.tenant)
    inner = create_app(sandbox.tenant, sandbox.config)
    served: list[str] = []

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        query = scope.get("query_string", b"").decode()
        if scope.get("path") == "/api/v3/profiles" and "filter" not in query:
            served.append(query)
            if len(served) == 8:  # the 8th page of the holder scan is refused: the run stops
                scope = {**scope, "headers": []}
        await inner(scope, receive, send)

    boundary.runtime().sandbox_transport = lambda: httpx.ASGITransport(app=failing)
    emails = [p.email for p in sandbox.tenant.profiles.values()][:40]
    csv = write_csv(tmp_path / "in.csv", emails)
    args = ("sync", "vip", str(csv), "--lookup", "bulk", "--max-remove", "100%", "--json")
    stopped = sandbox.run(*args, "--concurrency", "1")
    assert stopped.exit_code == 1, stopped.stderr  # refused (401): the run stops, saved
    assert sorted(pages_read(tenant_reads(sandbox), status_filter=False)) == list(range(1, 9))
    assert sandbox.writes() == []

    sandbox.tenant.requests.clear()
    resumed = sandbox.run(*args)
    assert resumed.exit_code == 0, resumed.stderr
    reads = tenant_reads(sandbox)
    assert pages_read(reads, status_filter=True) == []  # proven ignored the first time
    assert sorted(pages_read(reads, status_filter=False)) == list(range(8, 21))
    assert summary_of(resumed)["counts"]["removed"] == len(vips - set(emails))
    assert holders(sandbox.tenant) == set(emails)


def test_a_tenant_too_big_to_read_whole_stops_with_exit_2_and_no_write(
    sandbox: Sandbox, listed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.config.status_filter = False
    monkeypatch.setattr(sync, "TENANT_SCAN_MAX", 10)
    result = sandbox.run("sync", "vip", str(listed), "--max-remove", "100%", "--lookup", "bulk")
    assert result.exit_code == 2
    assert "cannot list the holders of a status" in result.stderr
    assert sandbox.writes() == []


class WithoutTotal(httpx.AsyncBaseTransport):
    """The sandbox, its profile lists answered without ``meta.total``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.inner = sandbox.transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/api/v3/profiles":
            return response
        body = json.loads(await response.aread())
        del body["meta"]["total"]
        return httpx.Response(response.status_code, json=body)


def test_a_tenant_that_does_not_say_its_size_stops_with_exit_2_and_no_write(
    sandbox: Sandbox, listed: Path
) -> None:
    sandbox.config.status_filter = False
    boundary.runtime().sandbox_transport = lambda: WithoutTotal(sandbox)
    result = sandbox.run("sync", "vip", str(listed), "--max-remove", "100%", "--lookup", "bulk")
    assert result.exit_code == 2
    assert "cannot list the holders of a status" in result.stderr
    assert "does not say how many profiles it has (meta.total)" in result.stderr
    assert sandbox.writes() == []


def test_undo_of_a_sync_restores_the_state_before_it(sandbox: Sandbox, listed: Path) -> None:
    before = snapshot(sandbox.tenant)
    done = sandbox.run("sync", "vip", str(listed), "--max-remove", "2", "--json")
    run_id = summary_of(done)["run_id"]
    assert snapshot(sandbox.tenant) != before
    undo = sandbox.run("undo", run_id, "--json")
    assert undo.exit_code == 0, undo.stderr
    counts = summary_of(undo)["counts"]
    assert (counts["removed"], counts["assigned"]) == (2, 2)
    assert snapshot(sandbox.tenant) == before


def test_the_same_file_the_next_night_syncs_again_against_the_tenant_as_it_is(
    sandbox: Sandbox, listed: Path
) -> None:
    first = sandbox.run("sync", "vip", str(listed), "--max-remove", "2", "--json")
    assert first.exit_code == 0, first.stderr
    [stray] = sandbox.tenant.by_email("dan.lee@example.com")
    stray.statuses.append("vip")  # given by hand during the day
    second = sandbox.run("sync", "vip", str(listed), "--max-remove", "2", "--json")
    assert second.exit_code == 0, second.stderr
    doc = summary_of(second)
    assert doc["run_id"] != summary_of(first)["run_id"]
    assert (doc["counts"]["already_had"], doc["counts"]["removed"]) == (7, 1)
    assert holders(sandbox.tenant) == set(KEEP + ADD)
    assert stray.statuses == ["gold"]


def test_an_empty_file_is_refused_unless_every_holder_may_go(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    empty = write_csv(tmp_path / "empty.csv", [])
    refused = sandbox.run("sync", "vip", str(empty), "--max-remove", "99%")
    assert refused.exit_code == 3
    assert "no rows" in refused.stderr and "--max-remove 100%" in refused.stderr
    assert sandbox.writes() == []
    cleared = sandbox.run("sync", "vip", str(empty), "--max-remove", "100%", "--json")
    assert cleared.exit_code == 0, cleared.stderr
    assert summary_of(cleared)["counts"]["removed"] == 7
    assert holders(sandbox.tenant) == set()


@pytest.mark.parametrize("value", ["ten", "-1", "150%", "5.5"])
def test_a_max_remove_that_is_no_count_or_share_is_a_usage_error(
    sandbox: Sandbox, listed: Path, value: str
) -> None:
    result = sandbox.run("sync", "vip", str(listed), "--max-remove", value)
    assert result.exit_code == 2
    assert "--max-remove" in result.stderr and "Traceback" not in result.stderr
    assert sandbox.tenant.requests == []


def test_several_handles_are_refused_before_any_request(sandbox: Sandbox, listed: Path) -> None:
    result = sandbox.run("sync", "vip,staff", str(listed), "--json")
    assert result.exit_code == 2
    assert "sync one status at a time" in result.stderr
    assert json.loads(result.stdout)["exit_code"] == 2
    assert sandbox.tenant.requests == []


def test_chunks_never_mix_the_two_actions(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.tenant = generate_tenant(60, seed=3)
    emails = [p.email for p in sandbox.tenant.profiles.values() if "vip" not in p.statuses][:7]
    gone = holders(sandbox.tenant)
    csv = write_csv(tmp_path / "in.csv", emails)
    result = sandbox.run(
        "sync", "vip", str(csv), "--max-remove", "100%", "--chunk-size", "3", "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert holders(sandbox.tenant) == set(emails)
    posts = [w for w in sandbox.writes() if w.method == "POST"]
    deletes = [w for w in sandbox.writes() if w.method == "DELETE"]
    assert len(posts) == 3  # 3 + 3 + 1
    assert len(deletes) == -(-len(gone) // 3)


@pytest.mark.parametrize(
    ("text", "removals", "holders_now", "allowed"),
    [("10%", 0, 7, True), ("10%", 1, 7, False), ("20%", 2, 10, True), ("2", 2, 7, True)],
)
def test_removal_limit(text: str, removals: int, holders_now: int, allowed: bool) -> None:
    limit = RemovalLimit.parse(text)
    assert limit.allows(removals, holders_now) is allowed
    assert str(limit) == text


# -- kill -9 in the middle, then the same command again ------------------------------------------

KILL_POINTS: dict[str, Callable[[Tenant], bool]] = {
    "after-the-first-assign": lambda t: count(t, lambda m, p: m == "POST") >= 1,
    "after-the-first-remove": lambda t: count(t, lambda m, p: m == "DELETE") >= 1,
}


@POSIX_ONLY
@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_then_rerun_ends_like_an_uninterrupted_sync(
    point: str, served: Callable[[Tenant, SandboxConfig], Served], tmp_path: Path
) -> None:
    def tenant() -> Tenant:
        return generate_tenant(150, seed=21)

    emails = [p.email for p in tenant().profiles.values()][:100]
    csv = write_csv(tmp_path / "in.csv", emails)
    args = ["sync", "vip", str(csv), "--yes", "--json", "--quiet", "--max-remove", "100%"]
    args += ["--chunk-size", "10", "--lookup", "single", "--verify", "3"]

    clean_tenant, killed_tenant = tenant(), tenant()
    runs = kill_then_rerun(
        served,
        args,
        clean=clean_tenant,
        tenant=killed_tenant,
        until=lambda: KILL_POINTS[point](killed_tenant),
        tmp_path=tmp_path,
    )
    assert json.loads(runs.baseline.stdout)["counts"]["removed"] > 0
    rerun = runs.rerun
    assert "Traceback" not in rerun.stderr
    assert snapshot(killed_tenant) == snapshot(clean_tenant)
    assert holders(killed_tenant) == holders(clean_tenant) == set(emails)

    def outcomes(path: Path) -> list[tuple[str, str, str]]:
        return [(r["line"], r["email"], r["outcome"]) for r in report_rows(path)]

    assert outcomes(tmp_path / "rerun.csv") == outcomes(tmp_path / "clean.csv")


def test_a_journal_of_migration_2_opens_with_its_rows_as_the_runs_own_action(
    tmp_path: Path,
) -> None:
    import sqlite3

    from omneo_status.store.journal import Journal
    from omneo_status.store.migrations import MIGRATIONS, schema_version

    path = tmp_path / "v2.sqlite"
    with sqlite3.connect(path) as db:
        for step in MIGRATIONS[:2]:
            step(db)
        db.execute("PRAGMA user_version=2")
        db.execute(
            "INSERT INTO runs (run_id, job_key, action, handles, base_url, input_name, dry_run,"
            " state, created_at, updated_at) VALUES ('r1','k','remove','[\"vip\"]','u','in.csv',"
            "0,'finished','2024-01-01T00:00:00Z','2024-01-01T00:00:00Z')"
        )
        db.execute(
            "INSERT INTO rows (run_id, line, email, address, email_key, stage, outcome)"
            " VALUES ('r1', 2, 'a@example.com', 'a@example.com', 'a@example.com', 'done',"
            " 'removed')"
        )
    with Journal(path) as journal:
        info = journal.find_run("r1")
        [row] = journal.run_journal("r1").all_rows()
    assert info.sync is None
    assert row.action is None and row.holder is False
    with sqlite3.connect(path) as db:
        assert schema_version(db) == len(MIGRATIONS)


def test_a_holder_whose_address_is_in_the_file_keeps_the_status_even_if_ambiguous(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    first, second = sandbox.tenant.by_email("sam.taylor@example.com")
    first.statuses.append("vip")
    csv = write_csv(tmp_path / "in.csv", [*KEEP, "Sam.Taylor@example.com"])
    result = sandbox.run("sync", "vip", str(csv), "--max-remove", "2", "--json")
    assert result.exit_code == 0, result.stderr
    counts = summary_of(result)["counts"]
    assert (counts["ambiguous"], counts["removed"]) == (1, 2)
    assert "vip" in first.statuses and "vip" not in second.statuses


def test_a_sync_sent_without_waiting_is_followed_later_without_finding_holders_again(
    sandbox: Sandbox, listed: Path
) -> None:
    args = ("sync", "vip", str(listed), "--max-remove", "2", "--lookup", "bulk")
    sent = sandbox.run(*args, "--no-wait", "--json")
    assert sent.exit_code == 0, sent.stderr
    assert summary_of(sent)["counts"]["sent"] == 4
    asked = len(sandbox.tenant.requests)
    followed = sandbox.run("sync", "vip", str(listed), "--max-remove", "2", "--json")
    assert followed.exit_code == 0, followed.stderr
    doc = summary_of(followed)
    assert doc["run_id"] == summary_of(sent)["run_id"]
    assert (doc["counts"]["assigned"], doc["counts"]["removed"]) == (2, 2)

    def holder_reads(requests: list[Any]) -> int:
        return sum("filter[statuses.handle]" in str(r.query) for r in requests)

    assert holder_reads(sandbox.tenant.requests[:asked]) == 1
    assert holder_reads(sandbox.tenant.requests[asked:]) == 0
    assert holders(sandbox.tenant) == set(KEEP + ADD)
