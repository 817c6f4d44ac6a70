"""A command's session: the settings, the display, the log, the trace and the clients one
command opens to talk to the API, closed when the command ends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TypeVar

from omneo_status import capabilities
from omneo_status.api.client import OmneoClient, PageStyle, RetryPolicy
from omneo_status.api.governor import RateGovernor
from omneo_status.api.trace import Exchange, TraceWriter
from omneo_status.cli.boundary import Runtime
from omneo_status.cli.console import ConsoleReporter
from omneo_status.cli.flags import Connection, Output
from omneo_status.events import FanoutReporter, Reporter
from omneo_status.logfile import JsonLogReporter
from omneo_status.options import CONCURRENCY
from omneo_status.run.planner import TenantFacts
from omneo_status.settings import resolve_rate_limit_wait

T = TypeVar("T")


class Session:
    """Everything one command opened to talk to the API; closed when the command ends."""

    def __init__(self, rt: Runtime, conn: Connection, out: Output, stack: ExitStack) -> None:
        self.rt = rt
        self.conn = conn
        self.out = out
        self.settings = conn.settings()
        self.retry = RetryPolicy(
            max_retries=conn.max_retries,
            rate_limit_wait=resolve_rate_limit_wait(conn.rate_limit_wait),
        )
        self.shown = ConsoleReporter(
            display=out.display, verbose=out.verbose, quiet=out.quiet, clock=rt.clock
        )
        self.trace = TraceWriter(out.trace) if out.trace is not None else None
        if self.trace is not None:
            stack.callback(self.trace.close)
        self.log = JsonLogReporter(out.log_file) if out.log_file is not None else None
        if self.log is not None:
            stack.callback(self.log.close)
        self.reporter: Reporter = (
            FanoutReporter(self.shown, self.log) if self.log is not None else self.shown
        )
        self.learned = capabilities.recall(self.settings.state_dir, self.settings.base_url)
        """What ``doctor`` found on this tenant lately, if it ran."""

    def facts(self) -> TenantFacts | None:
        """What doctor found on this tenant lately, as facts for the lookup planner (None when
        it did not run); says that the run uses them."""
        if self.learned is None:
            return None
        self.reporter.info(
            f"Using what doctor found on this tenant on {self.learned.checked_at:%Y-%m-%d}"
        )
        return self.learned.facts()

    def client(self, concurrency: int = CONCURRENCY) -> OmneoClient:
        """A client for the settings, on the runtime's clock, reporting retries and requests."""
        rt = self.rt
        client = OmneoClient(
            self.settings.base_url,
            self.settings.token,
            transport=rt.sandbox_transport() if self.conn.sandbox else None,
            transport_mode=self.settings.transport,
            governor=RateGovernor(
                concurrency=concurrency, max_rps=self.conn.max_rps, clock=rt.clock, sleep=rt.sleep
            ),
            retry=self.retry,
            sleep=rt.sleep,
            on_retry=self._on_retry,
            # Building an exchange record (the answer's text, the body's JSON) costs CPU on
            # every request: only when -vv or --trace will read it.
            on_exchange=self._on_exchange
            if self.out.verbose >= 2 or self.trace is not None
            else None,
            page_style=(self.learned and self.learned.page_style) or PageStyle.PAGE_ARRAY,
        )
        if self.trace is not None:
            self.trace.transport(client.transport_in_use.to_json())
        return client

    async def call(self, work: Callable[[OmneoClient], Awaitable[T]]) -> T:
        """``work(client)`` with a fresh client, closed afterwards."""
        async with self.client() as client:
            return await work(client)

    def _on_retry(self, what: str, wait: float) -> None:
        self.shown.retrying(what, wait)
        if self.log is not None:
            self.log.info(f"retrying {what} in {wait:.1f}s")

    def _on_exchange(self, exchange: Exchange) -> None:
        self.shown.exchange(exchange)
        if self.trace is not None:
            self.trace(exchange)


@contextmanager
def open_session(rt: Runtime, conn: Connection, out: Output) -> Iterator[Session]:
    """The command's session, closed (its log and trace too) when the command ends."""
    with ExitStack() as stack:
        yield Session(rt, conn, out, stack)
