"""Two jobs sharing one tenant's rate limit: a 429 that says when to come back is waited out
(for up to ``--rate-limit-wait`` in all), not counted as a failed try; once that time is spent
the run ends with one error whose hint names the other client. On the virtual clock."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from omneo_status import cli
from omneo_status.sandbox import create_app

from .conftest import Sandbox, VirtualClock, summary_of, write_csv

LIMIT = 5
"""Requests per one-second window: the repro's 5 requests/s tenant."""
OTHER = ("client", "other")
"""The query parameter that marks the other client's requests in the sandbox's log."""


class BusyTenant(httpx.AsyncBaseTransport):
    """The sandbox while another client (a long run of another job) takes its whole rate
    limit until ``until`` on the virtual clock: before each of the tool's requests, the other
    client spends what is left of the window."""

    def __init__(self, app: httpx.ASGITransport, clock: VirtualClock, until: float) -> None:
        self.app = app
        self.clock = clock
        self.until = until

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.clock.now < self.until:
            for _ in range(LIMIT):
                other = httpx.Request(
                    "GET",
                    "http://sandbox.invalid/api/v3/statuses",
                    params=dict([OTHER]),
                    headers={"Authorization": "Bearer sandbox-token"},
                )
                await self.app.handle_async_request(other)
        return await self.app.handle_async_request(request)


def busy_for(sandbox: Sandbox, runtime: cli.Runtime, seconds: float) -> None:
    """Make the tool's ``--sandbox`` the busy tenant, another client on it for ``seconds``."""
    sandbox.config.rate_limit = LIMIT
    sandbox.config.rate_window = 1.0
    app = httpx.ASGITransport(app=create_app(sandbox.tenant, sandbox.config))
    until = sandbox.clock.now + seconds
    runtime.sandbox_transport = lambda: BusyTenant(app, sandbox.clock, until)


def ours(sandbox: Sandbox) -> list[int]:
    """The statuses the tenant answered the tool's own requests with, in order."""
    return [r.status for r in sandbox.tenant.requests if OTHER not in r.query]


@pytest.fixture
def emails(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "tonight.csv", ["ben.carter@example.com", "nobody@example.com"])


def test_a_second_job_on_a_busy_rate_limited_tenant_waits_its_turn_and_finishes(
    sandbox: Sandbox, runtime: cli.Runtime, emails: Path
) -> None:
    start = sandbox.clock.now
    busy_for(sandbox, runtime, 90.0)
    result = sandbox.run("assign", "vip", str(emails), "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    counts = summary_of(result)["counts"]
    assert (counts["would_assign"], counts["not_found"]) == (1, 1)
    statuses = ours(sandbox)
    # Far more 429s than five retries' worth, each waited out as the tenant asked.
    assert statuses.count(429) >= 60
    assert statuses[-1] == 200 and set(statuses) == {200, 429}
    assert sandbox.clock.now - start >= 90.0
    assert "still rate limited" not in result.stderr


def test_once_the_rate_limit_wait_is_spent_the_run_ends_in_one_error_naming_another_client(
    sandbox: Sandbox, runtime: cli.Runtime, emails: Path
) -> None:
    busy_for(sandbox, runtime, 3600.0)
    result = sandbox.run("assign", "vip", str(emails), "--dry-run", "--rate-limit-wait", "30")
    assert result.exit_code == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    waited = re.fullmatch(
        r"Error: GET /v3/statuses: still rate limited \(429\) after waiting (\d+) s in all,"
        r" the most --rate-limit-wait allows \(30 s\)",
        error,
    )
    assert waited is not None, error
    assert 25 <= int(waited[1]) <= 30
    assert "Hint: Another client may be using this tenant's rate limit" in result.stderr
    assert "Traceback" not in result.stderr
    assert 29 <= ours(sandbox).count(429) <= 31


def test_omneo_rate_limit_wait_sets_the_budget_when_the_flag_does_not(
    sandbox: Sandbox, runtime: cli.Runtime, emails: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy_for(sandbox, runtime, 3600.0)
    monkeypatch.setenv("OMNEO_RATE_LIMIT_WAIT", "10")
    result = sandbox.run("assign", "vip", str(emails), "--dry-run")
    assert result.exit_code == 1
    assert "the most --rate-limit-wait allows (10 s)" in result.stderr
    flag = sandbox.run("assign", "vip", str(emails), "--dry-run", "--rate-limit-wait", "20")
    assert "the most --rate-limit-wait allows (20 s)" in flag.stderr  # the flag beats it


@pytest.mark.parametrize("value", ["ten", "-5", "inf", "nan"])
def test_an_omneo_rate_limit_wait_that_is_not_seconds_stops_before_any_request(
    sandbox: Sandbox, emails: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OMNEO_RATE_LIMIT_WAIT", value)
    result = sandbox.run("assign", "vip", str(emails), "--dry-run")
    assert result.exit_code == 2
    assert "OMNEO_RATE_LIMIT_WAIT" in result.stderr and "Traceback" not in result.stderr
    assert sandbox.tenant.requests == []
