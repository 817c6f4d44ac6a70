"""One HTTP exchange as the tool saw it: what ``-vv`` shows a line of and ``--trace`` records.

The client builds an ``Exchange`` for every attempt it sends and hands it to an observer;
it never carries the Authorization header or the token: it is built from the method, the
path and query, the two bodies and the ``TRACED_HEADERS`` of the answer only, and the client
blanks the token out of every text it keeps (a proxy's error page may echo request headers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omneo_status.logfile import JsonLines

BODY_LIMIT = 4096
"""Characters of a request or response body kept in a trace record."""

TRACED_HEADERS = (
    "content-type",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
)
"""Response headers worth keeping in a trace: the ones that explain the tool's decisions."""


@dataclass(frozen=True)
class Exchange:
    """One request and its answer (``status`` 0 when no answer came)."""

    method: str
    path: str
    """Path and query under the base URL, e.g. ``/v3/profiles?filter[email]=...``."""
    status: int
    elapsed_ms: float
    request_body: str | None = None
    response_body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    """Why no answer came (timeout, connection refused), when ``status`` is 0."""

    def to_json(self) -> dict[str, Any]:
        """The exchange as one ``--trace`` record (without its time stamp)."""
        return {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "request_body": self.request_body,
            "response_body": self.response_body,
            "headers": self.headers,
            "error": self.error,
        }


class TraceWriter:
    """``--trace FILE``: a line naming the transport, then one JSON line per exchange, in a
    private (0600) file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = JsonLines(path, "trace file")
        self._transport: Mapping[str, Any] | None = None
        self._written: Mapping[str, Any] | None = None

    def transport(self, described: Mapping[str, Any]) -> None:
        """Name the transport the next exchanges go through (``{"name", "proxy"}``): written
        before the first of them (a command that sends nothing leaves the file empty), and
        again only if a later client of the same command uses another."""
        self._transport = described

    def __call__(self, exchange: Exchange) -> None:
        """Append one exchange."""
        if self._transport is not None and self._transport != self._written:
            self._written = self._transport
            self._out.write({"transport": dict(self._transport)})
        self._out.write(exchange.to_json())

    def close(self) -> None:
        """Flush and close the file."""
        self._out.close()
