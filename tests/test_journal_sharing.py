"""One journal, several processes: while a long real run goes on over a loopback sandbox,
``runs`` answers at once, another job runs to completion, and the same job exits 4 at once
naming the run and the process that hold it; then the long run finishes cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from omneo_status.sandbox import SandboxConfig, ServerThread, Tenant, create_app, generate_tenant

from .conftest import POSIX_ONLY, write_csv

pytestmark = [pytest.mark.slow, POSIX_ONLY]

WAIT = 60.0
"""The bound on every wait of this test (a hang fails it instead of blocking the suite)."""


def environment(base_url: str, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNEO_")}
    env.update(OMNEO_BASE_URL=base_url, OMNEO_TOKEN="sandbox-token", OMNEO_STATE_DIR=str(state))
    return env


def tool(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omneo_status", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert proc.poll() is None, "the long run ended before the checks could run beside it"
        assert time.monotonic() < deadline, "timed out waiting for the long run"
        time.sleep(0.05)


def lookups(tenant: Tenant) -> int:
    return sum(1 for r in list(tenant.requests) if r.path == "/api/v3/profiles")


def test_runs_another_job_and_the_same_job_beside_a_long_run(tmp_path: Path) -> None:
    tenant = generate_tenant(300, seed=31)
    emails = [p.email or "" for p in tenant.profiles.values()]
    # One request at a time with latency keeps the long run under the rate limit, leaving
    # room for the other job: the point is the shared journal, not a shared rate limit.
    config = SandboxConfig(rate_limit=40, rate_window=1.0, latency_ms=40, batch_delay=3.0)
    long_csv = write_csv(tmp_path / "long.csv", emails[:250])
    other_csv = write_csv(tmp_path / "other.csv", emails[250:255])
    state = tmp_path / "state"
    args = ["assign", "vip", str(long_csv), "--yes", "--json", "--quiet", "--lookup", "single"]
    with ServerThread(create_app(tenant, config)) as server:
        env = environment(server.base_url, state)
        long_run = subprocess.Popen(
            [sys.executable, "-m", "omneo_status", *args, "--concurrency", "1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: lookups(tenant) >= 20, long_run)

            listed = tool(["runs", "--json"], env)
            assert listed.returncode == 0, listed.stderr
            assert "locked" not in listed.stderr
            [running] = json.loads(listed.stdout)
            assert running["state"] == "running"
            run_id = running["run_id"]

            same = tool(args, env)
            assert same.returncode == 4, same.stderr
            assert run_id in same.stderr and f"process {long_run.pid}" in same.stderr
            assert "Traceback" not in same.stderr

            other = tool(["assign", "vip", str(other_csv), "--yes", "--json", "--quiet"], env)
            assert other.returncode == 0, other.stderr
            assert json.loads(other.stdout)["rows"] == 5
            assert long_run.poll() is None, "the long run was not long enough to test beside"

            out, err = long_run.communicate(timeout=WAIT)
        finally:
            if long_run.poll() is None:
                long_run.kill()
                long_run.communicate()
    assert long_run.returncode == 0, err
    doc = json.loads(out)
    assert doc["run_id"] == run_id and doc["rows"] == 250
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == 250
