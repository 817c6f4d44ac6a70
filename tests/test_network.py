"""How a network run reaches the tenant (issue 19, defects 1, 7 and 8 and the escape hatch):
proxies named the way httpx, curl and pip accept them, a forward proxy that really carries the
traffic, a TLS certificate that cannot be verified (not retried), ``OMNEO_TRANSPORT=httpx``,
and the transport named by ``--trace`` and ``doctor --json``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn
from pydantic import SecretStr

from omneo_status.api.client import OmneoClient, RetryPolicy
from omneo_status.api.exchange import TransportInUse
from omneo_status.api.trace import Exchange
from omneo_status.api.transport import NetworkTransport, env_proxy
from omneo_status.errors import Unreachable
from omneo_status.options import TransportMode
from omneo_status.sandbox import SandboxConfig, Tenant, create_app, demo_tenant
from omneo_status.settings import SANDBOX_TOKEN

from .conftest import EXAMPLES, Sandbox

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
PAGE = json.dumps({"data": [], "meta": {"current_page": 1, "last_page": 1, "total": 0}}).encode()
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n" % len(PAGE) + PAGE
)


@pytest.fixture(autouse=True)
def _no_proxy_of_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the proxies a test names: none of the machine's own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


# -- a forward proxy and a TLS tenant on loopback ---------------------------------------------


class ConnectProxy:
    """A forward proxy on 127.0.0.1 speaking CONNECT (what a client sends it for an https
    URL), that counts the tunnels it opened by their target."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
            if method != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                return
            host, port = target.rsplit(":", 1)
            up_reader, upstream = await asyncio.open_connection(host, int(port))
            self.tunnels.append(target)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if upstream is not None:
                upstream.close()
            writer.close()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        """The proxy on this event loop; yields its port."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()

    @contextmanager
    def in_thread(self) -> Iterator[int]:
        """The proxy on an event loop of its own, in a thread; yields its port."""
        ready = threading.Event()
        found: dict[str, Any] = {}

        async def main() -> None:
            found["loop"], found["stop"] = asyncio.get_running_loop(), asyncio.Event()
            async with self.serving() as port:
                found["port"] = port
                ready.set()
                await found["stop"].wait()

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        thread.start()
        assert ready.wait(10), "the proxy did not start"
        try:
            yield found["port"]
        finally:
            found["loop"].call_soon_threadsafe(found["stop"].set)
            thread.join(10)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes one way until the sender closes, then close the other side."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(authority: trustme.CA, tmp_path: Path) -> Path:
    """The test CA as a PEM bundle, for ``SSL_CERT_FILE``."""
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return path


@asynccontextmanager
async def tls_tenant(authority: trustme.CA) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TLS server on 127.0.0.1 (its certificate from ``authority``) answering every request
    with an empty page; yields its port and the request heads it read."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(ANSWER)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()


# -- defect 1: the proxy variables, read as httpx reads them ---------------------------------

TENANT_URL = "https://api.t.getomneo.com/api"


@pytest.mark.parametrize(
    ("environment", "url", "expected"),
    [
        # No scheme: http:// is meant, as httpx, curl and pip read it.
        ({"HTTPS_PROXY": "proxy.corp:3128"}, TENANT_URL, ("http://proxy.corp:3128", "HTTPS")),
        ({"https_proxy": "proxy.corp:3128"}, TENANT_URL, ("http://proxy.corp:3128", "HTTPS")),
        ({"ALL_PROXY": "proxy.corp:3128"}, TENANT_URL, ("http://proxy.corp:3128", "ALL")),
        ({"HTTP_PROXY": "proxy.corp:3128"}, "http://127.0.0.1:8765/api", ("http://", "HTTP")),
        ({"HTTP_PROXY": "proxy.corp:3128"}, TENANT_URL, None),
        (
            {"HTTPS_PROXY": "https://proxy.corp:3129", "ALL_PROXY": "proxy.corp:1"},
            TENANT_URL,
            ("https://proxy.corp:3129", "HTTPS"),
        ),
        ({"ALL_PROXY": "socks5://127.0.0.1:1080"}, TENANT_URL, ("socks5://", "ALL")),
        # NO_PROXY keeps working, as httpx reads it.
        ({"HTTPS_PROXY": "proxy.corp:3128", "NO_PROXY": "*"}, TENANT_URL, None),
        ({"HTTPS_PROXY": "proxy.corp:3128", "NO_PROXY": "getomneo.com"}, TENANT_URL, None),
        (
            {"HTTPS_PROXY": "proxy.corp:3128", "NO_PROXY": "other.com, .t.getomneo.com"},
            TENANT_URL,
            None,
        ),
        (
            {"HTTPS_PROXY": "proxy.corp:3128", "NO_PROXY": "omneo.com"},
            TENANT_URL,
            ("http://proxy.corp:3128", "HTTPS"),
        ),
        ({"HTTPS_PROXY": "p:1", "NO_PROXY": "127.0.0.1"}, "https://127.0.0.1:8443/api", None),
        ({"HTTPS_PROXY": "p:1", "NO_PROXY": "localhost"}, "https://localhost:8443/api", None),
    ],
)
def test_the_proxy_is_read_from_the_environment_as_httpx_reads_it(
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    url: str,
    expected: tuple[str, str] | None,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    found = env_proxy(url)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert found.url.startswith(expected[0]) and "://" in found.url
    assert found.variable == f"{expected[1]}_PROXY"


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["http://127.0.0.1:{port}", "127.0.0.1:{port}", "no_proxy"])
async def test_a_run_goes_through_the_proxy_named_with_or_without_a_scheme(
    monkeypatch: pytest.MonkeyPatch, authority: trustme.CA, ca_file: Path, form: str
) -> None:
    """The tool through a CONNECT proxy on loopback to a TLS tenant (its CA in SSL_CERT_FILE):
    ``HTTPS_PROXY`` with or without ``http://``; and past it when ``NO_PROXY`` names the host."""
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    proxy = ConnectProxy()
    async with proxy.serving() as proxy_port, tls_tenant(authority) as (port, heads):
        named = form.format(port=proxy_port) if form != "no_proxy" else f"127.0.0.1:{proxy_port}"
        monkeypatch.setenv("HTTPS_PROXY", named)
        if form == "no_proxy":
            monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        async with OmneoClient(f"https://127.0.0.1:{port}/api", SecretStr("t")) as client:
            assert await client.list_statuses() == []
            assert await client.list_statuses() == []
            used = client.transport_in_use
    assert len(heads) == 2 and heads[0].startswith(b"GET /api/v3/statuses")
    if form == "no_proxy":
        assert used == TransportInUse("builtin")
        assert proxy.tunnels == []
    else:
        assert used == TransportInUse("httpx", f"http://127.0.0.1:{proxy_port}")
        assert proxy.tunnels == [f"127.0.0.1:{port}"]  # one tunnel, kept alive for both


def test_credentials_in_the_proxy_url_are_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://me:s3cret@proxy.corp:3128")
    client = OmneoClient(TENANT_URL, SecretStr("t"))
    assert client.transport_in_use == TransportInUse("httpx", "http://proxy.corp:3128")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("HTTPS_PROXY", "socks5://me:s3cret@127.0.0.1:1080"), ("ALL_PROXY", "socks5h://127.0.0.1:9")],
)
def test_a_socks_proxy_is_one_clear_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("OMNEO_TOKEN", SANDBOX_TOKEN)
    result = sandbox.invoke("statuses", "--base-url", "https://api.acme.test/api")
    assert result.exit_code == 1
    error, hint = result.stderr.splitlines()
    scheme = value.split(":")[0]
    assert error.startswith("Error: The proxy ") and f"in {variable} is a {scheme} proxy" in error
    assert hint.startswith("Hint: ") and "HTTPS_PROXY=http://" in hint and "NO_PROXY" in hint
    assert "s3cret" not in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_proxy_setting_httpx_cannot_read_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "http://[::1")
    monkeypatch.setenv("OMNEO_TOKEN", SANDBOX_TOKEN)
    result = sandbox.invoke("statuses", "--base-url", "https://api.acme.test/api")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: The proxy settings cannot be read")
    assert "Traceback" not in result.stderr


# -- defect 7: a certificate that cannot be verified is not retried --------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mode", list(TransportMode))
async def test_a_certificate_that_cannot_be_verified_fails_at_once(
    authority: trustme.CA, mode: TransportMode
) -> None:
    """The tenant's certificate comes from a CA the tool does not trust (no SSL_CERT_FILE):
    one attempt, no wait, and an error naming the host, the reason and SSL_CERT_FILE."""
    slept: list[float] = []
    seen: list[Exchange] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with tls_tenant(authority) as (port, heads):
        client = OmneoClient(
            f"https://127.0.0.1:{port}/api",
            SecretStr("t"),
            retry=RetryPolicy(max_retries=5),
            sleep=sleep,
            on_exchange=seen.append,
            transport_mode=mode,
        )
        async with client:
            with pytest.raises(Unreachable) as caught:
                await client.list_statuses()
    assert len(seen) == 1 and slept == []
    assert heads == []
    error = caught.value
    assert error.message.startswith("GET /v3/statuses: the TLS certificate of 127.0.0.1 ")
    assert "unable to get local issuer certificate" in error.message
    assert error.hint is not None and "SSL_CERT_FILE" in error.hint
    assert "CA bundle" in error.hint


@pytest.mark.anyio
async def test_a_connection_error_without_a_certificate_behind_it_is_still_retried() -> None:
    """The TLS check looks for the certificate error in the cause: a plain SSL error (the
    handshake cut) is a connection error like any other, retried."""
    attempts = 0

    def cut(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("handshake cut") from ssl.SSLEOFError(8, "EOF")

    async def sleep(seconds: float) -> None:
        pass

    client = OmneoClient(
        "https://api.acme.test/api",
        SecretStr("t"),
        transport=httpx.MockTransport(cut),
        retry=RetryPolicy(max_retries=2),
        sleep=sleep,
    )
    with pytest.raises(Unreachable, match="unreachable"):
        await client.list_statuses()
    assert attempts == 3


# -- defect 8: no AsyncClient built to borrow its defaults -----------------------------------


@pytest.mark.anyio
async def test_the_client_builds_no_httpx_client_and_sends_its_own_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an httpx.AsyncClient was built")

    monkeypatch.setattr(httpx, "AsyncClient", refuse)
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"data": []})

    async with OmneoClient(
        "https://api.acme.test/api", SecretStr("s3cret"), transport=httpx.MockTransport(answer)
    ) as client:
        assert await client.list_statuses() == []
    headers = sent[0].headers
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["accept"] == "application/json"
    assert headers["accept-encoding"] == "gzip, deflate"
    assert headers["user-agent"].startswith("omneo-status/")
    assert sent[0].extensions["timeout"] == {
        "connect": 10.0,
        "read": 30.0,
        "write": 30.0,
        "pool": 30.0,
    }


# -- the escape hatch: OMNEO_TRANSPORT=httpx, and the transport named ------------------------


@pytest.fixture
def served_by(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox) -> dict[str, int]:
    """Both network transports answer from the test's sandbox tenant in-process, and count
    the requests each of them served."""
    counts = {"builtin": 0, "httpx": 0}

    async def through_httpx(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> Any:
        counts["httpx"] += 1
        return await sandbox.transport().handle_async_request(request)

    async def through_builtin(self: NetworkTransport, *args: Any) -> Any:
        counts["builtin"] += 1
        method, url, headers, content, _ = args
        request = httpx.Request(method, url, headers=headers, content=content)
        response = await sandbox.transport().handle_async_request(request)
        await response.aread()
        return response

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", through_httpx)
    monkeypatch.setattr(NetworkTransport, "fetch", through_builtin)
    monkeypatch.setenv("OMNEO_BASE_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("OMNEO_TOKEN", SANDBOX_TOKEN)
    return counts


@pytest.mark.parametrize("where", ["env", "config", "default"])
def test_omneo_transport_httpx_sends_every_request_through_httpx(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sandbox: Sandbox,
    served_by: dict[str, int],
    where: str,
) -> None:
    if where == "env":
        monkeypatch.setenv("OMNEO_TRANSPORT", "httpx")
    elif where == "config":
        config = tmp_path / "config.toml"
        config.write_text('transport = "httpx"\n', encoding="utf-8")
        monkeypatch.setenv("OMNEO_CONFIG", str(config))
    trace = tmp_path / "trace.jsonl"
    result = sandbox.invoke("doctor", "--json", "--trace", str(trace))
    assert result.exit_code == 0, result.stderr
    name = "builtin" if where == "default" else "httpx"
    assert json.loads(result.stdout)["transport"] == {"name": name, "proxy": None}
    sent = len(sandbox.tenant.requests)
    assert sent > 10 and served_by == {"builtin": 0, "httpx": 0, name: sent}
    first, *exchanges = (json.loads(line) for line in trace.read_text().splitlines())
    assert first["transport"] == {"name": name, "proxy": None}
    assert len(exchanges) == sent and all("transport" not in e for e in exchanges)


def test_a_run_through_httpx_assigns_as_the_builtin_transport_does(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, served_by: dict[str, int]
) -> None:
    monkeypatch.setenv("OMNEO_TRANSPORT", "HTTPX")  # any case
    result = sandbox.invoke("assign", "vip", str(EXAMPLES / "emails.csv"), "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert served_by["builtin"] == 0 and served_by["httpx"] == len(sandbox.tenant.requests)
    assert sandbox.writes() and "vip" in sandbox.statuses("ava.nguyen@example.com")


@pytest.mark.parametrize("where", ["env", "config"])
def test_a_transport_that_is_not_one_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox: Sandbox, where: str
) -> None:
    monkeypatch.setenv("OMNEO_BASE_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("OMNEO_TOKEN", SANDBOX_TOKEN)
    config = tmp_path / "config.toml"
    if where == "env":
        monkeypatch.setenv("OMNEO_TRANSPORT", "aiohttp")
        said = "Error: OMNEO_TRANSPORT is 'aiohttp', which is not a transport"
    else:
        config.write_text('transport = "aiohttp"\n', encoding="utf-8")
        monkeypatch.setenv("OMNEO_CONFIG", str(config))
        said = f"Error: transport in {config} is 'aiohttp', which is not a transport"
    result = sandbox.invoke("statuses")
    assert result.exit_code == 2
    error, hint = result.stderr.splitlines()
    assert error == said
    assert hint.startswith("Hint: Use auto") and "httpx" in hint
    shown = sandbox.invoke("config", "show", "--json")
    assert json.loads(shown.stdout)["transport"]["missing"] is True


def test_config_show_names_the_transport_and_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox: Sandbox
) -> None:
    shown = json.loads(sandbox.invoke("config", "show", "--json").stdout)
    assert shown["transport"] == {"value": "auto", "source": "default", "missing": False}
    config = tmp_path / "config.toml"
    config.write_text('transport = "httpx"\n', encoding="utf-8")
    monkeypatch.setenv("OMNEO_CONFIG", str(config))
    shown = json.loads(sandbox.invoke("config", "show", "--json").stdout)
    assert shown["transport"] == {"value": "httpx", "source": str(config), "missing": False}
    monkeypatch.setenv("OMNEO_TRANSPORT", "auto")  # the variable beats the file
    shown = json.loads(sandbox.invoke("config", "show", "--json").stdout)
    assert shown["transport"] == {
        "value": "auto",
        "source": "env OMNEO_TRANSPORT",
        "missing": False,
    }


def test_doctor_names_the_transport_on_screen_too(sandbox: Sandbox) -> None:
    result = sandbox.invoke("doctor", "--sandbox")
    assert result.exit_code == 0, result.stderr
    assert "transport: ASGITransport" in result.stdout


# -- the forward proxy, end to end: the tool in a process of its own -------------------------


@contextmanager
def tls_sandbox(tenant: Tenant, authority: trustme.CA, tmp_path: Path) -> Iterator[int]:
    """The sandbox app served by uvicorn over TLS on 127.0.0.1, in a thread; yields its port."""
    pem = tmp_path / "server.pem"
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    config = uvicorn.Config(
        create_app(tenant, SandboxConfig()),
        ssl_certfile=str(pem),
        ssl_keyfile=str(pem),
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(1000):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert server.started, "the TLS sandbox did not start"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("form", ["http://127.0.0.1:{port}", "127.0.0.1:{port}"])
def test_a_run_through_a_forward_proxy_to_a_tls_tenant(
    tmp_path: Path, authority: trustme.CA, ca_file: Path, form: str
) -> None:
    """``assign`` in a process of its own, through a CONNECT proxy on loopback, to the sandbox
    served over TLS; the proxy carried every byte, and the trace and the summary say so."""
    tenant = demo_tenant()
    proxy = ConnectProxy()
    trace = tmp_path / "trace.jsonl"
    with tls_sandbox(tenant, authority, tmp_path) as port, proxy.in_thread() as proxy_port:
        env = {
            name: value
            for name, value in os.environ.items()
            if name.upper() not in PROXY_VARIABLES and not name.startswith("OMNEO_")
        }
        env |= {
            "HTTPS_PROXY": form.format(port=proxy_port),
            "SSL_CERT_FILE": str(ca_file),
            "OMNEO_BASE_URL": f"https://127.0.0.1:{port}/api",
            "OMNEO_TOKEN": SANDBOX_TOKEN,
            "OMNEO_STATE_DIR": str(tmp_path / "state"),
        }
        args = ["assign", "vip", str(EXAMPLES / "emails.csv"), "--yes", "--json"]
        done = subprocess.run(
            [sys.executable, "-m", "omneo_status", *args, "--trace", str(trace)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "vip" in tenant.by_email("ava.nguyen@example.com")[0].statuses
    assert proxy.tunnels and set(proxy.tunnels) == {f"127.0.0.1:{port}"}
    first, *exchanges = (json.loads(line) for line in trace.read_text().splitlines())
    assert first["transport"] == {"name": "httpx", "proxy": f"http://127.0.0.1:{proxy_port}"}
    assert len(exchanges) == len(tenant.requests) > 3
