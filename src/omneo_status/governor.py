"""One rate governor for every request a run makes: lookups, batch writes and polls.

Omneo is a Laravel application, whose throttle counts hits in a fixed window that opens with
the first hit after the previous one expired, and reports ``X-RateLimit-Limit`` and
``X-RateLimit-Remaining`` on every answer (``Retry-After`` and ``X-RateLimit-Reset`` on a 429).
The governor keeps its own count of the hits it started in the current window, corrects it
from those headers, and learns the window's length (from a 429's ``Retry-After``, then from the
time between windows), so that it can hold requests back until the next window opens instead
of learning the limit from 429s. A 429 still comes now and then (the window is shared with other
clients of the token); then the governor waits as told and halves its concurrency, which grows
back by one for every run of successes as long as the concurrency.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

Sleep = Callable[[float], Awaitable[None]]

_MARGIN = 0.01
"""Seconds added past an estimated window boundary, for clocks that disagree a little."""


@dataclass
class GovernorStats:
    """What the governor saw, for the summary and the benchmark."""

    requests: int = 0
    throttled: int = 0
    started_at: float | None = None
    last_at: float | None = None
    concurrency_history: list[int] = field(default_factory=list)

    def rate(self) -> float:
        """Requests per second since the first request."""
        if self.started_at is None or self.last_at is None or self.last_at <= self.started_at:
            return 0.0
        return self.requests / (self.last_at - self.started_at)


@dataclass(frozen=True)
class Ticket:
    """Handed to a request when it may start; given back with its answer."""

    sent_at: float
    window_epoch: int


def parse_retry_after(value: str | None, *, now_epoch: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_epoch)


class RateGovernor:
    """Paces and bounds concurrent requests so the tenant's rate limit is met, not exceeded.

    Use ``async with governor.slot() as ticket:`` around one request, then
    ``governor.observe(ticket, status, headers)`` with its answer.
    """

    def __init__(
        self,
        *,
        concurrency: int = 8,
        max_rps: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.max_concurrency = concurrency
        self.concurrency = concurrency
        self.max_rps = max_rps
        self.stats = GovernorStats()
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._active = 0
        self._changed: asyncio.Event | None = None
        self._limit: int | None = None
        self._used = 0
        self._epoch = 0
        self._window_start: float | None = None
        self._window: float | None = None
        self._blocked_until = 0.0
        self._next_start = 0.0
        self._successes = 0

    @property
    def window(self) -> float | None:
        """The learned length of the tenant's rate window in seconds, once known."""
        return self._window

    @property
    def limit(self) -> int | None:
        """The tenant's ``X-RateLimit-Limit``, once seen."""
        return self._limit

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Ticket]:
        """Wait until a request may start, and hold a place for it while it runs."""
        ticket = await self._acquire()
        try:
            yield ticket
        finally:
            self._active -= 1
            self._notify()

    def observe(self, ticket: Ticket, status: int, headers: Mapping[str, str]) -> float | None:
        """Learn from one answer; returns the seconds a 429 asked to wait, if any."""
        now = self._clock()
        limit = _int_header(headers, "x-ratelimit-limit")
        remaining = _int_header(headers, "x-ratelimit-remaining")
        if limit is not None and limit > 0:
            self._limit = limit
        wait: float | None = None
        if status == 429:
            wait = self._on_throttled(ticket, now, headers)
        else:
            self._on_success(ticket, remaining)
        self._notify()
        return wait

    # -- internals -------------------------------------------------------------------------

    async def _acquire(self) -> Ticket:
        while True:
            now = self._clock()
            self._roll_window(now)
            delay = self._delay(now)
            if delay is None:
                break
            if delay > 0:
                await self._sleep(delay)
            else:
                await self._wait_for_change()
        now = self._clock()
        self._active += 1
        self._used += 1
        if self._window_start is None:
            self._window_start = now
        if self.max_rps:
            self._next_start = max(now, self._next_start) + 1.0 / self.max_rps
        self.stats.requests += 1
        self.stats.started_at = now if self.stats.started_at is None else self.stats.started_at
        self.stats.last_at = now
        return Ticket(sent_at=now, window_epoch=self._epoch)

    def _delay(self, now: float) -> float | None:
        """None when a request may start now; else seconds to sleep (0: wait for an answer)."""
        if now < self._blocked_until:
            return self._blocked_until - now
        if self._active >= self.concurrency:
            return 0.0
        if self.max_rps and now < self._next_start:
            return self._next_start - now
        if self._limit is None or self._used < self._limit:
            return None
        if self._window is not None and self._window_start is not None:
            return max(self._window_start + self._window + _MARGIN - now, 0.001)
        if self._active > 0:
            return 0.0
        return None  # nothing in flight and nothing known: one probe teaches the window

    def _roll_window(self, now: float) -> None:
        if (
            self._window is not None
            and self._window_start is not None
            and now >= self._window_start + self._window + _MARGIN
        ):
            self._new_window(None, used=0)

    def _new_window(self, start: float | None, *, used: int) -> None:
        self._epoch += 1
        self._window_start = start
        self._used = used

    def _on_success(self, ticket: Ticket, remaining: int | None) -> None:
        self._successes += 1
        if self._successes >= self.concurrency and self.concurrency < self.max_concurrency:
            self.concurrency += 1
            self._successes = 0
            self.stats.concurrency_history.append(self.concurrency)
        if remaining is None or self._limit is None:
            return
        server_used = self._limit - remaining
        if ticket.window_epoch != self._epoch:
            return  # an answer from a window already closed
        if server_used + 1 < self._used - self._active - 1 and server_used <= 1:
            # The server opened a new window we did not foresee: it began with this request.
            self._learn_window(ticket.sent_at)
            self._new_window(ticket.sent_at, used=server_used + self._active)
        else:
            self._used = max(self._used, server_used)

    def _on_throttled(self, ticket: Ticket, now: float, headers: Mapping[str, str]) -> float:
        self.stats.throttled += 1
        self._successes = 0
        self.concurrency = max(1, self.concurrency // 2)
        self.stats.concurrency_history.append(self.concurrency)
        wait = parse_retry_after(headers.get("retry-after"), now_epoch=self._wall_clock())
        reset = _int_header(headers, "x-ratelimit-reset")
        if wait is None and reset is not None:
            wait = max(0.0, reset - self._wall_clock())
        if wait is None:
            wait = self._window if self._window is not None else 1.0
        if self._window is None and self._window_start is not None and wait >= 1:
            # Retry-After is whole seconds: with an integer window W opened at window_start,
            # W lies in (elapsed + wait - 1, elapsed + wait], which holds one integer.
            elapsed = now - self._window_start
            self._window = float(max(1, math.ceil(elapsed + wait - 1 + 1e-6)))
        until = now + wait
        if self._window is not None and self._window_start is not None:
            until = min(until, self._window_start + self._window) + _MARGIN
            until = max(until, now + _MARGIN)
        self._blocked_until = max(self._blocked_until, until)
        if self._limit is not None:
            self._used = max(self._used, self._limit)
        if ticket.window_epoch == self._epoch:
            self._window_start = self._window_start if self._window is not None else None
        return max(0.0, self._blocked_until - now)

    def _learn_window(self, opened_at: float) -> None:
        if self._window_start is None:
            return
        gap = opened_at - self._window_start
        if gap > 0 and (self._window is None or gap < self._window):
            self._window = gap

    async def _wait_for_change(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        event = self._changed
        await event.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value.strip()))
    except ValueError:
        return None
