"""The one back-off and deadline policy for waiting on something the API does in its own time
(a batch to finish, a profile to show a change): waits between looks that grow (0.5 s, x1.6, up
to 10 s: ``options.POLL_*``), a deadline for the whole wait, and a shorter one for standing
still."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from omneo_status.options import POLL_FIRST_DELAY, POLL_GROWTH, POLL_MAX_DELAY

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass
class Backoff:
    """One wait: call ``progressed()`` when something moved, ``expired()`` before each
    ``pause()``. Time comes from the injected clock and sleep, so tests never wait."""

    clock: Clock
    sleep: Sleep
    poll_timeout: float
    """Seconds the whole wait may last."""
    stall_timeout: float
    """Seconds the wait may go on with nothing moving."""
    delay: float = POLL_FIRST_DELAY
    started: float = field(init=False)
    last_change: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.last_change = self.clock()

    def progressed(self) -> None:
        """Something moved: the stall deadline starts again."""
        self.last_change = self.clock()

    def expired(self) -> str | None:
        """Why the wait is over (plain English, for a warning), or None while it may go on."""
        now = self.clock()
        if now - self.started >= self.poll_timeout:
            return f"still not finished after {self.poll_timeout:g}s (the poll timeout)"
        if now - self.last_change >= self.stall_timeout:
            return f"no progress for {self.stall_timeout:g}s (the stall timeout)"
        return None

    @property
    def stalled(self) -> bool:
        """Whether the wait is over because nothing moved for the stall timeout (and not
        because its whole time ran out)."""
        now = self.clock()
        return (
            now - self.last_change >= self.stall_timeout and now - self.started < self.poll_timeout
        )

    async def pause(self) -> None:
        """Sleep the current delay, then let the next one grow (up to ``POLL_MAX_DELAY``)."""
        await self.sleep(self.delay)
        self.delay = min(self.delay * POLL_GROWTH, POLL_MAX_DELAY)
