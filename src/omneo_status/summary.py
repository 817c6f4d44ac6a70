"""TEMPORARY SHIM (core helper replaces it): what a finished run shows, and the runs list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omneo_status.job import BatchSummary, RunSummary


@dataclass(frozen=True)
class RunView:
    """One run as ``omneo-status runs`` shows it."""

    run_id: str
    created_at: str
    updated_at: str
    action: str
    handles: tuple[str, ...]
    dry_run: bool
    input_name: str
    base_url: str
    state: str
    """As a person should read it: a dead ``running`` run is ``interrupted``."""
    rows: int
    counts: dict[str, int]
    """Rows per outcome, counted as the report counts them (pending rows included)."""
    report: str | None
    undo_of: str | None

    def to_json(self) -> dict[str, Any]:
        """The run's entry in ``runs --json``."""
        return {
            "run_id": self.run_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "action": self.action,
            "handles": list(self.handles),
            "dry_run": self.dry_run,
            "input": self.input_name,
            "base_url": self.base_url,
            "state": self.state,
            "rows": self.rows,
            "counts": self.counts,
            "report": self.report,
            "undo_of": self.undo_of,
        }


__all__ = ["BatchSummary", "RunSummary", "RunView"]
