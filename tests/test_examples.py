"""Every file in examples/ does what the docs say: the CSVs against the demo tenant, the seed,
and (slow) the cron wrapper run with bash against a sandbox served on a loopback port."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from omneo_status.jobs import job_key
from omneo_status.locking import job_lock
from omneo_status.models import Action
from omneo_status.options import JobSpec
from omneo_status.sandbox import (
    SandboxConfig,
    ServerThread,
    Tenant,
    create_app,
    demo_tenant,
    load_seed,
)
from omneo_status.settings import normalize_base_url
from omneo_status.source import prepared_input

from .conftest import EXAMPLES, Sandbox, report_rows, summary_of

CRON = EXAMPLES / "cron-assign-vip.sh"
DOCS_CSV = EXAMPLES.parent / "docs" / "csv.md"
SHOPIFY_HEADER = (
    "First Name,Last Name,Email,Accepts Email Marketing,Default Address Company,"
    "Default Address Address1,Default Address Address2,Default Address City,"
    "Default Address Province Code,Default Address Country Code,Default Address Zip,"
    "Default Address Phone,Phone,Accepts SMS Marketing,Total Spent,Total Orders,Tags,Note,"
    "Tax Exempt"
)


@dataclass(frozen=True)
class Expected:
    """What ``assign vip FILE`` (``assign FILE`` with ``--status-column``) gives on the demo
    tenant."""

    args: tuple[str, ...]
    counts: dict[str, int]
    handle: tuple[str, ...] = ("vip",)


EXPECTED = {
    "emails.csv": Expected(
        (),
        {
            "assigned": 4,
            "already_had": 1,
            "not_found": 1,
            "ambiguous": 1,
            "invalid_email": 1,
            "duplicate": 1,
        },
    ),
    "shopify-customers.csv": Expected(
        (), {"assigned": 5, "already_had": 2, "not_found": 2, "ambiguous": 1, "invalid_email": 1}
    ),
    "shopify-customer-ids.csv": Expected(
        ("--match", "identity:shopify", "--column", "Customer ID"),
        {"assigned": 6, "already_had": 2, "not_found": 1, "invalid_key": 1, "duplicate": 1},
    ),
    "profile-ids.csv": Expected(
        ("--match", "id"),
        {"assigned": 3, "already_had": 1, "not_found": 1, "invalid_key": 1, "duplicate": 1},
    ),
    "excel-european.csv": Expected(
        ("--column", "Adresse e-mail"),
        {"assigned": 3, "already_had": 2, "not_found": 1, "invalid_email": 1, "duplicate": 1},
    ),
    "tiers.csv": Expected(
        ("--status-column", "tier"),
        {"moved": 3, "assigned": 2, "already_had": 1, "not_found": 1, "no_status": 1},
        handle=(),
    ),
}


def test_every_example_csv_is_tested() -> None:
    assert {path.name for path in EXAMPLES.glob("*.csv")} == set(EXPECTED)
    assert {path.name for path in EXAMPLES.glob("*.xls*")} == {"tiers.xlsx"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_csv_gives_the_documented_outcomes(sandbox: Sandbox, name: str) -> None:
    expected = EXPECTED[name]
    result = sandbox.run("assign", *expected.handle, str(EXAMPLES / name), *expected.args, "--json")
    assert result.exit_code == 0, result.stderr
    summary = summary_of(result)
    assert {k: v for k, v in summary["counts"].items() if v} == expected.counts
    assert summary["rows"] == sum(expected.counts.values())
    assert summary["verified"]["problems"] == []
    report = report_rows(Path(summary["report"]))
    assert [int(row["line"]) for row in report] == sorted(int(row["line"]) for row in report)


def test_example_workbook_gives_the_documented_outcomes_per_sheet(sandbox: Sandbox) -> None:
    path = EXAMPLES / "tiers.xlsx"
    # Its first sheet holds the rows of tiers.csv: the same run, read from a workbook.
    result = sandbox.run("assign", "--status-column", "tier", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    summary = summary_of(result)
    assert {k: v for k, v in summary["counts"].items() if v} == EXPECTED["tiers.csv"].counts
    assert summary["input"] == f"{path}, sheet 'Customers'"
    assert sandbox.statuses("member02@example.com").count("club-silver") == 1
    result = sandbox.run("assign", "vip", str(path), "--sheet", "Left", "--json")
    assert result.exit_code == 0, result.stderr
    summary = summary_of(result)
    assert {k: v for k, v in summary["counts"].items() if v} == {"assigned": 1}
    assert summary["input"] == f"{path}, sheet 'Left'"
    assert "vip" in sandbox.statuses("member01@example.com")


def test_shopify_export_keeps_every_status_customers_held(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", str(EXAMPLES / "shopify-customers.csv"))
    assert result.exit_code == 0, result.stderr
    assert sandbox.statuses("ben.carter@example.com") == ["staff", "vip"]
    assert sandbox.statuses("chloe.martin@example.com") == ["vip", "media"]
    assert sandbox.statuses("finn.wilson@example.com") == ["influencer", "vip"]
    assert sandbox.statuses("isla.wright@example.com") == ["vip"]
    assert sandbox.statuses("ella.brown@example.com") == ["vip"]  # the cell has spaces around


def test_shopify_export_matched_by_phone_changes_only_those_with_a_number(
    sandbox: Sandbox,
) -> None:
    result = sandbox.run(
        "assign", "vip", str(EXAMPLES / "shopify-customers.csv"), "--match", "mobile", "--json"
    )
    assert result.exit_code == 0, result.stderr
    counts = {k: v for k, v in summary_of(result)["counts"].items() if v}
    # The Phone column: three numbers of the demo tenant, one it does not know, seven blanks.
    assert counts == {"assigned": 3, "not_found": 1, "invalid_key": 7}
    assert sandbox.statuses("isla.wright@example.com") == ["vip"]
    assert sandbox.statuses("henry.king@example.com") == ["vip"]  # held it already


def test_shopify_export_has_shopify_s_shape() -> None:
    raw = (EXAMPLES / "shopify-customers.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.count(b"\r\n") == raw.count(b"\n")
    text = raw.decode("utf-8-sig")
    assert text.splitlines()[0] == SHOPIFY_HEADER
    assert '"Unit 4, 12 King Street"' in text  # a quoted cell holding the separator


def test_excel_example_needs_column_and_says_so(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = (EXAMPLES / "excel-european.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.count(b"\r\n") == raw.count(b"\n")
    assert raw.decode("utf-8-sig").splitlines()[0] == "Nom;Prénom;Adresse e-mail;Ville"
    monkeypatch.chdir(EXAMPLES.parent)  # the path as the docs show it
    result = sandbox.run("assign", "vip", "examples/excel-european.csv")
    assert result.exit_code == 2
    assert "no email column" in result.stderr
    assert "--column" in result.stderr
    assert sandbox.tenant.requests == []
    # docs/csv.md quotes both lines the user sees.
    documented = " ".join(DOCS_CSV.read_text(encoding="utf-8").split())
    for line in result.stderr.splitlines():
        assert f"`{line}`" in documented, f"docs/csv.md does not quote {line!r}"


def test_sandbox_tenant_example_is_the_demo_tenant() -> None:
    assert load_seed(EXAMPLES / "sandbox-tenant.json").to_seed() == demo_tenant().to_seed()


# -- the cron wrapper -------------------------------------------------------------------------

bash = shutil.which("bash")
# The wrapper runs under bash, as its own processes, against a sandbox on a loopback port.
cron_only = pytest.mark.skipif(
    sys.platform == "win32" or bash is None, reason="the cron wrapper is a bash script"
)


@dataclass
class Served:
    tenant: Tenant
    base_url: str


@contextmanager
def serving(batch_delay: float = 0.0) -> Iterator[Served]:
    tenant = demo_tenant()
    with ServerThread(create_app(tenant, SandboxConfig(batch_delay=batch_delay))) as server:
        yield Served(tenant, server.base_url)


@pytest.fixture
def served() -> Iterator[Served]:
    with serving() as box:
        yield box


def venv_bin() -> Path:
    """The directory of this environment's ``omneo-status`` (next to its python)."""
    found = Path(sys.executable).parent
    assert (found / "omneo-status").exists(), "omneo-status is not installed next to python"
    return found


def cron_env(tmp_path: Path, served: Served, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path / "home"),
        "OMNEO_BASE_URL": served.base_url,
        "OMNEO_TOKEN": "sandbox-token",
        "CRON_LOG_DIR": str(tmp_path / "logs"),
        **extra,
    }


def run_cron(env: dict[str, str], csv: Path) -> subprocess.CompletedProcess[str]:
    assert bash is not None
    return subprocess.run(
        [bash, str(CRON), str(csv)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def log_lines(tmp_path: Path) -> list[dict[str, Any]]:
    text = (tmp_path / "logs" / "assign-vip.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.slow
@cron_only
def test_cron_wrapper_runs_quietly_and_logs_the_run(tmp_path: Path, served: Served) -> None:
    csv = EXAMPLES / "shopify-customers.csv"
    result = run_cron(cron_env(tmp_path, served), csv)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")  # cron mails nothing
    events = log_lines(tmp_path)
    summary = next(event for event in events if event["event"] == "summary")
    assert summary["exit_code"] == 0
    assert summary["counts"]["assigned"] == 5
    assert events[-1]["event"] == "cron"
    assert events[-1]["exit_code"] == 0
    saved = json.loads((tmp_path / "logs" / "assign-vip-last.json").read_text(encoding="utf-8"))
    assert saved["run_id"] == summary["run_id"]
    assert served.tenant.statuses_of(served.tenant.by_email("ben.carter@example.com")[0].id) == [
        "staff",
        "vip",
    ]
    for path in (tmp_path / "logs").iterdir():
        assert "sandbox-token" not in path.read_text(encoding="utf-8"), path.name

    again = run_cron(cron_env(tmp_path, served), csv)
    assert again.returncode == 0, again.stderr
    writes = [r for r in served.tenant.requests if r.method != "GET"]
    assert len(writes) == 1  # the finished job sent nothing the second time


@pytest.mark.slow
@cron_only
@pytest.mark.parametrize(
    ("case", "code"), [("missing file", 2), ("refused token", 1)], ids=["exit-2", "exit-1"]
)
def test_cron_wrapper_alerts_with_what_to_do(
    tmp_path: Path, served: Served, case: str, code: int
) -> None:
    token = "not-the-real-token-4f2a"
    csv = tmp_path / "missing.csv" if case == "missing file" else EXAMPLES / "emails.csv"
    result = run_cron(cron_env(tmp_path, served, OMNEO_TOKEN=token), csv)
    assert result.returncode == code
    assert result.stdout == ""
    assert f"exit {code}" in result.stderr
    assert "Error:" in result.stderr
    last = log_lines(tmp_path)[-1]
    assert (last["event"], last["exit_code"]) == ("cron", code)
    assert token not in result.stderr
    for path in (tmp_path / "logs").iterdir():
        assert token not in path.read_text(encoding="utf-8"), path.name
    assert [r for r in served.tenant.requests if r.method != "GET"] == []


@pytest.mark.slow
@cron_only
def test_cron_wrapper_exits_4_while_the_same_job_runs(tmp_path: Path) -> None:
    csv = EXAMPLES / "emails.csv"
    # Batches stay pending for a while: the first run holds the lock as it waits for its own.
    with serving(batch_delay=5.0) as served:
        env = cron_env(tmp_path, served)
        first = subprocess.Popen(
            [str(venv_bin() / "omneo-status"), "assign", "vip", str(csv), "--yes", "--quiet"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not any(r.method == "POST" for r in served.tenant.requests):
                assert first.poll() is None, "the first run ended before sending"
                assert time.monotonic() < deadline, "the first run never sent its batch"
                time.sleep(0.05)
            result = run_cron(env, csv)
        finally:
            first_code = first.wait(timeout=60)
    assert result.returncode == 4, result.stderr
    assert result.stderr == ""  # a run still going is not an alert
    last = log_lines(tmp_path)[-1]
    assert (last["event"], last["exit_code"]) == ("cron", 4)
    assert first_code == 0
    assert len([r for r in served.tenant.requests if r.method == "POST"]) == 1


STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.mark.slow
@cron_only
def test_cron_wrapper_keeps_the_last_summary_through_a_failed_and_a_locked_run(
    tmp_path: Path, served: Served
) -> None:
    logs = tmp_path / "logs"
    last, last_any = logs / "assign-vip-last.json", logs / "assign-vip-last-any.json"
    good = run_cron(cron_env(tmp_path, served), EXAMPLES / "emails.csv")
    assert good.returncode == 0, good.stderr
    summary = last.read_text(encoding="utf-8")
    run_id = json.loads(summary)["run_id"]
    assert json.loads(summary)["counts"]["assigned"] == 4

    # Exit 1: another export, with a token the tenant refuses.
    other = EXAMPLES / "shopify-customers.csv"
    failed = run_cron(cron_env(tmp_path, served, OMNEO_TOKEN="refused-token-4f2a"), other)
    assert failed.returncode == 1
    assert last.read_text(encoding="utf-8") == summary
    error = json.loads(last_any.read_text(encoding="utf-8"))
    assert (error["exit_code"], error["run_id"]) == (1, None) and "error" in error
    assert f"Last summary of a run that ended: {last}" in failed.stderr

    # Exit 4: that export's job is held by another process.
    state = Path(os.environ["OMNEO_STATE_DIR"])
    holder = "20990101T000000-abcdef-0000"
    with prepared_input(str(other), None, state_dir=state) as source:
        key = job_key(
            JobSpec(Action.ASSIGN, ("vip",)),
            base_url=normalize_base_url(served.base_url),
            digest=source.digest,
            dry_run=False,
        )
    with job_lock(state, key) as held:
        held.claim(holder)
        locked = run_cron(cron_env(tmp_path, served), other)
    assert locked.returncode == 4, locked.stderr
    assert locked.stderr == ""  # a run still going is not an alert
    assert last.read_text(encoding="utf-8") == summary
    error = json.loads(last_any.read_text(encoding="utf-8"))
    assert (error["exit_code"], error["run_id"]) == (4, holder)

    # One log: every line names its run (none, for the two that had none) in one time format.
    events = log_lines(tmp_path)
    assert all(STAMP.match(event["ts"]) for event in events), [e["ts"] for e in events]
    assert all(list(event)[:3] == ["ts", "event", "run_id"] for event in events)
    ends = [(e["event"], e["exit_code"], e["run_id"]) for e in events if "exit_code" in e]
    assert ends == [
        ("summary", 0, run_id),
        ("cron", 0, run_id),
        ("error", 1, None),
        ("cron", 1, None),
        ("error", 4, None),
        ("cron", 4, None),
    ]
    first_run = events[: events.index(next(e for e in events if e["event"] == "cron")) + 1]
    assert {e["run_id"] for e in first_run} == {run_id}
