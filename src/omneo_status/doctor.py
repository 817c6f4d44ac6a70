"""TEMPORARY STUB (the tenant helper replaces it): a read-only probe of what a tenant does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from omneo_status.client import OmneoClient
from omneo_status.errors import ExitCode

CheckResult = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One thing doctor looked at."""

    name: str
    result: CheckResult
    detail: str


@dataclass
class DoctorReport:
    """What doctor found: the checks, and the capabilities a run can rely on."""

    base_url: str
    checks: list[Check] = field(default_factory=list)
    capabilities: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether a run can work on this tenant."""
        return not any(check.result == "fail" for check in self.checks)

    @property
    def exit_code(self) -> ExitCode:
        """0 when a run can work here, 1 when it cannot."""
        return ExitCode.OK if self.ok else ExitCode.FATAL

    def to_json(self) -> dict[str, Any]:
        """The ``doctor --json`` document."""
        return {
            "base_url": self.base_url,
            "ok": self.ok,
            "checks": [
                {"name": c.name, "result": c.result, "detail": c.detail} for c in self.checks
            ],
            "capabilities": self.capabilities,
            "exit_code": int(self.exit_code),
        }


async def run_doctor(client: OmneoClient, base_url: str) -> DoctorReport:
    """Probe the tenant without writing anything."""
    report = DoctorReport(base_url)
    statuses = await client.list_statuses()
    report.checks.append(Check("token", "ok", f"{len(statuses)} status definition(s)"))
    return report
