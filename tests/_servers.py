"""The conformance matrix's servers: one tiny echo app served by HTTP servers nobody here wrote.

The app is written once as ASGI (uvicorn with h11, uvicorn with httptools, hypercorn), once as
WSGI (waitress), and natively for aiohttp.web and tornado; all of them answer from ``answer``:

- ``GET /bytes/N``: ``payload(N)``; ``?gzip=1`` compresses it (when the request accepts gzip),
  ``?chunked=1`` sends it in chunks without a ``Content-Length``.
- ``POST /echo``: a JSON body ``{"id": ..., ...}``; answers ``{"id", "count", "sha256",
  "length"}``, where ``count`` is how many times that id has been applied so far.
- ``GET /counts``: every id's count (the readiness probe, too).

Every answer names the peer's port in ``x-peer``, so a client can tell a reused connection from
a new one. Run as a script (``python tests/_servers.py SERVER KEEP_ALIVE``) it binds a free port
on 127.0.0.1, prints it, and serves until killed; ``--sandbox N`` serves the sandbox tenant of
``N`` generated profiles instead (uvicorn and hypercorn only). It imports nothing from the test
suite, so that it runs as a plain script.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import json
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SANDBOX_SEED = 19
"""The seed of the tenant ``--sandbox`` serves (``generate_tenant``), for the tests to compare."""
ASGI_SERVERS = ("uvicorn-h11", "uvicorn-httptools", "hypercorn")
SERVERS = (*ASGI_SERVERS, "waitress", "aiohttp", "tornado")


@functools.lru_cache(maxsize=64)
def payload(size: int) -> bytes:
    """``size`` deterministic bytes, different at every offset (numbered lines), so that a
    body cut, shifted or spliced from another answer cannot compare equal."""
    lines = b"".join(b"%031d\n" % i for i in range(size // 32 + 1))
    return lines[:size]


@functools.lru_cache(maxsize=64)
def _gzipped(size: int) -> bytes:
    return gzip.compress(payload(size), compresslevel=1, mtime=0)


def _parts(body: bytes, count: int = 4) -> list[bytes]:
    step = max(1, -(-len(body) // count))
    return [body[i : i + step] for i in range(0, len(body), step)] or [b""]


@dataclass
class Reply:
    """What every server sends back: ``chunked`` answers carry no ``Content-Length`` and go
    out in several writes; the others have one and go out whole."""

    status: int
    headers: list[tuple[str, str]]
    parts: list[bytes]
    chunked: bool


class Counts:
    """How many times each POSTed id was applied (thread-safe: waitress runs threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def apply(self, key: str) -> int:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


COUNTS = Counts()


def answer(method: str, path: str, query: str, accept: str, peer: int, body: bytes) -> Reply:
    """The answer of the echo app to one request, whichever server carries it."""
    options = {name: values[-1] for name, values in parse_qs(query).items()}
    headers = [("x-peer", str(peer))]
    if method == "GET" and path.startswith("/bytes/"):
        size = int(path.removeprefix("/bytes/"))
        content = payload(size)
        if options.get("gzip") == "1" and "gzip" in accept:
            content = _gzipped(size)
            headers.append(("content-encoding", "gzip"))
        headers.append(("content-type", "application/octet-stream"))
        chunked = options.get("chunked") == "1"
        return _framed(200, headers, content, chunked=chunked)
    if method == "POST" and path == "/echo":
        key = str(json.loads(body)["id"])
        echo = {
            "id": key,
            "count": COUNTS.apply(key),
            "sha256": hashlib.sha256(body).hexdigest(),
            "length": len(body),
        }
        return _json(headers, echo)
    if method == "GET" and path == "/counts":
        return _json(headers, COUNTS.snapshot())
    return _framed(404, headers, b"not found", chunked=False)


def _json(headers: list[tuple[str, str]], document: object) -> Reply:
    headers.append(("content-type", "application/json"))
    return _framed(200, headers, json.dumps(document).encode(), chunked=False)


def _framed(status: int, headers: list[tuple[str, str]], content: bytes, *, chunked: bool) -> Reply:
    if chunked:
        return Reply(status, headers, _parts(content), chunked=True)
    headers.append(("content-length", str(len(content))))
    return Reply(status, headers, [content], chunked=False)


# -- the app, once per kind of server ----------------------------------------------------------


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The echo app as ASGI (lifespan off: HTTP only)."""
    assert scope["type"] == "http"
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    request_headers = dict(scope["headers"])
    got = answer(
        scope["method"],
        scope["path"],
        scope["query_string"].decode("latin-1"),
        request_headers.get(b"accept-encoding", b"").decode("latin-1"),
        scope["client"][1],
        b"".join(chunks),
    )
    raw = [(name.encode(), value.encode()) for name, value in got.headers]
    await send({"type": "http.response.start", "status": got.status, "headers": raw})
    for i, part in enumerate(got.parts):
        last = i == len(got.parts) - 1
        await send({"type": "http.response.body", "body": part, "more_body": not last})


def wsgi_app(
    environ: dict[str, Any], start_response: Callable[[str, list[tuple[str, str]]], object]
) -> Iterator[bytes]:
    """The echo app as WSGI (waitress)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    got = answer(
        environ["REQUEST_METHOD"],
        environ["PATH_INFO"],
        environ.get("QUERY_STRING", ""),
        environ.get("HTTP_ACCEPT_ENCODING", ""),
        int(environ["REMOTE_PORT"]),
        environ["wsgi.input"].read(length),
    )
    start_response(f"{got.status} {'OK' if got.status == 200 else 'Not Found'}", got.headers)
    # A generator, not a list: waitress gives a one-item list a Content-Length of its own.
    yield from got.parts


def _serve_aiohttp(sock: socket.socket, keep_alive: float) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        got = answer(
            request.method,
            request.path,
            request.query_string,
            request.headers.get("Accept-Encoding", ""),
            int(peer[1]) if peer else 0,
            await request.read(),
        )
        response = web.StreamResponse(status=got.status, headers=got.headers)
        if got.chunked:
            response.enable_chunked_encoding()
        await response.prepare(request)
        for part in got.parts:
            await response.write(part)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, sock=sock, keepalive_timeout=keep_alive, print=None, access_log=None)


def _serve_tornado(sock: socket.socket, keep_alive: float) -> None:
    from tornado.httpserver import HTTPServer
    from tornado.web import Application, RequestHandler

    class Handler(RequestHandler):
        async def _handle(self) -> None:
            # The peer's address is on HTTP1Connection's context; the abstract class
            # HTTPConnection that the request is typed with does not have it.
            connection: Any = self.request.connection
            address: tuple[str, int] = connection.context.address
            got = answer(
                self.request.method or "GET",
                self.request.path,
                self.request.query,
                self.request.headers.get("Accept-Encoding", ""),
                int(address[1]),
                self.request.body,
            )
            self.set_status(got.status)
            self.clear_header("Content-Type")
            for name, value in got.headers:
                self.set_header(name, value)
            for part in got.parts:
                self.write(part)
                if got.chunked:
                    await self.flush()  # a write before the end: tornado goes chunked
            self.finish()

        async def get(self, tail: str) -> None:
            await self._handle()

        async def post(self, tail: str) -> None:
            await self._handle()

    async def run() -> None:
        server = HTTPServer(Application([(r"/(.*)", Handler)]), idle_connection_timeout=keep_alive)
        server.add_sockets([sock])
        await asyncio.Event().wait()

    sock.setblocking(False)  # tornado accepts until the socket would block
    asyncio.run(run())


def _serve_waitress(sock: socket.socket, keep_alive: float) -> None:
    import waitress

    # waitress takes whole seconds, and closes idle connections only when its cleanup runs
    # (every ``cleanup_interval`` seconds, on the loop's next wake-up).
    seconds = max(1, round(keep_alive))
    waitress.serve(
        wsgi_app,
        sockets=[sock],
        channel_timeout=seconds,
        cleanup_interval=1,
        threads=4,
        _quiet=True,
    )


def _serve_uvicorn(app: ASGIApp, sock: socket.socket, keep_alive: float, http: str) -> None:
    import uvicorn

    options: dict[str, Any] = {"timeout_keep_alive": keep_alive}  # annotated int; a float works
    config = uvicorn.Config(
        app,
        http=http,
        loop="asyncio" if http == "h11" else "uvloop",
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        **options,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _serve_hypercorn(app: ASGIApp, sock: socket.socket, keep_alive: float) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.keep_alive_timeout = keep_alive
    config.accesslog = None
    config.errorlog = None
    # hypercorn types an app with its own TypedDicts for scopes and events.
    asyncio.run(serve(app, config, mode="asgi"))  # type: ignore[arg-type]


def _serve(name: str, app: ASGIApp, sock: socket.socket, keep_alive: float) -> None:
    if name in ("uvicorn-h11", "uvicorn-httptools"):
        _serve_uvicorn(app, sock, keep_alive, name.removeprefix("uvicorn-"))
    elif name == "hypercorn":
        _serve_hypercorn(app, sock, keep_alive)
    elif name == "waitress":
        _serve_waitress(sock, keep_alive)
    elif name == "aiohttp":
        _serve_aiohttp(sock, keep_alive)
    elif name == "tornado":
        _serve_tornado(sock, keep_alive)
    else:
        raise SystemExit(f"unknown server {name!r}")


def _sandbox_app(profiles: int) -> ASGIApp:
    from omneo_status.sandbox import create_app, generate_tenant

    app: ASGIApp = create_app(generate_tenant(profiles, seed=SANDBOX_SEED))
    return app


def main(argv: list[str]) -> None:
    """``SERVER KEEP_ALIVE [--sandbox PROFILES]``: bind, print the port, serve until killed."""
    name, keep_alive = argv[0], float(argv[1])
    app: ASGIApp = asgi_app
    if argv[2:3] == ["--sandbox"]:
        if name not in ASGI_SERVERS:
            raise SystemExit(f"the sandbox is an ASGI app: {name} cannot serve it")
        app = _sandbox_app(int(argv[3]))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    _serve(name, app, sock, keep_alive)


if __name__ == "__main__":
    main(sys.argv[1:])
