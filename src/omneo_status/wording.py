"""How numbers and counted words read, one way everywhere: thousands separators, a noun that
agrees with its number ("1 request", "4,479 profiles"), and the known word a typo was meant
to be."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

CLOSE = 0.8
"""How alike a typo and a known word must be (difflib's ratio, leading dashes left out) for
"did you mean" to name it: ``--dry-rn`` is ``--dry-run`` (0.92); ``--bogus`` is nothing
(``--verbose`` scores 0.5)."""


def number(n: int) -> str:
    """``n`` with thousands separators (``4,479``)."""
    return f"{n:,}"


def plural(noun: str, n: int = 2) -> str:
    """``noun`` as it reads after ``n``: itself for 1, else its plural (``batch``: ``batches``;
    of several words the last takes the plural: ``single lookups``)."""
    if n == 1:
        return noun
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def count(n: int, noun: str) -> str:
    """``n`` and ``noun`` agreeing: ``1 request``, ``4,479 profiles``, ``2 batches``."""
    return f"{number(n)} {plural(noun, n)}"


def closest(word: str, known: Iterable[str]) -> str | None:
    """The known word ``word`` is closest to, if it is close (``CLOSE``); None otherwise."""
    bare = word.lstrip("-").lower()
    scored = [
        (difflib.SequenceMatcher(None, bare, name.lstrip("-").lower()).ratio(), name)
        for name in known
    ]
    best = max(scored, default=(0.0, ""))
    return best[1] if best[0] >= CLOSE else None
