"""``--json`` always means one JSON document (issue 9 section 5): every command, whatever
happens (success, a usage error Typer raises itself, a configuration error, an API error, an
interrupt), leaves exactly one JSON document on stdout whose ``exit_code`` is the process's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from typer.testing import Result

from omneo_status import cli, jobs
from omneo_status.cli import reads
from omneo_status.settings import resolve_state_dir

from .conftest import EXAMPLES, Sandbox, VirtualClock, summary_of

EMAILS = str(EXAMPLES / "emails.csv")


class Interrupting(httpx.AsyncBaseTransport):
    """The sandbox, until the n-th request: then the command is cancelled as SIGTERM does."""

    def __init__(self, inner: httpx.AsyncBaseTransport, clock: VirtualClock, after: int) -> None:
        self.inner = inner
        self.clock = clock
        self.after = after
        self.seen = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen += 1
        if self.seen > self.after:
            self.clock.interrupt()
            await asyncio.sleep(0)
        return await self.inner.handle_async_request(request)


def _finished_run(sandbox: Sandbox, *extra: str) -> dict[str, Any]:
    result = sandbox.run("assign", "vip", EMAILS, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return summary_of(result)


Setup = Callable[[Sandbox], list[str]]

# Each command, as a function of a prepared sandbox: the arguments of a run that succeeds.
COMMANDS: dict[str, Setup] = {
    "assign": lambda box: ["assign", "vip", EMAILS, "--sandbox", "--yes"],
    "remove": lambda box: ["remove", "vip", EMAILS, "--sandbox", "--yes"],
    "resume": lambda box: [
        "resume",
        _finished_run(box, "--no-wait")["run_id"],
        "--sandbox",
        "--yes",
    ],
    "undo": lambda box: ["undo", _finished_run(box)["run_id"], "--sandbox", "--yes"],
    "statuses": lambda box: ["statuses", "--sandbox"],
    "batch": lambda box: [
        "batch",
        _finished_run(box, "--no-wait")["batches"][0]["batch_id"],
        "--sandbox",
    ],
    "doctor": lambda box: ["doctor", "--sandbox"],
    "runs": lambda box: ["runs"],
    "config show": lambda box: ["config", "show"],
}
RUNS = ("assign", "remove", "resume", "undo")
TALKS_TO_API = ("assign", "remove", "resume", "undo", "statuses", "batch", "doctor")


def _without_sandbox(args: list[str]) -> list[str]:
    return [a for a in args if a != "--sandbox"]


def _one_document(result: Result) -> Any:
    """The single JSON document on stdout (json.loads fails on two, or on extra text)."""
    assert result.stdout.strip(), f"no JSON on stdout; stderr: {result.stderr}"
    return json.loads(result.stdout)


def _error_document(result: Result) -> dict[str, Any]:
    doc = _one_document(result)
    assert isinstance(doc, dict)
    assert set(doc) >= {"error", "hint", "exit_code", "run_id", "report"}
    assert doc["exit_code"] == result.exit_code
    assert "Error: " in result.stderr
    return doc


@pytest.mark.parametrize("command", list(COMMANDS))
def test_success_is_one_document(
    command: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNEO_TENANT", "acme")
    monkeypatch.setenv("OMNEO_TOKEN", "a-token-for-config-show-1234")
    args = COMMANDS[command](sandbox)
    result = sandbox.invoke(*args, "--json")
    assert result.exit_code == 0, result.stderr
    doc = _one_document(result)
    if isinstance(doc, dict) and "exit_code" in doc:
        assert doc["exit_code"] == result.exit_code


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("bad", [["--bogus"], ["--json-please"]], ids=["unknown", "near-miss"])
def test_a_usage_error_typer_raises_is_one_document(
    command: str, bad: list[str], sandbox: Sandbox
) -> None:
    args = COMMANDS[command](sandbox)
    result = sandbox.invoke(*args, *bad, "--json")
    assert result.exit_code == 2
    doc = _error_document(result)
    assert bad[0] in doc["error"]
    assert doc["run_id"] is None and doc["report"] is None


@pytest.mark.parametrize(
    "args",
    [
        ["assign", "vip", EMAILS, "--chunk-size", "0"],
        ["remove", "vip", EMAILS, "--max-unmatched", "101"],
        ["runs", "--prune", "-1"],
        ["runs", "--prune", "99999999999999999999"],
        ["resume", "x", "--concurrency", "0"],
        ["statuses", "--max-retries", "99"],
        ["assign", "vip"],
    ],
    ids=lambda args: " ".join(args[:1] + args[-2:]),
)
def test_an_out_of_range_value_is_one_document(args: list[str], sandbox: Sandbox) -> None:
    result = sandbox.invoke(*args, "--json")
    assert result.exit_code == 2
    _error_document(result)


@pytest.mark.parametrize("command", TALKS_TO_API)
def test_a_configuration_error_is_one_document(command: str, sandbox: Sandbox) -> None:
    args = _without_sandbox(COMMANDS[command](sandbox))
    result = sandbox.invoke(*args, "--json")
    assert result.exit_code == 2
    doc = _error_document(result)
    assert doc["error"] == "No tenant given"


def test_config_show_with_a_missing_config_file_is_one_document(sandbox: Sandbox) -> None:
    result = sandbox.invoke("config", "show", "--config", "/nonexistent/omneo.toml", "--json")
    assert result.exit_code == 0  # it shows what it has: that file is one of the things
    shown = json.loads(result.stdout)
    assert shown["config_file"] == {
        "value": "unusable: The config file /nonexistent/omneo.toml does not exist",
        "source": "",
        "missing": True,
    }


@pytest.mark.parametrize("command", TALKS_TO_API)
def test_an_api_error_is_one_document(command: str, sandbox: Sandbox) -> None:
    args = COMMANDS[command](sandbox)
    sandbox.config.token = "another-token"  # every request is now refused with 401
    result = sandbox.invoke(*args, "--json")
    assert result.exit_code == 1
    if command == "doctor":  # a refused token is one of the things doctor reports
        doc = _one_document(result)
        assert doc["ok"] is False and doc["exit_code"] == 1
        return
    assert "401" in _error_document(result)["error"]


@pytest.mark.parametrize("command", TALKS_TO_API)
def test_an_interrupt_is_one_document(command: str, sandbox: Sandbox, runtime: cli.Runtime) -> None:
    args = COMMANDS[command](sandbox)
    # A run is interrupted once it exists (after its first requests); a lookup at once.
    interrupting = Interrupting(
        sandbox.transport(), sandbox.clock, after=2 if command in RUNS else 0
    )
    runtime.sandbox_transport = lambda: interrupting
    result = sandbox.invoke(*args, "--json")
    assert result.exit_code == 130
    doc = _error_document(result)
    assert doc["error"].startswith("Interrupted")


@pytest.mark.parametrize("command", ["runs", "config show"])
def test_an_interrupt_outside_the_api_is_one_document(
    command: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "recent_runs", interrupted)
    monkeypatch.setattr(reads, "describe_settings", interrupted)
    result = sandbox.invoke(*COMMANDS[command](sandbox), "--json")
    assert result.exit_code == 130
    _error_document(result)


def test_an_interrupted_run_names_its_run(sandbox: Sandbox, runtime: cli.Runtime) -> None:
    interrupting = Interrupting(sandbox.transport(), sandbox.clock, after=2)
    runtime.sandbox_transport = lambda: interrupting
    result = sandbox.run("assign", "vip", EMAILS, "--json")
    assert result.exit_code == 130
    doc = _error_document(result)
    [run] = jobs.recent_runs(resolve_state_dir(None)[0], 5)
    assert doc["run_id"] == run.run_id or run.run_id in doc["error"]
    assert "omneo-status resume" in result.stderr


def test_a_crash_in_runs_prune_still_leaves_one_document(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(jobs, "prune_runs", broken)
    result = sandbox.runner.invoke(cli.app, ["runs", "--prune", "30", "--json"])
    assert isinstance(result.exception, RuntimeError)  # a bug still shows its traceback
    assert result.exit_code == 1
    doc = _error_document(result)
    assert "disk on fire" not in doc["error"]  # an exception's text may hold anything


def test_warnings_go_to_stderr_with_json(sandbox: Sandbox) -> None:
    _finished_run(sandbox)
    again = sandbox.run("assign", "vip", EMAILS, "--json")
    assert again.exit_code == 0
    _one_document(again)
    assert "--fresh" in again.stderr and "--fresh" not in again.stdout
