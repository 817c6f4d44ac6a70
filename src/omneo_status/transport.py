"""The transport of real network runs: keep-alive HTTP/1.1 connections, parsed by httptools.

httpx stays the API everywhere: the client, its retries, the governor and ``on_exchange`` read
answers the way they read an ``httpx.Response``, every failure to get an answer is an httpx
exception, and the tests inject ``httpx.ASGITransport``. Only the bytes on the wire go through
this module, for the tool's own requests: a GET or a POST with a JSON body, to the one tenant,
from a URL the client has already encoded. Parsing HTTP is left to httptools (llhttp, the
parser of Node.js, in C: status line, headers, chunked and fixed-length bodies, keep-alive);
TLS to the event loop. Per request that costs a fraction of the client CPU of aiohttp's
``ClientSession`` and a twentieth of httpcore's (``bench/transport.py``: 0.01-0.04 ms against
0.08-0.17 ms and 0.9-1.0 ms; ``bench/README.md``), and httptools imports in a millisecond.

Two ways in:

- ``fetch``, which ``OmneoClient`` calls: method, URL, headers and a body in bytes; the answer
  read whole and decoded, as a ``WholeAnswer`` (what the client reads of an
  ``httpx.Response``: status, headers, body, ``text`` and ``json()``).
- ``handle_async_request``, the ``httpx.AsyncBaseTransport`` method, for an ``httpx.AsyncClient``
  (the same ``fetch`` underneath; the body comes back decoded).

The promises the client's retry policy relies on hold as with httpx's own transport: a timeout
raises ``httpx.TimeoutException`` (``ConnectTimeout``, ``ReadTimeout``, ``PoolTimeout``), any
other failure to get an answer an ``httpx.TransportError`` (a refused or failed connection
``ConnectError``, a connection cut mid-answer ``ReadError``, an answer that is not HTTP
``RemoteProtocolError``). A kept-alive connection the server closed while it sat idle is
replaced once, at once, without a retry's wait. TLS is verified as httpx verifies it (the same
``httpx.create_ssl_context``, made the first time an https URL is met). Answers may come
compressed with gzip or deflate, which is what the requests say they accept.

Proxies are not spoken here: when the environment names one for the tenant's URL
(``env_proxy``), the client goes through httpx's own transport instead, which speaks them all.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

import httptools
import httpx

Timeouts = Mapping[str, float | None]
"""httpx's timeout extension: ``connect``, ``read``, ``write`` and ``pool`` seconds."""

ACCEPTED_CODINGS = "gzip, deflate"
"""The ``Accept-Encoding`` of every request: the codings ``_decoded`` undoes."""
_SKIPPED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "accept-encoding", "connection"}
)
"""Request headers the transport writes itself."""


class AnswerHeaders(Mapping[str, str]):
    """An answer's headers as ``httpx.Headers`` reads them: names in any case, a repeated
    header's values joined by ", " (built in a dict once: a tenth of ``httpx.Headers``' cost
    for the few lookups the client makes on every answer)."""

    __slots__ = ("_by_name", "_raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        by_name: dict[str, str] = {}
        for name, value in raw:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            by_name[key] = f"{by_name[key]}, {text}" if key in by_name else text
        self._by_name = by_name

    def __getitem__(self, name: str) -> str:
        return self._by_name[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def multi_items(self) -> list[tuple[str, str]]:
        """Every header as it came, repeated ones apart (names lower-cased)."""
        return [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in self._raw]


@dataclass(frozen=True, slots=True)
class WholeAnswer:
    """An answer read whole and decoded: the part of ``httpx.Response`` the client reads."""

    status_code: int
    headers: Mapping[str, str]
    """Names in any case."""
    content: bytes
    reason_phrase: str

    @property
    def text(self) -> str:
        """The body as text, in the charset the answer names (UTF-8 when it names none)."""
        try:
            return self.content.decode(_charset(self.headers.get("content-type", "")), "replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` when it is not)."""
        return json.loads(self.content)


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int
    host_header: str


class NetworkTransport(httpx.AsyncBaseTransport):
    """At most ``connections`` connections open at once, each kept alive ``keepalive``
    seconds after its last answer; no cookies and no redirects (the tool uses neither)."""

    def __init__(self, connections: int, *, keepalive: float = 4.0) -> None:
        self._connections = connections
        self._keepalive = keepalive
        self._slots = asyncio.Semaphore(connections)
        self._origins: dict[str, _Origin] = {}
        self._idle: dict[_Origin, deque[_Connection]] = {}
        self._closed = False

    @cached_property
    def _ssl(self) -> ssl.SSLContext:
        """httpx's TLS context (its CA store: a tenth of a second of CPU), made the first
        time an https URL is met."""
        return httpx.create_ssl_context()

    async def fetch(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        timeouts: Timeouts,
    ) -> WholeAnswer:
        """Send one request to ``url`` (absolute and already percent-encoded, as
        ``str(httpx.URL(...))`` gives it) and return its answer, read whole and decoded."""
        origin, target = self._split(url)
        head = _head(method, target, origin.host_header, headers, content)
        if self._slots.locked():
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("No connection came free in time") from None
        else:
            await self._slots.acquire()
        try:
            return await self._exchange(origin, head + (content or b""), timeouts)
        finally:
            self._slots.release()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` (``httpx.AsyncBaseTransport``) and return its answer, read whole
        and already decoded (so without its ``Content-Encoding``)."""
        content = await request.aread()
        timeouts: Timeouts = request.extensions.get("timeout", {})
        answer = await self.fetch(
            request.method, str(request.url), request.headers, content or None, timeouts
        )
        assert isinstance(answer.headers, AnswerHeaders)
        kept = [
            (name, value)
            for name, value in answer.headers.multi_items()
            if name not in ("content-encoding", "content-length")
        ]
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": answer.reason_phrase.encode()}
        return httpx.Response(
            answer.status_code, headers=kept, content=answer.content, extensions=extensions
        )

    async def aclose(self) -> None:
        """Close every connection (those in use once their answer is in)."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()

    # -- connections -------------------------------------------------------------------------

    async def _exchange(self, origin: _Origin, request: bytes, timeouts: Timeouts) -> WholeAnswer:
        read_timeout = timeouts.get("read")
        connection = self._reusable(origin)
        if connection is not None:
            try:
                return await self._answer(origin, connection, request, read_timeout)
            except _ClosedWhileIdle:
                pass  # the server closed it as the request went out: open a new one, once
        connection = await self._connect(origin, timeouts.get("connect"))
        try:
            return await self._answer(origin, connection, request, read_timeout)
        except _ClosedWhileIdle:
            raise httpx.ReadError("Server disconnected without sending an answer") from None

    async def _answer(
        self, origin: _Origin, connection: _Connection, request: bytes, quiet: float | None
    ) -> WholeAnswer:
        try:
            status, reason, raw, body, keep = await connection.exchange(request, quiet)
        except BaseException:  # a failure, or the run cancelled: the connection is spent
            connection.close()
            raise
        if keep and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(origin, deque()).append(connection)
        else:
            connection.close()
        headers = AnswerHeaders(raw)
        return WholeAnswer(status, headers, _decoded(body, headers), reason)

    def _reusable(self, origin: _Origin) -> _Connection | None:
        """The most recently used idle connection to ``origin`` that is still fresh."""
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.open and now - connection.idle_since < self._keepalive:
                return connection
            connection.close()
        return None

    async def _connect(self, origin: _Origin, within: float | None) -> _Connection:
        secure = origin.scheme == "https"
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(within):
                _, connection = await loop.create_connection(
                    _Connection,
                    origin.host,
                    origin.port,
                    ssl=self._ssl if secure else None,
                    server_hostname=origin.host if secure else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"Connecting to {origin.host}:{origin.port} timed out"
            ) from None
        except OSError as exc:  # refused, unreachable, unknown host, TLS refused
            reason = exc.strerror or str(exc) or type(exc).__name__
            # The cause stays attached: the client tells a certificate it cannot verify
            # (ssl.SSLCertVerificationError), which no retry mends, from the rest by it.
            raise httpx.ConnectError(
                f"Cannot connect to host {origin.host}:{origin.port} ({reason})"
            ) from exc
        return connection

    def _split(self, url: str) -> tuple[_Origin, str]:
        """``url``'s origin (parsed once per client) and the request target after it."""
        cut = url.find("/", url.find("://") + 3)
        prefix, target = (url, "/") if cut < 0 else (url[:cut], url[cut:])
        origin = self._origins.get(prefix)
        if origin is None:
            origin = self._origins[prefix] = _origin(prefix)
        return origin, target


class EnvProxy(NamedTuple):
    """A proxy the environment names: its URL (a scheme always included) and its variable."""

    url: str
    variable: str
    """``HTTPS_PROXY``, ``HTTP_PROXY`` or ``ALL_PROXY`` (named in upper case, whichever case
    set it)."""


_PROXY_VARIABLES = {"https": "HTTPS_PROXY", "http": "HTTP_PROXY", "": "ALL_PROXY"}
"""The variable behind each of httpx's proxy patterns, by the pattern's scheme."""


def env_proxy(url: str) -> EnvProxy | None:
    """The proxy the environment names for ``url``, chosen as an ``httpx.AsyncClient`` chooses
    it: ``HTTPS_PROXY`` for an https URL, ``HTTP_PROXY`` for http, else ``ALL_PROXY`` (either
    case); a value without a scheme (``proxy.corp:3128``) means ``http://``; and None when
    there is none or ``NO_PROXY`` covers the host, as httpx reads ``NO_PROXY``."""
    # httpx's own reading of the environment and its own patterns, most specific first as
    # its client sorts them, so a proxy is chosen here exactly as httpx would choose it.
    from httpx._utils import URLPattern, get_environment_proxies

    target = httpx.URL(url)
    patterns = [(URLPattern(key), proxy) for key, proxy in get_environment_proxies().items()]
    for pattern, proxy in sorted(patterns, key=lambda item: item[0].priority):
        if pattern.matches(target):
            return None if proxy is None else EnvProxy(proxy, _PROXY_VARIABLES[pattern.scheme])
    return None


class _ClosedWhileIdle(Exception):
    """A kept-alive connection ended before any byte of the answer came back."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one exchange at a time (``httptools`` calls the ``on_*``
    methods as it parses the answer)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, str, list[tuple[bytes, bytes]], bytes, bool]]
        self._waiter = asyncio.get_running_loop().create_future()
        self._waiter.set_result((0, "", [], b"", False))  # no exchange yet
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._received = False
        self._framed = False
        self._headed = False
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.open = True
        self.idle_since = 0.0

    async def exchange(
        self, request: bytes, quiet: float | None
    ) -> tuple[int, str, list[tuple[bytes, bytes]], bytes, bool]:
        """Write ``request`` and wait for its whole answer: ``(status, reason, headers, body,
        keep_alive)``. No byte for ``quiet`` seconds is a ``ReadTimeout``."""
        assert self._transport is not None and self._waiter.done()
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._reason, self._headers, self._body = b"", [], []
        self._received = self._framed = self._headed = False
        self._transport.write(request)
        if quiet is not None:
            self._last_data = loop.time()
            self._timer = loop.call_at(self._last_data + quiet, self._check_timeout, quiet)
        try:
            return await self._waiter
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def close(self) -> None:
        """Close the connection."""
        self.open = False
        if self._transport is not None:
            self._transport.close()

    # -- asyncio -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self._waiter.done():  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self._received = True
        self._last_data = self._waiter.get_loop().time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"The answer is not valid HTTP: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self._waiter.done():
            return
        if self._headed and not self._framed:
            self.on_message_complete()  # a body that ends where the connection does
        elif not self._received:
            self._fail(_ClosedWhileIdle())
        else:
            self._fail(httpx.ReadError("Server disconnected in the middle of the answer"))

    # -- httptools ---------------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headed = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._waiter.done():
            return
        keep = self.open and self._parser.should_keep_alive()
        status = self._parser.get_status_code()
        reason = self._reason.decode("latin-1")
        self._waiter.set_result((status, reason, self._headers, b"".join(self._body), keep))

    # -- failing -----------------------------------------------------------------------------

    def _check_timeout(self, timeout: float) -> None:
        loop = self._waiter.get_loop()
        quiet_until = self._last_data + timeout
        if loop.time() < quiet_until:
            self._timer = loop.call_at(quiet_until, self._check_timeout, timeout)
            return
        self._timer = None
        self._fail(httpx.ReadTimeout(f"No answer for {timeout:g}s"))

    def _fail(self, error: Exception) -> None:
        if not self._waiter.done():
            self._waiter.set_exception(error)
        self.close()


def _origin(prefix: str) -> _Origin:
    parts = urlsplit(prefix)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise httpx.UnsupportedProtocol(f"Cannot send a request to {prefix!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    default = port == (443 if parts.scheme == "https" else 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    return _Origin(parts.scheme, host, port, shown if default else f"{shown}:{port}")


def _head(
    method: str, target: str, host: str, headers: Mapping[str, str], content: bytes | None
) -> bytes:
    """The request line and headers, ``Host``, ``Accept-Encoding`` and ``Content-Length``
    written here; a header that would break the request's framing is refused."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Accept-Encoding: {ACCEPTED_CODINGS}"]
    for name, value in headers.items():
        if name.lower() not in _SKIPPED_HEADERS:
            line = f"{name}: {value}"
            if "\n" in line or "\r" in line:
                raise httpx.LocalProtocolError(f"The request header {name!r} holds a line break")
            lines.append(line)
    if content is not None:
        lines.append(f"Content-Length: {len(content)}")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    except UnicodeEncodeError:
        raise httpx.LocalProtocolError("A request header holds a non-ASCII character") from None


def _decoded(body: bytes, headers: Mapping[str, str]) -> bytes:
    """The body with its ``Content-Encoding`` (gzip or deflate) undone."""
    coding = headers.get("content-encoding", "").strip().lower()
    if not coding or coding == "identity":
        return body
    try:
        if coding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if coding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:  # deflate without its zlib wrapper, as some servers send it
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error as exc:
        raise httpx.RemoteProtocolError(f"The answer's {coding} body is corrupt: {exc}") from None
    raise httpx.RemoteProtocolError(f"The answer came in a coding never asked for: {coding}")


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value.strip('" '):
            return value.strip('" ')
    return "utf-8"
