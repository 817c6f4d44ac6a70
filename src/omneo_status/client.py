"""The async Omneo v3 client: one place where requests are built, sent, retried and read.

The transport and the sleep function are injected, so tests reach the sandbox in-process
(``httpx.ASGITransport``) and retry tests record their waits instead of sleeping. Without an
injected transport the client goes over the network through aiohttp's
(:mod:`omneo_status.transport`), still with httpx's API.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from omneo_status.trace import BODY_LIMIT, TRACED_HEADERS, Exchange

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
    """

    max_retries: int = 5
    """Retries after the first attempt; 0 disables retrying."""
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_total_wait: float = 300.0
    """Give up once the waits of one request would add up to more than this."""

    def wait(self, state: RetryCallState, rng: random.Random) -> float:
        """The wait before the next attempt: what the answer asked for, else a jittered
        exponential back-off."""
        exc = state.outcome.exception() if state.outcome else None
        backoff = min(self.max_backoff, self.initial_backoff * (2 ** (state.attempt_number - 1)))
        backoff = backoff * (0.5 + rng.random() / 2)  # jitter keeps clients apart
        hinted = exc.wait if isinstance(exc, _Retryable) else None
        return hinted if hinted is not None else backoff

    def stop(self, state: RetryCallState) -> bool:
        """Whether to give up: out of retries, or the waits would add up to too much."""
        if state.attempt_number > self.max_retries:
            return True
        return state.idle_for + (state.upcoming_sleep or 0.0) > self.max_total_wait


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
        if transport is None:
            transport = _network_transport(base_url, self.governor.max_concurrency)
        # Encoded once (IDNA host, percent-escapes): each request's URL is this plus a path
        # and a query that the client itself escapes, so it is never parsed again.
        try:
            self._base = str(httpx.URL(base_url.rstrip("/") + "/v3"))
        except httpx.InvalidURL as exc:
            raise ConfigError(f"Invalid base URL {base_url!r}: {exc}") from None
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept": "application/json",
                "User-Agent": f"omneo-status/{__version__}",
            },
            follow_redirects=False,
        )
        # Requests go to the transport directly with the AsyncClient's defaults: through its
        # ``fetch`` when it has one (NetworkTransport, which sends the Accept-Encoding of the
        # codings it decodes itself), else as an httpx.Request (_Through).
        self._transport = transport
        self._send: Fetch = (
            transport.fetch if isinstance(transport, DirectTransport) else _Through(transport)
        )
        direct = not isinstance(self._send, _Through)
        self._headers = {
            name: value
            for name, value in self._http.headers.multi_items()
            if not (direct and name.lower() == "accept-encoding")
        }
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        self._timeouts = self._http.timeout.as_dict()

    async def __aenter__(self) -> OmneoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport and its connections."""
        await self._http.aclose()

    # -- endpoints -------------------------------------------------------------------------

    async def list_statuses(self) -> list[StatusDefinition]:
        """Every status definition of the tenant, each once, over all its pages."""
        rows, _, _ = await self._walk("/statuses", {})
        return _parse_list(StatusDefinition, rows, "status")

    async def profiles_page(self, filters: Mapping[str, str], page: int = 1) -> ProfilePage:
        """One page of profiles matching ``filters``, in the client's pagination dialect.

        Prefer :meth:`find_profiles`, which checks every page and reads them all.
        """
        answer = await _read_page(self, "/profiles", filters, page, self.page_style)
        return ProfilePage(
            _parse_list(Profile, answer.rows, "profile"), answer.has_next, answer.total
        )

    async def tenant_page(self, number: int, size: int = MAX_PAGE_SIZE) -> TenantPage:
        """Page ``number`` of every profile (no filter), ``size`` asked for, in the client's
        pagination dialect. The tenant may give fewer, or another page when it ignores the
        dialect: the caller compares ``number`` with the page it asked for."""
        body = await self._get_json("/profiles", self.page_style.params(number, size))
        page = _envelope(body, number)
        profiles = _parse_list(Profile, page.rows, "profile")
        return TenantPage(profiles, page.total, page.current_page, page.per_page)

    async def find_profiles(
        self, filters: Mapping[str, str], *, max_profiles: int | None = None
    ) -> ProfileList:
        """Every profile matching ``filters``, each once, over every page (or until more than
        ``max_profiles`` were seen). Pages the tenant did not really give (it ignored the
        pagination dialect and answered page 1 again) are never trusted: the client switches
        to the other dialect, or raises ``BadResponse`` when neither works."""
        rows, total, complete = await self._walk("/profiles", filters, limit=max_profiles)
        return ProfileList(_parse_list(Profile, rows, "profile"), total, complete)

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

    async def get_batch(self, batch_id: str) -> Batch | None:
        """The batch's state, or None when the tenant answers 404 (no batch endpoint)."""
        path = f"/batches/{_path_id(batch_id)}"
        response = await self._request("GET", path, allow_404=True)
        if response.status_code == 404:
            return None
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
        self, path: str, filters: Mapping[str, str], *, limit: int | None = None
    ) -> tuple[list[Any], int | None, bool]:
        """Every row of a paginated list, each once: ``(rows, total, complete)``."""
        style = self.page_style
        try:
            return await self._walk_in(style, path, filters, limit)
        except _PageMismatch:
            pass
        # The tenant ignored this dialect: switch for good, unless a concurrent walk already
        # did, and read again from page 1 (the page size may differ between dialects).
        if self.page_style is style:
            self.page_style = style.other
        try:
            return await self._walk_in(self.page_style, path, filters, limit)
        except _PageMismatch as mismatch:
            raise BadResponse(
                f"GET /v3{path} answered page {mismatch.given or 1} when asked for page "
                f"{mismatch.asked}, with page[number] and with page: the tool cannot read "
                "every page of this tenant's lists",
                hint="Run 'omneo-status doctor --json' and attach its output to a bug report.",
            ) from None

    async def _walk_in(
        self, style: PageStyle, path: str, filters: Mapping[str, str], limit: int | None
    ) -> tuple[list[Any], int | None, bool]:
        seen: dict[str, Any] = {}
        total: int | None = None
        number = 1
        while True:
            page = await _read_page(self, path, filters, number, style)
            keys = [_row_key(row) for row in page.rows]
            if number > 1 and _repeats(page, number, keys, seen):
                raise _PageMismatch(number, page.current_page)
            total = page.total if total is None else total
            for key, row in zip(keys, page.rows, strict=True):
                seen.setdefault(key, row)
            if limit is not None and len(seen) > limit and page.has_next:
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
        retrying = AsyncRetrying(
            stop=self.retry.stop,
            wait=lambda state: self.retry.wait(state, self._rng),
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
            _give_up(what, exc)
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


def _network_transport(base_url: str, connections: int) -> httpx.AsyncBaseTransport:
    """The transport of real network runs: the tool's own (``NetworkTransport``), or httpx's
    when the environment names a proxy for ``base_url``, which httpx speaks and it does not."""
    from omneo_status.transport import NetworkTransport, env_proxy

    proxy = env_proxy(base_url)
    if proxy is None:
        return NetworkTransport(connections)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncHTTPTransport(proxy=proxy, limits=limits)


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


def _give_up(what: str, exc: _Retryable) -> NoReturn:
    if exc.status == 429:
        raise RateLimited(
            f"{what}: still rate limited (429) after retries",
            status_code=429,
            hint="Lower --max-rps or --concurrency, or try again later.",
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
