"""Reading Omneo's paginated lists: the two dialects a page is asked for in, a page's envelope,
and the walk over every page, which switches dialect when the tenant turns out to ignore one."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from omneo_status.api.exchange import data
from omneo_status.errors import BadResponse
from omneo_status.options import MAX_PAGE_SIZE

_MAX_PAGES = 100_000
"""A bound on the pages one walk reads, so a tenant whose pages never end cannot hold a run."""

M = TypeVar("M")

PageSeen = Callable[[int, "int | None"], None]
"""Told after each page of a walk: the distinct rows read so far, and the list's total
(``meta.total``) when the tenant says."""


class PageStyle(StrEnum):
    """How a list endpoint is asked for a page: Omneo's two SDKs use different dialects, and a
    tenant may honour only one of them."""

    PAGE_ARRAY = "page_array"
    """``page[size]`` and ``page[number]`` (the TypeScript SDK)."""
    PER_PAGE = "per_page"
    """``per_page`` and ``page`` (the PHP SDK)."""

    @property
    def other(self) -> PageStyle:
        """The other dialect."""
        return PageStyle.PER_PAGE if self is PageStyle.PAGE_ARRAY else PageStyle.PAGE_ARRAY

    def params(self, number: int, size: int = MAX_PAGE_SIZE) -> dict[str, str]:
        """The query parameters asking for page ``number`` of ``size`` rows."""
        if self is PageStyle.PAGE_ARRAY:
            return {"page[size]": str(size), "page[number]": str(number)}
        return {"per_page": str(size), "page": str(number)}


class PageSource(Protocol):
    """Where pages come from (the client): the dialect in use, switched for good when the
    tenant ignores it, and a GET that returns the parsed JSON body."""

    page_style: PageStyle

    def get_json(self, path: str, params: Mapping[str, str]) -> Awaitable[Any]:
        """The JSON body of ``GET path`` (under ``/v3``) with ``params``."""


@dataclass(frozen=True)
class ListPage:
    """One page of a Laravel paginator answer, read leniently."""

    rows: list[Any]
    has_next: bool
    total: int | None
    """``meta.total``, when the answer says."""
    current_page: int | None
    """``meta.current_page``: which page the tenant says it gave."""
    per_page: int | None
    """``meta.per_page``: the page size the tenant really used."""


async def read_page(
    source: PageSource,
    path: str,
    filters: Mapping[str, str],
    number: int,
    style: PageStyle,
    size: int = MAX_PAGE_SIZE,
) -> ListPage:
    """Page ``number`` of ``size`` rows of a list endpoint, asked for in ``style``."""
    query = {**filters, **style.params(number, size)}
    return _envelope(await source.get_json(path, query), number)


async def walk(
    source: PageSource,
    path: str,
    filters: Mapping[str, str],
    parse: Callable[[Any], M],
    limit: int | None = None,
    stop_at: Callable[[list[M]], bool] | None = None,
    on_page: PageSeen | None = None,
) -> tuple[list[M], int | None, bool]:
    """Every row of a paginated list, each once and parsed: ``(items, total, complete)``;
    ``complete`` is False when more than ``limit`` rows were seen, or ``stop_at`` was true of
    a page's items, before the last page. ``on_page`` is told after every page.

    Pages the tenant did not really give (it ignored the dialect and answered page 1 again)
    are never trusted: the walk switches ``source.page_style`` to the other dialect and reads
    again from page 1, or raises ``BadResponse`` when neither dialect works."""
    style = source.page_style
    try:
        return await _walk_in(source, style, path, filters, parse, limit, stop_at, on_page)
    except _PageMismatch:
        pass
    # Switch for good, unless a concurrent walk already did, and read again from page 1 (the
    # page size may differ between dialects).
    if source.page_style is style:
        source.page_style = style.other
    try:
        return await _walk_in(
            source, source.page_style, path, filters, parse, limit, stop_at, on_page
        )
    except _PageMismatch as mismatch:
        raise BadResponse(
            f"GET /v3{path} answered page {mismatch.given or 1} when asked for page "
            f"{mismatch.asked}, with page[number] and with page: the tool cannot read "
            "every page of this tenant's lists",
            hint="Run 'omneo-status doctor --json' and attach its output to a bug report.",
        ) from None


async def _walk_in(
    source: PageSource,
    style: PageStyle,
    path: str,
    filters: Mapping[str, str],
    parse: Callable[[Any], M],
    limit: int | None,
    stop_at: Callable[[list[M]], bool] | None,
    on_page: PageSeen | None,
) -> tuple[list[M], int | None, bool]:
    seen: dict[str, M] = {}
    total: int | None = None
    number = 1
    while True:
        page = await read_page(source, path, filters, number, style)
        keys = [_row_key(row) for row in page.rows]
        if number > 1 and _repeats(page, number, keys, seen):
            raise _PageMismatch(number, page.current_page)
        total = page.total if total is None else total
        items = [parse(row) for row in page.rows]
        for key, item in zip(keys, items, strict=True):
            seen.setdefault(key, item)
        if on_page is not None:
            on_page(len(seen), total)
        if limit is not None and len(seen) > limit and page.has_next:
            return list(seen.values()), total, False
        if stop_at is not None and page.has_next and stop_at(items):
            return list(seen.values()), total, False
        if not page.has_next or not page.rows or number >= _MAX_PAGES:
            return list(seen.values()), total, True
        number += 1


class _PageMismatch(Exception):
    """A page answered for another page than the one asked for (its dialect was ignored)."""

    def __init__(self, asked: int, given: int | None) -> None:
        super().__init__(asked)
        self.asked = asked
        self.given = given


def _envelope(body: Any, page: int) -> ListPage:
    """One page of a Laravel paginator answer (or of a bare list, which is all of it)."""
    if isinstance(body, list):
        return ListPage(body, False, len(body), None, None)
    rows = data(body)
    if not isinstance(rows, list):
        raise BadResponse("A list endpoint answered 'data' that is not a list")
    links = body.get("links") if isinstance(body.get("links"), dict) else {}
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    last_page = lenient_int(meta.get("last_page"))
    has_next = page < last_page if last_page is not None else bool(links.get("next"))
    return ListPage(
        rows,
        has_next,
        lenient_int(meta.get("total")),
        lenient_int(meta.get("current_page")),
        lenient_int(meta.get("per_page")),
    )


def lenient_int(value: Any) -> int | None:
    """A whole number from a field or header that may come as a string (None otherwise)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _row_key(row: Any) -> str:
    if isinstance(row, dict) and row.get("id") is not None:
        return f"id:{row['id']}"
    return json.dumps(row, sort_keys=True, default=str)


def _repeats(page: ListPage, number: int, keys: list[str], seen: Mapping[str, Any]) -> bool:
    """Whether page ``number`` is not the page asked for: the tenant says it gave another
    one, or every row on it was already seen on earlier pages."""
    if page.current_page is not None and page.current_page != number:
        return True
    return bool(keys) and all(key in seen for key in keys)
