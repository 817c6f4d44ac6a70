"""Shared fixtures: an isolated environment, an in-process sandbox the CLI talks to, and a
virtual clock so retries, pacing and polling never sleep for real."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import os
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import settings
from typer.testing import CliRunner, Result

from omneo_status import cli
from omneo_status.cli import boundary
from omneo_status.sandbox import SandboxConfig, Tenant, create_app, demo_tenant

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
T = TypeVar("T")
POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="POSIX signals and file modes")

# CI explores the same examples every time (.ci/run sets HYPOTHESIS_PROFILE=ci), so a landing is
# never decided by chance; a developer's runs explore new ones (and keep what they find).
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("OMNEO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OMNEO_STATE_DIR", str(tmp_path / "state"))
    # A developer's own config file must never leak into a test.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config-home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")


class VirtualClock:
    """Time that moves only when every task waits: THE clock of the suite, shared by the
    sandbox and the tool.

    Inside ``run`` (the tool's event loop in CLI tests) a ``sleep`` waits until virtual time
    reaches its end, and time jumps to the earliest sleeper once nothing else can run, so that
    concurrent sleepers (a poll wait and the progress ticker) overlap as they would for real.
    Outside ``run`` a ``sleep`` simply moves time on.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._driving = False
        self._main: asyncio.Task[Any] | None = None

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if not self._driving:
            self.now += max(0.0, seconds)
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    def run(self, main: Coroutine[Any, Any, T], /) -> T:
        """``asyncio.run`` on virtual time (what the tool's ``Runtime.run`` is in tests)."""
        self._driving = True
        try:
            return asyncio.run(self._drive(main))
        finally:
            self._driving = False
            self._main = None
            self._sleepers.clear()

    def interrupt(self) -> None:
        """Cancel the running command as its SIGTERM handler does (inside ``run`` only)."""
        assert self._main is not None, "interrupt() needs a command running on this clock"
        self._main.cancel()

    async def _drive(self, main: Coroutine[Any, Any, T]) -> T:
        task = asyncio.ensure_future(main)
        self._main = task
        loop = asyncio.get_running_loop()
        while not task.done():
            await self._settle(loop)
            if task.done():
                break
            while self._sleepers and self._sleepers[0][2].cancelled():
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                await asyncio.sleep(0)
                continue
            wake, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            future.set_result(None)
        return task.result()

    @staticmethod
    async def _settle(loop: asyncio.AbstractEventLoop) -> None:
        """Run until every task waits (the loop's ready queue stays empty)."""
        for _ in range(10_000):
            await asyncio.sleep(0)
            if not getattr(loop, "_ready", ()):
                await asyncio.sleep(0)
                if not getattr(loop, "_ready", ()):
                    return


@dataclass
class Sandbox:
    """The tenant the CLI reaches (through ``--sandbox``) in a test.

    ``config`` may be replaced (``sandbox.config = SandboxConfig(...)``): every command builds
    the sandbox app from the current tenant and config.
    """

    tenant: Tenant
    config: SandboxConfig
    clock: VirtualClock
    runner: CliRunner = field(default_factory=CliRunner)

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=create_app(self.tenant, self.config))

    def invoke(self, *args: str, input: str | bytes | None = None) -> Result:
        return self.runner.invoke(cli.app, [*args], input=input, catch_exceptions=False)

    def run(self, *args: str, input: str | bytes | None = None) -> Result:
        """``invoke`` with ``--sandbox --yes`` added."""
        return self.invoke(*args, "--sandbox", "--yes", input=input)

    def writes(self) -> list[Any]:
        return [r for r in self.tenant.requests if r.method != "GET"]

    def statuses(self, email: str) -> list[str]:
        profiles = self.tenant.by_email(email)
        assert len(profiles) == 1, email
        return list(profiles[0].statuses)


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> cli.Runtime:
    """The tool's runtime for this test (``boundary.runtime()`` returns it): change its fields to
    move the tool onto virtual time, another sandbox app, or a terminal
    (``runtime.interactive = lambda: True``)."""
    shared = cli.Runtime()
    monkeypatch.setattr(boundary, "runtime", lambda: shared)
    return shared


@pytest.fixture
def clock(runtime: cli.Runtime) -> VirtualClock:
    """The tool's retries, pacing, polling and progress lines on virtual time."""
    virtual = VirtualClock()
    runtime.sleep = virtual.sleep
    runtime.clock = virtual.monotonic
    runtime.run = virtual.run
    return virtual


@pytest.fixture
def sandbox(runtime: cli.Runtime, clock: VirtualClock) -> Sandbox:
    """``--sandbox`` reaches this in-process tenant, on the same virtual clock as the tool."""
    config = SandboxConfig(clock=clock.monotonic, wall_clock=clock.wall)
    box = Sandbox(tenant=demo_tenant(), config=config, clock=clock)
    runtime.sandbox_transport = box.transport
    return box


def write_csv(path: Path, emails: Sequence[str], header: str | None = "email") -> Path:
    lines = ([header] if header is not None else []) + list(emails)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def report_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def summary_of(result: Result) -> dict[str, Any]:
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document
