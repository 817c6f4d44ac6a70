"""The transport of real network runs: aiohttp's connections and HTTP parser under httpx's API.

httpx stays the API everywhere (the client, its retries, the governor, ``on_exchange``, and the
tests, which inject ``httpx.ASGITransport``): every failure to get an answer is an httpx
exception. Only the bytes on the wire go through aiohttp, whose connection pool and HTTP parser
(in C) cost a fraction of httpcore's CPU per request (``bench/transport.py``; figures in
``bench/README.md``).

Two ways in:

- ``fetch``, which ``OmneoClient`` calls: a URL it has already encoded, its headers, a body in
  bytes; the answer read whole and decoded, as a ``WholeAnswer`` (what the client reads of an
  ``httpx.Response``: status, headers, body, ``text`` and ``json()``). No ``httpx.Request`` or
  ``httpx.Response`` is built for it: parsing each URL again and building each response took a
  quarter of the client's CPU per lookup.
- ``handle_async_request``, the ``httpx.AsyncBaseTransport`` method, for an ``httpx.AsyncClient``
  (the same ``fetch`` underneath; the body comes back decoded).

The promises the client's retry policy relies on hold as with httpx's own transport: a timeout
raises ``httpx.TimeoutException``, any other failure to get an answer ``httpx.TransportError``
(a refused connection ``httpx.ConnectError``), and no aiohttp exception escapes. TLS is verified
as httpx verifies it (the same ``httpx.create_ssl_context``), and the proxy variables
(``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) are honoured as httpx honours
them, read once per client rather than on every request (aiohttp's ``trust_env`` reads them,
and ``~/.netrc``, in a thread for each request: a tenth of the client's CPU). Answers may come
compressed (gzip, deflate, and whatever else aiohttp can decode here): aiohttp says which in
``Accept-Encoding`` and decodes them.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import httpx
from yarl import URL


@contextmanager
def _no_ca_bundle() -> Iterator[None]:
    """``SSL_CERT_FILE`` pointed at an empty file for a moment, then put back as it was."""
    before = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = os.devnull
    try:
        yield
    finally:
        if before is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = before


# aiohttp builds two default TLS contexts as it is imported, each loading the system's whole
# CA bundle file: a tenth of a second of CPU on the benchmark's machine, paid by every network
# run. The tool never uses them (it hands aiohttp httpx's context whenever an https URL or
# proxy is in play, see ``_session``), so they are built without that file: were one ever
# used, it would verify against the system's CA directory alone or refuse the connection,
# never accept a certificate it should not.
with _no_ca_bundle():
    import aiohttp

Timeouts = Mapping[str, float | None]
"""httpx's timeout extension: ``connect``, ``read``, ``write`` and ``pool`` seconds."""


@dataclass(frozen=True, slots=True)
class WholeAnswer:
    """An answer read whole and decoded: the part of ``httpx.Response`` the client reads."""

    status_code: int
    headers: Mapping[str, str]
    """Case-insensitive, as aiohttp gives them."""
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


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value.strip('" '):
            return value.strip('" ')
    return "utf-8"


class NetworkTransport(httpx.AsyncBaseTransport):
    """At most ``connections`` open connections, kept alive ``keepalive`` seconds, through
    ``proxy`` if given, with TLS set up only when ``tls`` says an https URL or proxy needs it;
    no cookies (the tool sends none) and no redirects."""

    def __init__(
        self,
        connections: int,
        *,
        proxy: str | None = None,
        keepalive: float = 5.0,
        tls: bool = True,
    ) -> None:
        self._tls = tls
        self._connections = connections
        self._keepalive = keepalive
        self._client: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}
        self._via: dict[str, Any] = {}
        if proxy:
            parsed = httpx.Proxy(proxy)
            auth = aiohttp.BasicAuth(*parsed.auth) if parsed.auth else None
            self._via = {"proxy": str(parsed.url), "proxy_auth": auth}

    def _session(self) -> aiohttp.ClientSession:
        """Made on the first request, inside the running event loop (as aiohttp wants)."""
        if self._client is None:
            # httpx's TLS context costs ~0.1 s of CPU (the CA store): made only when ``tls``
            # says an https URL or proxy is in play; otherwise aiohttp's own default stands.
            connector = aiohttp.TCPConnector(
                limit=self._connections,
                keepalive_timeout=self._keepalive,
                ssl=self._ssl if self._tls else True,
            )
            self._client = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent",),
            )
        return self._client

    @cached_property
    def _ssl(self) -> ssl.SSLContext:
        """httpx's TLS context, made the first time it is needed."""
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
        ``str(httpx.URL(...))`` gives it) and return its answer, read whole and decoded.
        ``headers`` should not name an ``Accept-Encoding``: aiohttp sends the one it decodes."""
        with _mapping():
            async with self._session().request(
                method,
                URL(url, encoded=True),
                headers=headers,
                data=content,
                allow_redirects=False,
                timeout=self._timeout(timeouts),
                **self._via,
            ) as answer:
                body = await answer.read()
        return WholeAnswer(answer.status, answer.headers, body, answer.reason or "")

    def _timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        """aiohttp's timeouts for httpx's: the connect and read ones per socket, ``pool`` for
        the wait for a free connection; made once for each set of values."""
        key = (timeouts.get("connect"), timeouts.get("read"), timeouts.get("pool"))
        if (found := self._timeouts.get(key)) is None:
            found = aiohttp.ClientTimeout(sock_connect=key[0], sock_read=key[1], connect=key[2])
            self._timeouts[key] = found
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` (``httpx.AsyncBaseTransport``) and return its answer, read whole
        and already decoded (so without its ``Content-Encoding``)."""
        content = await request.aread()
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in _NOT_FORWARDED
        }
        timeouts: Timeouts = request.extensions.get("timeout", {})
        answer = await self.fetch(
            request.method, str(request.url), headers, content or None, timeouts
        )
        kept = [
            (name, value)
            for name, value in answer.headers.items()
            if name.lower() not in ("content-encoding", "content-length")
        ]
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": answer.reason_phrase.encode()}
        return httpx.Response(
            answer.status_code, headers=kept, content=answer.content, extensions=extensions
        )

    async def aclose(self) -> None:
        """Close every connection."""
        if self._client is not None:
            with _mapping():
                await self._client.close()


_NOT_FORWARDED = frozenset({"transfer-encoding", "content-length", "accept-encoding"})
"""Request headers aiohttp writes itself: the body's framing, and the codings it decodes."""


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY`` for an https URL,
    ``HTTP_PROXY`` for http, else ``ALL_PROXY``), or None when there is none or ``NO_PROXY``
    covers its host."""
    parts = urlsplit(url)
    if proxy_bypass(parts.hostname or ""):
        return None
    proxies = getproxies()
    return proxies.get(parts.scheme) or proxies.get("all") or None


@contextmanager
def _mapping() -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _mapped(exc) from exc


def _mapped(exc: BaseException) -> httpx.TransportError:
    """The httpx exception that says what happened to a request that got no answer."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return httpx.ReadError(message)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return httpx.NetworkError(message)
    return httpx.RemoteProtocolError(message)  # an answer that is not HTTP, or broken
