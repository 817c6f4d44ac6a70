"""Unattended and crash-safe runs: faults, kill -9 and re-run, SIGTERM, the lock, undo,
guardrails, the log file, and the token kept out of every output."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from omneo_status.locking import job_lock
from omneo_status.sandbox import SandboxConfig, ServerThread, Tenant, create_app, generate_tenant

from .conftest import EXAMPLES, POSIX_ONLY, Sandbox, report_rows, summary_of, write_csv

EMAILS = str(EXAMPLES / "emails.csv")
SECRET = "tok-7f3e9a1c5b2d8e4f6a0b"


def targets(tenant: Tenant, count: int, missing: int = 5) -> list[str]:
    emails = [p.email for p in tenant.profiles.values()][:count]
    return emails + [f"nobody{i}@example.com" for i in range(missing)]


# -- faults, in-process ---------------------------------------------------------------------


def test_faults_and_a_tight_rate_limit_still_account_for_every_row(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(300, seed=11)
    sandbox.config.fail_rate = 0.2
    sandbox.config.fault_seed = 4
    sandbox.config.rate_limit = 15
    sandbox.config.rate_window = 1.0
    sandbox.config.batch_delay = 3.0
    emails = targets(sandbox.tenant, 200)
    csv = write_csv(tmp_path / "in.csv", emails)
    report = tmp_path / "r.csv"
    result = sandbox.run(
        "assign",
        "vip",
        str(csv),
        "--chunk-size",
        "40",
        "--json",
        "--report",
        str(report),
        "--max-retries",
        "10",
    )
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["rows"] == 205
    assert sum(doc["counts"].values()) == 205
    assert doc["counts"]["not_found"] == 5
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == 200
    rows = report_rows(report)
    assert len(rows) == 205
    for email in emails[:200]:
        assert "vip" in sandbox.statuses(email)
    statuses = [r.status for r in sandbox.tenant.requests]
    assert statuses.count(429) > 0 or statuses.count(500) + statuses.count(502) > 0


# -- the finished job, guardrails, lock -------------------------------------------------------


def test_a_finished_job_rerun_is_a_no_op_with_the_same_outcomes(sandbox: Sandbox) -> None:
    first = sandbox.run("assign", "vip", EMAILS, "--json")
    writes = len(sandbox.writes())
    requests = len(sandbox.tenant.requests)
    again = sandbox.run("assign", "vip", EMAILS, "--json")
    assert again.exit_code == 0
    assert summary_of(again)["counts"] == summary_of(first)["counts"]
    assert summary_of(again)["run_id"] == summary_of(first)["run_id"]
    assert len(sandbox.tenant.requests) == requests and len(sandbox.writes()) == writes
    fresh = sandbox.run("assign", "vip", EMAILS, "--json", "--fresh")
    assert summary_of(fresh)["run_id"] != summary_of(first)["run_id"]
    assert summary_of(fresh)["counts"]["already_had"] == 5


def test_max_unmatched_stops_before_any_write(sandbox: Sandbox) -> None:
    stopped = sandbox.run("assign", "vip", EMAILS, "--max-unmatched", "20")
    assert stopped.exit_code == 3
    assert "over the limit of 20%" in stopped.stderr
    assert "nothing was written" in stopped.stderr
    assert sandbox.writes() == []
    allowed = sandbox.run("assign", "vip", EMAILS, "--max-unmatched", "40", "--json")
    assert allowed.exit_code == 0
    assert summary_of(allowed)["counts"]["assigned"] == 4


def test_a_second_identical_run_exits_4(sandbox: Sandbox, tmp_path: Path) -> None:
    from omneo_status.jobs import job_key
    from omneo_status.models import Action
    from omneo_status.options import JobSpec
    from omneo_status.settings import SANDBOX_BASE_URL
    from omneo_status.source import prepared_input

    state = Path(os.environ["OMNEO_STATE_DIR"])
    with prepared_input(EMAILS, None, state_dir=state) as source:
        key = job_key(
            JobSpec(Action.ASSIGN, ("vip",)),
            base_url=SANDBOX_BASE_URL,
            digest=source.digest,
            dry_run=False,
        )
    with job_lock(state, key) as held:
        held.claim("20990101T000000-abcdef-0000")
        locked = sandbox.run("assign", "vip", EMAILS)
    assert locked.exit_code == 4
    assert "Another run of this job is in progress" in locked.stderr
    assert f"run 20990101T000000-abcdef-0000, process {os.getpid()}" in locked.stderr
    assert sandbox.writes() == []
    # The lock file left behind does not block the next run.
    assert sandbox.run("assign", "vip", EMAILS).exit_code == 0


def test_stall_timeout_gives_up_and_a_rerun_picks_the_batches_up(sandbox: Sandbox) -> None:
    sandbox.config.batch_delay = 100_000.0
    stalled = sandbox.run("assign", "vip", EMAILS, "--stall-timeout", "30", "--json")
    assert stalled.exit_code == 5
    assert "omneo-status resume" in stalled.stderr
    posts = len(sandbox.writes())
    sandbox.config.batch_delay = 0.0
    sandbox.tenant.process_due_batches(float("inf"))
    resumed = sandbox.run("assign", "vip", EMAILS, "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert summary_of(resumed)["counts"]["assigned"] == 4
    assert len(sandbox.writes()) == posts  # nothing sent twice


@POSIX_ONLY
def test_log_file_has_every_stage_and_failure(sandbox: Sandbox, tmp_path: Path) -> None:
    dan = sandbox.tenant.by_email("dan.lee@example.com")[0]
    sandbox.tenant.fail_profile_ids.add(dan.id)
    log = tmp_path / "logs" / "run.jsonl"
    result = sandbox.run("assign", "vip", EMAILS, "--log-file", str(log), "--quiet")
    assert result.exit_code == 3
    events = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds.count("stage_start") >= 4
    assert {"stage_start", "stage_end", "row_failed", "summary"} <= set(kinds)
    failed = [e for e in events if e["event"] == "row_failed"]
    assert failed == [
        {**failed[0], "line": 10, "email": "dan.lee@example.com", "detail": "Injected failure"}
    ]
    assert log.stat().st_mode & 0o777 == 0o600


# -- undo ------------------------------------------------------------------------------------


def test_undo_restores_exactly_the_prior_state(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from omneo_status import cli
    from omneo_status.sandbox import demo_tenant

    tenant = demo_tenant()
    before = {p.id: list(p.statuses) for p in tenant.profiles.values()}
    runner = CliRunner()
    with ServerThread(create_app(tenant)) as server:
        monkeypatch.setenv("OMNEO_BASE_URL", server.base_url)
        monkeypatch.setenv("OMNEO_TOKEN", "sandbox-token")
        done = runner.invoke(cli.app, ["assign", "vip,gold", EMAILS, "--yes", "--json"])
        assert done.exit_code == 0, done.stderr
        run_id = json.loads(done.stdout)["run_id"]
        dan = tenant.by_email("dan.lee@example.com")[0]
        assert dan.statuses == ["gold", "vip"]
        preview = runner.invoke(cli.app, ["undo", run_id, "--dry-run", "--json"])
        assert json.loads(preview.stdout)["counts"]["would_remove"] == 5
        assert dan.statuses == ["gold", "vip"]
        undo = runner.invoke(cli.app, ["undo", run_id, "--yes", "--json"])
        assert undo.exit_code == 0, undo.stderr
        doc = json.loads(undo.stdout)
        again = runner.invoke(cli.app, ["undo", run_id, "--yes", "--json"])
        assert json.loads(again.stdout)["run_id"] == doc["run_id"]  # a finished undo is kept
    assert doc["action"] == "remove"
    assert doc["counts"]["removed"] == 5
    after = {p.id: list(p.statuses) for p in tenant.profiles.values()}
    assert after == before
    # Dan held gold before: only vip was taken back from him.
    [delete] = [r for r in tenant.requests if r.method == "DELETE"]
    assert {i["profile_id"]: i["statuses"] for i in delete.body["profiles"]}[dan.id] == ["vip"]


def test_undo_of_an_unknown_run_is_a_usage_error(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNEO_TOKEN", "sandbox-token")
    result = sandbox.invoke("undo", "no-such-run", "--base-url", "http://127.0.0.1:9/api")
    assert result.exit_code == 2
    assert "No run 'no-such-run'" in result.stderr


def test_runs_lists_runs_as_json(sandbox: Sandbox) -> None:
    sandbox.run("assign", "vip", EMAILS)
    sandbox.run("remove", "vip", EMAILS, "--dry-run")
    result = sandbox.invoke("runs", "--json")
    assert result.exit_code == 0
    runs = json.loads(result.stdout)
    assert [(r["action"], r["dry_run"], r["state"]) for r in runs] == [
        ("remove", True, "finished"),
        ("assign", False, "finished"),
    ]
    assert runs[1]["counts"]["assigned"] == 4


# -- subprocess: kill -9, SIGTERM, secrets ---------------------------------------------------


@dataclass
class Served:
    tenant: Tenant
    config: SandboxConfig
    base_url: str


@pytest.fixture
def served() -> Iterator[Callable[[Tenant, SandboxConfig], Served]]:
    stack: list[ServerThread] = []

    def start(tenant: Tenant, config: SandboxConfig) -> Served:
        server = ServerThread(create_app(tenant, config))
        server.__enter__()
        stack.append(server)
        return Served(tenant, config, server.base_url)

    yield start
    for server in stack:
        server.__exit__(None, None, None)


def tool(
    args: list[str],
    *,
    base_url: str,
    state: Path,
    token: str = "sandbox-token",
    until: Callable[[], bool] | None = None,
    sig: int = getattr(signal, "SIGKILL", 9),
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNEO_")}
    env.update(OMNEO_BASE_URL=base_url, OMNEO_TOKEN=token, OMNEO_STATE_DIR=str(state))
    proc = subprocess.Popen(
        [sys.executable, "-m", "omneo_status", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if until is not None:
        deadline = time.monotonic() + 60
        while proc.poll() is None and not until() and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@dataclass
class KillRun:
    """The three runs of a kill -9 scenario: uninterrupted, killed, and run again."""

    baseline: subprocess.CompletedProcess[str]
    killed: subprocess.CompletedProcess[str]
    rerun: subprocess.CompletedProcess[str]


def kill_then_rerun(
    served: Callable[[Tenant, SandboxConfig], Served],
    args: list[str],
    *,
    clean: Tenant,
    tenant: Tenant,
    until: Callable[[], bool],
    tmp_path: Path,
    group_rule: bool = False,
) -> KillRun:
    """Run ``args`` to its end against ``clean``; against ``tenant`` (15 ms of latency,
    batches taking half a second), kill it with SIGKILL once ``until()``, then run it again
    with the same state directory. The baseline and the re-run must exit 0. ``group_rule``
    is both sandboxes' (a tenant that detaches a status's siblings itself)."""
    baseline = tool(
        [*args, "--report", str(tmp_path / "clean.csv")],
        base_url=served(clean, SandboxConfig(group_rule=group_rule)).base_url,
        state=tmp_path / "clean-state",
    )
    assert baseline.returncode == 0, baseline.stderr
    config = SandboxConfig(latency_ms=15, batch_delay=0.5, group_rule=group_rule)
    box = served(tenant, config)
    killed = tool(args, base_url=box.base_url, state=tmp_path / "state", until=until)
    assert killed.returncode == -signal.SIGKILL
    config.latency_ms = 0
    rerun = tool(
        [*args, "--report", str(tmp_path / "rerun.csv")],
        base_url=box.base_url,
        state=tmp_path / "state",
    )
    assert rerun.returncode == 0, rerun.stderr
    return KillRun(baseline, killed, rerun)


def count(tenant: Tenant, predicate: Callable[[str, str], bool]) -> int:
    return sum(1 for r in list(tenant.requests) if predicate(r.method, r.path))


KILL_POINTS = {
    "during-lookups": lambda t: count(t, lambda m, p: p == "/api/v3/profiles") >= 25,
    "between-post-and-answer": lambda t: count(t, lambda m, p: m == "POST") >= 1,
    "during-polling": lambda t: count(t, lambda m, p: p.startswith("/api/v3/batches/")) >= 2,
}


@POSIX_ONLY
@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_then_rerun_ends_like_an_uninterrupted_run(
    point: str, served: Callable[[Tenant, SandboxConfig], Served], tmp_path: Path
) -> None:
    tenant = generate_tenant(150, seed=21)
    emails = targets(tenant, 120)
    csv = write_csv(tmp_path / "in.csv", emails)
    args = [
        "assign",
        "vip",
        str(csv),
        "--yes",
        "--json",
        "--quiet",
        "--chunk-size",
        "20",
        "--concurrency",
        "4",
        "--lookup",
        "single",
        "--verify",
        "3",
    ]

    clean_tenant = generate_tenant(150, seed=21)
    rerun = kill_then_rerun(
        served,
        args,
        clean=clean_tenant,
        tenant=tenant,
        until=lambda: KILL_POINTS[point](tenant),
        tmp_path=tmp_path,
    ).rerun
    assert "Traceback" not in rerun.stderr

    final = {p.email: sorted(p.statuses) for p in tenant.profiles.values()}
    expected = {p.email: sorted(p.statuses) for p in clean_tenant.profiles.values()}
    assert final == expected
    got = [
        (r["line"], r["email"], r["outcome"], r["profile_id"])
        for r in report_rows(tmp_path / "rerun.csv")
    ]
    want = [
        (r["line"], r["email"], r["outcome"], r["profile_id"])
        for r in report_rows(tmp_path / "clean.csv")
    ]
    assert got == want
    assert all(r.method != "PUT" for r in tenant.requests)


def scan_reads(tenant: Tenant) -> list[int]:
    """The page numbers of the unfiltered profile list requests (a scan's reads), in order."""
    return [
        int(dict(r.query).get("page[number]", "1"))
        for r in list(tenant.requests)
        if r.path == "/api/v3/profiles" and not any(k.startswith("filter") for k, _ in r.query)
    ]


@POSIX_ONLY
@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_scan_and_the_rerun_reads_no_page_twice(
    served: Callable[[Tenant, SandboxConfig], Served], tmp_path: Path
) -> None:
    tenant = generate_tenant(3000, seed=31)
    emails = targets(tenant, 2500)
    csv = write_csv(tmp_path / "in.csv", emails)
    args = ["assign", "vip", str(csv), "--yes", "--json", "--quiet", "--concurrency", "2"]
    args += ["--lookup", "scan"]
    config = SandboxConfig(latency_ms=15)
    box = served(tenant, config)
    state = tmp_path / "state"
    killed = tool(
        args, base_url=box.base_url, state=state, until=lambda: len(scan_reads(tenant)) >= 10
    )
    assert killed.returncode == -signal.SIGKILL
    assert not any(r.method == "POST" for r in tenant.requests)  # killed while scanning
    with sqlite3.connect(state / "journal.sqlite") as db:
        kept = {n for (n,) in db.execute("SELECT page FROM scan_pages")}
    assert len(kept) >= 5
    tenant.requests.clear()
    config.latency_ms = 0
    rerun = tool(args, base_url=box.base_url, state=state)
    assert rerun.returncode == 0, rerun.stderr
    again = scan_reads(tenant)
    assert not kept & set(again)  # no page read before the kill is read again
    assert kept | set(again) == set(range(1, 31)) and len(again) == len(set(again))
    doc = json.loads(rerun.stdout)
    assert doc["lookup"]["mode"] == "scan"
    assert doc["lookup"]["reason"].startswith("continuing the tenant scan")
    assert doc["counts"]["not_found"] == 5
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == 2500
    assert all("vip" in p.statuses for p in tenant.profiles.values() if p.email in set(emails))


@POSIX_ONLY
@pytest.mark.slow
def test_sigterm_saves_the_journal_and_exits_130(
    served: Callable[[Tenant, SandboxConfig], Served], tmp_path: Path
) -> None:
    tenant = generate_tenant(100, seed=8)
    csv = write_csv(tmp_path / "in.csv", targets(tenant, 80))
    box = served(tenant, SandboxConfig(latency_ms=20))
    args = [
        "assign",
        "vip",
        str(csv),
        "--yes",
        "--quiet",
        "--concurrency",
        "2",
        "--lookup",
        "single",
    ]
    stopped = tool(
        args,
        base_url=box.base_url,
        state=tmp_path / "s",
        sig=getattr(signal, "SIGTERM", 15),
        until=lambda: count(tenant, lambda m, p: p == "/api/v3/profiles") >= 10,
    )
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stdout == ""
    assert "Interrupted" in stopped.stderr and "omneo-status resume" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    box.config.latency_ms = 0
    again = tool([*args, "--json"], base_url=box.base_url, state=tmp_path / "s")
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["counts"]["not_found"] == 5
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == 80


@POSIX_ONLY
@pytest.mark.slow
def test_the_token_appears_in_no_output_even_at_debug(
    served: Callable[[Tenant, SandboxConfig], Served], tmp_path: Path
) -> None:
    tenant = generate_tenant(30, seed=2)
    tenant.fail_profile_ids.add(
        next(p.id for p in tenant.profiles.values() if "vip" not in p.statuses)
    )
    csv = write_csv(tmp_path / "in.csv", targets(tenant, 20))
    box = served(tenant, SandboxConfig(token=SECRET, fail_rate=0.2, fault_seed=1))
    state = tmp_path / "state"
    log, report = tmp_path / "run.jsonl", tmp_path / "report.csv"
    result = tool(
        [
            "assign",
            "vip",
            str(csv),
            "--yes",
            "-vv",
            "--log-file",
            str(log),
            "--report",
            str(report),
        ],
        base_url=box.base_url,
        state=state,
        token=SECRET,
    )
    assert result.returncode == 3, result.stderr  # the injected item failure
    assert "GET /v3/statuses" in result.stderr  # one line per request at -vv
    bad = tool(["statuses", "-vv"], base_url=box.base_url, state=state, token=SECRET + "x")
    assert bad.returncode == 1
    assert "refused (401)" in bad.stderr
    outputs = [result.stdout, result.stderr, bad.stdout, bad.stderr]
    files = [log, report, *state.rglob("*")]
    for blob in outputs:
        assert SECRET not in blob
    for path in files:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    for path in [log, report, state / "journal.sqlite"]:
        assert path.stat().st_mode & 0o777 == 0o600, path
    with sqlite3.connect(state / "journal.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM rows").fetchone()[0] == 25


@pytest.mark.slow
def test_unreachable_api_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = tool(["statuses"], base_url="http://127.0.0.1:9/api", state=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [line for line in errors if "GET /v3/statuses: the API is unreachable" in line]
    assert len(errors) == 1
    assert "Traceback" not in result.stderr


# -- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"email\nava@example.com\x00\n", "line 2"),
        (b"email\n" + b"a" * 10_000_000 + b"\n", "line 2"),
        (b"email\nok@example.com\n\xc3\x28@example.com\n", "line 3: not valid UTF-8"),
    ],
    ids=["nul", "10mb-line", "bad-utf8"],
)
def test_hostile_files_get_one_line_naming_the_line(
    sandbox: Sandbox, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "hostile.csv"
    path.write_bytes(content)
    result = sandbox.run("assign", "vip", str(path))
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2
    assert sandbox.tenant.requests == []


def test_formula_quotes_and_unicode_get_their_own_outcomes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "odd.csv"
    path.write_text(
        'email\n"=HYPERLINK(""http://x"")"\n"""john doe""@example.com"\n'
        "jöhn@exämple.com\n+61400000000\n@evil\n",
        encoding="utf-8",
    )
    report = tmp_path / "r.csv"
    result = sandbox.run("assign", "vip", str(path), "--report", str(report), "--json")
    assert result.exit_code == 0, result.stderr
    rows = report_rows(report)
    assert [r["outcome"] for r in rows] == [
        "invalid_email",
        "not_found",
        "not_found",
        "invalid_email",
        "invalid_email",
    ]
    assert all(not r["email"].startswith(("=", "+", "-", "@")) for r in rows)


@pytest.mark.slow
def test_a_million_rows_are_accounted_for(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write("email\n")
        out.write("ava.nguyen@example.com\n" * 1_000_000)
    result = sandbox.run("assign", "vip", str(path), "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["rows"] == 1_000_000
    assert doc["counts"]["assigned"] == 1 and doc["counts"]["duplicate"] == 999_999


def test_runs_prune_forgets_old_finished_runs_only(sandbox: Sandbox) -> None:
    import sqlite3

    sandbox.run("assign", "vip", EMAILS)
    sandbox.run("remove", "vip", EMAILS, "--dry-run")
    state = Path(os.environ["OMNEO_STATE_DIR"])
    with sqlite3.connect(state / "journal.sqlite") as db:
        db.execute("UPDATE runs SET updated_at='2020-01-01T00:00:00Z'")
        db.execute("UPDATE runs SET state='interrupted' WHERE dry_run=0")
    kept = sandbox.invoke("runs", "--prune", "30", "--json")
    assert kept.exit_code == 0
    assert "Forgot 1 run older than 30 days" in kept.stderr
    assert [r["dry_run"] for r in json.loads(kept.stdout)] == [False]  # unfinished: kept
    with sqlite3.connect(state / "journal.sqlite") as db:
        assert db.execute("SELECT COUNT(DISTINCT run_id) FROM rows").fetchone()[0] == 1
