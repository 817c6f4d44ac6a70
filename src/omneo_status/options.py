"""What a run is asked to do (``JobSpec``) and how (``RunOptions``), with every default in one
place: the CLI's flags, the client's retries, timeouts and page size, and the governor's
concurrency read their defaults from here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from omneo_status.errors import UsageError
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
POLL_FIRST_DELAY = 0.5
"""Seconds before the second look at a batch (or a profile) the API works on in its own time."""
POLL_GROWTH = 1.6
"""How much each wait between looks grows over the one before."""
POLL_MAX_DELAY = 10.0
"""The longest wait between two looks."""
CONCURRENCY = 32
"""The most requests in flight at once: the governor starts lower and finds its own level under
this ceiling (it grows while latency holds, and is cut on 429, 5xx or rising latency)."""
CONCURRENCY_MAX = 64
START_CONCURRENCY = 8
"""Requests in flight at first, when the ceiling is higher: enough for a small tenant, and the
level the tool used before it learned to grow. Also the ceiling of a governor built without
one."""
MAX_RETRIES = 5
"""Retries of one failed request (a 5xx, a timeout, a lost connection; not a 429)."""
MAX_RETRIES_MAX = 20
RETRY_BACKOFF = 0.5
"""Seconds waited before the first retry of a request, doubled after each failure (with
jitter), when the answer does not say how long; also the least a 429 counts for."""
RETRY_BACKOFF_MAX = 30.0
"""The longest of those waits, in seconds."""
RETRY_TOTAL_WAIT = 300.0
"""Seconds one request may wait in all after failures other than 429 before it gives up."""
RATE_LIMIT_WAIT = 600.0
"""Seconds one request may wait out 429s in all: a 429 says when to come back (the limit may
be used by another client of the tenant), so it is waited out, not counted as a retry."""
REQUEST_TIMEOUT = 30.0
"""Seconds a request may wait at any one step (a write, a read, a free connection) before it
counts as timed out, and is retried."""
CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection (never more than the request's own timeout)."""
MAX_PAGE_SIZE = 100
"""The page size the client asks for (Omneo's largest); a tenant may give fewer (it clamps),
which is fine."""
MAX_REMOVE = "10%"
"""What a sync may take the status from: a count, or a share of the current holders."""

# What the network transport reads of one answer before it gives up on it with
# httpx.RemoteProtocolError (docs/network.md): each bounds the memory and CPU a faulty or
# hostile server can cost the run, far above anything the tenant sends.
ANSWER_HEAD_MAX = 64 * 1024
"""Bytes of an answer's status line and headers, any 1xx answers before it included (h11's
limit)."""
ANSWER_HEADER_LINES_MAX = 256
"""Header lines of one answer (Python's ``http.client`` allows 100)."""
ANSWER_BODY_MAX = 64 * 1024 * 1024
"""Bytes of an answer's body, as it comes and once decoded (a page of 100 profiles is well
under 1 MiB)."""
ANSWER_CODINGS_MAX = 5
"""``Content-Encoding`` codings stacked on one body (``gzip, gzip``), as urllib3 allows."""


class TransportMode(StrEnum):
    """Which HTTP transport carries a network run's requests (``OMNEO_TRANSPORT``)."""

    AUTO = "auto"
    """The tool's own (``transport.py``), or httpx's when a proxy applies to the tenant."""
    HTTPX = "httpx"
    """httpx's own transport for every request: the way round a bug in the tool's own."""


TRANSPORT = TransportMode.AUTO
"""The transport mode unless ``OMNEO_TRANSPORT`` or the config file names another."""


class LookupMode(StrEnum):
    """How input keys are resolved to profiles."""

    AUTO = "auto"
    SINGLE = "single"
    BULK = "bulk"
    SCAN = "scan"


@dataclass(frozen=True)
class LookupPlan:
    """How a run looks its emails up, and why: what the plan/preview and the summary show."""

    mode: LookupMode
    requests: int
    """Lookup requests the plan was expected to cost when it was chosen (probes included)."""
    reason: str
    warning: str | None = None
    """What the plan cannot promise on this tenant (said before anything is written)."""

    def to_json(self) -> dict[str, object]:
        """The summary's ``lookup`` object."""
        return {
            "mode": self.mode.value,
            "requests": self.requests,
            "reason": self.reason,
            "warning": self.warning,
        }


@dataclass(frozen=True)
class RemovalLimit:
    """How many holders a sync may take its status from: ``count`` of them, or ``percent``
    of the current holders (exactly one is set)."""

    count: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, text: str) -> RemovalLimit:
        """``50`` (a count) or ``20%`` (a share of the holders); ``UsageError`` otherwise."""
        raw = text.strip()
        try:
            if raw.endswith("%"):
                percent = float(raw[:-1])
                if 0 <= percent <= 100:
                    return cls(percent=percent)
            elif raw.isdigit():
                return cls(count=int(raw))
        except ValueError:
            pass
        raise UsageError(
            f"--max-remove {text!r} is neither a count nor a share",
            hint="Give a count of holders (--max-remove 50) or a share of them (--max-remove 20%).",
        )

    @property
    def everyone(self) -> bool:
        """Whether every holder may lose the status (``100%``): what an empty input needs."""
        return self.percent is not None and self.percent >= 100

    def allows(self, removals: int, holders: int) -> bool:
        """Whether taking the status from ``removals`` of ``holders`` stays within the limit."""
        if self.count is not None:
            return removals <= self.count
        return removals * 100 <= (self.percent or 0) * holders

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent:g}%"


DEFAULT_REMOVAL_LIMIT = RemovalLimit.parse(MAX_REMOVE)


@dataclass(frozen=True)
class JobSpec:
    """What a run does: the action, the status handles it applies, and the key its rows are
    matched to profiles by (``--match``). A ``sync`` assigns the one handle to its input and
    removes it from the holders the input does not list.

    With ``status_column`` each row names its own status in that column of the input, and
    ``handles`` are every status the run may change: those the column names (and, for an
    assign or a sync, their siblings in their groups, which a tier move removes)."""

    action: Action
    handles: tuple[str, ...]
    sync: bool = False
    match: MatchKey = EMAIL
    status_column: str | None = None


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
    max_remove: RemovalLimit = DEFAULT_REMOVAL_LIMIT
