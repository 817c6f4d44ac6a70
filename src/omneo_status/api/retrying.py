"""The one retry policy: which failures a request is sent again after, how long it waits
before each try, and when it gives up (with which error). Built with tenacity."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, TypeVar

from omneo_status.errors import RateLimited, ServerError, Unreachable
from omneo_status.options import (
    MAX_RETRIES,
    RATE_LIMIT_WAIT,
    RETRY_BACKOFF,
    RETRY_BACKOFF_MAX,
    RETRY_TOTAL_WAIT,
)

if TYPE_CHECKING:
    from tenacity import RetryCallState

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

Sleep = Callable[[float], Awaitable[None]]
RetryHook = Callable[[str, float], None]
"""Told of each retry before its wait: what failed (``"GET /v3/statuses: HTTP 503"``) and the
seconds it waits."""

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry: connection errors, timeouts, 408, 409, 425, 429, 500,
    502, 503 and 504, honouring ``Retry-After`` when the answer gives one.

    This is the one place that sends a request again after it may have reached the tenant:
    the network transport sends nothing but a GET, HEAD or OPTIONS again on its own. A batch
    POST or DELETE that got no answer is retried here, although the tenant may have acted on
    it: the batch endpoint merges handles, so a second copy changes nothing more.

    A 429 is not a failure: the tenant's rate limit is in use (perhaps by another client of
    it) and the answer says when to come back. So a 429 is never counted as a retry: one
    request waits 429s out for up to ``rate_limit_wait`` seconds in all. Every other failure
    counts against ``max_retries`` and ``max_total_wait``."""

    max_retries: int = MAX_RETRIES
    """Retries after failures other than 429; 0 disables them."""
    initial_backoff: float = RETRY_BACKOFF
    max_backoff: float = RETRY_BACKOFF_MAX
    max_total_wait: float = RETRY_TOTAL_WAIT
    """Give up once one request's waits after failures other than 429 would add up to more
    than this."""
    rate_limit_wait: float = RATE_LIMIT_WAIT
    """Give up once one request's waits after 429s would add up to more than this; each 429
    counts at least ``initial_backoff``, so a tenant that keeps answering "now" cannot hold a
    request for ever."""

    def budget(self, rng: random.Random) -> RetryBudget:
        """A fresh account of what one request spends of this policy."""
        return RetryBudget(self, rng)

    def backoff(self, failures: int, rng: random.Random) -> float:
        """The jittered exponential back-off after ``failures`` earlier failures."""
        backoff = min(self.max_backoff, self.initial_backoff * 2.0**failures)
        return backoff * (0.5 + rng.random() / 2)  # jitter keeps clients apart


class Retryable(Exception):
    """An attempt that failed in a way worth sending again: no answer (``status`` None: a lost
    connection, a timeout), or an answer in ``RETRYABLE_STATUSES``."""

    def __init__(self, reason: str, wait: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        """What went wrong, for the retry message and the final error."""
        self.wait = wait
        """The seconds the answer asked to wait (``Retry-After``), if it said."""
        self.status = status


class RetryBudget:
    """What one request has spent of its ``RetryPolicy``: tenacity's ``wait`` and ``stop``
    (tenacity asks ``wait`` then ``stop`` once after each failed attempt)."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self.policy = policy
        self._rng = rng
        self.failures = 0
        """Failed attempts other than 429s."""
        self.waited = 0.0
        """Seconds waited after them."""
        self.throttled = 0.0
        """Seconds waited after 429s (each counted at least ``initial_backoff``)."""

    def wait(self, state: RetryCallState) -> float:
        """The wait before the next attempt: what the answer asked for, else a jittered
        exponential back-off."""
        exc = _failure(state)
        hinted = exc.wait if exc is not None else None
        return hinted if hinted is not None else self.policy.backoff(self.failures, self._rng)

    def stop(self, state: RetryCallState) -> bool:
        """Whether to give up: out of time for 429s; for anything else, out of retries or
        the waits would add up to too much."""
        policy, wait = self.policy, state.upcoming_sleep or 0.0
        exc = _failure(state)
        if exc is not None and exc.status == 429:
            charge = max(wait, policy.initial_backoff)
            if self.throttled + charge > policy.rate_limit_wait:
                return True
            self.throttled += charge
            return False
        self.failures += 1
        if self.failures > policy.max_retries or self.waited + wait > policy.max_total_wait:
            return True
        self.waited += wait
        return False


def _failure(state: RetryCallState) -> Retryable | None:
    exc = state.outcome.exception() if state.outcome else None
    return exc if isinstance(exc, Retryable) else None


class Retrier:
    """A ``RetryPolicy`` at work for one client: its random jitter, its sleep (a virtual
    clock's in tests) and whom it tells of each retry."""

    def __init__(
        self, policy: RetryPolicy, rng: random.Random, sleep: Sleep, on_retry: RetryHook | None
    ) -> None:
        self.policy = policy
        self._rng = rng
        self._sleep = sleep
        self._on_retry = on_retry

    async def resend(self, what: str, failed: Retryable, send: Callable[[], Awaitable[T]]) -> T:
        """What ``send`` returns once it succeeds, after a first attempt at ``what``
        (``"POST /v3/profile/status/batch.json"``) that ``failed``; ``RateLimited``,
        ``ServerError`` or ``Unreachable`` once the policy gives up.

        The first attempt is made without tenacity, whose set-up costs a tenth of the
        client's CPU per request; here it is replayed as tenacity's first attempt (its
        failure raised again, nothing sent), so waits, hooks and the stop count as if
        tenacity had made it. tenacity itself is imported here, by the first retry."""
        from tenacity import AsyncRetrying, retry_if_exception_type

        budget = self.policy.budget(self._rng)
        retrying = AsyncRetrying(
            stop=budget.stop,
            wait=budget.wait,
            retry=retry_if_exception_type(Retryable),
            sleep=self._sleep,
            before_sleep=self._before_sleep(what),
            reraise=True,
        )
        replay: Retryable | None = failed
        try:
            async for attempt in retrying:
                with attempt:
                    if replay is not None:
                        first, replay = replay, None
                        raise first
                    answer = await send()
        except Retryable as exc:
            _give_up(what, exc, budget)
        return answer

    def _before_sleep(self, what: str) -> Callable[[RetryCallState], None]:
        def hook(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if self._on_retry is not None and state.next_action is not None:
                reason = exc.reason if isinstance(exc, Retryable) else str(exc)
                self._on_retry(f"{what}: {reason}", state.next_action.sleep)

        return hook


RATE_LIMITED_HINT = (
    "Another client may be using this tenant's rate limit (another job, or an integration on"
    " the same token). Run the same command again once it is done (the journal keeps what was"
    " done), or let requests wait longer with --rate-limit-wait SECONDS."
)


def _give_up(what: str, exc: Retryable, budget: RetryBudget) -> NoReturn:
    """The error of a request the policy gave up on, after its last failure ``exc``."""
    if exc.status == 429:
        raise RateLimited(
            f"{what}: still rate limited (429) after waiting {budget.throttled:.0f} s in all,"
            f" the most --rate-limit-wait allows ({budget.policy.rate_limit_wait:g} s)",
            status_code=429,
            hint=RATE_LIMITED_HINT,
        ) from None
    if exc.status is not None:
        raise ServerError(
            f"{what}: the API kept failing ({exc.reason}) after retries",
            status_code=exc.status,
            hint="Omneo may be having trouble; re-run the same command later to resume.",
        ) from None
    raise Unreachable(
        f"{what}: the API is unreachable ({exc.reason})",
        hint="Check the network, the tenant name and --base-url; re-run later to resume.",
    ) from None
