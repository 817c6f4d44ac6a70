"""One rate governor for every request a run makes: lookups, batch writes and polls.

Omneo is a Laravel application, whose throttle counts hits in a fixed window that opens with
the first hit after the previous one expired, and reports ``X-RateLimit-Limit`` and
``X-RateLimit-Remaining`` on every answer (``Retry-After`` and ``X-RateLimit-Reset`` on a 429).

The governor follows the server's windows rather than probing for the limit with 429s:

- Every request gets a sequence number and its start time. An answer whose
  ``X-RateLimit-Remaining`` says it was the first hit of a window marks its request as that
  window's opener: the window opened when that request was sent (the latency to the server is
  the same for the requests that follow, so it cancels out). The hits of the current window
  are then the opener's count plus every request started since.
- Once the limit is used up, requests wait for the window to end. Its length is learned from
  the first 429 (``Retry-After`` is whole seconds, so with the opener's time it pins down an
  integer window) and, failing that, bounded by the time between openers. The first request of
  a new window goes alone, after a small margin, and the rest follow once its answer shows the
  window really opened, so a clock that disagrees costs one 429, not a burst of them.
- A 429 is still honoured as told (the window may be shared with other clients of the token),
  and halves the concurrency once per burst; it grows back by one for every run of successes
  as long as the concurrency.
- ``max_rps`` spaces the starts evenly. Requests wait in line: the first to ask is the first
  to go, so a batch write is not starved by lookups that keep the slots busy.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

Sleep = Callable[[float], Awaitable[None]]

_MARGIN = 0.02
"""Seconds waited past an estimated window end at first, for clocks that disagree a little."""
_MIN_MARGIN = 0.01
_MAX_MARGIN = 0.25
_TOLERANCE = 0.05
"""How far a 429's ``Retry-After`` may disagree with the learned window and still confirm it."""


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
    seq: int
    """The request's place among every request this governor started (1-based)."""


def parse_retry_after(value: str | None, *, now_epoch: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_epoch)


class _Turn:
    """One request waiting in line."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = asyncio.Event()


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
        if max_rps is not None and max_rps <= 0:
            raise ValueError("max_rps must be positive")
        self.max_concurrency = concurrency
        self.concurrency = concurrency
        self.max_rps = max_rps
        self.stats = GovernorStats()
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._line: deque[_Turn] = deque()
        self._active = 0
        self._answered = False
        self._next_start = 0.0
        self._blocked_until = 0.0
        self._successes = 0
        self._cut_after = 0
        self._seq = 0
        # The server's current window, as far as the answers tell.
        self._limit: int | None = None
        self._window: float | None = None
        self._window_from_429 = False
        self._margin = _MARGIN
        self._anchor: float | None = None
        self._anchor_seq = 0
        self._confirmed_seq = 0
        self._used = 0
        self._end: float | None = None

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
        self._answered = True
        limit = _int_header(headers, "x-ratelimit-limit")
        if limit is not None and limit > 0:
            self._limit = limit
        wait: float | None = None
        if status == 429:
            wait = self._on_throttled(ticket, now, headers)
        elif 0 < status < 500:
            self._on_answer(ticket, _int_header(headers, "x-ratelimit-remaining"))
            self._grow()
        self._notify()
        return wait

    # -- waiting in line -------------------------------------------------------------------

    async def _acquire(self) -> Ticket:
        if self._line or self._delay(self._clock()) is not None:
            turn = _Turn()
            self._line.append(turn)
            try:
                await self._wait_turn(turn)
            finally:
                self._line.remove(turn)
                self._notify()
        return self._start(self._clock())

    async def _wait_turn(self, turn: _Turn) -> None:
        while True:
            if self._line[0] is turn:
                delay = self._delay(self._clock())
                if delay is None:
                    return
                if delay > 0:
                    await self._sleep(delay)
                    continue
            await turn.event.wait()
            turn.event.clear()

    def _notify(self) -> None:
        if self._line:
            self._line[0].event.set()

    def _delay(self, now: float) -> float | None:
        """None when a request may start now; else seconds to sleep (0: wait for an answer)."""
        if self._end is not None and now >= self._end:
            self._new_window()
        if now < self._blocked_until:
            return self._blocked_until - now
        if self._active >= self.concurrency:
            return 0.0
        if not self._answered and self._active > 0:
            return 0.0  # the first answer tells whether there is a limit, and how big
        if self.max_rps and now < self._next_start:
            return self._next_start - now
        if self._limit is None:
            return None
        if self._anchor is not None and self._confirmed_seq < self._anchor_seq:
            return 0.0  # the window's first request goes alone until it shows the window opened
        if self._used < self._limit:
            return None
        if self._end is not None:
            return max(self._end - now, 1e-3)
        if self._active > 0:
            return 0.0
        return None  # the window's end is unknown: one request finds out (a 429 tells when)

    def _start(self, now: float) -> Ticket:
        self._seq += 1
        self._active += 1
        if self._limit is not None:
            if self._anchor is None and self._window is not None:
                self._anchor, self._anchor_seq = now, self._seq
                self._end = now + self._window + self._margin
            self._used += 1
        if self.max_rps:
            self._next_start = max(now, self._next_start) + 1.0 / self.max_rps
        stats = self.stats
        stats.requests += 1
        if stats.started_at is None:
            stats.started_at = now
        stats.last_at = now
        return Ticket(sent_at=now, seq=self._seq)

    # -- learning from answers -------------------------------------------------------------

    def _new_window(self) -> None:
        """The estimated end of the window has passed: the next request opens a new one."""
        self._anchor = None
        self._end = None
        self._used = 0

    def _on_answer(self, ticket: Ticket, remaining: int | None) -> None:
        if remaining is None or self._limit is None:
            return
        hits = self._limit - remaining
        started_since = self._seq - ticket.seq
        if hits == 1 and ticket.seq > self._confirmed_seq:
            self._on_opener(ticket, started_since)
        elif ticket.seq == self._anchor_seq and ticket.seq > self._confirmed_seq:
            # The request meant to open a window was counted in the old one, which has not
            # ended yet: our clock runs ahead of the server's. Wait a little longer next time.
            self._margin = min(self._margin * 2, self._max_margin())
            self._anchor_seq = self._confirmed_seq
            self._used = max(self._used, hits + started_since)
            self._end = self._clock() + self._margin
        elif ticket.seq >= self._anchor_seq:
            self._used = max(self._used, hits + started_since)

    def _on_opener(self, ticket: Ticket, started_since: int) -> None:
        """``ticket`` was the first hit of a server window: re-anchor the window on it."""
        previous = self._anchor if self._confirmed_seq == self._anchor_seq else None
        if previous is not None and ticket.sent_at > previous and not self._window_from_429:
            # Windows open at least one window apart: an upper bound until a 429 says more.
            gap = ticket.sent_at - previous
            self._window = gap if self._window is None else min(self._window, gap)
        if ticket.seq == self._anchor_seq:
            self._margin = max(_MIN_MARGIN, self._margin * 0.9)
        self._anchor, self._anchor_seq = ticket.sent_at, ticket.seq
        self._confirmed_seq = ticket.seq
        self._used = 1 + started_since
        self._end = None if self._window is None else ticket.sent_at + self._window + self._margin

    def _on_throttled(self, ticket: Ticket, now: float, headers: Mapping[str, str]) -> float:
        self.stats.throttled += 1
        self._successes = 0
        if ticket.seq > self._cut_after:  # one cut per burst, not one per 429 of it
            self.concurrency = max(1, self.concurrency // 2)
            self.stats.concurrency_history.append(self.concurrency)
            self._cut_after = self._seq
        wait = self._retry_after(headers)
        if wait is None:
            until = now + (self._window if self._window is not None else 1.0)
        elif self._opened_early(ticket, wait):
            # The request meant to open a window reached the server just before its window
            # ended: our clock runs ahead of the server's. Try again a little later.
            self._margin = min(self._margin * 2, self._max_margin())
            self._anchor_seq = self._confirmed_seq
            until = now + self._margin
        else:
            until = self._window_end(ticket, wait)
        if self._limit is not None:
            self._used = max(self._used, self._limit)
        self._blocked_until = max(self._blocked_until, until)
        self._end = self._blocked_until
        return max(0.0, self._blocked_until - now)

    def _opened_early(self, ticket: Ticket, wait: float) -> bool:
        return (
            ticket.seq == self._anchor_seq
            and ticket.seq > self._confirmed_seq
            and wait <= 1.0
            and self._margin < self._max_margin()
        )

    def _window_end(self, ticket: Ticket, wait: float) -> float:
        """When the window that refused ``ticket`` ends, as a time to start again."""
        sent = ticket.sent_at
        anchor = self._anchor
        if (
            anchor is None
            or self._confirmed_seq != self._anchor_seq
            or ticket.seq < self._anchor_seq
        ):
            return sent + wait + self._margin  # the server's word, from when it was asked
        elapsed = sent - anchor
        if not self._window_from_429 and wait >= 1:
            # Retry-After is whole seconds: with an integer window W opened at the anchor,
            # W lies in (elapsed + wait - 1, elapsed + wait], which holds one integer.
            self._window = float(max(1, math.ceil(elapsed + wait - 1 + 1e-6)))
            self._window_from_429 = True
        window = self._window
        if window is None or not (
            elapsed + wait - 1 - _TOLERANCE < window <= elapsed + wait + _TOLERANCE
        ):
            return sent + wait + self._margin  # another client shares the window, or it moved
        return anchor + window + self._margin

    def _retry_after(self, headers: Mapping[str, str]) -> float | None:
        wait = parse_retry_after(headers.get("retry-after"), now_epoch=self._wall_clock())
        reset = _int_header(headers, "x-ratelimit-reset")
        if wait is None and reset is not None:
            wait = max(0.0, reset - self._wall_clock())
        return wait

    def _max_margin(self) -> float:
        return max(_MAX_MARGIN, (self._window or 0.0) / 8)

    def _grow(self) -> None:
        self._successes += 1
        if self._successes >= self.concurrency and self.concurrency < self.max_concurrency:
            self.concurrency += 1
            self._successes = 0
            self.stats.concurrency_history.append(self.concurrency)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return int(number) if math.isfinite(number) else None
