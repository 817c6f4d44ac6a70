"""The async Omneo v3 client: the endpoints the tool calls, each a method that returns what
the tenant said, parsed.

How a request is sent, checked and traced is :mod:`omneo_status.api.exchange`; when it is sent
again, :mod:`omneo_status.api.retrying`; how a list is read page by page, in which dialect,
:mod:`omneo_status.api.paging`. The transport and the sleep function are injected, so tests reach
the sandbox in-process and retry tests record their waits instead of sleeping.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from omneo_status.api.exchange import ExchangeHook, Exchanger, data, json_body, path_id
from omneo_status.api.governor import RateGovernor
from omneo_status.api.paging import PageSeen, PageStyle, read_page, walk
from omneo_status.api.retrying import Retrier, RetryHook, RetryPolicy, Sleep
from omneo_status.errors import BadResponse
from omneo_status.models import Action, Batch, Profile, StatusDefinition
from omneo_status.options import MAX_PAGE_SIZE, REQUEST_TIMEOUT, TRANSPORT, TransportMode

__all__ = [
    "MissingBatch",
    "OmneoClient",
    "PageStyle",
    "ProbeAnswer",
    "ProfileList",
    "ProfilePage",
    "RetryPolicy",
    "TenantPage",
    "batches_endpoint_shown",
]
"""The client and what its constructor takes and its endpoints return."""


@dataclass(frozen=True)
class ProfileList:
    """Every profile a filtered ``GET /v3/profiles`` lists, over all its pages."""

    profiles: list[Profile]
    """Each profile once, in the order the pages gave them."""
    total: int | None
    """The tenant's ``meta.total``, when it says."""
    complete: bool
    """False when reading stopped at ``max_profiles`` before the last page."""


@dataclass(frozen=True)
class ProfilePage:
    """One page of ``GET /v3/profiles``."""

    profiles: list[Profile]
    has_next: bool
    total: int | None


@dataclass(frozen=True)
class TenantPage:
    """One page of every profile of the tenant, with what its ``meta`` says."""

    profiles: list[Profile]
    total: int | None
    """``meta.total``: how many profiles the tenant has now."""
    number: int | None
    """``meta.current_page``: which page the tenant says it gave."""
    size: int | None
    """``meta.per_page``: the page size the tenant really used."""


@dataclass(frozen=True)
class MissingBatch:
    """``GET /v3/batches/{id}`` answered 404."""

    endpoint: bool | None
    """Whether the answer shows that the batches endpoint exists (the batch does not), shows
    that it does not, or cannot tell (None): see ``batches_endpoint_shown``."""


def batches_endpoint_shown(message: object, *, made_up: bool = False) -> bool | None:
    """What the ``message`` of a 404 to ``GET /v3/batches/{id}`` says of the endpoint: a
    missing record ("No query results for model [Batch].") shows that it exists, a routing
    error that it does not, and so does a bare "Not Found" for a batch the tenant gave; for a
    ``made_up`` id (doctor's probe) a bare "Not Found" cannot tell, since a tenant that serves
    batches may answer it for an id it does not hold. Any other answer cannot tell (None)."""
    if not isinstance(message, str):
        return None
    text = message.strip().lower()
    if "route" in text:  # first: a routing error names the path, batches and all
        return False
    if "no query results" in text or "batch" in text:
        return True
    if text.rstrip(".") == "not found":
        return None if made_up else False
    return None


@dataclass(frozen=True)
class ProbeAnswer:
    """What a read-only probe got back, whatever its status."""

    status: int
    headers: Mapping[str, str]
    """Case-insensitive."""
    body: Any
    """The parsed JSON body, or None when the body is empty or not JSON."""


class OmneoClient:
    """Speaks Omneo v3 under ``base_url`` (the API root ending in ``/api``)."""

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        governor: RateGovernor | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        timeout: float = REQUEST_TIMEOUT,
        on_retry: RetryHook | None = None,
        on_exchange: ExchangeHook | None = None,
        rng: random.Random | None = None,
        page_style: PageStyle = PageStyle.PAGE_ARRAY,
        transport_mode: TransportMode = TRANSPORT,
    ) -> None:
        self.governor = governor or RateGovernor()
        self.page_style = page_style
        """The pagination dialect in use; switched (for the client's life) when the tenant
        turns out to ignore it."""
        retrier = Retrier(retry or RetryPolicy(), rng or random.Random(), sleep, on_retry)
        self._exchanger = Exchanger(
            base_url,
            token,
            transport,
            governor=self.governor,
            retrier=retrier,
            timeout=timeout,
            on_exchange=on_exchange,
            mode=transport_mode,
        )
        self.transport_in_use = self._exchanger.transport_in_use

    async def __aenter__(self) -> OmneoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport and its connections."""
        await self._exchanger.aclose()

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        """The absolute URL of ``path`` (under ``/v3``), query included, as it is sent."""
        return self._exchanger.url(path, params)

    async def get_json(self, path: str, params: Mapping[str, str]) -> Any:
        """The JSON body of ``GET path`` (under ``/v3``) with ``params``, its status checked."""
        answer = await self._exchanger.request("GET", path, params=params)
        return json_body(answer, f"GET /v3{path}")

    # -- endpoints -------------------------------------------------------------------------

    async def list_statuses(self) -> list[StatusDefinition]:
        """Every status definition of the tenant, each once, over all its pages."""
        definitions, _, _ = await walk(self, "/statuses", {}, _parser(StatusDefinition, "status"))
        return definitions

    async def profiles_page(self, filters: Mapping[str, str], page: int = 1) -> ProfilePage:
        """One page of profiles matching ``filters``, in the client's pagination dialect.

        Prefer :meth:`find_profiles`, which checks every page and reads them all.
        """
        answer = await read_page(self, "/profiles", filters, page, self.page_style)
        return ProfilePage(
            _parse_list(Profile, answer.rows, "profile"), answer.has_next, answer.total
        )

    async def tenant_page(
        self, number: int, size: int = MAX_PAGE_SIZE, style: PageStyle | None = None
    ) -> TenantPage:
        """Page ``number`` of every profile (no filter), ``size`` asked for, in the client's
        pagination dialect (or ``style``). The tenant may give fewer, or another page when it
        ignores the dialect: the caller compares ``number`` with the page it asked for."""
        page = await read_page(self, "/profiles", {}, number, style or self.page_style, size)
        profiles = _parse_list(Profile, page.rows, "profile")
        return TenantPage(profiles, page.total, page.current_page, page.per_page)

    async def find_profiles(
        self,
        filters: Mapping[str, str],
        *,
        max_profiles: int | None = None,
        stop_at: Callable[[list[Profile]], bool] | None = None,
        on_page: PageSeen | None = None,
    ) -> ProfileList:
        """Every profile matching ``filters``, each once, over every page (or until more than
        ``max_profiles`` were seen, or up to the first page for which ``stop_at`` is true: a
        page that proves the tenant ignored the filter, after which reading on would be in
        vain); ``on_page`` is told after each page. Pages the tenant did not really give (it
        ignored the pagination dialect and answered page 1 again) are never trusted: the client
        switches to the other dialect, or raises ``BadResponse`` when neither works."""
        profiles, total, complete = await walk(
            self, "/profiles", filters, _parser(Profile, "profile"), max_profiles, stop_at, on_page
        )
        return ProfileList(profiles, total, complete)

    async def get_profile(
        self, profile_id: str, params: Mapping[str, str] | None = None
    ) -> Profile | None:
        """The profile with that id, or None when the tenant has none. With
        ``{"identity[handle]": H}`` the id is an identifier of identity ``H`` instead."""
        path = f"/profiles/{path_id(profile_id)}"
        response = await self._exchanger.request("GET", path, params=params, allow_404=True)
        if response.status_code == 404:
            return None
        return _parse_one(Profile, data(json_body(response, f"GET /v3{path}")), "profile")

    async def send_batch(self, action: Action, items: Sequence[tuple[str, Sequence[str]]]) -> str:
        """Queue one status batch (POST adds, DELETE removes); returns its ``batch_id``, found
        under ``data`` (as the statuses guide shows) or at the top level (as every sibling
        batch endpoint answers). An answer without one is a ``BadResponse`` naming what came.

        Safe to repeat: the endpoint merges and de-duplicates handles server-side.
        """
        body = {
            "profiles": [
                {"profile_id": profile_id, "statuses": list(handles)}
                for profile_id, handles in items
            ]
        }
        method = action.method
        response = await self._exchanger.request(method, "/profile/status/batch.json", json=body)
        batch_id = _batch_id(json_body(response, f"{method} /v3/profile/status/batch.json"))
        if batch_id is None:
            raise BadResponse(
                f"{method} /v3/profile/status/batch.json answered {response.status_code} "
                f"without a batch_id: {_shorten(response.text)}"
            )
        return batch_id

    async def get_batch(self, batch_id: str) -> Batch | MissingBatch:
        """The batch's state, or ``MissingBatch`` when the tenant answers 404 (saying whether
        the answer shows the batches endpoint exists)."""
        path = f"/batches/{path_id(batch_id)}"
        response = await self._exchanger.request("GET", path, allow_404=True)
        if response.status_code == 404:
            try:
                body = response.json()
            except ValueError:
                body = None
            message = body.get("message") if isinstance(body, dict) else None
            return MissingBatch(batches_endpoint_shown(message))
        return _parse_one(Batch, data(json_body(response, f"GET /v3{path}")), "batch")

    async def probe(self, path: str, params: Mapping[str, str] | None = None) -> ProbeAnswer:
        """``GET path`` (under ``/v3``), retried like every request, and its answer whatever
        its HTTP status: for ``doctor``, which must see 404 bodies and headers. Raises only
        when no answer came (``Unreachable``, or a 429/5xx that outlasted the retries)."""
        response = await self._exchanger.request("GET", path, params=params, check=False)
        try:
            body = response.json()
        except ValueError:
            body = None
        return ProbeAnswer(response.status_code, response.headers, body)


def _shorten(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def _batch_id(body: Any) -> str | None:
    """The ``batch_id`` of a batch answer, under ``data`` or at the top level."""
    for where in (body.get("data") if isinstance(body, dict) else None, body):
        value = where.get("batch_id") if isinstance(where, dict) else None
        if value is not None and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


M = TypeVar("M", bound=BaseModel)


def _parser(model: type[M], what: str) -> Callable[[Any], M]:
    """Parses one row of a list into ``model`` (``BadResponse`` when it cannot)."""
    return lambda row: _parse_one(model, row, what)


def _parse_list(model: type[M], rows: list[Any], what: str) -> list[M]:
    return [_parse_one(model, row, what) for row in rows]


def _parse_one(model: type[M], row: Any, what: str) -> M:
    try:
        return model.model_validate(row)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        raise BadResponse(
            f"The API answered a {what} the tool cannot read ({where}: {first.get('msg')})"
        ) from None
