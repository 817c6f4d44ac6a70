"""The middle floor's test kit: a client over the in-process sandbox whose answers a test may
script or rewrite one by one, a run in a journal on disk, and a reporter that keeps what it is
told. The engine, the watcher and the planner are built from these directly, never through the
CLI."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from omneo_status.api.client import OmneoClient
from omneo_status.api.governor import RateGovernor
from omneo_status.events import Step
from omneo_status.keys import EMAIL, MatchKey
from omneo_status.models import Action
from omneo_status.options import JobSpec
from omneo_status.sandbox import SandboxConfig, Tenant, create_app
from omneo_status.store.journal import Journal, RunJournal
from omneo_status.store.records import NewRow, RunState

from .conftest import VirtualClock

BASE = "http://sandbox.test/api"
PROFILES = "/api/v3/profiles"
BATCH_POST = "/api/v3/profile/status/batch.json"

Before = Callable[[httpx.Request], httpx.Response | None]
"""Answers a request instead of the sandbox (None: the sandbox answers it)."""
After = Callable[[httpx.Request, httpx.Response], httpx.Response]
"""Sees (and may replace) the sandbox's answer to a request."""


class Scripted(httpx.AsyncBaseTransport):
    """The sandbox over ``httpx.ASGITransport``, with hooks that answer or rewrite a request."""

    def __init__(self, tenant: Tenant, config: SandboxConfig) -> None:
        self.inner = httpx.ASGITransport(app=create_app(tenant, config))
        self.before: list[Before] = []
        self.after: list[After] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for hook in self.before:
            answer = hook(request)
            if answer is not None:
                return answer
        response = await self.inner.handle_async_request(request)
        await response.aread()
        for after in self.after:
            response = after(request, response)
        return response


def json_answer(status: int, body: Any) -> httpx.Response:
    """An answer as a tenant would give it."""
    return httpx.Response(
        status, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )


def without_total(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    """A profile list that does not say how many profiles the tenant has (``meta.total``)."""
    if request.url.path != PROFILES or response.status_code != 200:
        return response
    body = response.json()
    body["meta"].pop("total", None)
    body["meta"].pop("last_page", None)
    return json_answer(200, body)


def connect(transport: httpx.AsyncBaseTransport, clock: VirtualClock) -> OmneoClient:
    """A client of the sandbox on the virtual clock (retries and pacing never sleep for real)."""
    governor = RateGovernor(clock=clock.monotonic, wall_clock=clock.wall, sleep=clock.sleep)
    return OmneoClient(
        BASE, SecretStr("sandbox-token"), transport=transport, governor=governor, sleep=clock.sleep
    )


def new_run(
    journal: Journal,
    addresses: Sequence[str],
    *,
    action: Action = Action.ASSIGN,
    handles: tuple[str, ...] = ("vip",),
    dry_run: bool = False,
    match: MatchKey = EMAIL,
) -> RunJournal:
    """A running run of ``action`` over one input row per key (line 2 on, as in a CSV with a
    header), each normalised and keyed by the ``match`` key's rule, duplicates settled as the
    jobs settle them."""
    run = journal.create_run(
        "middle-floor",
        JobSpec(action, tuple(handles), match=match),
        base_url=BASE,
        input_name="test",
        dry_run=dry_run,
    )
    rule = match.rule
    run.load(
        NewRow(line, cell, rule.normalize(cell), rule.key(rule.normalize(cell)))
        for line, cell in enumerate(addresses, start=2)
    )
    run.mark_duplicates()
    run.update(RunState.RUNNING)
    return run


def open_journal(tmp_path: Path) -> Journal:
    """A journal of its own for one test."""
    return Journal(tmp_path / "journal.sqlite")


class Recorder:
    """A reporter that keeps what it is told (and can act on one event)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.on_advance: Callable[[Step], None] | None = None

    def start(self, step: Step, total: int | None = None, done: int = 0) -> None:
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

    def said(self, kind: str) -> list[str]:
        """The messages of one kind (``info``, ``warn``, ``row_failed``), in order."""
        return [message for what, message in self.events if what == kind]
