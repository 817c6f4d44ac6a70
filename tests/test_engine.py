"""The engine and jobs end to end over the in-process sandbox: one send path (pipelined),
guardrails in dry runs, fatal answers, interruption, the runs list, run-id prefixes, and
verification notes from the status definitions."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from omneo_status import cli
from omneo_status.client import OmneoClient
from omneo_status.errors import Interrupted
from omneo_status.events import Step
from omneo_status.jobs import JobContext, prune_runs, recent_runs, run_job
from omneo_status.models import Action
from omneo_status.options import JobSpec, LookupMode, RunOptions
from omneo_status.sandbox import create_app, generate_tenant
from omneo_status.source import prepared_input

from .conftest import EXAMPLES, Sandbox, report_rows, summary_of, write_csv

EMAILS = str(EXAMPLES / "emails.csv")


class Recorder:
    """A reporter that keeps what it is told (and can act on one event)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.on_advance: Any = None

    def start(self, step: Step, total: int | None = None) -> None:
        self.events.append(("start", step.value))

    def advance(self, step: Step, amount: int = 1) -> None:
        if self.on_advance is not None:
            self.on_advance(step)

    def extend(self, step: Step, amount: int) -> None:
        """Nothing to keep."""

    def finish(self, step: Step) -> None:
        self.events.append(("finish", step.value))

    def info(self, message: str) -> None:
        self.events.append(("info", message))

    def warn(self, message: str) -> None:
        self.events.append(("warn", message))

    def row_failed(self, line: int, email: str, detail: str) -> None:
        self.events.append(("row_failed", f"{line}: {detail}"))


def test_chunks_go_out_while_lookups_go_on(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.tenant = generate_tenant(60, seed=5)
    targets = [p.email for p in sandbox.tenant.profiles.values() if "vip" not in p.statuses][:12]
    csv = write_csv(tmp_path / "in.csv", targets)
    result = sandbox.run(
        "assign",
        "vip",
        str(csv),
        "--lookup",
        "single",
        "--chunk-size",
        "3",
        "--concurrency",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert summary_of(result)["counts"]["assigned"] == 12
    paths = [(r.method, r.path) for r in sandbox.tenant.requests]
    first_post = paths.index(("POST", "/api/v3/profile/status/batch.json"))
    last_lookup = max(i for i, p in enumerate(paths) if p == ("GET", "/api/v3/profiles"))
    assert first_post < last_lookup
    assert sum(1 for p in paths if p[0] == "POST") == 4


def test_max_unmatched_holds_in_a_dry_run_too(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS, "--dry-run", "--max-unmatched", "20")
    assert result.exit_code == 3
    assert "over the limit of 20%" in result.stderr
    assert sandbox.writes() == []


def test_an_answer_that_is_not_json_stops_the_run(
    sandbox: Sandbox, runtime: cli.Runtime, tmp_path: Path
) -> None:
    inner = create_app(sandbox.tenant, sandbox.config)

    async def proxy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/v3/profiles":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"<html>Sign in</html>"})
            return
        await inner(scope, receive, send)

    runtime.sandbox_transport = lambda: httpx.ASGITransport(app=proxy)
    csv = write_csv(tmp_path / "in.csv", [f"user{i}@example.com" for i in range(60)])
    result = sandbox.run("assign", "vip", str(csv), "--lookup", "single", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert "not JSON" in doc["error"] and doc["run_id"]
    lookups = [r for r in sandbox.tenant.requests if r.path == "/api/v3/profiles"]
    assert lookups == []  # the proxy answered them all; none reached the tenant
    failed = [r for r in report_rows(Path(doc["report"])) if r["outcome"] == "failed"]
    assert all("not processed" in r["detail"] for r in failed)  # no row blamed one by one


def test_a_run_id_prefix_of_several_runs_lists_them(sandbox: Sandbox) -> None:
    first = summary_of(sandbox.run("assign", "vip", EMAILS, "--json"))["run_id"]
    second = summary_of(sandbox.run("remove", "vip", EMAILS, "--json"))["run_id"]
    prefix = next(first[:n] for n in range(len(first), 0, -1) if second.startswith(first[:n]))
    result = sandbox.invoke("resume", prefix, "--sandbox")
    assert result.exit_code == 2
    assert "ambiguous" in result.stderr
    assert first in result.stderr and second in result.stderr


def test_pruning_with_a_huge_number_of_days_forgets_nothing(sandbox: Sandbox) -> None:
    sandbox.run("assign", "vip", EMAILS)
    state = Path(os.environ["OMNEO_STATE_DIR"])
    assert prune_runs(state, 10**12) == 0
    assert len(recent_runs(state, 10)) == 1


def test_a_status_replaced_in_its_group_is_a_note_not_a_problem(sandbox: Sandbox) -> None:
    sandbox.config.group_rule = True
    ava = sandbox.tenant.by_email("ava.nguyen@example.com")[0]
    ava.statuses[:] = ["tier-silver", "welcome"]
    csv = write_csv(Path(os.environ["OMNEO_STATE_DIR"]).parent / "a.csv", [ava.email or ""])
    result = sandbox.run("assign", "tier-platinum", str(csv), "--json")
    assert result.exit_code == 0, result.stderr
    verified = summary_of(result)["verified"]
    assert verified["problems"] == []
    assert any("tier-silver is gone" in note and "Tier" in note for note in verified["notes"])


@pytest.mark.anyio
async def test_an_interrupted_run_says_so_in_its_report_and_in_runs(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(40, seed=9)
    csv = write_csv(tmp_path / "in.csv", [p.email or "" for p in sandbox.tenant.profiles.values()])
    state = tmp_path / "state"
    recorder = Recorder()
    resolved: list[Step] = []
    main = asyncio.current_task()
    assert main is not None

    def cancel_after_some(step: Step) -> None:
        resolved.append(step)
        if resolved.count(Step.RESOLVE) == 5:
            main.cancel()

    recorder.on_advance = cancel_after_some
    transport = httpx.ASGITransport(app=create_app(sandbox.tenant, sandbox.config))
    async with OmneoClient(
        "http://sandbox.test/api", SecretStr("sandbox-token"), transport=transport
    ) as client:
        ctx = JobContext(client, "http://sandbox.test/api", state, recorder)
        options = RunOptions(lookup=LookupMode.SINGLE, concurrency=2)
        with (
            prepared_input(str(csv), None, state_dir=state) as source,
            pytest.raises(Interrupted) as caught,
        ):
            await run_job(ctx, JobSpec(Action.ASSIGN, ("vip",)), options, source)
    stopped = caught.value
    assert stopped.run_id is not None and stopped.report is not None
    rows = report_rows(stopped.report)
    pending = [r for r in rows if r["outcome"] == "failed"]
    assert pending and all("(interrupted)" in r["detail"] for r in pending)
    [view] = recent_runs(state, 10)
    assert view.state == "interrupted" and view.exit_code == 130
    by_outcome: dict[str, int] = {}
    for r in rows:
        by_outcome[r["outcome"]] = by_outcome.get(r["outcome"], 0) + 1
    assert {k: v for k, v in view.counts.items() if v} == by_outcome
