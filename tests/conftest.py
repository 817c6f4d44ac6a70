"""Shared fixtures: an isolated environment, an in-process sandbox the CLI talks to, and a
virtual clock so retries, pacing and polling never sleep for real."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from omneo_status import cli
from omneo_status.sandbox import SandboxConfig, Tenant, create_app, demo_tenant

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="POSIX signals and file modes")


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
    """Time that moves only when someone sleeps: shared by the sandbox and the tool."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


@dataclass
class Sandbox:
    """The tenant the CLI reaches (through ``--sandbox``) in a test."""

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
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    virtual = VirtualClock()
    monkeypatch.setattr(cli, "_sleep", virtual.sleep)
    monkeypatch.setattr(cli, "_clock", virtual.monotonic)
    return virtual


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, clock: VirtualClock) -> Sandbox:
    config = SandboxConfig(clock=clock.monotonic, wall_clock=clock.wall)
    box = Sandbox(tenant=demo_tenant(), config=config, clock=clock)
    monkeypatch.setattr(cli, "_sandbox_transport", box.transport)
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
