"""A run's stages as the screen counts them: each in its own unit (``Step.unit``), with its
rate, and a time left only once it is founded. Bookkeeping only: ``console`` draws it.

An ETA is founded when the stage's total can no longer grow (no stage before it is still under
way: a stage is fed only by the stages before it), this process did a share of it
(``ETA_SHARE``) and it ran a while (``ETA_AFTER``). It is worked out afresh every time it is
shown, from what this process did since the stage began, so it grows while nothing moves
rather than standing still.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omneo_status.events import Step
from omneo_status.wording import count, number, plural

ETA_SHARE = 0.05
"""An ETA is shown once this process did this share of a stage's units..."""
ETA_AFTER = 2.0
"""...and the stage ran at least this many seconds: a rate read off a few units in the first
instants says little."""

_ORDER = {step: index for index, step in enumerate(Step)}


def duration(seconds: float) -> str:
    """``H:MM:SS``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def rate_text(rate: float) -> str:
    """Units a second, with a decimal while there are few."""
    return f"{rate:,.1f}/s" if rate < 10 else f"{rate:,.0f}/s"


@dataclass
class Tally:
    """One stage: its units done of how many, since when."""

    step: Step
    began: float
    total: int = 0
    """0 while unknown."""
    done: int = 0
    before: int = 0
    """Units an earlier attempt did (counted in ``done``, not in the rate)."""
    ended: float | None = None

    @property
    def finished(self) -> bool:
        """Whether the stage said it is over."""
        return self.ended is not None

    @property
    def under_way(self) -> bool:
        """Begun and not over: not finished, and units left (or an unknown total)."""
        return not self.finished and not (self.total and self.done >= self.total)

    def elapsed(self, now: float) -> float:
        """Seconds since the stage began (to its end, once it ended)."""
        return (self.ended if self.ended is not None else now) - self.began

    def rate(self, now: float) -> float:
        """Units a second done by this process (0 before any)."""
        seconds = self.elapsed(now)
        return (self.done - self.before) / seconds if seconds > 0 else 0.0

    def count(self) -> str:
        """``335/600 pages``, ``12 pages`` while the total is unknown, or ``""`` for a stage
        that counts nothing."""
        unit = self.step.unit
        if unit is None:
            return ""
        if self.total:
            return f"{number(self.done)}/{number(self.total)} {plural(unit, self.total)}"
        return f"{number(self.done)} {plural(unit, self.done)}"


class Stages:
    """Every stage of one run, on the run's clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.tallies: dict[Step, Tally] = {}

    def start(self, step: Step, total: int | None, done: int = 0) -> bool:
        """Count a stage from now; True when it is new (or begins again after it ended). A
        stage under way that is announced again takes the new total, if one is given."""
        tally = self.tallies.get(step)
        if tally is not None and not tally.finished:
            if total is not None:
                tally.total = total
            return False
        self.tallies[step] = Tally(step, self.clock(), total or 0, done, done)
        return True

    def advance(self, step: Step, amount: int) -> Tally | None:
        """Units done (None for a stage never started)."""
        tally = self.tallies.get(step)
        if tally is not None:
            tally.done += amount
        return tally

    def extend(self, step: Step, amount: int) -> Tally | None:
        """More units than announced (None for a stage never started)."""
        tally = self.tallies.get(step)
        if tally is not None:
            tally.total += amount
        return tally

    def finish(self, step: Step) -> Tally | None:
        """The stage is over; None when it never began or had ended already."""
        tally = self.tallies.get(step)
        if tally is None or tally.finished:
            return None
        tally.ended = self.clock()
        return tally

    def eta(self, step: Step) -> float | None:
        """Seconds left in the stage, or None while that is not founded (module docstring)."""
        tally = self.tallies[step]
        now = self.clock()
        fresh = tally.done - tally.before
        if not tally.under_way or not tally.total or fresh <= 0:
            return None
        if fresh < ETA_SHARE * (tally.total - tally.before) or tally.elapsed(now) < ETA_AFTER:
            return None
        if any(
            _ORDER[other.step] < _ORDER[step] and other.under_way for other in self.tallies.values()
        ):
            return None
        return (tally.total - tally.done) / tally.rate(now)

    def line(self, step: Step) -> str:
        """The stage in words: ``scanning the tenant: 335/600 pages (5.2/s, ETA 0:00:50)``."""
        tally = self.tallies[step]
        rate, eta = tally.rate(self.clock()), self.eta(step)
        said = [rate_text(rate)] if rate > 0 else []
        said += [f"ETA {duration(eta)}"] if eta is not None else []
        count = tally.count() or "under way"
        return f"{step.value}: {count}" + (f" ({', '.join(said)})" if said else "")

    def ended(self, step: Step) -> str:
        """What a stage did, once it ended: ``scanning the tenant: 600 pages done``."""
        tally, unit = self.tallies[step], step.unit
        if unit is None or not tally.done:
            return f"{step.value}: done"
        return f"{step.value}: {count(tally.done, unit)} done"


@dataclass(frozen=True)
class Shown:
    """One stage's cells in the live display, worked out each time the display is drawn."""

    stages: Stages
    step: Step

    @property
    def count(self) -> str:
        """``1,500/4,479 rows``."""
        return self.stages.tallies[self.step].count()

    @property
    def rate(self) -> str:
        """``193/s``, or nothing before the first unit."""
        tally = self.stages.tallies[self.step]
        rate = tally.rate(self.stages.clock())
        return rate_text(rate) if rate > 0 and not tally.finished else ""

    @property
    def elapsed(self) -> str:
        """Time in the stage."""
        return duration(self.stages.tallies[self.step].elapsed(self.stages.clock()))

    @property
    def eta(self) -> str:
        """``ETA 0:00:05`` when founded, else nothing."""
        eta = self.stages.eta(self.step)
        return f"ETA {duration(eta)}" if eta is not None else ""
