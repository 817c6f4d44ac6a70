"""A run's stages as the screen counts them: each in its own unit (``Step.unit``), with its
rate, and a time left only once it is founded. Bookkeeping only: ``console`` draws it.

An ETA is founded when the stage's total can no longer grow (no stage before it is still under
way: a stage is fed only by the stages before it), and since then this process did a share of
it (``ETA_SHARE``) over a while (``ETA_AFTER``). Its rate is counted from that moment (rows
resolved after a scan go fast, though the scan took a minute), and it is worked out afresh every
time it is shown, so it grows while nothing moves rather than standing still.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omneo_status.events import Step
from omneo_status.wording import count, number, plural

ETA_SHARE = 0.1
"""An ETA is shown once this process did this share of a stage's units, in two moves at least
(batches end in jumps: one jump is not a rate)..."""
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
    mark: tuple[float, int] = (0.0, 0)
    """When, and at how many units, the rate is counted from: the stage's start, or the last
    time a stage before it moved (until then this one is fed, not timed)."""
    moves: int = 0
    """Advances since the mark."""
    caught_up: float | None = None
    """When the last unit of the total was done (a stage told of no more units yet, such as
    sending while the last batches are watched): its clock stops there."""

    @property
    def finished(self) -> bool:
        """Whether the stage said it is over."""
        return self.ended is not None

    @property
    def under_way(self) -> bool:
        """Begun and not over: not finished, and units left (or an unknown total)."""
        return not self.finished and not (self.total and self.done >= self.total)

    def elapsed(self, now: float) -> float:
        """Seconds since the stage began (to its end, or to its last unit, once done)."""
        end = self.ended if self.ended is not None else self.caught_up
        return (end if end is not None else now) - self.began

    def __post_init__(self) -> None:
        self.mark = (self.began, self.before)

    def rate(self, now: float) -> float:
        """Units a second done by this process since its mark (0 before any)."""
        since, then = self.mark
        seconds = self.elapsed(now) - (since - self.began)
        return (self.done - then) / seconds if seconds > 0 else 0.0

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
        self._feeds(step)
        return True

    def advance(self, step: Step, amount: int) -> Tally | None:
        """Units done (None for a stage never started)."""
        tally = self.tallies.get(step)
        if tally is not None:
            tally.done += amount
            tally.moves += 1
            if tally.total and tally.done >= tally.total:
                tally.caught_up = self.clock()
            self._feeds(step)
        return tally

    def extend(self, step: Step, amount: int) -> Tally | None:
        """More units than announced (None for a stage never started)."""
        tally = self.tallies.get(step)
        if tally is not None:
            tally.total += amount
            tally.caught_up = None
            self._feeds(step)
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
        since, then = tally.mark
        fresh = tally.done - then
        if not tally.under_way or not tally.total or fresh <= 0:
            return None
        if fresh < ETA_SHARE * (tally.total - then) or tally.moves < 2 or now - since < ETA_AFTER:
            return None
        if any(
            _ORDER[other.step] < _ORDER[step] and other.under_way for other in self.tallies.values()
        ):
            return None
        return (tally.total - tally.done) / tally.rate(now)

    def _feeds(self, step: Step) -> None:
        """``step`` moved: the stages after it were fed by it until now, and their rates count
        from now."""
        now = self.clock()
        for later in self.tallies.values():
            if _ORDER[later.step] > _ORDER[step]:
                later.mark, later.moves = (now, later.done), 0

    def rate(self, step: Step) -> float | None:
        """Units a second of a stage under way, once it ran ``ETA_AFTER`` seconds since its
        mark (a burst in the first instants is no rate); None before that, or before any unit."""
        tally = self.tallies[step]
        now = self.clock()
        rate = tally.rate(now)
        if not tally.under_way or rate <= 0 or now - tally.mark[0] < ETA_AFTER:
            return None
        return rate

    def line(self, step: Step) -> str:
        """The stage in words: ``scanning the tenant: 335/600 pages (5.2/s, ETA 0:00:50)``."""
        rate, eta = self.rate(step), self.eta(step)
        said = [rate_text(rate)] if rate is not None else []
        said += [f"ETA {duration(eta)}"] if eta is not None else []
        tally = self.tallies[step]
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
        """``193/s``, or nothing while there is no rate to speak of (``Stages.rate``)."""
        rate = self.stages.rate(self.step)
        return rate_text(rate) if rate is not None else ""

    @property
    def elapsed(self) -> str:
        """Time in the stage."""
        return duration(self.stages.tallies[self.step].elapsed(self.stages.clock()))

    @property
    def eta(self) -> str:
        """``ETA 0:00:05`` when founded, else nothing."""
        eta = self.stages.eta(self.step)
        return f"ETA {duration(eta)}" if eta is not None else ""
