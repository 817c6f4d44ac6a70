"""The async Omneo v3 client: one place where requests are built, sent, retried and read.

The transport and the sleep function are injected, so tests reach the sandbox in-process
(``httpx.ASGITransport``) and retry tests record their waits instead of sleeping. Without an
injected transport the client goes over the network through the tool's own HTTP/1.1 transport
(:mod:`omneo_status.transport`), or through httpx's own when a proxy applies or
``OMNEO_TRANSPORT=httpx`` asks for it: either way with httpx's API and exceptions.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote, quote_plus

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from omneo_status import __version__
from omneo_status.errors import (
    ApiError,
    AuthError,
    BadResponse,
    ConfigError,
    NotFoundError,
    NotJsonAnswer,
    RateLimited,
    ServerError,
    Unreachable,
    ValidationFailed,
)
from omneo_status.governor import RateGovernor, parse_retry_after
from omneo_status.models import Action, Batch, Profile, StatusDefinition
from omneo_status.options import MAX_RETRIES, RATE_LIMIT_WAIT, TRANSPORT, TransportMode
from omneo_status.trace import BODY_LIMIT, TRACED_HEADERS, Exchange
from omneo_status.transport import ACCEPTED_CODINGS, NetworkTransport, env_proxy

if TYPE_CHECKING:
    from tenacity import RetryCallState

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_PAGE_SIZE = 100
"""The page size the client asks for; a tenant may give fewer (it clamps), which is fine."""
_MAX_PAGES = 100_000

Sleep = Callable[[float], Awaitable[None]]


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
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_total_wait: float = 300.0
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


def _failure(state: RetryCallState) -> _Retryable | None:
    exc = state.outcome.exception() if state.outcome else None
    return exc if isinstance(exc, _Retryable) else None


@dataclass(frozen=True)
class TransportInUse:
    """Which transport carries a client's requests: what ``--trace`` and ``doctor --json``
    name, so a bug report says which one met the bug."""

    name: str
    """``builtin`` (the tool's own, :mod:`omneo_status.transport`), ``httpx`` (httpx's own),
    or the class of a transport given to the client (``ASGITransport`` for ``--sandbox``)."""
    proxy: str | None = None
    """The proxy the requests go through (without any credentials), if one applies."""

    def to_json(self) -> dict[str, str | None]:
        """The ``transport`` object of ``--trace`` and ``doctor --json``."""
        return {"name": self.name, "proxy": self.proxy}


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


def batches_endpoint_shown(message: object) -> bool | None:
    """What the ``message`` of a 404 to ``GET /v3/batches/{id}`` says of the endpoint: a
    missing record ("No query results for model [Batch].") shows that it exists, a bare "Not
    Found" or a routing error that it does not; any other answer cannot tell (None)."""
    if not isinstance(message, str):
        return None
    text = message.strip().lower()
    if "no query results" in text or "batch" in text:
        return True
    if text.rstrip(".") == "not found" or "route" in text:
        return False
    return None


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


@dataclass(frozen=True)
class ProbeAnswer:
    """What a read-only probe got back, whatever its status."""

    status: int
    headers: Mapping[str, str]
    """Case-insensitive."""
    body: Any
    """The parsed JSON body, or None when the body is empty or not JSON."""


class _PageMismatch(Exception):
    """A page answered for another page than the one asked for (its dialect was ignored)."""

    def __init__(self, asked: int, given: int | None) -> None:
        super().__init__(asked)
        self.asked = asked
        self.given = given


class _Retryable(Exception):
    def __init__(self, reason: str, wait: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.status = status


RetryHook = Callable[[str, float], None]
ExchangeHook = Callable[[Exchange], None]


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
        timeout: float = 30.0,
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
        self._token = token
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._on_retry = on_retry
        self._on_exchange = on_exchange
        self._rng = rng or random.Random()
        # Encoded once (IDNA host, percent-escapes): each request's URL is this plus a path
        # and a query that the client itself escapes, so it is never parsed again.
        try:
            base = httpx.URL(base_url.rstrip("/") + "/v3")
        except httpx.InvalidURL as exc:
            raise ConfigError(f"Invalid base URL {base_url!r}: {exc}") from None
        self._base = str(base)
        self._host = base.host
        proxy = None
        if transport is None:
            transport, proxy = _network_transport(
                base_url, self.governor.max_concurrency, transport_mode
            )
        self.transport_in_use = TransportInUse(_name_of(transport), proxy)
        # Requests go to the transport directly: through its ``fetch`` when it has one
        # (NetworkTransport, which writes the Accept-Encoding of the codings it decodes
        # itself), else as an httpx.Request (_Through).
        self._transport = transport
        self._send: Fetch = (
            transport.fetch if isinstance(transport, DirectTransport) else _Through(transport)
        )
        self._headers = {
            "Accept": "application/json",
            "User-Agent": f"omneo-status/{__version__}",
            "Authorization": f"Bearer {token.get_secret_value()}",
        }
        if isinstance(self._send, _Through):
            self._headers["Accept-Encoding"] = ACCEPTED_CODINGS  # httpx decodes them too
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        self._timeouts = httpx.Timeout(timeout, connect=min(timeout, 10.0)).as_dict()

    async def __aenter__(self) -> OmneoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport and its connections."""
        await self._transport.aclose()

    # -- endpoints -------------------------------------------------------------------------

    async def list_statuses(self) -> list[StatusDefinition]:
        """Every status definition of the tenant, each once, over all its pages."""
        definitions, _, _ = await self._walk("/statuses", {}, _parser(StatusDefinition, "status"))
        return definitions

    async def profiles_page(self, filters: Mapping[str, str], page: int = 1) -> ProfilePage:
        """One page of profiles matching ``filters``, in the client's pagination dialect.

        Prefer :meth:`find_profiles`, which checks every page and reads them all.
        """
        answer = await _read_page(self, "/profiles", filters, page, self.page_style)
        return ProfilePage(
            _parse_list(Profile, answer.rows, "profile"), answer.has_next, answer.total
        )

    async def tenant_page(
        self, number: int, size: int = MAX_PAGE_SIZE, style: PageStyle | None = None
    ) -> TenantPage:
        """Page ``number`` of every profile (no filter), ``size`` asked for, in the client's
        pagination dialect (or ``style``). The tenant may give fewer, or another page when it
        ignores the dialect: the caller compares ``number`` with the page it asked for."""
        body = await self._get_json("/profiles", (style or self.page_style).params(number, size))
        page = _envelope(body, number)
        profiles = _parse_list(Profile, page.rows, "profile")
        return TenantPage(profiles, page.total, page.current_page, page.per_page)

    async def find_profiles(
        self,
        filters: Mapping[str, str],
        *,
        max_profiles: int | None = None,
        stop_at: Callable[[list[Profile]], bool] | None = None,
    ) -> ProfileList:
        """Every profile matching ``filters``, each once, over every page (or until more than
        ``max_profiles`` were seen, or up to the first page for which ``stop_at`` is true: a
        page that proves the tenant ignored the filter, after which reading on would be in
        vain). Pages the tenant did not really give (it ignored the pagination dialect and
        answered page 1 again) are never trusted: the client switches to the other dialect, or
        raises ``BadResponse`` when neither works."""
        profiles, total, complete = await self._walk(
            "/profiles", filters, _parser(Profile, "profile"), max_profiles, stop_at
        )
        return ProfileList(profiles, total, complete)

    async def get_profile(
        self, profile_id: str, params: Mapping[str, str] | None = None
    ) -> Profile | None:
        """The profile with that id, or None when the tenant has none. With
        ``{"identity[handle]": H}`` the id is an identifier of identity ``H`` instead."""
        path = f"/profiles/{_path_id(profile_id)}"
        response = await self._request("GET", path, params=params, allow_404=True)
        if response.status_code == 404:
            return None
        return _parse_one(Profile, _data(_json(response, f"GET /v3{path}")), "profile")

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
        response = await self._request(method, "/profile/status/batch.json", json=body)
        batch_id = _batch_id(_json(response, f"{method} /v3/profile/status/batch.json"))
        if batch_id is None:
            raise BadResponse(
                f"{method} /v3/profile/status/batch.json answered {response.status_code} "
                f"without a batch_id: {_shorten(response.text)}"
            )
        return batch_id

    async def get_batch(self, batch_id: str) -> Batch | MissingBatch:
        """The batch's state, or ``MissingBatch`` when the tenant answers 404 (saying whether
        the answer shows the batches endpoint exists)."""
        path = f"/batches/{_path_id(batch_id)}"
        response = await self._request("GET", path, allow_404=True)
        if response.status_code == 404:
            try:
                body = response.json()
            except ValueError:
                body = None
            message = body.get("message") if isinstance(body, dict) else None
            return MissingBatch(batches_endpoint_shown(message))
        return _parse_one(Batch, _data(_json(response, f"GET /v3{path}")), "batch")

    async def probe(self, path: str, params: Mapping[str, str] | None = None) -> ProbeAnswer:
        """``GET path`` (under ``/v3``), retried like every request, and its answer whatever
        its HTTP status: for ``doctor``, which must see 404 bodies and headers. Raises only
        when no answer came (``Unreachable``, or a 429/5xx that outlasted the retries)."""
        response = await self._request("GET", path, params=params, check=False)
        try:
            body = response.json()
        except ValueError:
            body = None
        return ProbeAnswer(response.status_code, response.headers, body)

    # -- pagination ------------------------------------------------------------------------

    async def _walk(
        self,
        path: str,
        filters: Mapping[str, str],
        parse: Callable[[Any], M],
        limit: int | None = None,
        stop_at: Callable[[list[M]], bool] | None = None,
    ) -> tuple[list[M], int | None, bool]:
        """Every row of a paginated list, each once and parsed: ``(items, total, complete)``;
        ``complete`` is False when ``limit`` or ``stop_at`` ended the reading early."""
        style = self.page_style
        try:
            return await self._walk_in(style, path, filters, parse, limit, stop_at)
        except _PageMismatch:
            pass
        # The tenant ignored this dialect: switch for good, unless a concurrent walk already
        # did, and read again from page 1 (the page size may differ between dialects).
        if self.page_style is style:
            self.page_style = style.other
        try:
            return await self._walk_in(self.page_style, path, filters, parse, limit, stop_at)
        except _PageMismatch as mismatch:
            raise BadResponse(
                f"GET /v3{path} answered page {mismatch.given or 1} when asked for page "
                f"{mismatch.asked}, with page[number] and with page: the tool cannot read "
                "every page of this tenant's lists",
                hint="Run 'omneo-status doctor --json' and attach its output to a bug report.",
            ) from None

    async def _walk_in(
        self,
        style: PageStyle,
        path: str,
        filters: Mapping[str, str],
        parse: Callable[[Any], M],
        limit: int | None,
        stop_at: Callable[[list[M]], bool] | None,
    ) -> tuple[list[M], int | None, bool]:
        seen: dict[str, M] = {}
        total: int | None = None
        number = 1
        while True:
            page = await _read_page(self, path, filters, number, style)
            keys = [_row_key(row) for row in page.rows]
            if number > 1 and _repeats(page, number, keys, seen):
                raise _PageMismatch(number, page.current_page)
            total = page.total if total is None else total
            items = [parse(row) for row in page.rows]
            for key, item in zip(keys, items, strict=True):
                seen.setdefault(key, item)
            if limit is not None and len(seen) > limit and page.has_next:
                return list(seen.values()), total, False
            if stop_at is not None and page.has_next and stop_at(items):
                return list(seen.values()), total, False
            if not page.has_next or not page.rows or number >= _MAX_PAGES:
                return list(seen.values()), total, True
            number += 1

    # -- plumbing --------------------------------------------------------------------------

    async def _get_json(self, path: str, params: Mapping[str, str]) -> Any:
        return _json(await self._request("GET", path, params=params), f"GET /v3{path}")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        allow_404: bool = False,
        check: bool = True,
    ) -> Answer:
        try:
            response = await self._send_once(method, path, params, json)
        except _Retryable as failed:
            response = await self._retried(method, path, params, json, failed)
        if not check:
            return response
        return _checked(f"{method} /v3{path}", path, response, allow_404=allow_404)

    async def _retried(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json: Any,
        failed: _Retryable,
    ) -> Answer:
        """The answer to a request whose first attempt ``failed``, by the retry policy.

        The first attempt is made without tenacity, whose set-up costs a tenth of the
        client's CPU per request; here it is replayed as tenacity's first attempt (its
        failure raised again, nothing sent), so waits, hooks and the stop count as if
        tenacity had made it. tenacity itself is imported here, by the first retry."""
        from tenacity import AsyncRetrying, retry_if_exception_type

        what = f"{method} /v3{path}"
        budget = self.retry.budget(self._rng)
        retrying = AsyncRetrying(
            stop=budget.stop,
            wait=budget.wait,
            retry=retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            before_sleep=self._before_sleep(what),
            reraise=True,
        )
        replay: _Retryable | None = failed
        try:
            async for attempt in retrying:
                with attempt:
                    if replay is not None:
                        first, replay = replay, None
                        raise first
                    response = await self._send_once(method, path, params, json)
        except _Retryable as exc:
            _give_up(what, exc, budget)
        return response

    async def _send_once(
        self, method: str, path: str, params: Mapping[str, str] | None, json: Any
    ) -> Answer:
        url = self.url(path, params)
        headers, content = self._headers, None
        if json is not None:
            headers = self._json_headers
            content = jsonlib.dumps(
                json, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
        ticket = await self.governor.acquire()
        try:
            started = time.perf_counter()
            try:
                response = await self._send(method, url, headers, content, self._timeouts)
            except httpx.TransportError as exc:  # a timeout is one too
                reason = _transport_reason(exc)
                self.governor.observe(ticket, 0, {})
                self._observe(method, path, params, json, None, started, reason)
                _raise_if_untrusted(exc, f"{method} /v3{path}", self._host)
                raise _Retryable(reason) from None
            self._observe(method, path, params, json, response, started, None)
            wait = self.governor.observe(ticket, response.status_code, response.headers)
        finally:
            self.governor.release(ticket)
        if wait is None and "retry-after" in response.headers:  # a 503 may say when, too
            wait = parse_retry_after(response.headers["retry-after"], now_epoch=time.time())
        if response.status_code in RETRYABLE_STATUSES:
            raise _Retryable(f"HTTP {response.status_code}", wait, response.status_code)
        return response

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        """The absolute URL of ``path`` (under ``/v3``, already escaped), query included,
        escaped as ``httpx.QueryParams`` escapes it; never parsed again on its way out."""
        return self._base + path + (f"?{query_string(params)}" if params else "")

    def _observe(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any,
        response: Answer | None,
        started: float,
        error: str | None,
    ) -> None:
        """Hand the exchange to the observer (``-vv``, ``--trace``), if there is one."""
        if self._on_exchange is not None:
            elapsed_ms = (time.perf_counter() - started) * 1000
            self._on_exchange(
                _exchange(method, path, params, body, response, elapsed_ms, error, self._token)
            )

    def _before_sleep(self, what: str) -> Callable[[RetryCallState], None]:
        def hook(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if self._on_retry is not None and state.next_action is not None:
                reason = exc.reason if isinstance(exc, _Retryable) else str(exc)
                self._on_retry(f"{what}: {reason}", state.next_action.sleep)

        return hook


RATE_LIMITED_HINT = (
    "Another client may be using this tenant's rate limit (another job, or an integration on"
    " the same token). Run the same command again once it is done (the journal keeps what was"
    " done), or let requests wait longer with --rate-limit-wait SECONDS."
)
_SCOPES = (
    "it needs the scopes read-profiles, read-statuses and update-profiles "
    "(profiles.* or * where scopes are named that way) on this tenant"
)
_AUTH_HINTS = {
    401: "Check OMNEO_TOKEN: a token that used to work has most likely expired (tokens "
    "expire by default) or its user was deleted (which deletes the user's tokens), so make "
    f"a new one in CX Manager; {_SCOPES}.",
    403: f"Check OMNEO_TOKEN: {_SCOPES}.",
}
_BASE_URL_HINT = (
    "The base URL probably lacks /api: it should look like "
    "https://api.TENANT.getomneo.com/api (the tool adds /v3 itself)."
)
_NOT_JSON_HINT = (
    "Check the base URL (https://api.TENANT.getomneo.com/api) and any proxy or firewall "
    "in front of the API: something answered with a web page instead of the API."
)


_CA_HINT = (
    "If a proxy or security software on this network inspects TLS, point SSL_CERT_FILE at a "
    "CA bundle (PEM) that holds its certificate authority (the tool trusts the certifi bundle "
    "otherwise); else check the base URL and the computer's clock."
)
_PROXY_HINT = (
    "Name an HTTP proxy (HTTPS_PROXY=http://HOST:PORT, or just HOST:PORT), or add the tenant's "
    "host to NO_PROXY to reach it directly."
)


def _network_transport(
    base_url: str, connections: int, mode: TransportMode
) -> tuple[httpx.AsyncBaseTransport, str | None]:
    """The transport of real network runs, and the proxy it goes through (shown without
    credentials): the tool's own (``NetworkTransport``), or httpx's when the environment names
    a proxy for ``base_url`` (httpx speaks HTTP proxies, the tool's own does not) or ``mode``
    asks for it. A proxy that is not an HTTP one (SOCKS), or proxy settings httpx cannot
    read, raise ``Unreachable`` saying so."""
    try:
        proxy = env_proxy(base_url)
        url = httpx.URL(proxy.url) if proxy is not None else None
    except (ValueError, httpx.InvalidURL) as exc:  # NO_PROXY or a proxy httpx cannot read
        raise Unreachable(f"The proxy settings cannot be read: {exc}", hint=_PROXY_HINT) from None
    if proxy is None or url is None:
        if mode is TransportMode.AUTO:
            return NetworkTransport(connections), None
        return httpx.AsyncHTTPTransport(limits=_limits(connections)), None
    shown = str(url.copy_with(username=None, password=None))
    if url.scheme not in ("http", "https"):
        raise Unreachable(
            f"The proxy {shown} in {proxy.variable} is a {url.scheme} proxy, which the tool "
            "does not speak",
            hint=_PROXY_HINT,
        )
    return httpx.AsyncHTTPTransport(proxy=proxy.url, limits=_limits(connections)), shown


def _limits(connections: int) -> httpx.Limits:
    """httpx's pool sized as the tool's own: ``connections`` at most, all kept alive."""
    return httpx.Limits(max_connections=connections, max_keepalive_connections=connections)


def _name_of(transport: httpx.AsyncBaseTransport) -> str:
    """The transport's name in ``TransportInUse``."""
    if isinstance(transport, NetworkTransport):
        return "builtin"
    if isinstance(transport, httpx.AsyncHTTPTransport):
        return "httpx"
    return type(transport).__name__


def _raise_if_untrusted(exc: httpx.TransportError, what: str, host: str) -> None:
    """``Unreachable`` at once when ``exc`` comes of a TLS certificate that cannot be
    verified: unlike a dropped connection, no retry mends that."""
    cause = next((c for c in _causes(exc) if isinstance(c, ssl.SSLCertVerificationError)), None)
    if cause is None:
        return
    reason = cause.verify_message or cause.reason or str(cause)
    raise Unreachable(
        f"{what}: the TLS certificate of {host} cannot be verified ({reason})", hint=_CA_HINT
    ) from None


class Answer(Protocol):
    """What the client reads of an answer: an ``httpx.Response`` (the tests' transports), or
    the ``WholeAnswer`` of the network transport, which builds no ``httpx.Response``."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""

    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    @property
    def reason_phrase(self) -> str: ...
    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` when it is not)."""


class Fetch(Protocol):
    """Send one request (an absolute URL, already encoded) and return its answer read whole."""

    def __call__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        timeouts: Mapping[str, float | None],
    ) -> Awaitable[Answer]: ...


@runtime_checkable
class DirectTransport(Protocol):
    """A transport that sends a request without an ``httpx.Request`` (NetworkTransport)."""

    fetch: Fetch


class _Through:
    """``Fetch`` over any httpx transport (the tests' ``ASGITransport``, ``MockTransport``):
    what ``AsyncClient.request`` does for this client (no auth flow, cookies, redirects or
    event hooks: it uses none of them) at a fraction of its CPU per request."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def __call__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        timeouts: Mapping[str, float | None],
    ) -> Answer:
        extensions = {"timeout": timeouts}
        request = httpx.Request(
            method, url, headers=headers, content=content, extensions=extensions
        )
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response


def _checked(what: str, path: str, response: Answer, *, allow_404: bool) -> Answer:
    """The response, if its status is a success (or an allowed 404); else its error."""
    code = response.status_code
    if code < 300 or (code == 404 and allow_404):
        return response
    message = _message(response)
    if code in (401, 403):
        raise AuthError(
            f"{what} was refused ({code}): {message}", status_code=code, hint=_AUTH_HINTS[code]
        )
    if code == 404:
        hint = _BASE_URL_HINT if path == "/statuses" else None
        raise NotFoundError(f"{what} answered 404: {message}", status_code=code, hint=hint)
    if code == 422:
        raise ValidationFailed(
            f"{what} was rejected (422): {message}{_errors(response)}", status_code=code
        )
    raise ApiError(f"{what} answered {code}: {message}", status_code=code)


def _exchange(
    method: str,
    path: str,
    params: Mapping[str, str] | None,
    body: Any,
    response: Answer | None,
    elapsed_ms: float,
    error: str | None,
    token: SecretStr,
) -> Exchange:
    """The trace record of one attempt: built from the method, path, bodies and the traced
    headers only, so it never holds the Authorization header; the token is blanked out of
    every text too, since a proxy's error page may echo the request headers back."""
    secret = token.get_secret_value()

    def clean(text: str | None) -> str | None:
        if text is None:
            return None
        return _cut(text.replace(secret, "[token]") if secret else text)

    query = query_string(params) if params else ""
    return Exchange(
        method=method,
        path=f"/v3{path}" + (f"?{query}" if query else ""),
        status=response.status_code if response is not None else 0,
        elapsed_ms=elapsed_ms,
        request_body=clean(jsonlib.dumps(body)) if body is not None else None,
        response_body=clean(response.text) if response is not None else None,
        headers={
            name: response.headers[name]
            for name in TRACED_HEADERS
            if response is not None and name in response.headers
        },
        error=clean(error),
    )


def _give_up(what: str, exc: _Retryable, budget: RetryBudget) -> NoReturn:
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


async def _read_page(
    client: OmneoClient, path: str, filters: Mapping[str, str], number: int, style: PageStyle
) -> ListPage:
    """Page ``number`` of a list endpoint, asked for in ``style``."""
    query = {**filters, **style.params(number)}
    return _envelope(await client._get_json(path, query), number)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it came of, each once (httpx's own transport wraps an error of the
    socket twice: in httpcore's, then in httpx's)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc).strip()
    kind = type(exc).__name__
    return f"{kind}: {text}" if text else kind


def _cut(text: str) -> str:
    return text if len(text) <= BODY_LIMIT else text[:BODY_LIMIT] + f"... ({len(text):,} chars)"


def query_string(params: Mapping[str, str]) -> str:
    """``params`` as a query string, byte for byte what ``str(httpx.QueryParams(params))``
    gives (``urlencode``: ``quote_plus`` with nothing safe) at a fraction of its CPU."""
    return "&".join(f"{_query_name(name)}={_query_value(value)}" for name, value in params.items())


@lru_cache(maxsize=64)
def _query_name(name: str) -> str:
    return quote_plus(name, safe="")


_PLUS_ESCAPES = {
    code: "+" if code == 0x20 else f"%{code:02X}"
    for code in range(128)
    if not (chr(code).isalnum() or chr(code) in "_.-~")
}
"""``quote_plus(text, safe="")`` of each ASCII character it changes, for ``str.translate``."""


def _query_value(value: str) -> str:
    # str.translate runs in C: a tenth of quote_plus's time on an email address.
    return value.translate(_PLUS_ESCAPES) if value.isascii() else quote_plus(value, safe="")


def _path_id(value: str) -> str:
    return quote(str(value), safe="")


def _json(response: Answer, what: str) -> Any:
    """The body of the answer to ``what`` (``"GET /v3/profiles"``), parsed as JSON."""
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise NotJsonAnswer(
            f"{what} answered {response.status_code} with a body that is not JSON ({kind})",
            status_code=response.status_code,
            hint=_NOT_JSON_HINT,
        ) from None


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


def _data(body: Any) -> Any:
    if isinstance(body, dict) and "data" in body:
        return body["data"]
    raise BadResponse("The API answered without a 'data' field")


def _message(response: Answer) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no message"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.reason_phrase or "no message"


def _errors(response: Answer) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, dict) or not errors:
        return ""
    field, messages = next(iter(errors.items()))
    first = messages[0] if isinstance(messages, list) and messages else messages
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f" [{field}: {first}]{more}"


def _envelope(body: Any, page: int) -> ListPage:
    """One page of a Laravel paginator answer (or of a bare list, which is all of it)."""
    if isinstance(body, list):
        return ListPage(body, False, len(body), None, None)
    rows = _data(body)
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
    return jsonlib.dumps(row, sort_keys=True, default=str)


def _repeats(page: ListPage, number: int, keys: list[str], seen: Mapping[str, Any]) -> bool:
    """Whether page ``number`` is not the page asked for: the tenant says it gave another
    one, or every row on it was already seen on earlier pages."""
    if page.current_page is not None and page.current_page != number:
        return True
    return bool(keys) and all(key in seen for key in keys)


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
