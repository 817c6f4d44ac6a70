"""One rate governor for every request a run makes: lookups, batch writes and polls.

Omneo is a Laravel application, whose throttle counts hits in a fixed window that opens with
the first hit after the previous one expired, and reports ``X-RateLimit-Limit`` and
``X-RateLimit-Remaining`` on every answer (``Retry-After`` and ``X-RateLimit-Reset`` on a 429).

The governor follows the server's windows instead of learning the limit from 429s:

- The first request goes alone: its answer tells whether there is a limit, and how big.
- An answer whose ``X-RateLimit-Remaining`` shows it was the first hit of a window dates the
  window's opening (no later than that answer). Every request started since counts in that
  window; an answer showing more hits than that (another client of the token) raises the count.
- When the count reaches the limit, requests wait for the window to end. Its length is learned
  from the first 429: ``Retry-After`` is whole seconds, so, measured from the opening, it pins
  down a whole-second window (all Laravel has); until then the time between two openings bounds
  it. The end is taken a small margin after opening + length: late rather than early, so the
  next request opens a new window instead of meeting a 429.
- A new window's first request goes alone; the rest follow once its answer shows that the
  window opened. If it meets a 429 instead, or is counted in the old window, that window ends
  later than estimated: the margin doubles and the request goes again shortly, so a miss
  costs one 429 rather than a burst of them.
- Any other 429 is honoured as told (the window may be shared with other clients of the
  token).
- ``max_rps`` spaces the starts evenly. Requests wait in line, first come first served, so a
  batch write is not starved by lookups that keep every slot busy.

How many requests may be in flight finds its own level (:class:`ConcurrencyLevel`), whether or
not the tenant names a limit: it starts modest (``START_CONCURRENCY``, or the configured
ceiling if that is lower), grows while the slots are all in use and latency holds, and is cut
by a 429 or a 5xx (halved, once per burst) and by rising latency (by a quarter). With a known
limit the windows pace the requests, so the level rarely matters there.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from omneo_status.options import START_CONCURRENCY

Sleep = Callable[[float], Awaitable[None]]

_MARGIN = 0.02
"""Seconds waited past an estimated window end at first; it shrinks to _MIN_MARGIN while the
estimates hold and doubles (up to _MAX_MARGIN, or an eighth of the window) when one misses."""
_MIN_MARGIN = 0.01
_MAX_MARGIN = 0.25
_TOLERANCE = 0.05
"""How far a 429's ``Retry-After`` may disagree with the learned window and still confirm it."""

_RISE = 1.5
"""A round's median latency above this many times the recent best means the server (or the
path to it) is queueing our requests: more of them in flight would only wait longer."""
_RISE_SLACK = 0.005
"""Seconds of latency that never count as a rise: jitter at near-zero latency is not a queue."""
_BEST_OF = 8
"""The recent best latency is the lowest round median of this many rounds: long enough to
see past jitter, short enough to follow a server whose latency has really changed."""


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

    seq: int
    """The request's place among every request this governor started (1-based)."""
    started_at: float = 0.0
    """When it started, on the governor's clock."""


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


class ConcurrencyLevel:
    """How many requests may be in flight: a level that finds itself between 1 and a ceiling.

    The level moves once per *round*, a run of as many answers as the level: the round's
    median latency against the recent best (the lowest median of the last rounds) says
    whether the server keeps up.

    - Latency rose (above ``_RISE`` times the best): cut by a quarter.
    - Latency held and every slot was in use at some point of the round: grow, by half the
      level until the first cut (finding the level fast), by one after it. With every slot
      busy and latency holding, throughput is the level over the latency (Little's law), so
      a step up is a step up in throughput; a level the run does not use is never grown.
    - After a cut by a 429 or a 5xx, the level grows back by one per round as long as latency
      holds, up to where it was before the cut, even while not every slot is in use.
    - A 429 or a 5xx halves it, once per burst: the answers of requests that started before
      the cut do not cut it again.
    """

    def __init__(self, ceiling: int, *, start: int = START_CONCURRENCY) -> None:
        self.ceiling = ceiling
        self.current = min(ceiling, start)
        self.history: list[int] = []
        """Every level taken after the first, in order."""
        self._probing = True
        self._regain = 0
        self._cut_after = 0
        self._latencies: list[float] = []
        self._full = False
        self._best: deque[float] = deque(maxlen=_BEST_OF)

    def filled(self) -> None:
        """Every slot is in use: demand reaches the level, so growing it may pay."""
        self._full = True

    def answered(self, latency: float) -> None:
        """Learn from one answer that was not refused (neither a 429 nor a 5xx)."""
        self._latencies.append(latency)
        if len(self._latencies) >= self.current:
            self._end_round()

    def refused(self, seq: int, last_seq: int) -> None:
        """Request ``seq`` met a 429 or a 5xx; ``last_seq`` is the latest request started."""
        if seq <= self._cut_after:
            return  # one cut per burst, not one per refusal of it
        self._cut_after = last_seq
        self._regain = max(self._regain, self.current)
        self._set(max(1, self.current // 2))

    def _end_round(self) -> None:
        median = statistics.median(self._latencies)
        self._best.append(median)
        best = min(self._best)
        if median > best * _RISE + _RISE_SLACK:
            self._set(max(1, self.current - max(1, self.current // 4)))
        elif self.current < self._regain:
            self._set(self.current + 1, probing=self._probing)
        elif self._full and self.current < self.ceiling:
            step = max(1, self.current // 2) if self._probing else 1
            self._set(min(self.ceiling, self.current + step), probing=self._probing)
        self._latencies = []
        self._full = False

    def _set(self, level: int, *, probing: bool = False) -> None:
        """Take ``level``; anything but a growth ends the fast probing for good."""
        self._probing = probing
        self._latencies = []
        self._full = False
        if level >= self._regain:
            self._regain = 0
        if level != self.current:
            self.current = level
            self.history.append(level)


class _Turn:
    """One request waiting in line."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = asyncio.Event()


class RateGovernor:
    """Paces and bounds concurrent requests so the tenant's rate limit is met, not exceeded.

    Use ``async with governor.slot() as ticket:`` around one request, then
    ``governor.observe(ticket, status, headers)`` with its answer. ``concurrency`` is the
    ceiling: never more requests in flight than that, and fewer while the level is finding
    itself (``self.concurrency``).
    """

    def __init__(
        self,
        *,
        concurrency: int = START_CONCURRENCY,
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
        self.level = ConcurrencyLevel(concurrency)
        self.max_rps = max_rps
        self.stats = GovernorStats(concurrency_history=self.level.history)
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._line: deque[_Turn] = deque()
        self._in_flight: set[int] = set()
        self._answered = False
        self._next_start = 0.0
        self._blocked_until = 0.0
        self._seq = 0
        # What the answers tell about the tenant's limit and its windows.
        self._limit: int | None = None
        self._window: float | None = None
        self._window_from_429 = False
        self._margin = _MARGIN
        self._opener_seq = 0
        """The last request known to have opened a server window."""
        self._opened_at: float | None = None
        """When its answer came: the window opened no later than that."""
        # The current window: which request opens it, when it ends, and how many hits it has.
        self._window_seq = 1
        self._anchor: float | None = None
        self._end: float | None = None
        self._used = 0

    @property
    def window(self) -> float | None:
        """The learned length of the tenant's rate window in seconds, once known."""
        return self._window

    @property
    def concurrency(self) -> int:
        """How many requests may be in flight now (at most ``max_concurrency``)."""
        return self.level.current

    @property
    def limit(self) -> int | None:
        """The tenant's ``X-RateLimit-Limit``, once seen."""
        return self._limit

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Ticket]:
        """Wait until a request may start, and hold a place for it while it runs."""
        ticket = await self.acquire()
        try:
            yield ticket
        finally:
            self.release(ticket)

    async def acquire(self) -> Ticket:
        """Wait until a request may start and hold a place for it: ``slot`` without a context
        manager (whose set-up the client would pay on every request); ``release`` it after."""
        return await self._acquire()

    def release(self, ticket: Ticket) -> None:
        """Give back the place ``acquire`` held."""
        self._in_flight.discard(ticket.seq)
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
            self.level.refused(ticket.seq, self._seq)
            wait = self._on_throttled(ticket, now, headers)
        elif status >= 500:
            self.level.refused(ticket.seq, self._seq)
        elif status > 0:
            self._on_answer(ticket, now, _int_header(headers, "x-ratelimit-remaining"))
            self.level.answered(now - ticket.started_at)
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
        active = len(self._in_flight)
        if active >= self.concurrency:
            return 0.0
        if not self._answered and active > 0:
            return 0.0  # the first answer tells whether there is a limit, and how big
        if self.max_rps and now < self._next_start:
            return self._next_start - now
        if self._limit is None:
            return None
        if self._seq >= self._window_seq > self._opener_seq and self._anchor is not None:
            # The window's first request goes alone until it shows that the window opened;
            # if it came back counted in the old window, wait for that one to end.
            if active > 0:
                return 0.0
            if self._end is not None:
                return max(self._end - now, 1e-3)
        if self._used < self._limit:
            return None
        if self._end is not None:
            return max(self._end - now, 1e-3)
        if active > 0:
            return 0.0
        return None  # the window's end is unknown: one request finds out (a 429 tells when)

    def _start(self, now: float) -> Ticket:
        self._seq += 1
        self._in_flight.add(self._seq)
        if len(self._in_flight) >= self.level.current:
            self.level.filled()
        if self._limit is not None:
            if self._seq == self._window_seq and self._window is not None:
                # Provisional until the answer shows that this request opened the window.
                self._anchor = now
                self._end = now + self._window + self._margin
            self._used += 1
        if self.max_rps:
            self._next_start = max(now, self._next_start) + 1.0 / self.max_rps
        stats = self.stats
        stats.requests += 1
        if stats.started_at is None:
            stats.started_at = now
        stats.last_at = now
        return Ticket(seq=self._seq, started_at=now)

    # -- learning from answers -------------------------------------------------------------

    def _new_window(self) -> None:
        """The estimated end of the window has passed: the next request opens a new one."""
        self._window_seq = self._seq + 1
        self._anchor = None
        self._end = None
        self._used = 0

    def _on_answer(self, ticket: Ticket, now: float, remaining: int | None) -> None:
        if remaining is None or self._limit is None:
            return
        hits = self._limit - remaining
        if hits == 1 and ticket.seq > self._opener_seq:
            self._on_opener(ticket, now)
        elif ticket.seq >= max(self._window_seq, self._opener_seq):
            if ticket.seq == self._window_seq > self._opener_seq and self._anchor is not None:
                # The request meant to open a window was counted in the old one, which has
                # not ended yet: our clock runs ahead of the server's.
                self._margin = min(self._margin * 2, self._max_margin())
                self._end = now + self._margin
            self._used = max(self._used, hits)  # more than ours: others share the window

    def _on_opener(self, ticket: Ticket, now: float) -> None:
        """``ticket`` was the first hit of a server window, which opened before ``now``."""
        if self._opened_at is not None and not self._window_from_429:
            # Windows open at least one window apart: an upper bound until a 429 says more.
            gap = now - self._opened_at
            self._window = gap if self._window is None else min(self._window, gap)
        if ticket.seq == self._window_seq:
            self._margin = max(_MIN_MARGIN, self._margin * 0.9)
        if ticket.seq < self._window_seq or self._anchor is None:
            # A window we did not see coming (a straggler opened it, or its length is not
            # known yet): count every request that may have landed in it.
            older = sum(1 for seq in self._in_flight if seq < ticket.seq)
            self._used = 1 + (self._seq - ticket.seq) + older
            self._window_seq = ticket.seq
        self._opener_seq = ticket.seq
        self._opened_at = self._anchor = now
        self._end = None if self._window is None else now + self._window + self._margin

    def _on_throttled(self, ticket: Ticket, now: float, headers: Mapping[str, str]) -> float:
        self.stats.throttled += 1
        wait = self._retry_after(headers)
        if wait is None:
            until = now + (self._window if self._window is not None else 1.0)
        elif self._opened_early(ticket, wait):
            # The request meant to open a new window reached the server before the old one
            # ended: our estimate runs ahead of the server's clock. Wait a little longer.
            self._margin = min(self._margin * 2, self._max_margin())
            until = now + self._margin
        else:
            until = self._window_end(ticket, now, wait)
        if self._limit is not None:
            self._used = max(self._used, self._limit)
        self._blocked_until = max(self._blocked_until, until)
        self._end = self._blocked_until
        return max(0.0, self._blocked_until - now)

    def _opened_early(self, ticket: Ticket, wait: float) -> bool:
        return (
            self._window is not None
            and self._window_seq > self._opener_seq
            and ticket.seq >= self._window_seq
            and wait <= 1.0
            and self._margin < self._max_margin()
        )

    def _window_end(self, ticket: Ticket, now: float, wait: float) -> float:
        """When the window that refused ``ticket`` ends, as a time to start again."""
        anchor = self._anchor
        if anchor is None or ticket.seq < self._opener_seq or self._opener_seq < self._window_seq:
            return now + wait + self._margin  # the server's word
        elapsed = now - anchor
        if not self._window_from_429 and wait >= 1:
            # Retry-After is whole seconds: with an integer window W that opened when the
            # anchor's answer came, W lies in (elapsed + wait - 1, elapsed + wait].
            self._window = float(max(1, math.ceil(elapsed + wait - 1 + 1e-6)))
            self._window_from_429 = True
        window = self._window
        if window is None or not (
            elapsed + wait - 1 - _TOLERANCE < window <= elapsed + wait + _TOLERANCE
        ):
            return now + wait + self._margin  # another client shares the window, or it moved
        return anchor + window + self._margin

    def _retry_after(self, headers: Mapping[str, str]) -> float | None:
        wait = parse_retry_after(headers.get("retry-after"), now_epoch=self._wall_clock())
        reset = _int_header(headers, "x-ratelimit-reset")
        if wait is None and reset is not None:
            wait = max(0.0, reset - self._wall_clock())
        return wait

    def _max_margin(self) -> float:
        return max(_MAX_MARGIN, (self._window or 0.0) / 8)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return int(number) if math.isfinite(number) else None
