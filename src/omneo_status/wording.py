"""How numbers and counted words read, one way everywhere: thousands separators, and a noun
that agrees with its number ("1 request", "4,479 profiles")."""

from __future__ import annotations


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
