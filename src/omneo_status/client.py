"""The async Omneo v3 client: one place where requests are built, sent, retried and read.

The transport and the sleep function are injected, so tests reach the sandbox in-process
(``httpx.ASGITransport``) and retry tests record their waits instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from omneo_status import __version__
from omneo_status.errors import (
    ApiError,
    AuthError,
    BadResponse,
    NotFoundError,
    RateLimited,
    ServerError,
    Unreachable,
    ValidationFailed,
)
from omneo_status.governor import RateGovernor, parse_retry_after
from omneo_status.models import Action, Batch, Profile, StatusDefinition
from omneo_status.trace import BODY_LIMIT, TRACED_HEADERS, Exchange

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_PAGE_SIZE = 100
_MAX_PAGES = 100_000
POOL_SIZE = 8
"""Connections per httpx pool. httpcore's pool walks every connection it holds (and polls
each idle socket) whenever a request starts or ends, so one pool of 32 costs several times
the CPU per request of four pools of 8: a high --concurrency is spread over small pools."""

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry: connection errors, timeouts, 408, 409, 425, 429, 500,
    502, 503 and 504, honouring ``Retry-After`` when the answer gives one."""

    max_retries: int = 5
    """Retries after the first attempt; 0 disables retrying."""
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_total_wait: float = 300.0
    """Give up once the waits of one request would add up to more than this."""


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
    ) -> None:
        self.governor = governor or RateGovernor()
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._on_retry = on_retry
        self._on_exchange = on_exchange
        self._rng = rng or random.Random()
        wanted = max(self.governor.max_concurrency, 1)
        pools = 1 if transport is not None else -(-wanted // POOL_SIZE)
        size = -(-wanted // pools)
        self._pools = [
            httpx.AsyncClient(
                base_url=base_url.rstrip("/") + "/v3",
                transport=transport,
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                headers={
                    "Authorization": f"Bearer {token.get_secret_value()}",
                    "Accept": "application/json",
                    "User-Agent": f"omneo-status/{__version__}",
                },
                follow_redirects=False,
            )
            for _ in range(pools)
        ]
        self._free = [http for http in self._pools for _ in range(size)]
        """One entry per connection not in use (the governor bounds how many are)."""

    async def __aenter__(self) -> OmneoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pools."""
        for http in self._pools:
            await http.aclose()

    # -- endpoints -------------------------------------------------------------------------

    async def list_statuses(self) -> list[StatusDefinition]:
        """Every status definition of the tenant, following pagination to the end."""
        found: list[StatusDefinition] = []
        async for rows, _ in self._pages("/statuses", {}):
            found.extend(_parse_list(StatusDefinition, rows, "status"))
        return found

    async def profiles_page(self, filters: Mapping[str, str], page: int = 1) -> ProfilePage:
        """One page of profiles matching ``filters`` (``{"filter[email]": ...}``)."""
        params = {**filters, "page[size]": str(MAX_PAGE_SIZE), "page[number]": str(page)}
        body = await self._get_json("/profiles", params)
        rows, has_next, total = _envelope(body, page)
        return ProfilePage(_parse_list(Profile, rows, "profile"), has_next, total)

    async def find_profiles(
        self, filters: Mapping[str, str], *, max_profiles: int | None = None
    ) -> ProfileList:
        """Every profile matching ``filters``, each once, following the pages to the end
        (or until more than ``max_profiles`` were seen)."""
        seen: dict[str, Profile] = {}
        total: int | None = None
        page_number = 1
        while True:
            page = await self.profiles_page(filters, page_number)
            total = page.total if total is None else total
            for profile in page.profiles:
                seen.setdefault(profile.id, profile)
            if max_profiles is not None and len(seen) > max_profiles and page.has_next:
                return ProfileList(list(seen.values()), total, complete=False)
            if not page.has_next or not page.profiles or page_number >= _MAX_PAGES:
                return ProfileList(list(seen.values()), total, complete=True)
            page_number += 1

    async def get_profile(self, profile_id: str) -> Profile | None:
        """The profile with that id, or None when the tenant has none."""
        response = await self._request("GET", f"/profiles/{_path_id(profile_id)}", allow_404=True)
        if response.status_code == 404:
            return None
        return _parse_one(Profile, _data(_json(response)), "profile")

    async def send_batch(self, action: Action, items: Sequence[tuple[str, Sequence[str]]]) -> str:
        """Queue one status batch (POST adds, DELETE removes); returns its ``batch_id``.

        Safe to repeat: the endpoint merges and de-duplicates handles server-side.
        """
        body = {
            "profiles": [
                {"profile_id": profile_id, "statuses": list(handles)}
                for profile_id, handles in items
            ]
        }
        method = "POST" if action is Action.ASSIGN else "DELETE"
        response = await self._request(method, "/profile/status/batch.json", json=body)
        data = _data(_json(response))
        batch_id = data.get("batch_id") if isinstance(data, dict) else None
        if batch_id is None or isinstance(batch_id, bool) or str(batch_id).strip() == "":
            raise BadResponse(
                f"{method} /v3/profile/status/batch.json answered {response.status_code} "
                "without a batch_id"
            )
        return str(batch_id)

    async def get_batch(self, batch_id: str) -> Batch | None:
        """The batch's state, or None when the tenant answers 404 (no batch endpoint)."""
        response = await self._request("GET", f"/batches/{_path_id(batch_id)}", allow_404=True)
        if response.status_code == 404:
            return None
        return _parse_one(Batch, _data(_json(response)), "batch")

    # -- plumbing --------------------------------------------------------------------------

    async def _pages(
        self, path: str, params: Mapping[str, str]
    ) -> AsyncIterator[tuple[list[Any], int]]:
        page = 1
        while page <= _MAX_PAGES:
            query = {**params, "page[size]": str(MAX_PAGE_SIZE), "page[number]": str(page)}
            rows, has_next, _ = _envelope(await self._get_json(path, query), page)
            yield rows, page
            if not has_next or not rows:
                return
            page += 1

    async def _get_json(self, path: str, params: Mapping[str, str]) -> Any:
        return _json(await self._request("GET", path, params=params))

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        allow_404: bool = False,
    ) -> httpx.Response:
        what = f"{method} /v3{path}"
        retrying = AsyncRetrying(
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            before_sleep=self._before_sleep(what),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._send_once(method, path, params, json)
        except _Retryable as exc:
            _give_up(what, exc)
        return self._check(what, response, allow_404=allow_404)

    async def _send_once(
        self, method: str, path: str, params: Mapping[str, str] | None, json: Any
    ) -> httpx.Response:
        async with self.governor.slot() as ticket:
            pooled = bool(self._free)  # always, unless the governor is shared more widely
            http = self._free.pop() if pooled else self._pools[0]
            started = time.perf_counter()
            try:
                response = await http.request(method, path, params=params, json=json)
            except httpx.TimeoutException:
                self.governor.observe(ticket, 0, {})
                self._observe(method, path, params, json, None, started, "timed out")
                raise _Retryable("timed out") from None
            except httpx.TransportError as exc:
                self.governor.observe(ticket, 0, {})
                self._observe(method, path, params, json, None, started, _transport_reason(exc))
                raise _Retryable(_transport_reason(exc)) from None
            finally:
                if pooled:
                    self._free.append(http)
            self._observe(method, path, params, json, response, started, None)
            wait = self.governor.observe(ticket, response.status_code, response.headers)
        if wait is None and "retry-after" in response.headers:  # a 503 may say when, too
            wait = parse_retry_after(response.headers["retry-after"], now_epoch=time.time())
        if response.status_code in RETRYABLE_STATUSES:
            raise _Retryable(f"HTTP {response.status_code}", wait, response.status_code)
        return response

    def _observe(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any,
        response: httpx.Response | None,
        started: float,
        error: str | None,
    ) -> None:
        """Hand the exchange to the observer (``-vv``, ``--trace``), if there is one."""
        if self._on_exchange is None:
            return
        query = str(httpx.QueryParams(params)) if params else ""
        self._on_exchange(
            Exchange(
                method=method,
                path=f"/v3{path}" + (f"?{query}" if query else ""),
                status=response.status_code if response is not None else 0,
                elapsed_ms=(time.perf_counter() - started) * 1000,
                request_body=_cut(jsonlib.dumps(body)) if body is not None else None,
                response_body=_cut(response.text) if response is not None else None,
                headers={
                    name: response.headers[name]
                    for name in TRACED_HEADERS
                    if response is not None and name in response.headers
                },
                error=error,
            )
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = min(
            self.retry.max_backoff,
            self.retry.initial_backoff * (2 ** (state.attempt_number - 1)),
        )
        backoff = backoff * (0.5 + self._rng.random() / 2)  # jitter keeps clients apart
        hinted = exc.wait if isinstance(exc, _Retryable) else None
        return hinted if hinted is not None else backoff

    def _stop(self, state: RetryCallState) -> bool:
        if state.attempt_number > self.retry.max_retries:
            return True
        return state.idle_for + (state.upcoming_sleep or 0.0) > self.retry.max_total_wait

    def _before_sleep(self, what: str) -> Callable[[RetryCallState], None]:
        def hook(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if self._on_retry is not None and state.next_action is not None:
                reason = exc.reason if isinstance(exc, _Retryable) else str(exc)
                self._on_retry(f"{what}: {reason}", state.next_action.sleep)

        return hook

    def _check(self, what: str, response: httpx.Response, *, allow_404: bool) -> httpx.Response:
        code = response.status_code
        if code < 300 or (code == 404 and allow_404):
            return response
        message = _message(response)
        if code in (401, 403):
            raise AuthError(
                f"{what} was refused ({code}): {message}",
                status_code=code,
                hint="Check OMNEO_TOKEN: it needs read-profiles, read-statuses and "
                "update-profiles, and must belong to this tenant.",
            )
        if code == 404:
            raise NotFoundError(f"{what} answered 404: {message}", status_code=code)
        if code == 422:
            raise ValidationFailed(
                f"{what} was rejected (422): {message}{_errors(response)}", status_code=code
            )
        raise ApiError(f"{what} answered {code}: {message}", status_code=code)


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


def _transport_reason(exc: httpx.TransportError) -> str:
    text = str(exc).strip()
    kind = type(exc).__name__
    return f"{kind}: {text}" if text else kind


def _cut(text: str) -> str:
    return text if len(text) <= BODY_LIMIT else text[:BODY_LIMIT] + f"... ({len(text):,} chars)"


def _path_id(value: str) -> str:
    return quote(str(value), safe="")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise BadResponse(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} with a body that is not JSON"
        ) from None


def _data(body: Any) -> Any:
    if isinstance(body, dict) and "data" in body:
        return body["data"]
    raise BadResponse("The API answered without a 'data' field")


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no message"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.reason_phrase or "no message"


def _errors(response: httpx.Response) -> str:
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


def _envelope(body: Any, page: int) -> tuple[list[Any], bool, int | None]:
    """Rows of a Laravel paginator page, whether a next page exists, and the total."""
    if isinstance(body, list):
        return body, False, len(body)
    rows = _data(body)
    if not isinstance(rows, list):
        raise BadResponse("A list endpoint answered 'data' that is not a list")
    links = body.get("links") if isinstance(body.get("links"), dict) else {}
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    total = meta.get("total") if isinstance(meta.get("total"), int) else None
    last_page = meta.get("last_page")
    has_next = page < last_page if isinstance(last_page, int) else bool(links.get("next"))
    return rows, has_next, total


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
