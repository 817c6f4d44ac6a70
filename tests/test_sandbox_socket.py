"""The sandbox over a real loopback socket: ServerThread in-process, serve() in a subprocess."""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

import omneo_status
from omneo_status.sandbox import ServerThread, create_app, demo_tenant, serve

AUTH = {"Authorization": "Bearer sandbox-token"}
BASE_URL = re.compile(r"http://127\.0\.0\.1:\d+/api")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_server_thread_serves_the_api_and_stops() -> None:
    tenant = demo_tenant()
    with ServerThread(create_app(tenant)) as server:
        assert BASE_URL.fullmatch(server.base_url)
        with httpx.Client(base_url=f"{server.base_url}/v3", headers=AUTH, timeout=10) as client:
            found = client.get("/profiles", params={"filter[email]": "ava.nguyen@example.com"})
            profile_id = found.json()["data"][0]["id"]
            queued = client.post(
                "/profile/status/batch.json",
                json={"profiles": [{"profile_id": profile_id, "statuses": ["vip"]}]},
            )
            batch = client.get(f"/batches/{queued.json()['data']['batch_id']}")
    assert queued.status_code == 202
    assert batch.json()["data"]["status"] == "success"
    assert tenant.statuses_of(profile_id) == ["vip"]
    assert [r.status for r in tenant.requests] == [200, 202, 200]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/v3/statuses", timeout=5)


def test_a_taken_port_raises_oserror(taken_port: int) -> None:
    app = create_app(demo_tenant())
    with pytest.raises(OSError, match="in use") as caught:
        serve(app, port=taken_port)
    assert caught.value.errno == errno.EADDRINUSE
    assert caught.value.strerror
    with pytest.raises(OSError, match="in use") as threaded:
        ServerThread(app, port=taken_port).__enter__()
    assert threaded.value.errno == errno.EADDRINUSE


class _Stop(Exception):
    pass


def test_serve_reports_the_real_port_and_passes_on_a_failing_callback() -> None:
    seen: list[str] = []

    def on_ready(url: str) -> None:
        seen.append(url)
        raise _Stop

    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(_Stop):
        serve(create_app(demo_tenant()), port=0, on_ready=on_ready)
    assert len(seen) == 1
    assert BASE_URL.fullmatch(seen[0])
    assert not seen[0].endswith(":0/api")
    assert signal.getsignal(signal.SIGINT) is previous


def test_server_thread_reports_a_server_that_never_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(self: uvicorn.Server, sockets: object = None) -> None:
        raise RuntimeError("no start")

    monkeypatch.setattr(uvicorn.Server, "startup", broken)
    with pytest.raises(RuntimeError, match="did not start"):
        ServerThread(create_app(demo_tenant())).__enter__()


SERVE_SCRIPT = """
from omneo_status.sandbox import create_app, demo_tenant, serve

serve(create_app(demo_tenant()), port=0, on_ready=lambda url: print(url, flush=True))
print("stopped", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_in_a_subprocess_stops_cleanly_on_a_signal(signum: signal.Signals) -> None:
    source_root = str(Path(omneo_status.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([source_root, os.environ.get("PYTHONPATH", "")]),
    }
    with subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert BASE_URL.fullmatch(url), url
            answer = httpx.get(f"{url}/v3/statuses", headers=AUTH, timeout=10)
            process.send_signal(signum)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert answer.status_code == 200
    assert process.returncode == 0, err
    assert out == "stopped\n"
    assert "Traceback" not in err
