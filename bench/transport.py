"""Client CPU per request: httpx's own transport, aiohttp, and the tool's transport, on loopback.

    uv run python bench/transport.py                   # 3,000 GETs at concurrency 8, 3 rounds
    uv run python bench/transport.py --requests 1000 --rounds 1

A trivial keep-alive HTTP server (a subprocess; its CPU is not counted) answers every GET with
the same small JSON page of one profile. Each variant is a fresh client process that sends the
same GETs, ``--concurrency`` at a time, and its CPU time (user + sys) is read with
``os.wait4``. The same process sending no request measures the start-up and imports, which
are taken off: what is left, divided by the number of requests, is the CPU per request.
Variants:

- ``httpx``: ``httpx.AsyncClient`` with its default transport (httpcore);
- ``httpx+tool``: ``httpx.AsyncClient`` over the tool's ``NetworkTransport``;
- ``tool``: ``NetworkTransport.fetch`` alone, as the client calls it;
- ``aiohttp``: aiohttp's ``ClientSession`` alone (the transport the tool used before its own);
- ``client/httpx`` and ``client/default``: the tool's ``OmneoClient.find_profiles`` (retries,
  the governor, pagination, pydantic) over httpx's transport and over the transport the client
  picks for real runs.

Figures are in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence

BODY = json.dumps(
    {
        "data": [
            {
                "id": "1",
                "email": "customer1@example.com",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "statuses": ["vip"],
            }
        ],
        "links": {"next": None},
        "meta": {"current_page": 1, "last_page": 1, "per_page": 100, "total": 1},
    }
).encode()
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(BODY)).encode() + b"\r\n\r\n"
)
VARIANTS = ("httpx", "httpx+tool", "tool", "aiohttp", "client/httpx", "client/default")


# -- the server ------------------------------------------------------------------------------


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            writer.write(HEAD + BODY)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def serve() -> None:
    """Answer every request on a loopback port (printed on stdout) until killed."""
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


# -- the clients -----------------------------------------------------------------------------


async def _drive(count: int, concurrency: int, one: Callable[[], Awaitable[None]]) -> None:
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _httpx(url: str, count: int, concurrency: int, tool_transport: bool) -> None:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport: httpx.AsyncBaseTransport | None = None
    if tool_transport:
        from omneo_status.api.transport import NetworkTransport

        transport = NetworkTransport(concurrency)
    async with httpx.AsyncClient(base_url=url, transport=transport, limits=limits) as http:

        async def one() -> None:
            response = await http.get("/v3/profiles", params={"filter[email]": "a@example.com"})
            response.json()

        await _drive(count, concurrency, one)


async def _aiohttp(url: str, count: int, concurrency: int) -> None:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=url + "/", connector=connector) as session:

        async def one() -> None:
            params = {"filter[email]": "a@example.com"}
            async with session.get("v3/profiles", params=params) as response:
                await response.json()

        await _drive(count, concurrency, one)


async def _tool(url: str, count: int, concurrency: int) -> None:
    from omneo_status.api.exchange import query_string
    from omneo_status.api.transport import NetworkTransport

    transport = NetworkTransport(concurrency)
    target = f"{url}/v3/profiles?{query_string({'filter[email]': 'a@example.com'})}"
    headers = {"Accept": "application/json"}

    async def one() -> None:
        (await transport.fetch("GET", target, headers, None, {"read": 30.0})).json()

    await _drive(count, concurrency, one)
    await transport.aclose()


async def _client(url: str, count: int, concurrency: int, httpx_transport: bool) -> None:
    import httpx
    from pydantic import SecretStr

    from omneo_status.api.client import OmneoClient
    from omneo_status.api.governor import RateGovernor

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = httpx.AsyncHTTPTransport(limits=limits) if httpx_transport else None
    client = OmneoClient(
        url + "/api",
        SecretStr("bench-token"),
        transport=transport,
        governor=RateGovernor(concurrency=concurrency),
    )
    async with client:

        async def one() -> None:
            await client.find_profiles({"filter[email]": "a@example.com"})

        await _drive(count, concurrency, one)


def run_client(variant: str, url: str, count: int, concurrency: int) -> None:
    """Send ``count`` GETs through ``variant`` (imports happen even when ``count`` is 0)."""
    if variant in ("httpx", "httpx+tool"):
        asyncio.run(_httpx(url, count, concurrency, variant == "httpx+tool"))
    elif variant == "tool":
        asyncio.run(_tool(url, count, concurrency))
    elif variant == "aiohttp":
        asyncio.run(_aiohttp(url, count, concurrency))
    else:
        asyncio.run(_client(url, count, concurrency, variant == "client/httpx"))


# -- the measurement -------------------------------------------------------------------------


def cpu_of(args: Sequence[str]) -> float:
    """CPU seconds (user + sys) of one child process; fails if it fails."""
    # Without PYTHONDONTWRITEBYTECODE: compiling every import from source is not what an
    # installed tool pays at start-up.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    process = subprocess.Popen([sys.executable, __file__, *args], env=env)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed")
    return usage.ru_utime + usage.ru_stime


def measure(
    variant: str, url: str, count: int, concurrency: int, rounds: int
) -> tuple[float, float]:
    """(median start-up CPU in s, median CPU per request in ms) of ``variant``."""
    base = ["client", variant, url, str(concurrency)]
    idle = [cpu_of([*base, "0"]) for _ in range(rounds)]
    busy = [cpu_of([*base, str(count)]) for _ in range(rounds)]
    startup = statistics.median(idle)
    return startup, (statistics.median(busy) - startup) * 1000 / count


def main(argv: Sequence[str] | None = None) -> None:
    """Measure every variant against one server and print a table on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="the median of this many runs")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    server = subprocess.Popen(
        [sys.executable, __file__, "serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        print(
            f"{args.requests} GETs at concurrency {args.concurrency}, median of {args.rounds}\n"
            f"{'variant':<16}{'start-up CPU':>14}{'CPU per request':>18}"
        )
        for variant in args.variants.split(","):
            startup, per_request = measure(
                variant, url, args.requests, args.concurrency, args.rounds
            )
            print(f"{variant:<16}{startup:>12.3f} s{per_request:>15.3f} ms", flush=True)
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        asyncio.run(serve())
    elif sys.argv[1:2] == ["client"]:
        variant, url, concurrency, count = sys.argv[2:6]
        run_client(variant, url, int(count), int(concurrency))
    else:
        main()
