"""The network transport against faulty and hostile servers, over raw loopback sockets: every
limit on an answer (head, header lines, body, decoded body, stacked codings) ends in one clear
``httpx.RemoteProtocolError`` with bounded memory; 1xx answers are read past; trailers and bytes
after an answer never become its headers; a request that may change something is never sent
twice by the transport on its own; a HEAD's answer ends with its head."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import struct
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import httptools
import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from omneo_status import cli
from omneo_status.api import transport
from omneo_status.api.client import OmneoClient
from omneo_status.api.transport import NetworkTransport
from omneo_status.models import Action
from omneo_status.options import (
    ANSWER_BODY_MAX,
    ANSWER_CODINGS_MAX,
    ANSWER_HEAD_MAX,
    ANSWER_HEADER_LINES_MAX,
)

from .conftest import VirtualClock
from .test_transport import PAGE, Handler, Loopback, answer, answer_with, fetched, serve_raw

pytestmark = pytest.mark.anyio

MIB = 1 << 20


# -- the head: limits, repeated headers, 1xx -------------------------------------------------


class _CountingParser:
    """httptools' parser, counting the bytes the transport hands it."""

    fed = 0
    parser = httptools.HttpResponseParser

    def __init__(self, protocol: object) -> None:
        self._parser = self.parser(protocol)

    def feed_data(self, data: bytes | memoryview) -> None:
        _CountingParser.fed += len(data)
        self._parser.feed_data(data)

    def get_status_code(self) -> int:
        return int(self._parser.get_status_code())

    def should_keep_alive(self) -> bool:
        return bool(self._parser.should_keep_alive())


ENDLESS_HEADS = {
    "header lines without end": (b"HTTP/1.1 200 OK\r\n", b"X-Junk: " + b"a" * 1000 + b"\r\n"),
    "one header line without end": (b"HTTP/1.1 200 OK\r\nX-Junk: ", b"a" * 1000),
    "1xx answers without end": (b"", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"),
}


@pytest.mark.parametrize("shape", ENDLESS_HEADS.values(), ids=list(ENDLESS_HEADS))
async def test_an_endless_head_is_refused_at_the_head_limit(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[bytes, bytes]
) -> None:
    """The server would send 32 MiB of head (then close, so that no test hangs); the parser
    is handed no more than the limit."""
    start, piece = shape
    server = Loopback()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(start)
        for _ in range(32 * MIB // len(piece)):
            writer.write(piece)
            await writer.drain()

    monkeypatch.setattr(httptools, "HttpResponseParser", _CountingParser)
    _CountingParser.fed = 0
    async with server.serving(serve) as url:
        network = NetworkTransport(1)
        with pytest.raises(httpx.RemoteProtocolError, match="head is over the 64 KiB limit"):
            await fetched(network, f"{url}/v3/statuses")
        await network.aclose()
    assert _CountingParser.fed == ANSWER_HEAD_MAX


def head_of(size: int, body: bytes) -> bytes:
    """An answer whose status line and headers take exactly ``size`` bytes."""
    start = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nx-pad: " % len(body)
    return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n" + body


async def test_a_head_of_exactly_the_limit_is_read_and_one_byte_more_is_not() -> None:
    """Each in one write with a large body: the read that ends the head goes on into the
    body, which comes whole."""
    server = Loopback()
    body = json.dumps({"data": "b" * MIB}).encode()
    answers = [head_of(ANSWER_HEAD_MAX, body), head_of(ANSWER_HEAD_MAX + 1, body)]
    async with server.serving(await serve_raw(server, answers)) as url:
        network = NetworkTransport(1)
        fits = await fetched(network, f"{url}/one")
        with pytest.raises(httpx.RemoteProtocolError, match="64 KiB limit"):
            await fetched(network, f"{url}/two")
        await network.aclose()
    assert fits.content == body


async def test_thousands_of_repeated_headers_stop_at_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """8,000 repeated 1 KB headers (8 MB, which once took seconds to join): the transport
    parses no more of them than fit in the head limit."""
    server = Loopback()
    cookie = b"Set-Cookie: " + b"c" * 1000 + b"\r\n"
    head = b"HTTP/1.1 200 OK\r\n" + cookie * 8000 + b"content-length: 2\r\n\r\n{}"
    parsed: list[bytes] = []
    on_header = transport._Connection.on_header

    def counted(self: transport._Connection, name: bytes, value: bytes) -> None:
        parsed.append(name)
        on_header(self, name, value)

    monkeypatch.setattr(transport._Connection, "on_header", counted)
    async with server.serving(await serve_raw(server, [head])) as url:
        network = NetworkTransport(1)
        with pytest.raises(httpx.RemoteProtocolError, match="64 KiB limit"):
            await fetched(network, f"{url}/v3/statuses")
        await network.aclose()
    assert 0 < len(parsed) <= ANSWER_HEAD_MAX // len(cookie)


async def test_too_many_header_lines_are_refused_and_repeated_ones_joined() -> None:
    server = Loopback()
    many = b"x-a: 1\r\n" * (ANSWER_HEADER_LINES_MAX + 1)
    repeated = b"vary: v\r\n" * (ANSWER_HEADER_LINES_MAX - 2)
    answers = [answer_with(b"{}", many), answer_with(b"{}", repeated)]
    async with server.serving(await serve_raw(server, answers)) as url:
        network = NetworkTransport(1)
        with pytest.raises(httpx.RemoteProtocolError, match=r"over 256 header lines"):
            await fetched(network, f"{url}/one")
        accepted = await fetched(network, f"{url}/two")
        await network.aclose()
    assert accepted.headers["Vary"] == ", ".join(["v"] * (ANSWER_HEADER_LINES_MAX - 2))
    assert accepted.json() == {}


INFORMATIONAL = {
    "100 in the same write": [b"HTTP/1.1 100 Continue\r\n\r\n" + answer(PAGE)],
    "103 then 200 apart": [
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        answer(PAGE),
    ],
    "100, 103, 200 apart": [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.js>\r\n\r\n",
        answer(PAGE),
    ],
}


@pytest.mark.parametrize("writes", INFORMATIONAL.values(), ids=list(INFORMATIONAL))
async def test_informational_answers_are_read_past(writes: list[bytes]) -> None:
    server = Loopback()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        for data in writes:
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(0.01)  # each in its own read
        await server.read_request(reader)  # the connection is kept for the next request
        writer.write(answer(b"{}"))
        await reader.read()

    async with server.serving(serve) as url:
        network = NetworkTransport(1)
        got = await fetched(network, f"{url}/v3/profiles")
        again = await fetched(network, f"{url}/v3/statuses")
        await network.aclose()
    assert (got.status_code, got.reason_phrase) == (200, "OK")
    assert got.json() == json.loads(PAGE)
    assert "link" not in got.headers  # the 103's header is not the answer's
    assert again.json() == {}
    assert server.connections == 1


async def test_switching_protocols_unasked_is_a_protocol_error() -> None:
    server = Loopback()
    upgrade = (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
    )
    async with server.serving(await serve_raw(server, [upgrade])) as url:
        network = NetworkTransport(1)
        with pytest.raises(httpx.RemoteProtocolError, match=r"switched protocols \(101\)"):
            await fetched(network, f"{url}/v3/statuses")
        await network.aclose()


# -- what the transport sends again on its own ------------------------------------------------


def dropping_second_request(server: Loopback) -> Handler:
    """Answers the first request, then reads the second on the same kept-alive connection and
    closes without a byte back (as a server that had just timed it out); later connections
    are answered."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(b'{"data": {"batch_id": "b1"}}', status="202 Accepted"))
        await writer.drain()
        if server.connections == 1:
            await server.read_request(reader)
            return
        await reader.read()

    return serve


@pytest.mark.parametrize(
    ("method", "sent"), [("POST", 1), ("DELETE", 1), ("PUT", 1), ("GET", 2), ("OPTIONS", 2)]
)
async def test_only_requests_that_change_nothing_go_out_again_on_their_own(
    method: str, sent: int
) -> None:
    server = Loopback()
    async with server.serving(dropping_second_request(server)) as url:
        network = NetworkTransport(1)
        await fetched(network, f"{url}/v3/statuses")
        second = network.fetch(method, f"{url}/v3/profile/status/batch.json", {}, b"{}", {})
        if sent == 1:
            with pytest.raises(httpx.ReadError, match=f"a {method} is not sent again"):
                await second
        else:
            assert (await second).status_code == 202
        await network.aclose()
    methods = [head.split(b" ")[0].decode() for head in server.heads[1:]]
    assert methods == [method] * sent


async def test_the_retry_policy_decides_whether_a_dropped_batch_goes_out_again() -> None:
    """The transport leaves the POST to the client's retry policy, which sends it again after
    its wait: the batch endpoint merges handles, so a second copy changes nothing more."""
    server = Loopback()
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with server.serving(dropping_second_request(server)) as url:
        client = OmneoClient(f"{url}/api", SecretStr("t"), sleep=record)
        async with client:
            assert await client.send_batch(Action.ASSIGN, [("p1", ["vip"])]) == "b1"
            assert await client.send_batch(Action.ASSIGN, [("p1", ["vip"])]) == "b1"
    assert [head.split(b" ")[0] for head in server.heads] == [b"POST"] * 3
    assert len(waits) == 1  # the policy's one wait before it sent the batch again


# -- trailers, and bytes after an answer -----------------------------------------------------


async def test_trailers_are_not_headers() -> None:
    server = Loopback()
    chunked = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n"
        b"trailer: x-checksum\r\n\r\n2\r\n{}\r\n0\r\n"
        b"x-checksum: abc\r\ncontent-type: text/html\r\n\r\n"
    )
    async with server.serving(await serve_raw(server, [chunked, answer(PAGE)])) as url:
        network = NetworkTransport(1)
        got = await fetched(network, f"{url}/one")
        await fetched(network, f"{url}/two")
        await network.aclose()
    assert got.json() == {}
    assert "x-checksum" not in got.headers
    assert got.headers["content-type"] == "application/json"
    assert server.connections == 1  # the trailers ended the answer cleanly


async def test_bytes_after_an_answer_in_the_same_read_close_the_connection() -> None:
    """A second answer glued to the first: none of it joins the first one's headers, and the
    next request goes out on a new connection."""
    server = Loopback()
    glued = answer(PAGE) + answer_with(b'{"leak": 1}', b"x-leak: 1\r\n")
    async with server.serving(await serve_raw(server, [glued, answer(b"{}")])) as url:
        network = NetworkTransport(1)
        got = await fetched(network, f"{url}/one")
        await fetched(network, f"{url}/two")
        await network.aclose()
    assert "x-leak" not in got.headers
    assert got.json() == json.loads(PAGE)
    assert server.connections == 2


# -- bodies: limits, codings, HEAD -----------------------------------------------------------


def gzip_bomb() -> bytes:
    """About 1 MB of gzip that decodes to 1 GiB of zeros, made without holding the GiB: after
    a full flush the compressor starts afresh, so one compressed MiB can be repeated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()[:-8]  # gzip's trailer: the CRC-32 and length of the whole GiB
    return first + again * 1023 + end + struct.pack("<II", 0x5B64C2B0, (1 << 30) & 0xFFFFFFFF)


@pytest.mark.slow
def test_the_bomb_is_one_megabyte_of_a_gibibyte() -> None:
    """Seconds of CPU: the whole GiB is decoded once."""
    bomb = gzip_bomb()
    assert len(bomb) < 1_100_000
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    decoded, data = 0, bomb
    while data and not decoder.eof:  # a 1 GiB walk, 64 MiB at a time
        decoded += len(decoder.decompress(data, 64 * MIB))
        data = decoder.unconsumed_tail
    assert decoded == 1 << 30
    assert decoder.eof  # the CRC checked out


async def test_a_decompression_bomb_is_refused_with_bounded_memory() -> None:
    server = Loopback()
    bomb = answer_with(gzip_bomb(), b"content-encoding: gzip\r\n")
    async with server.serving(await serve_raw(server, [bomb])) as url:
        network = NetworkTransport(1)
        tracemalloc.start()
        try:
            with pytest.raises(httpx.RemoteProtocolError, match="decodes to over the 64 MiB limit"):
                await fetched(network, f"{url}/v3/profiles")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await network.aclose()
    assert peak < 3 * ANSWER_BODY_MAX < (1 << 30) // 4


ENDLESS_BODIES = {
    "chunked": (b"transfer-encoding: chunked\r\n", b"%x\r\n%s\r\n" % (MIB, b"x" * MIB)),
    "until close": (b"connection: close\r\n", b"x" * MIB),
    "a huge length": (b"content-length: %d\r\n" % (1 << 40), b"x" * MIB),
}


@pytest.mark.parametrize("shape", ENDLESS_BODIES.values(), ids=list(ENDLESS_BODIES))
async def test_an_endless_body_is_refused_at_the_body_limit(shape: tuple[bytes, bytes]) -> None:
    framing, piece = shape
    server = Loopback()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n")
        for _ in range(ANSWER_BODY_MAX // MIB + 16):  # then it waits: the old way timed out
            writer.write(piece)
            await writer.drain()
        await reader.read()

    async with server.serving(serve) as url:
        network = NetworkTransport(1)
        with pytest.raises(httpx.RemoteProtocolError, match="body is over the 64 MiB limit"):
            await fetched(network, f"{url}/v3/profiles")
        await network.aclose()


async def test_stacked_codings_are_undone_in_order_up_to_the_limit() -> None:
    server = Loopback()
    body = json.dumps({"data": ["é" * 20]}).encode()
    answers = [
        answer_with(gzip.compress(gzip.compress(body)), b"content-encoding: gzip, gzip\r\n"),
        answer_with(  # two header lines, deflate applied last: undone first
            zlib.compress(gzip.compress(body)),
            b"content-encoding: gzip\r\ncontent-encoding: identity, deflate\r\n",
        ),
        answer_with(b"", b"content-encoding: " + b", ".join([b"gzip"] * 6) + b"\r\n"),
    ]
    async with server.serving(await serve_raw(server, answers)) as url:
        network = NetworkTransport(1)
        twice = await fetched(network, f"{url}/one")
        mixed = await fetched(network, f"{url}/two")
        with pytest.raises(httpx.RemoteProtocolError, match=f"limit of {ANSWER_CODINGS_MAX}"):
            await fetched(network, f"{url}/three")
        await network.aclose()
    assert twice.content == mixed.content == body


async def test_a_truncated_gzip_body_is_corrupt() -> None:
    server = Loopback()
    cut = answer_with(gzip.compress(PAGE)[:-12], b"content-encoding: gzip\r\n")
    async with server.serving(await serve_raw(server, [cut])) as url:
        network = NetworkTransport(1)
        with pytest.raises(httpx.RemoteProtocolError, match=r"gzip body is corrupt: .*incomplete"):
            await fetched(network, f"{url}/one")
        await network.aclose()


async def test_a_head_answer_ends_with_its_head() -> None:
    """Its Content-Length says what a GET would get; no body follows and none is waited for
    (the read timeout is far longer than the test)."""
    server = Loopback()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        await reader.read()

    async with server.serving(serve) as url:
        network = NetworkTransport(1)
        got = await network.fetch("HEAD", f"{url}/v3/statuses", {}, None, {"read": 60.0})
        await network.aclose()
    assert (got.status_code, got.content, got.headers["content-length"]) == (200, b"", "1000")
    assert server.heads[0].startswith(b"HEAD /v3/statuses HTTP/1.1")


# -- the command line: one line, exit 1 -------------------------------------------------------


@contextmanager
def endless_head_server() -> Iterator[str]:
    """A raw server on a thread (the command runs its own event loop): each connection gets a
    status line and then header lines, up to 8 MiB, until the client hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    for _ in range(8 * 1024):
                        conn.sendall(b"X-Junk: " + b"a" * 1000 + b"\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/api"
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_a_run_that_meets_an_endless_head_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, clock: VirtualClock
) -> None:
    """Over the real network transport (retries on virtual time)."""
    with endless_head_server() as url:
        monkeypatch.setenv("OMNEO_BASE_URL", url)
        monkeypatch.setenv("OMNEO_TOKEN", "t0ken-value")
        result = CliRunner().invoke(cli.app, ["statuses"])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1
    assert "RemoteProtocolError: The answer's head is over the 64 KiB limit" in errors[0]
    assert "Traceback" not in result.stderr
    assert "t0ken-value" not in result.stderr
