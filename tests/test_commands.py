"""The smaller commands against a sandbox over a real socket: statuses, batch, resume, and
`omneo-status sandbox` itself as a user starts it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from omneo_status import __version__, cli
from omneo_status.sandbox import SandboxConfig, ServerThread, create_app, demo_tenant

from .conftest import EXAMPLES, POSIX_ONLY


@pytest.fixture
def socket_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    config = SandboxConfig(batch_delay=0.0)
    with ServerThread(create_app(demo_tenant(), config)) as server:
        monkeypatch.setenv("OMNEO_BASE_URL", server.base_url)
        monkeypatch.setenv("OMNEO_TOKEN", "sandbox-token")
        yield server


def test_statuses_lists_handles(socket_env: ServerThread) -> None:
    result = CliRunner().invoke(cli.app, ["statuses", "--json"])
    assert result.exit_code == 0, result.stderr
    handles = [s["handle"] for s in json.loads(result.stdout)]
    assert handles[:5] == ["vip", "staff", "influencer", "media", "gold"]
    assert len(handles) == len(set(handles))
    table = CliRunner().invoke(cli.app, ["statuses"])
    assert "influencer" in table.stdout and "Influencer" in table.stdout


def test_no_wait_then_batch_shows_the_state(socket_env: ServerThread) -> None:
    runner = CliRunner()
    sent = runner.invoke(
        cli.app, ["assign", "vip", str(EXAMPLES / "emails.csv"), "--yes", "--no-wait", "--json"]
    )
    assert sent.exit_code == 0, sent.stderr
    [batch] = json.loads(sent.stdout)["batches"]
    shown = runner.invoke(cli.app, ["batch", batch["batch_id"], "--json"])
    assert shown.exit_code == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["id"] == batch["batch_id"] and doc["status"] == "success"
    assert doc["success_count"] == 4
    human = runner.invoke(cli.app, ["batch", batch["batch_id"]])
    assert "success" in human.stdout
    missing = runner.invoke(cli.app, ["batch", "no-such-batch"])
    assert missing.exit_code == 2 and "No batch 'no-such-batch'" in missing.stderr
    # Re-running without --no-wait follows the accepted batch instead of sending again.
    followed = runner.invoke(
        cli.app, ["assign", "vip", str(EXAMPLES / "emails.csv"), "--yes", "--json"]
    )
    assert json.loads(followed.stdout)["counts"]["assigned"] == 4


def test_resume_by_id_of_a_finished_run_reports_the_same(socket_env: ServerThread) -> None:
    runner = CliRunner()
    done = runner.invoke(
        cli.app, ["assign", "vip", str(EXAMPLES / "emails.csv"), "--yes", "--json"]
    )
    run_id = json.loads(done.stdout)["run_id"]
    again = runner.invoke(cli.app, ["resume", run_id[:20], "--json"])
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["counts"] == json.loads(done.stdout)["counts"]
    other = runner.invoke(cli.app, ["resume", run_id, "--base-url", "http://127.0.0.1:9/api"])
    assert other.exit_code == 2 and "was made against" in other.stderr


def test_bad_token_is_exit_1_without_the_token(
    socket_env: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNEO_TOKEN", "wrong-token-1234567890")
    result = CliRunner().invoke(cli.app, ["assign", "vip", str(EXAMPLES / "emails.csv"), "--yes"])
    assert result.exit_code == 1
    assert "refused (401)" in result.stderr
    assert "wrong-token-1234567890" not in result.stderr + result.stdout


@pytest.mark.slow
@POSIX_ONLY
def test_the_sandbox_command_serves_until_interrupted(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "omneo_status",
            "sandbox",
            "--port",
            "0",
            "--profiles",
            "200",
            "--log",
            str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("OMNEO_")},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/api", first)
        assert match, first
        token_line = ""
        while "OMNEO_TOKEN" not in token_line:
            token_line = proc.stdout.readline()
        token = token_line.strip().split("=", 1)[1]
        found = httpx.get(
            f"{match.group(0)}/v3/profiles",
            params={"filter[email]": "customer7@example.com"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        assert [p["email"] for p in found["data"]] == ["customer7@example.com"]
        assert found["meta"]["total"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert json.loads(log.read_text().splitlines()[0])["path"] == "/api/v3/profiles"


def test_sandbox_refuses_seed_and_profiles_together(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli.app, ["sandbox", "--seed", str(EXAMPLES / "sandbox-tenant.json"), "--profiles", "3"]
    )
    assert result.exit_code == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    result = CliRunner().invoke(cli.app, ["sandbox", "--seed", str(bad)])
    assert result.exit_code == 2 and result.stderr.startswith("Error: ")


@pytest.mark.slow
def test_version_and_module_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "omneo_status", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert re.fullmatch(r"omneo-status \d+\.\d+\.\d+\n", out.stdout)


@pytest.mark.slow
def test_version_imports_nothing_heavy() -> None:
    # Issue 12 (start-up): --version is answered before Typer, rich, httpx or the core load.
    probe = (
        "import sys; sys.argv = ['omneo-status', '--version'];"
        " from omneo_status.__main__ import main; main();"
        " heavy = sorted(m for m in ('typer', 'rich', 'httpx', 'omneo_status.cli') if m in"
        " sys.modules); print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == [f"omneo-status {__version__}", "[]"]
