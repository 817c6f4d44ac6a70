"""The edges of the command line a new user hit (issue 9 sections 4 and 6, issue 10's drift
bugs): report paths, the sandbox banner, config show, the help, progress, quiet, -vv, and the
options every command must accept."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from omneo_status import cli
from omneo_status.errors import ExitCode
from omneo_status.settings import normalize_base_url

from .conftest import EXAMPLES, POSIX_ONLY, Sandbox, summary_of, write_csv

EMAILS = str(EXAMPLES / "emails.csv")


# -- the report and other output paths (issue 9 section 4) -----------------------------------


def test_report_equal_to_the_input_is_refused_before_anything(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_csv(tmp_path / "customers.csv", ["ava.nguyen@example.com"])
    before = source.read_bytes()
    monkeypatch.chdir(tmp_path)
    # The same file, named another way: compared as resolved paths.
    result = sandbox.run("assign", "vip", str(source), "--report", "./customers.csv")
    assert result.exit_code == 2
    assert "is the input file" in result.stderr
    assert source.read_bytes() == before
    assert sandbox.tenant.requests == []


@pytest.mark.parametrize("where", ["directory", "under-a-file"])
def test_an_unwritable_report_is_refused_before_the_first_request(
    where: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    target = tmp_path if where == "directory" else blocker / "report.csv"
    result = sandbox.run("assign", "vip", EMAILS, "--report", str(target), "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["exit_code"] == 2
    assert sandbox.tenant.requests == []


@POSIX_ONLY
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_a_report_in_a_read_only_directory_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        result = sandbox.run("assign", "vip", EMAILS, "--report", str(locked / "r.csv"))
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 2 and "Cannot write the report" in result.stderr
    assert sandbox.tenant.requests == []


def test_report_dash_writes_the_report_to_stdout(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS, "--report", "-")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 9
    assert {r["outcome"] for r in rows} >= {"assigned", "not_found"}
    assert "Report:" in result.stderr  # the summary moved to stderr


def test_report_dash_with_json_is_refused(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS, "--report", "-", "--json")
    assert result.exit_code == 2
    assert "stdout" in json.loads(result.stdout)["error"]
    assert sandbox.tenant.requests == []


# -- the sandbox command's banner ------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "served", "shown"),
    [
        ("0.0.0.0", "http://0.0.0.0:8765/api", "http://127.0.0.1:8765/api"),  # noqa: S104
        ("::", "http://[::]:8765/api", "http://[::1]:8765/api"),
        ("127.0.0.1", "http://127.0.0.1:8765/api", "http://127.0.0.1:8765/api"),
    ],
)
def test_the_sandbox_banner_prints_a_url_the_tool_accepts(
    host: str, served: str, shown: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    import omneo_status.sandbox as sandbox_package

    def fake_serve(app: Any, *, host: str, port: int, on_ready: Any) -> None:
        on_ready(served)

    monkeypatch.setattr(sandbox_package, "serve", fake_serve)
    result = sandbox.invoke("sandbox", "--host", host)
    assert result.exit_code == 0, result.stderr
    [exported] = re.findall(r"export OMNEO_BASE_URL=(\S+)", result.stdout)
    assert exported == shown
    assert normalize_base_url(exported) == shown  # plain http is accepted: it is loopback
    assert ("all interfaces" in result.stdout) == (host != "127.0.0.1")


# -- config show when settings are incomplete ------------------------------------------------


def test_config_show_lists_what_it_has_when_the_token_is_missing(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNEO_TENANT", "acme")
    result = sandbox.invoke("config", "show", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["base_url"]["value"] == "https://api.acme.getomneo.com/api"
    assert doc["base_url"]["missing"] is False
    assert doc["token"]["missing"] is True
    table = sandbox.invoke("config", "show")
    assert table.exit_code == 0
    assert "not set" in table.stdout and "token" in table.stderr


# -- the help --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["assign", "remove", "resume", "undo", "statuses", "doctor"])
def test_the_help_shows_flags_without_value_types(command: str, sandbox: Sandbox) -> None:
    result = sandbox.invoke(command, "--help")
    assert result.exit_code == 0
    lines = [
        line
        for line in result.stdout.splitlines()
        if re.search(r"--(dry-run|verbose|json)\b", line)
    ]
    assert lines
    for line in lines:
        assert "<bool>" not in line and "<int>" not in line, line


# -- progress, --quiet and -vv ---------------------------------------------------------------


def test_a_long_stage_prints_a_progress_line_at_least_every_10_seconds(sandbox: Sandbox) -> None:
    sandbox.config.batch_delay = 95.0
    result = sandbox.run("assign", "vip", EMAILS)
    assert result.exit_code == 0, result.stderr
    lines = re.findall(r"^\[(\d+):(\d\d):(\d\d)\] (.+)$", result.stderr, re.MULTILINE)
    waits = [(int(h) * 3600 + int(m) * 60 + int(s), text) for h, m, s, text in lines]
    waiting = [(t, text) for t, text in waits if text.startswith("waiting for batches:")]
    assert len(waiting) >= 9  # about 95 virtual seconds of waiting, a line every 10
    times = [t for t, _ in waits]
    assert all(b - a <= 10 for a, b in itertools.pairwise(times))
    shape = r"waiting for batches: \d+/\d+ rows( \([\d.,]+/s(, ETA \d+:\d\d:\d\d)?\))?"
    assert all(re.fullmatch(shape, text) for _, text in waiting), waiting


class BusyFirst(httpx.AsyncBaseTransport):
    """The sandbox, but the first request is answered 503 with ``Retry-After``."""

    def __init__(self, inner: httpx.AsyncBaseTransport, retry_after: str) -> None:
        self.inner = inner
        self.retry_after = retry_after
        self.busy = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.busy:
            self.busy = False
            return httpx.Response(503, headers={"Retry-After": self.retry_after}, json={})
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize(("retry_after", "said"), [("7", True), ("1", False)])
def test_a_long_retry_wait_is_said_without_verbose(
    retry_after: str, said: bool, sandbox: Sandbox, runtime: cli.Runtime
) -> None:
    busy = BusyFirst(sandbox.transport(), retry_after)
    runtime.sandbox_transport = lambda: busy
    result = sandbox.run("assign", "vip", EMAILS)
    assert result.exit_code == 0, result.stderr
    shown = re.findall(r"Retrying GET /v3/statuses: HTTP 503 in (\d+\.\d)s", result.stderr)
    assert shown == ([f"{float(retry_after):.1f}"] if said else [])


def test_quiet_prints_only_the_final_line(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS, "--quiet")
    assert result.exit_code == 0
    assert result.stderr == ""
    [line] = result.stdout.splitlines()
    assert line.startswith("assign vip: 4 assigned") and "report" in line


def test_quiet_still_prints_errors(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "nope", EMAILS, "--quiet")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("Error: Unknown status handle")


def test_vv_prints_one_line_per_request(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS, "-vv")
    assert result.exit_code == 0, result.stderr
    lines = re.findall(r"^(GET|POST|DELETE) (/v3/\S+) (\d{3}) \d+ ms$", result.stderr, re.MULTILINE)
    assert len(lines) == len(sandbox.tenant.requests)
    assert ("POST", "/v3/profile/status/batch.json") in {(m, p) for m, p, _ in lines}
    assert "HTTP Request" not in result.stderr  # httpx's own logger stays quiet
    assert "sandbox-token" not in result.stderr


# -- every command accepts the options that make sense for it (issue 10) ---------------------


def test_resume_and_undo_accept_sandbox(sandbox: Sandbox) -> None:
    sandbox.config.batch_delay = 100.0
    sent = sandbox.run("assign", "vip", EMAILS, "--no-wait", "--json")
    run_id = summary_of(sent)["run_id"]
    sandbox.clock.now += 200.0  # the batches are done by now
    resumed = sandbox.run("resume", run_id, "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert summary_of(resumed)["counts"]["assigned"] == 4
    undone = sandbox.run("undo", run_id, "--json")
    assert undone.exit_code == 0, undone.stderr
    assert summary_of(undone)["counts"]["removed"] == 4
    assert sandbox.statuses("ava.nguyen@example.com") == []


def test_statuses_has_max_retries(sandbox: Sandbox) -> None:
    sandbox.config.fail_rate = 1.0
    result = sandbox.invoke("statuses", "--sandbox", "--max-retries", "2", "--json")
    assert result.exit_code == 1
    assert len(sandbox.tenant.requests) == 3  # the first attempt and two retries


def test_batch_json_for_a_missing_batch(sandbox: Sandbox) -> None:
    result = sandbox.invoke("batch", "no-such-batch", "--sandbox", "--json")
    assert result.exit_code == ExitCode.USAGE
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 2 and "no-such-batch" in doc["error"]


def test_a_run_error_says_how_to_go_on(sandbox: Sandbox) -> None:
    sandbox.config.batch_delay = 10_000.0
    result = sandbox.run("assign", "vip", EMAILS, "--poll-timeout", "30", "--json")
    assert result.exit_code == ExitCode.GAVE_UP_WAITING
    run_id = summary_of(result)["run_id"]
    assert f"omneo-status resume {run_id}" in result.stderr
    assert "omneo-status resume" not in result.stdout
