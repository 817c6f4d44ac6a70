"""One exchange with the tenant: a request sent once over the chosen transport, paced by the
governor, recorded for ``--trace``, sent again by the retry policy when it failed in a way
worth it, and its answer checked (an error status becomes the error that says what to do).

The transport is injected, so tests reach the sandbox in-process (``httpx.ASGITransport``).
Without one the requests go over the network through the tool's own HTTP/1.1 transport
(:mod:`omneo_status.api.transport`), or through httpx's own when a proxy applies or
``OMNEO_TRANSPORT=httpx`` asks for it: either way with httpx's API and exceptions.
"""

from __future__ import annotations

import json as jsonlib
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, quote_plus

import httpx
from pydantic import SecretStr

from omneo_status import __version__
from omneo_status.api.governor import RateGovernor, parse_retry_after
from omneo_status.api.retrying import RETRYABLE_STATUSES, Retrier, Retryable
from omneo_status.api.trace import BODY_LIMIT, TRACED_HEADERS, Exchange
from omneo_status.api.transport import ACCEPTED_CODINGS, NetworkTransport, env_proxy
from omneo_status.errors import (
    ApiError,
    AuthError,
    BadResponse,
    ConfigError,
    NotFoundError,
    NotJsonAnswer,
    Unreachable,
    ValidationFailed,
)
from omneo_status.options import CONNECT_TIMEOUT, TransportMode

ExchangeHook = Callable[[Exchange], None]


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


Fetch = Callable[
    [str, str, Mapping[str, str], bytes | None, Mapping[str, float | None]], Awaitable[Answer]
]
"""Send one request and return its answer read whole: ``(method, url, headers, content,
timeouts)``, the URL absolute and already encoded, the timeouts as ``httpx.Timeout.as_dict``."""


@runtime_checkable
class DirectTransport(Protocol):
    """A transport that sends a request without an ``httpx.Request`` (NetworkTransport)."""

    fetch: Fetch


@dataclass(frozen=True)
class TransportInUse:
    """Which transport carries a client's requests: what ``--trace`` and ``doctor --json``
    name, so a bug report says which one met the bug."""

    name: str
    """``builtin`` (the tool's own, :mod:`omneo_status.api.transport`), ``httpx`` (httpx's own),
    or the class of a transport given to the client (``ASGITransport`` for ``--sandbox``)."""
    proxy: str | None = None
    """The proxy the requests go through (without any credentials), if one applies."""

    def to_json(self) -> dict[str, str | None]:
        """The ``transport`` object of ``--trace`` and ``doctor --json``."""
        return {"name": self.name, "proxy": self.proxy}


class Exchanger:
    """Sends requests under ``base_url``'s ``/v3`` and returns their checked answers."""

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        transport: httpx.AsyncBaseTransport | None,
        *,
        governor: RateGovernor,
        retrier: Retrier,
        timeout: float,
        on_exchange: ExchangeHook | None,
        mode: TransportMode,
    ) -> None:
        self._governor = governor
        self._retrier = retrier
        self._token = token
        self._on_exchange = on_exchange
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
            transport, proxy = _network_transport(base_url, governor.max_concurrency, mode)
        self.transport_in_use = TransportInUse(_name_of(transport), proxy)
        # Requests go to the transport directly: through its ``fetch`` when it has one
        # (NetworkTransport, which writes the Accept-Encoding of the codings it decodes
        # itself), else as an httpx.Request (_Through).
        self.transport = transport
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
        self._timeouts = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)).as_dict()

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        """The absolute URL of ``path`` (under ``/v3``, already escaped), query included,
        escaped as ``httpx.QueryParams`` escapes it; never parsed again on its way out."""
        return self._base + path + (f"?{query_string(params)}" if params else "")

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        allow_404: bool = False,
        check: bool = True,
    ) -> Answer:
        """The answer to ``method path`` (``json`` as its body), sent again by the retry
        policy while it fails in a way worth it; with ``check``, an answer whose status is an
        error (but an allowed 404) raises the error that says what to do."""
        try:
            answer = await self.send_once(method, path, params, json)
        except Retryable as failed:
            answer = await self._retrier.resend(
                f"{method} /v3{path}", failed, lambda: self.send_once(method, path, params, json)
            )
        if not check:
            return answer
        return _checked(f"{method} /v3{path}", path, answer, allow_404=allow_404)

    async def send_once(
        self, method: str, path: str, params: Mapping[str, str] | None, json: Any
    ) -> Answer:
        """The answer to one attempt, when the governor lets it start; ``Retryable`` when it
        got no answer or one of ``RETRYABLE_STATUSES``, ``Unreachable`` when the TLS
        certificate cannot be verified."""
        url = self.url(path, params)
        headers, content = self._headers, None
        if json is not None:
            headers = self._json_headers
            content = jsonlib.dumps(
                json, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
        ticket = await self._governor.acquire()
        try:
            started = time.perf_counter()
            try:
                response = await self._send(method, url, headers, content, self._timeouts)
            except httpx.TransportError as exc:  # a timeout is one too
                reason = _transport_reason(exc)
                self._governor.observe(ticket, 0, {})
                self._observe(method, path, params, json, None, started, reason)
                _raise_if_untrusted(exc, f"{method} /v3{path}", self._host)
                raise Retryable(reason) from None
            self._observe(method, path, params, json, response, started, None)
            wait = self._governor.observe(ticket, response.status_code, response.headers)
        finally:
            self._governor.release(ticket)
        if wait is None and "retry-after" in response.headers:  # a 503 may say when, too
            wait = parse_retry_after(response.headers["retry-after"], now_epoch=time.time())
        if response.status_code in RETRYABLE_STATUSES:
            raise Retryable(f"HTTP {response.status_code}", wait, response.status_code)
        return response

    async def aclose(self) -> None:
        """Close the transport and its connections."""
        await self.transport.aclose()

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
                _record(method, path, params, body, response, elapsed_ms, error, self._token)
            )


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


# -- what an answer says -----------------------------------------------------------------------


def json_body(response: Answer, what: str) -> Any:
    """The body of the answer to ``what`` (``"GET /v3/profiles"``), parsed as JSON;
    ``NotJsonAnswer`` (with a hint at the base URL or a proxy) when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise NotJsonAnswer(
            f"{what} answered {response.status_code} with a body that is not JSON ({kind})",
            status_code=response.status_code,
            hint=_NOT_JSON_HINT,
        ) from None


def data(body: Any) -> Any:
    """The ``data`` field of an answer's body; ``BadResponse`` when it has none."""
    if isinstance(body, dict) and "data" in body:
        return body["data"]
    raise BadResponse("The API answered without a 'data' field")


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


# -- the trace record --------------------------------------------------------------------------


def _record(
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


def _cut(text: str) -> str:
    return text if len(text) <= BODY_LIMIT else text[:BODY_LIMIT] + f"... ({len(text):,} chars)"


# -- URLs --------------------------------------------------------------------------------------


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


def path_id(value: str) -> str:
    """``value`` escaped as one segment of a URL's path (an id, a batch id)."""
    return quote(str(value), safe="")


# -- the transport and its failures ------------------------------------------------------------


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


_CA_HINT = (
    "If a proxy or security software on this network inspects TLS, point SSL_CERT_FILE at a "
    "CA bundle (PEM) that holds its certificate authority (the tool trusts the certifi bundle "
    "otherwise); else check the base URL and the computer's clock."
)
_PROXY_HINT = (
    "Name an HTTP proxy (HTTPS_PROXY=http://HOST:PORT, or just HOST:PORT), or add the tenant's "
    "host to NO_PROXY to reach it directly."
)
