"""``--trace FILE`` (issue 11 section 3): one JSON line per HTTP exchange, in a private file,
with what a bug report needs (method, path and query, status, time, bodies, the headers that
explain the tool's decisions) and never the token or the Authorization header."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from omneo_status import cli
from omneo_status.settings import SANDBOX_TOKEN

from .conftest import EXAMPLES, POSIX_ONLY, Sandbox

EMAILS = str(EXAMPLES / "emails.csv")
SECRET = "tr4ce-s3cret-t0ken-0123456789"


def records(path: Path) -> list[dict[str, Any]]:
    """The exchanges of a trace, after the record that starts it naming the transport."""
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert set(lines[0]) == {"ts", "transport"}
    assert set(lines[0]["transport"]) == {"name", "proxy"}
    return lines[1:]


def assert_no_secret(path: Path, secret: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert secret not in text
    assert "authorization" not in text.lower()
    assert "bearer" not in text.lower()


def test_a_run_traces_every_exchange(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.config.rate_limit = 1000
    trace = tmp_path / "trace.jsonl"
    result = sandbox.run(
        "assign", "vip", EMAILS, "--lookup", "bulk", "--json", "--trace", str(trace)
    )
    assert result.exit_code == 0, result.stderr
    found = records(trace)
    assert len(found) == len(sandbox.tenant.requests)
    for record in found:
        assert set(record) >= {"ts", "method", "path", "status", "elapsed_ms", "headers"}
        assert record["path"].startswith("/v3/")
        assert isinstance(record["elapsed_ms"], float | int)
    lookups = [r for r in found if r["path"].startswith("/v3/profiles?")]
    assert lookups and all("filter" in r["path"] for r in lookups)
    [post] = [r for r in found if r["method"] == "POST"]
    assert post["path"] == "/v3/profile/status/batch.json" and post["status"] in (200, 201, 202)
    assert json.loads(post["request_body"])["profiles"][0]["statuses"] == ["vip"]
    assert "batch_id" in post["response_body"]
    assert post["headers"]["content-type"].startswith("application/json")
    assert post["headers"]["x-ratelimit-limit"] == "1000"
    assert "x-ratelimit-remaining" in post["headers"]
    assert_no_secret(trace, SANDBOX_TOKEN)


@POSIX_ONLY
def test_the_trace_file_is_private(sandbox: Sandbox, tmp_path: Path) -> None:
    trace = tmp_path / "deeper" / "trace.jsonl"
    result = sandbox.invoke("statuses", "--sandbox", "--trace", str(trace))
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(trace.stat().st_mode) == 0o600
    [listing] = records(trace)
    assert listing["method"] == "GET" and listing["status"] == 200
    assert "page" in listing["path"] and '"vip"' in listing["response_body"]


def test_a_refused_request_is_traced_without_the_token(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.config.token = "another-token"
    trace = tmp_path / "trace.jsonl"
    result = sandbox.run("assign", "vip", EMAILS, "--trace", str(trace))
    assert result.exit_code == 1
    [refused] = records(trace)
    assert refused["status"] == 401 and refused["response_body"]
    assert_no_secret(trace, SANDBOX_TOKEN)


@pytest.mark.parametrize(
    "command",
    [
        ["statuses"],
        ["doctor"],
        ["batch", "some-batch"],
        ["assign", "vip", EMAILS, "--yes"],
        ["resume", "20261128T181500-3fa9c2-0b1e"],
    ],
    ids=lambda c: c[0],
)
def test_an_unreachable_api_is_traced_without_the_token(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNEO_BASE_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("OMNEO_TOKEN", SECRET)
    trace = tmp_path / "trace.jsonl"
    result = CliRunner().invoke(
        cli.app, [*command, "--max-retries", "0", "--trace", str(trace), "--json"]
    )
    if command[0] == "resume":
        # No such run: nothing was asked of the API, and the trace stays empty.
        assert result.exit_code == 2 and trace.read_text() == ""
        return
    assert result.exit_code == 1, result.stderr
    [failed] = records(trace)
    assert json.loads(trace.read_text().splitlines()[0])["transport"] == {
        "name": "builtin",
        "proxy": None,
    }
    assert failed["status"] == 0 and failed["error"]
    assert failed["response_body"] is None
    assert_no_secret(trace, SECRET)
    assert SECRET not in result.stdout + result.stderr


def test_an_unwritable_trace_is_refused_before_any_request(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = sandbox.run("assign", "vip", EMAILS, "--trace", str(blocker / "trace.jsonl"))
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: Cannot open the trace file")
    assert sandbox.tenant.requests == []
