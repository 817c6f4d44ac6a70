"""The transport of real network runs: aiohttp's connection handling under httpx's API.

httpx stays the API everywhere (the client, its retries, the governor, ``on_exchange``, and the
tests, which inject ``httpx.ASGITransport``); only the bytes on the wire go through aiohttp,
whose connection pool and HTTP parser (in C) cost a fraction of httpcore's CPU per request
(``bench/transport.py``; figures in ``bench/README.md``).

The promises the client's retry policy relies on hold as with httpx's own transport: a timeout
raises ``httpx.TimeoutException``, any other failure to get an answer ``httpx.TransportError``
(a refused connection ``httpx.ConnectError``, not the ``ConnectTimeout`` httpx-aiohttp makes of
it), and no aiohttp exception escapes. TLS is verified as httpx verifies it (the same
``httpx.create_ssl_context``), and the proxy variables (``HTTPS_PROXY``, ``HTTP_PROXY``,
``ALL_PROXY``, ``NO_PROXY``) are honoured as httpx honours them, read once per client rather
than on every request (aiohttp's ``trust_env`` reads them, and ``~/.netrc``, in a thread for
each request: a tenth of the client's CPU).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import cached_property
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class NetworkTransport(httpx.AsyncBaseTransport):
    """``httpx_aiohttp.AiohttpTransport`` with at most ``connections`` open connections, one
    cookie store (httpx's), through ``proxy`` if given, and failures mapped onto httpx's
    exceptions faithfully."""

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
        self._inner = AiohttpTransport(
            client=self._session, proxy=httpx.Proxy(proxy) if proxy else None
        )

    def _session(self) -> aiohttp.ClientSession:
        """Made on the first request, inside the running event loop (as aiohttp wants)."""
        # httpx's TLS context costs ~0.1 s of CPU (the CA store): made only when ``tls`` says
        # an https URL or proxy is in play; otherwise aiohttp's own (verified) default stands.
        connector = aiohttp.TCPConnector(
            limit=self._connections,
            keepalive_timeout=self._keepalive,
            ssl=self._ssl if self._tls else True,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    @cached_property
    def _ssl(self) -> ssl.SSLContext:
        """httpx's TLS context, made the first time it is needed."""
        return httpx.create_ssl_context()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return its answer, whose body is read as it is consumed."""
        with _mapping():
            response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream)
        return response

    async def aclose(self) -> None:
        """Close every connection."""
        await self._inner.aclose()


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY`` for an https URL,
    ``HTTP_PROXY`` for http, else ``ALL_PROXY``), or None when there is none or ``NO_PROXY``
    covers its host."""
    parts = urlsplit(url)
    if proxy_bypass(parts.hostname or ""):
        return None
    proxies = getproxies()
    return proxies.get(parts.scheme) or proxies.get("all") or None


class _Body(httpx.AsyncByteStream):
    """An answer's body, read under the same mapping of failures."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapping():
            async for chunk in self._inner:
                yield chunk

    async def aclose(self) -> None:
        with _mapping():
            await self._inner.aclose()


@contextmanager
def _mapping() -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as exc:
        raise _faithful(exc) from exc.__cause__
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _mapped(exc) from exc


def _faithful(exc: httpx.TransportError) -> httpx.TransportError:
    """httpx-aiohttp's mapping, except where it calls a failed connection a timeout."""
    cause = exc.__cause__
    if isinstance(exc, httpx.TimeoutException) and isinstance(cause, aiohttp.ClientError):
        return _mapped(cause)
    return exc


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
