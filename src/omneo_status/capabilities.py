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

from omneo_status.paging import PageStyle, lenient_int
from omneo_status.planner import TenantFacts

FRESH_FOR = timedelta(days=7)
"""How long a record is trusted: a tenant's configuration rarely changes within a week."""


@dataclass(frozen=True)
class Learned:
    """One tenant's capabilities as ``doctor`` reported them, and when."""

    base_url: str
    checked_at: datetime
    capabilities: dict[str, Any]

    @property
    def page_style(self) -> PageStyle | None:
        """The one pagination style the tenant honours, when doctor found exactly one."""
        value = self.capabilities.get("page_style")
        return PageStyle(value) if value in {s.value for s in PageStyle} else None

    @property
    def email_in_filter(self) -> bool | None:
        """Whether ``filter[email][in]`` is honoured (None: not known)."""
        value = self.capabilities.get("email_in_filter")
        return value if isinstance(value, bool) else None

    @property
    def case_sensitive(self) -> bool | None:
        """Whether ``filter[email]`` compares case-sensitively (None: not known)."""
        return {"case_sensitive": True, "exact": False}.get(
            str(self.capabilities.get("email_filter"))
        )

    @property
    def page_size(self) -> int | None:
        """The page size the tenant gave in its pagination style, when doctor found one."""
        size = lenient_int(self.capabilities.get("page_size"))
        return size if size is not None and size > 0 else None

    def facts(self) -> TenantFacts:
        """The record as facts for the lookup planner's sums."""
        return TenantFacts(
            email_in_filter=self.email_in_filter,
            case_sensitive=self.case_sensitive,
            page_size=self.page_size,
            measured=f"doctor, {self.checked_at:%Y-%m-%d}",
        )


def record_path(state_dir: Path, base_url: str) -> Path:
    """Where the record of one base URL lives."""
    digest = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:16]
    return state_dir / "tenants" / f"{digest}.json"


def remember(
    state_dir: Path, base_url: str, capabilities: dict[str, Any], *, now: datetime | None = None
) -> Path:
    """Keep what doctor found (a private file, replaced atomically); returns its path."""
    path = record_path(state_dir, base_url)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    document = {"base_url": base_url, "checked_at": stamp, "capabilities": capabilities}
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=2)
    os.replace(temp, path)
    return path


def recall(state_dir: Path, base_url: str, *, now: datetime | None = None) -> Learned | None:
    """The tenant's record when one exists and is fresh; None otherwise (never an error: a
    missing, stale or unreadable record only means the run finds things out itself)."""
    path = record_path(state_dir, base_url)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        checked_at = datetime.fromisoformat(document["checked_at"])
        capabilities = document["capabilities"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if document.get("base_url") != base_url or not isinstance(capabilities, dict):
        return None
    if (now or datetime.now(UTC)) - checked_at > FRESH_FOR:
        return None
    return Learned(base_url, checked_at, capabilities)
