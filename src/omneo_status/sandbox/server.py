"""Serve the sandbox app on a real socket: in the foreground (the CLI) or in a thread (tests).

The listening socket is bound here, before uvicorn starts, so that a port already in use
surfaces as an ordinary ``OSError`` instead of uvicorn's log line and ``sys.exit``.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Self

import uvicorn
from starlette.types import ASGIApp

_STARTUP_TIMEOUT = 10.0


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; the OSError of a failed bind is passed on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Naming TCP lets asyncio turn Nagle's algorithm off on accepted connections; without it
    # every answer waits ~40 ms on loopback, more than the latency the sandbox simulates.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _base_url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/api"


class _Server(uvicorn.Server):
    """uvicorn's server, calling ``on_started`` once its sockets accept connections."""

    def __init__(self, app: ASGIApp, *, quiet: bool, on_started: Callable[[], None] | None) -> None:
        options: dict[str, Any] = {}
        if quiet:
            # Leave the host process's logging configuration alone (tests, benchmarks).
            options["log_config"] = None
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            # httptools' parser and uvloop's loop (the sandbox extra installs both; uvicorn
            # falls back to h11 and asyncio without them) cut the sandbox's CPU per request
            # from ~0.57 to ~0.33-0.43 ms; it shares the cores with the tool under test.
            http="auto",
            ws="none",
            loop="auto",
            **options,
        )
        super().__init__(config)
        self.on_started = on_started
        self.callback_error: Exception | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_started is not None:
            try:
                self.on_started()
            except Exception as error:  # re-raised by the caller once the server has stopped
                self.callback_error = error
                self.should_exit = True


def serve(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` until Ctrl-C or SIGTERM, then return normally.

    ``on_ready(base_url)`` is called once the server accepts connections, with
    ``http://HOST:PORT/api`` (the real port when ``port`` is 0). It runs on the server's
    event loop, so it must return quickly and must not call the server itself; an exception
    it raises stops the server and is re-raised here.

    Raises:
        OSError: the socket cannot be bound, raised before anything is served: the bind's
            own error (``errno.EADDRINUSE`` when the port is taken, with ``strerror``
            ``"Address already in use"``; ``socket.gaierror``, an OSError, for a host name
            that does not resolve).
    """
    sock = _bind(host, port)
    url = _base_url(host, sock)
    ready = None if on_ready is None else (lambda: on_ready(url))
    server = _Server(app, quiet=False, on_started=ready)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    # uvicorn re-raises the signal that stopped it once its own handlers are removed; with
    # ours underneath, that re-raise lands here instead of killing the process mid-return.
    in_main = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        if in_main
        else {}
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if server.callback_error is not None:
        raise server.callback_error


class ServerThread:
    """Run ``app`` on a loopback port in a background thread, for tests and benchmarks.

    ``with ServerThread(app) as server:`` returns once the socket accepts connections;
    ``server.base_url`` is ``http://127.0.0.1:PORT/api``. Leaving the block stops the server
    and joins the thread. Binding failures raise OSError as :func:`serve` does; a server that
    does not come up within 10 seconds raises RuntimeError.
    """

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.base_url = ""
        self._server: _Server | None = None
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> Self:
        self._sock = _bind(self.host, self.port)
        self.base_url = _base_url(self.host, self._sock)
        self._server = _Server(self.app, quiet=True, on_started=self._started.set)
        self._thread = threading.Thread(
            target=self._run, args=(self._server, self._sock), name="omneo-sandbox", daemon=True
        )
        self._thread.start()
        if not self._started.wait(_STARTUP_TIMEOUT) or self._error is not None:
            self._stop()
            raise RuntimeError(f"the sandbox server did not start: {self._error!r}")
        return self

    def _run(self, server: _Server, sock: socket.socket) -> None:
        # The thread reports its failure to __enter__ instead of letting it escape unseen.
        try:
            server.run(sockets=[sock])
        except BaseException as error:
            self._error = error
            self._started.set()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=_STARTUP_TIMEOUT)
        if self._sock is not None:
            self._sock.close()
