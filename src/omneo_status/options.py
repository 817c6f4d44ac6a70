"""What a run is asked to do (``JobSpec``) and how (``RunOptions``), with every default in one
place: the CLI's flags, the client's retries and the governor read their defaults from here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from omneo_status.keys import EMAIL, MatchKey
from omneo_status.models import Action

CHUNK_SIZE = 250
"""Profiles per batch request."""
CHUNK_SIZE_MAX = 500
VERIFY = 5
"""Changed profiles re-read at the end of a run."""
POLL_TIMEOUT = 1800.0
"""Seconds to wait for a run's batches."""
STALL_TIMEOUT = 600.0
"""Seconds a batch may stand still before the run gives up waiting on it."""
CONCURRENCY = 8
"""Requests in flight at once."""
CONCURRENCY_MAX = 64
MAX_RETRIES = 5
"""Retries of one failed request."""
MAX_RETRIES_MAX = 20


class LookupMode(StrEnum):
    """How input keys are resolved to profiles."""

    AUTO = "auto"
    SINGLE = "single"
    BULK = "bulk"


@dataclass(frozen=True)
class JobSpec:
    """What a run does: the action, the status handles it applies, and the key its rows are
    matched to profiles by (``--match``)."""

    action: Action
    handles: tuple[str, ...]
    match: MatchKey = EMAIL


@dataclass(frozen=True)
class RunOptions:
    """How a run goes about it (the CLI's run flags)."""

    dry_run: bool = False
    chunk_size: int = CHUNK_SIZE
    verify: int = VERIFY
    poll_timeout: float = POLL_TIMEOUT
    stall_timeout: float = STALL_TIMEOUT
    no_wait: bool = False
    strict: bool = False
    max_unmatched: float | None = None
    lookup: LookupMode = LookupMode.AUTO
    concurrency: int = CONCURRENCY
