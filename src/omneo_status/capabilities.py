"""What ``doctor`` learned about a tenant, kept per base URL in the state directory so that the
runs after it start from what the tenant really does instead of finding it out again.

A run without a fresh record finds the same things out itself (the client switches page style
on a mismatch; the planner probes the ``in`` filter and the page size), so the record only saves
requests and surprises: it gives the lookup planner facts for its sums (``facts``), never a plan.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from omneo_status.api.doctor import Capabilities
from omneo_status.api.paging import PageStyle
from omneo_status.run.planner import TenantFacts

FRESH_FOR = timedelta(days=7)
"""How long a record is trusted: a tenant's configuration rarely changes within a week."""


@dataclass(frozen=True)
class Learned:
    """One tenant's capabilities as ``doctor`` reported them, and when."""

    base_url: str
    checked_at: datetime
    capabilities: Capabilities

    @property
    def page_style(self) -> PageStyle | None:
        """The one pagination style the tenant honours, when doctor found exactly one."""
        style = self.capabilities.page_style
        return style if isinstance(style, PageStyle) else None

    def facts(self) -> TenantFacts:
        """The record as facts for the lookup planner's sums."""
        return TenantFacts(
            email_in_filter=self.capabilities.email_in_filter,
            case_sensitive=self.capabilities.case_sensitive,
            page_size=self.capabilities.page_size,
            measured=f"doctor, {self.checked_at:%Y-%m-%d}",
        )

    def to_json(self) -> dict[str, Any]:
        """The record as the state dir keeps it."""
        return {
            "base_url": self.base_url,
            "checked_at": self.checked_at.isoformat(timespec="seconds"),
            "capabilities": self.capabilities.to_json(),
        }

    @classmethod
    def from_json(cls, document: Any) -> Learned:
        """A kept record (``KeyError``, ``TypeError`` or ``ValueError`` when it is none)."""
        capabilities = document["capabilities"]
        if not isinstance(capabilities, dict):
            raise TypeError(f"capabilities is not an object: {capabilities!r}")
        checked_at = datetime.fromisoformat(document["checked_at"])
        return cls(document["base_url"], checked_at, Capabilities.from_json(capabilities))


def record_path(state_dir: Path, base_url: str) -> Path:
    """Where the record of one base URL lives."""
    digest = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:16]
    return state_dir / "tenants" / f"{digest}.json"


def remember(
    state_dir: Path, base_url: str, capabilities: Capabilities, *, now: datetime | None = None
) -> Path:
    """Keep what doctor found (a private file, replaced atomically); returns its path."""
    path = record_path(state_dir, base_url)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    learned = Learned(base_url, now or datetime.now(UTC), capabilities)
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(learned.to_json(), out, indent=2)
    os.replace(temp, path)
    return path


def recall(state_dir: Path, base_url: str, *, now: datetime | None = None) -> Learned | None:
    """The tenant's record when one exists and is fresh; None otherwise (never an error: a
    missing, stale or unreadable record only means the run finds things out itself)."""
    path = record_path(state_dir, base_url)
    try:
        learned = Learned.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if learned.base_url != base_url or (now or datetime.now(UTC)) - learned.checked_at > FRESH_FOR:
        return None
    return learned
