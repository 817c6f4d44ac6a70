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
``RemoteProtocolError``, and so is one past a limit). A kept-alive connection the server
closed as the request went out is replaced once, at once, and the request sent again on it
without a retry's wait, if it is one that changes nothing (``RESENT_METHODS``); any other is
left to the retry policy. TLS is verified as httpx verifies it (the same
``httpx.create_ssl_context``, made the first time an https URL is met). Answers may come
compressed with gzip or deflate (stacked, too), which is what the requests say they accept.

An answer is held to the limits of ``options.py`` (``ANSWER_HEAD_MAX``,
``ANSWER_HEADER_LINES_MAX``, ``ANSWER_BODY_MAX``, ``ANSWER_CODINGS_MAX``), refused as soon as it
passes one, so that a hostile server costs a bounded amount of memory; 1xx answers before it
are read past, trailers are dropped, and bytes after it close the connection
(``docs/network.md``).

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

from omneo_status.options import (
    ANSWER_BODY_MAX,
    ANSWER_CODINGS_MAX,
    ANSWER_HEAD_MAX,
    ANSWER_HEADER_LINES_MAX,
)

Timeouts = Mapping[str, float | None]
"""httpx's timeout extension: ``connect``, ``read``, ``write`` and ``pool`` seconds."""

ACCEPTED_CODINGS = "gzip, deflate"
"""The ``Accept-Encoding`` of every request: the codings ``_decoded`` undoes."""
_SKIPPED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "accept-encoding", "connection"}
)
"""Request headers the transport writes itself."""
RESENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""The methods the transport sends again, on a new connection, when a kept-alive one closes
before any byte of the answer: only requests that change nothing (RFC 9110 9.2.2; the batch
endpoint's DELETE is a write too). Any other request ends there in ``httpx.ReadError``, for the
client's retry policy to decide on."""
_INFLATE_WBITS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}


class AnswerHeaders(Mapping[str, str]):
    """An answer's headers as ``httpx.Headers`` reads them: names in any case, a repeated
    header's values joined by ", " (built in a dict once: a tenth of ``httpx.Headers``' cost
    for the few lookups the client makes on every answer)."""

    __slots__ = ("_by_name", "_raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        by_name: dict[str, str] = {}
        repeated: dict[str, list[str]] = {}
        for name, value in raw:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            if key in by_name:
                repeated.setdefault(key, [by_name[key]]).append(text)
            else:
                by_name[key] = text
        for key, values in repeated.items():  # joined once: a join per value is quadratic
            by_name[key] = ", ".join(values)
        self._by_name = by_name

    def __getitem__(self, name: str) -> str:
        return self._by_name[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        """The header's value, or ``default`` (without ``Mapping.get``'s ``KeyError`` on every
        header an answer lacks: most lookups are for one it lacks)."""
        return self._by_name.get(name.lower(), default)

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
            return await self._exchange(origin, method, head + (content or b""), timeouts)
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

    async def _exchange(
        self, origin: _Origin, method: str, request: bytes, timeouts: Timeouts
    ) -> WholeAnswer:
        read_timeout = timeouts.get("read")
        bodiless = method == "HEAD"
        connection = self._reusable(origin)
        if connection is not None:
            try:
                return await self._answer(origin, connection, request, read_timeout, bodiless)
            except _ClosedWhileIdle:
                # The server closed it as the request went out (it had timed it out): a
                # request that changes nothing goes out again at once on a new connection; any
                # other may have been acted on, so whether to send it again is the retry
                # policy's decision, not the transport's.
                if method not in RESENT_METHODS:
                    raise httpx.ReadError(
                        f"Server disconnected without sending an answer (a {method} is not"
                        " sent again by the transport)"
                    ) from None
        connection = await self._connect(origin, timeouts.get("connect"))
        try:
            return await self._answer(origin, connection, request, read_timeout, bodiless)
        except _ClosedWhileIdle:
            raise httpx.ReadError("Server disconnected without sending an answer") from None

    async def _answer(
        self,
        origin: _Origin,
        connection: _Connection,
        request: bytes,
        quiet: float | None,
        bodiless: bool,
    ) -> WholeAnswer:
        try:
            status, reason, raw, body, keep = await connection.exchange(request, quiet, bodiless)
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


_Result = tuple[int, str, list[tuple[bytes, bytes]], bytes, bool]
"""An exchange's answer: ``(status, reason, headers, body, keep_alive)``."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one exchange at a time (``httptools`` calls the ``on_*``
    methods as it parses the answer). Of an answer it reads at most ``ANSWER_HEAD_MAX`` bytes
    of head, ``ANSWER_HEADER_LINES_MAX`` header lines and ``ANSWER_BODY_MAX`` bytes of body;
    1xx answers before it are read past; trailers are not headers; a byte that comes after the
    answer closes the connection."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[_Result] = asyncio.get_running_loop().create_future()
        self._waiter.set_result((0, "", [], b"", False))  # no exchange yet
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._head_left = ANSWER_HEAD_MAX
        self._received = False
        self._framed = False
        self._headed = False  # the final answer's head is in (a 1xx answer's does not count)
        self._informational = False
        self._bodiless = False
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.open = True
        self.idle_since = 0.0

    async def exchange(self, request: bytes, quiet: float | None, bodiless: bool) -> _Result:
        """Write ``request`` and wait for its whole answer; ``bodiless`` for a HEAD, whose
        answer ends with its head. No byte for ``quiet`` seconds is a ``ReadTimeout``."""
        assert self._transport is not None and self._waiter.done()
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._reason, self._headers, self._body = b"", [], []
        self._body_size, self._head_left = 0, ANSWER_HEAD_MAX
        self._received = self._framed = self._headed = False
        self._bodiless = bodiless
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
            if self._headed:
                self._parser.feed_data(data)
            else:
                self._feed_head(data)
        except httptools.HttpParserError as exc:
            refused = exc.__context__  # what a callback below raised: a limit, a 101
            if not isinstance(refused, httpx.RemoteProtocolError):
                refused = httpx.RemoteProtocolError(f"The answer is not valid HTTP: {exc}")
            self._fail(refused)

    def _feed_head(self, data: bytes) -> None:
        """Parse ``data`` while the answer's head is incomplete, refusing a head of more than
        ``ANSWER_HEAD_MAX`` bytes before the parser holds more of it than that."""
        left = self._head_left
        if len(data) <= left:
            self._head_left = left - len(data)
            self._parser.feed_data(data)
        else:
            self._head_left = 0
            view = memoryview(data)
            self._parser.feed_data(view[:left])
            if self._headed:  # the rest comes after the head
                self._parser.feed_data(view[left:])
        if not (self._headed or self._head_left):
            limit = _size(ANSWER_HEAD_MAX)
            self._fail(httpx.RemoteProtocolError(f"The answer's head is over the {limit} limit"))

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

    def on_message_begin(self) -> None:
        if self._waiter.done():  # bytes after the answer, in the same read as its end
            raise httpx.RemoteProtocolError("The server sent more than the answer")

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headed:
            return  # a trailer, after a chunked body: not one of the answer's headers
        headers = self._headers
        headers.append((name, value))
        if len(headers) > ANSWER_HEADER_LINES_MAX:
            raise httpx.RemoteProtocolError(
                f"The answer has over {ANSWER_HEADER_LINES_MAX} header lines (the limit)"
            )
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            if status == 101:
                raise httpx.RemoteProtocolError(
                    "The server switched protocols (101), which no request asks for"
                )
            self._informational = True  # 100 Continue, 103 Early Hints: the answer follows
            return
        self._headed = True
        if self._bodiless:  # a HEAD's answer ends here, whatever its head announces
            self._finish(keep=False)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._body_size += len(body)
        if self._body_size > ANSWER_BODY_MAX:
            limit = _size(ANSWER_BODY_MAX)
            raise httpx.RemoteProtocolError(f"The answer's body is over the {limit} limit")

    def on_message_complete(self) -> None:
        if self._informational:  # nothing of a 1xx answer is kept
            self._informational = False
            self._reason, self._headers = b"", []
        elif not self._waiter.done():
            self._finish(self.open and self._parser.should_keep_alive())

    def _finish(self, keep: bool) -> None:
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


def _size(count: int) -> str:
    """``count`` bytes in MiB or KiB, as the limits are written."""
    return f"{count >> 20} MiB" if count >= 1 << 20 else f"{count >> 10} KiB"


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
    """The body with its ``Content-Encoding`` undone: gzip or deflate, up to
    ``ANSWER_CODINGS_MAX`` of them stacked, never more than ``ANSWER_BODY_MAX`` bytes."""
    named = headers.get("content-encoding")
    if not named:
        return body
    codings = [
        c for c in (part.strip().lower() for part in named.split(",")) if c not in ("", "identity")
    ]
    if len(codings) > ANSWER_CODINGS_MAX:
        raise httpx.RemoteProtocolError(
            f"The answer's body is in {len(codings)} codings stacked (over the limit of"
            f" {ANSWER_CODINGS_MAX}): {named}"
        )
    for coding in reversed(codings):  # the coding applied last is undone first
        body = _undone(coding, body)
    return body


def _undone(coding: str, body: bytes) -> bytes:
    wbits = _INFLATE_WBITS.get(coding)
    if wbits is None:
        raise httpx.RemoteProtocolError(f"The answer came in a coding never asked for: {coding}")
    try:
        try:
            return _inflated(body, wbits)
        except zlib.error:
            if coding != "deflate":
                raise
            return _inflated(body, -zlib.MAX_WBITS)  # deflate without its zlib wrapper
    except zlib.error as exc:
        raise httpx.RemoteProtocolError(f"The answer's {coding} body is corrupt: {exc}") from None


def _inflated(body: bytes, wbits: int) -> bytes:
    """``body`` decompressed, refused as soon as it would pass ``ANSWER_BODY_MAX`` bytes (a
    megabyte of gzip can hold a gigabyte)."""
    decoder = zlib.decompressobj(wbits)
    decoded = decoder.decompress(body, ANSWER_BODY_MAX + 1)
    if len(decoded) > ANSWER_BODY_MAX:
        limit = _size(ANSWER_BODY_MAX)
        raise httpx.RemoteProtocolError(f"The answer's body decodes to over the {limit} limit")
    if not decoder.eof:
        raise zlib.error("incomplete or truncated stream")
    return decoded


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value.strip('" '):
            return value.strip('" ')
    return "utf-8"
