"""The network transport (the tool's HTTP/1.1 connections under httpx's API) over real loopback
sockets: answers, framing and codings, connection reuse and limits, closing, TLS defaults,
proxies (httpx's transport), and every way of getting no answer mapped onto the httpx exception
the client's retry policy expects."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest
import trustme
from pydantic import SecretStr

from omneo_status.api.client import OmneoClient, RetryPolicy
from omneo_status.api.governor import RateGovernor
from omneo_status.api.trace import Exchange
from omneo_status.api.transport import AnswerHeaders, NetworkTransport, WholeAnswer, env_proxy
from omneo_status.errors import Unreachable
from omneo_status.models import Action, Batch, BatchState
from omneo_status.sandbox import ServerThread, create_app, demo_tenant

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
PAGE = json.dumps({"data": [], "meta": {"current_page": 1, "last_page": 1, "total": 0}}).encode()


class Loopback:
    """A raw HTTP server on 127.0.0.1 whose behaviour a test picks, counting connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.heads: list[bytes] = []

    @asynccontextmanager
    async def serving(self, behave: Handler) -> AsyncIterator[str]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            self.open += 1
            try:
                await behave(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                self.open -= 1
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()
            # Handlers still waiting on a hung request end with the loop's cancellation.

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and int(value):
                await reader.readexactly(int(value))
        return head


def answer(body: bytes, *, status: str = "200 OK") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def get(url: str, *, read_timeout: float = 5.0) -> httpx.Response:
    async with httpx.AsyncClient(transport=NetworkTransport(4), timeout=read_timeout) as http:
        return await http.get(url)


# -- answers, connections, closing -----------------------------------------------------------


async def test_answers_come_back_as_httpx_responses_over_kept_alive_connections() -> None:
    server = Loopback()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(answer(PAGE))

    async with server.serving(serve) as url:
        transport = NetworkTransport(4)
        async with httpx.AsyncClient(transport=transport) as http:
            for _ in range(5):
                response = await http.get(f"{url}/v3/profiles", params={"filter[email]": "a@b"})
                assert response.status_code == 200
                assert response.json()["meta"]["total"] == 0
            await asyncio.gather(*(http.get(f"{url}/v3/statuses") for _ in range(12)))
            assert server.connections <= 4  # at most the connections it was given
            assert server.open >= 1
        for _ in range(100):  # the server sees the connections close, in loop turns
            if server.open == 0:
                break
            await asyncio.sleep(0)
    assert server.open == 0
    assert server.heads[0].startswith(b"GET /v3/profiles?filter%5Bemail%5D=a")


async def test_the_tenant_reads_the_query_httpx_built() -> None:
    """aiohttp may write a safe character (``@``, ``,``) unescaped where httpx escaped it;
    what the server decodes, path and query alike, is the same either way."""
    server = Loopback()
    params = {
        "filter[email]": "a+tag b%41/é@x.com",
        "filter[email][in]": "a@b.com,c+d@e.com",
        "odd": "~!*'();:&=$?#[]",
    }

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(answer(PAGE))

    async with server.serving(serve) as url:
        for transport in (httpx.AsyncHTTPTransport(), NetworkTransport(1)):
            async with httpx.AsyncClient(transport=transport) as http:
                await http.get(f"{url}/v3/profiles/a%2Fb%20c", params=params)
    httpx_sent, aiohttp_sent = (urlsplit(head.split(b" ")[1].decode()) for head in server.heads)
    assert unquote(aiohttp_sent.path) == unquote(httpx_sent.path) == "/v3/profiles/a/b c"
    assert parse_qsl(aiohttp_sent.query, strict_parsing=True) == list(params.items())
    assert parse_qsl(httpx_sent.query, strict_parsing=True) == list(params.items())


async def test_the_client_goes_over_the_network_transport_without_one_injected() -> None:
    """A whole exchange with the sandbox on a loopback port: lookup, batch, poll."""
    tenant = demo_tenant()
    seen: list[Exchange] = []
    with ServerThread(create_app(tenant)) as served:
        client = OmneoClient(served.base_url, SecretStr("sandbox-token"), on_exchange=seen.append)
        transport = client._exchanger.transport
        assert isinstance(transport, NetworkTransport)
        assert transport._connections == client.governor.max_concurrency
        async with client:
            found = await client.find_profiles({"filter[email]": "ava.nguyen@example.com"})
            profile_id = found.profiles[0].id
            batch_id = await client.send_batch(Action.ASSIGN, [(profile_id, ["vip"])])
            batch = await client.get_batch(batch_id)
    assert isinstance(batch, Batch) and batch.state is BatchState.DONE
    assert tenant.statuses_of(profile_id) == ["vip"]
    assert [(e.method, e.status) for e in seen] == [("GET", 200), ("POST", 202), ("GET", 200)]
    assert [r.status for r in tenant.requests] == [200, 202, 200]


def test_tls_is_verified_as_httpx_verifies_it() -> None:
    context = NetworkTransport(1)._ssl
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


# -- no answer: the exceptions the retry policy relies on ------------------------------------


async def test_a_refused_connection_is_a_connect_error_not_a_timeout() -> None:
    with pytest.raises(httpx.ConnectError) as caught:
        await get(f"http://127.0.0.1:{closed_port()}/v3/statuses")
    assert not isinstance(caught.value, httpx.TimeoutException)


async def test_the_client_retries_a_refused_connection_then_says_unreachable() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    client = OmneoClient(
        f"http://127.0.0.1:{closed_port()}/api",
        SecretStr("t0ken-value"),
        governor=RateGovernor(concurrency=2, sleep=record),
        retry=RetryPolicy(max_retries=2),
        sleep=record,
    )
    async with client:
        with pytest.raises(Unreachable, match="ConnectError") as caught:
            await client.list_statuses()
    assert len(waits) == 2
    assert "t0ken-value" not in str(caught.value)


async def test_an_answer_that_is_not_http_is_a_transport_error() -> None:
    server = Loopback()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    async with server.serving(serve) as url:
        with pytest.raises(httpx.TransportError):
            await get(f"{url}/v3/statuses")


async def test_a_connection_cut_mid_body_is_a_read_error() -> None:
    server = Loopback()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(PAGE)[:-10])
        await writer.drain()

    async with server.serving(serve) as url:
        with pytest.raises(httpx.ReadError):
            await get(f"{url}/v3/statuses")


@pytest.mark.slow
async def test_a_server_that_never_answers_times_out() -> None:
    """Real time: the transport's read timeout (0.3 s) has to run out."""
    server = Loopback()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await asyncio.Event().wait()

    async with server.serving(serve) as url:
        with pytest.raises(httpx.ReadTimeout):
            await get(f"{url}/v3/statuses", read_timeout=0.3)


# -- proxies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "url", "expected"),
    [
        ({"HTTPS_PROXY": "http://proxy.test:3128"}, "https://api.t.getomneo.com/api", "proxy"),
        ({"HTTPS_PROXY": "http://proxy.test:3128"}, "http://api.t.getomneo.com/api", None),
        ({"ALL_PROXY": "http://proxy.test:3128"}, "https://api.t.getomneo.com/api", "proxy"),
        (
            {"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": ".getomneo.com"},
            "https://api.t.getomneo.com/api",
            None,
        ),
        ({}, "https://api.t.getomneo.com/api", None),
    ],
)
def test_the_environment_names_the_proxy(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], url: str, expected: str | None
) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    found = env_proxy(url)
    assert (found.url if found else None) == ("http://proxy.test:3128" if expected else None)


async def test_requests_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a proxy named, the client goes through httpx's own transport, which speaks it."""
    proxy = Loopback()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await proxy.read_request(reader)
        writer.write(answer(json.dumps({"data": []}).encode()))

    for name in ("HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with proxy.serving(serve) as url:
        monkeypatch.setenv("HTTP_PROXY", url)
        monkeypatch.setenv("http_proxy", url)
        client = OmneoClient("http://api.omneo.test/api", SecretStr("t"))
        assert isinstance(client._exchanger.transport, httpx.AsyncHTTPTransport)
        async with client:
            assert await client.list_statuses() == []
    assert proxy.heads[0].startswith(b"GET http://api.omneo.test/api/v3/statuses")


def test_tls_is_set_up_only_when_an_https_url_is_met() -> None:
    plain = OmneoClient("http://127.0.0.1:1/api", SecretStr("t"))._exchanger.transport
    secure = OmneoClient("https://api.example.com/api", SecretStr("t"))._exchanger.transport
    assert isinstance(plain, NetworkTransport) and isinstance(secure, NetworkTransport)
    assert "_ssl" not in vars(plain) and "_ssl" not in vars(secure)  # no CA store read yet


async def test_requests_carry_the_client_headers_without_the_async_client() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [], "meta": {"last_page": 1, "total": 0}})

    client = OmneoClient(
        "http://tenant.test/api", SecretStr("tok"), transport=httpx.MockTransport(answer)
    )
    async with client:
        await client.find_profiles({"filter[email]": "a@example.com"})
    (request,) = seen
    assert request.headers["authorization"] == "Bearer tok"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith("omneo-status/")
    assert request.headers["host"] == "tenant.test"
    assert request.extensions["timeout"]["connect"] == 10.0


# -- framing, codings, keep-alive --------------------------------------------------------------


async def serve_raw(
    server: Loopback, answers: list[bytes], *, close_after: bool = False
) -> Handler:
    """A handler that answers each request on a connection with the next of ``answers``."""
    left = list(answers)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while left:
            await server.read_request(reader)
            writer.write(left.pop(0))
            await writer.drain()
            if close_after:
                return

    return serve


def fetched(transport: NetworkTransport, url: str) -> Awaitable[WholeAnswer]:
    return transport.fetch("GET", url, {"Accept": "application/json"}, None, {"read": 5.0})


async def test_chunked_and_close_delimited_bodies_are_read_whole() -> None:
    server = Loopback()
    chunked = (
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n'
    )
    until_close = b'HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{"b": 2}'
    async with server.serving(await serve_raw(server, [chunked, until_close])) as url:
        transport = NetworkTransport(1)
        first = await fetched(transport, f"{url}/one")
        second = await fetched(transport, f"{url}/two")
        await transport.aclose()
    assert (first.json(), second.json()) == ({"a": 1}, {"b": 2})
    assert server.connections == 1  # the chunked answer left the connection open for reuse


async def test_gzip_and_deflate_answers_are_decoded_and_asked_for() -> None:
    server = Loopback()
    body = json.dumps({"data": [], "note": "é" * 50}).encode()
    answers = [
        answer_with(gzip.compress(body), b"content-encoding: gzip\r\n"),
        answer_with(zlib.compress(body), b"content-encoding: deflate\r\n"),
        answer_with(zlib.compress(body)[2:-4], b"content-encoding: deflate\r\n"),  # raw deflate
    ]
    async with server.serving(await serve_raw(server, answers)) as url:
        transport = NetworkTransport(1)
        decoded = [await fetched(transport, f"{url}/{n}") for n in range(3)]
        await transport.aclose()
    assert [a.content for a in decoded] == [body] * 3
    assert all(b"accept-encoding: gzip, deflate" in head.lower() for head in server.heads)


async def test_httpx_clients_get_the_body_decoded_without_its_coding() -> None:
    server = Loopback()
    body = b'{"data": []}'
    answers = [answer_with(gzip.compress(body), b"content-encoding: gzip\r\n")]
    handler = await serve_raw(server, answers)
    async with (
        server.serving(handler) as url,
        httpx.AsyncClient(transport=NetworkTransport(1)) as http,
    ):
        response = await http.get(f"{url}/v3/statuses")
    assert response.json() == {"data": []}
    assert "content-encoding" not in response.headers
    assert response.reason_phrase == "OK"


async def test_a_corrupt_or_unasked_coding_is_a_protocol_error() -> None:
    server = Loopback()
    answers = [
        answer_with(b"not gzip at all", b"content-encoding: gzip\r\n"),
        answer_with(b"\x8b\x00", b"content-encoding: br\r\n"),
    ]
    async with server.serving(await serve_raw(server, answers)) as url:
        transport = NetworkTransport(1)
        with pytest.raises(httpx.RemoteProtocolError, match="corrupt"):
            await fetched(transport, f"{url}/one")
        with pytest.raises(httpx.RemoteProtocolError, match="never asked for: br"):
            await fetched(transport, f"{url}/two")
        await transport.aclose()


async def test_a_connection_the_server_closed_while_idle_is_replaced_at_once() -> None:
    """The server closes each connection after one answer without saying so: the next request
    finds the kept-alive connection dead before any byte came back, and goes out again on a
    new one, with no error and no retry wait."""
    server = Loopback()
    async with server.serving(await serve_raw(server, [answer(PAGE)] * 3, close_after=True)) as url:
        transport = NetworkTransport(1)
        for _ in range(3):
            assert (await fetched(transport, f"{url}/v3/profiles")).status_code == 200
            await asyncio.sleep(0.01)  # the close reaches the client while the connection idles
        await transport.aclose()
    assert server.connections == 3


async def test_a_connection_that_says_close_is_not_reused() -> None:
    server = Loopback()
    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"
    async with server.serving(await serve_raw(server, [closing, answer(PAGE)])) as url:
        transport = NetworkTransport(1)
        await fetched(transport, f"{url}/one")
        await fetched(transport, f"{url}/two")
        await transport.aclose()
    assert server.connections == 2


async def test_an_idle_connection_past_its_keepalive_is_not_reused() -> None:
    server = Loopback()
    async with server.serving(await serve_raw(server, [answer(PAGE)] * 2)) as url:
        transport = NetworkTransport(1, keepalive=0.0)
        await fetched(transport, f"{url}/one")
        await fetched(transport, f"{url}/two")
        await transport.aclose()
    assert server.connections == 2


async def test_the_request_says_its_host_and_body_length() -> None:
    server = Loopback()
    async with server.serving(await serve_raw(server, [answer(PAGE)])) as url:
        transport = NetworkTransport(1)
        body = b'{"profiles":[]}'
        await transport.fetch(
            "POST", f"{url}/v3/profile/status/batch.json", {"X-Test": "1"}, body, {}
        )
        await transport.aclose()
    head = server.heads[0].decode()
    port = url.rsplit(":", 1)[1]
    assert head.startswith("POST /v3/profile/status/batch.json HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n" in head
    assert f"Content-Length: {len(body)}\r\n" in head
    assert "X-Test: 1\r\n" in head


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    transport = NetworkTransport(1)
    with pytest.raises(httpx.LocalProtocolError):
        await transport.fetch("GET", "http://127.0.0.1:9/x", {"X-Bad": "a\r\nEvil: 1"}, None, {})
    assert transport._idle == {}


async def test_a_header_that_is_not_ascii_is_refused() -> None:
    with pytest.raises(httpx.LocalProtocolError, match="non-ASCII"):
        await NetworkTransport(1).fetch("GET", "http://127.0.0.1:9/x", {"X": "é"}, None, {})


async def test_a_cancelled_exchange_closes_its_connection() -> None:
    server = Loopback()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await reader.read()  # no answer; returns when the client closes the connection

    async with server.serving(hang) as url:
        transport = NetworkTransport(1)
        busy = asyncio.ensure_future(fetched(transport, f"{url}/slow"))
        for _ in range(100):
            if server.open:
                break
            await asyncio.sleep(0.01)
        busy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await busy
        for _ in range(100):  # the server sees the connection close
            if server.open == 0:
                break
            await asyncio.sleep(0.01)
        assert server.open == 0
        assert transport._idle == {}


async def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await NetworkTransport(1).fetch("GET", "ftp://example.com/x", {}, None, {})


async def test_no_free_connection_in_time_is_a_pool_timeout() -> None:
    server = Loopback()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await asyncio.Event().wait()

    async with server.serving(hang) as url:
        transport = NetworkTransport(1)
        busy = asyncio.ensure_future(fetched(transport, f"{url}/slow"))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await transport.fetch("GET", f"{url}/next", {}, None, {"pool": 0.01})
        busy.cancel()
        await transport.aclose()


def test_an_answer_reads_as_text_in_its_charset() -> None:
    latin = WholeAnswer(
        200,
        httpx.Headers({"Content-Type": "text/plain; charset=latin-1"}),
        "é".encode("latin-1"),
        "OK",
    )
    unknown = WholeAnswer(
        200, httpx.Headers({"content-type": "text/plain; charset=nope"}), "é".encode(), "OK"
    )
    plain = WholeAnswer(200, httpx.Headers(), b'{"a": 1}', "OK")
    assert (latin.text, unknown.text, plain.text) == ("é", "é", '{"a": 1}')
    assert plain.json() == {"a": 1}
    assert latin.headers["CONTENT-TYPE"].startswith("text/plain")  # names in any case


def answer_with(body: bytes, extra: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def test_answer_headers_read_as_httpx_reads_them() -> None:
    raw = [(b"Content-Type", b"application/json"), (b"Vary", b"Accept"), (b"vary", b"Origin")]
    headers = AnswerHeaders(raw)
    expected = httpx.Headers([(n.decode(), v.decode()) for n, v in raw])
    for name in ("content-type", "CONTENT-TYPE", "Vary", "x-missing"):
        assert headers.get(name) == expected.get(name)
        assert (name in headers) == (name in expected)
    assert dict(headers) == dict(expected)
    assert headers.multi_items() == expected.multi_items()
    assert not headers.__contains__(1)  # not a name at all


# -- TLS --------------------------------------------------------------------------------------


async def test_https_answers_come_over_a_verified_kept_alive_connection() -> None:
    authority = trustme.CA()
    served = authority.issue_cert("localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.configure_cert(server_context)
    server = Loopback()
    handler = await serve_raw(server, [answer(PAGE)] * 2)
    tcp = await asyncio.start_server(
        lambda r, w: _counted(server, handler, r, w), "127.0.0.1", 0, ssl=server_context
    )
    port = tcp.sockets[0].getsockname()[1]
    try:
        transport = NetworkTransport(1)
        trusting = ssl.create_default_context()
        authority.configure_trust(trusting)
        transport._ssl = trusting  # the CA httpx's context would not know
        for _ in range(2):
            got = await fetched(transport, f"https://localhost:{port}/v3/profiles")
            assert got.json()["meta"]["total"] == 0
        await transport.aclose()
        stranger = NetworkTransport(1)  # httpx's own context: this CA is not in its store
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await fetched(stranger, f"https://localhost:{port}/v3/profiles")
        await stranger.aclose()
    finally:
        tcp.close()
    assert server.connections == 1  # kept alive for both answers; the refused one never got in
    assert server.heads[0].startswith(b"GET /v3/profiles HTTP/1.1")


async def _counted(
    server: Loopback, handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    server.connections += 1
    try:
        await handler(reader, writer)
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def test_a_kept_alive_connection_closed_as_the_request_arrives_is_replaced_once() -> None:
    """The server reads the second request on a kept-alive connection and closes it without a
    byte back (it had timed the connection out): the request goes out again on a new one."""
    server = Loopback()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(PAGE))
        await writer.drain()
        if server.connections == 1:
            await server.read_request(reader)  # and close without answering
            return
        await reader.read()

    async with server.serving(serve) as url:
        transport = NetworkTransport(1)
        await fetched(transport, f"{url}/one")
        second = await fetched(transport, f"{url}/two")
        await transport.aclose()
    assert second.status_code == 200
    assert server.connections == 2
    assert [head.split(b" ")[1] for head in server.heads] == [b"/one", b"/two", b"/two"]


async def test_a_new_connection_closed_without_an_answer_is_a_read_error() -> None:
    server = Loopback()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)  # and close without answering

    async with server.serving(serve) as url:
        transport = NetworkTransport(1)
        with pytest.raises(httpx.ReadError, match="without sending an answer"):
            await fetched(transport, f"{url}/one")
        await transport.aclose()


async def test_bytes_nobody_asked_for_end_the_connection() -> None:
    """Two answers to one request: the second arrives while the connection idles, which then
    cannot be trusted; the next request goes out on a new connection."""
    server = Loopback()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(PAGE))
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(answer(PAGE))
        await writer.drain()
        await reader.read()

    async with server.serving(serve) as url:
        transport = NetworkTransport(1)
        await fetched(transport, f"{url}/one")
        await asyncio.sleep(0.05)
        await fetched(transport, f"{url}/two")
        await transport.aclose()
    assert server.connections == 2
