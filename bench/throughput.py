"""Throughput benchmark: the targets of issue 12, measured on ``omneo-status assign`` against
the sequential script of the guide, under a rate limit, in requests per address, in CPU
seconds and in peak memory.

    uv run python bench/throughput.py              # every row (about five minutes)
    uv run python bench/throughput.py --quick      # smaller sizes: a smoke test (under 2 minutes)
    uv run python bench/throughput.py --rows 2,3   # only some rows (1, 2, 3, 4, rps, mem)

Every run gets a fresh ``omneo-status sandbox`` subprocess on a loopback port, seeded the
same way (``--profiles N``), and the tool runs as its own process
(``python -m omneo_status assign ...``) so that its CPU time and peak memory can be read from
``os.wait4``. Request counts and 429s come from the sandbox's ``--log`` file. See
``bench/README.md`` for the figures measured and what they mean.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import baseline

TOKEN = "bench-token"
HANDLE = "vip"
_URL = re.compile(r"(http://127\.0\.0\.1:\d+/api)")

# `omneo-status sandbox` with TCP_NODELAY on its listening socket (accepted sockets inherit
# it). The shipped `_bind` creates the socket with proto 0, so asyncio's own `_set_nodelay`
# (which checks `sock.proto == IPPROTO_TCP`) skips it, and uvicorn's two writes per answer
# (head, then body) meet Nagle and the client's delayed ACK: about 40 ms added to every
# answer on loopback. That would swamp the 20 ms of latency this benchmark simulates.
_NODELAY_SANDBOX = """
import socket, sys
from omneo_status.sandbox import server
from omneo_status.cli import main
bind = server._bind
def _bind(host, port):
    sock = bind(host, port)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
server._bind = _bind
sys.argv = ["omneo-status", "sandbox", *sys.argv[1:]]
main()
"""


def child_environment() -> dict[str, str]:
    """This process's environment, less ``PYTHONDONTWRITEBYTECODE``: with it, every child
    compiles every module it imports from source (about a second of CPU per process on the
    machine of bench/README.md), which no installed copy of the tool pays."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def warm_up() -> None:
    """Write the bytecode of every module a run imports, so the first run measured does not
    pay for compiling them."""
    modules = "omneo_status.cli, omneo_status.api.transport, omneo_status.sandbox, uvicorn"
    subprocess.run([sys.executable, "-c", f"import {modules}"], check=True, env=child_environment())


# -- the sandbox ------------------------------------------------------------------------------


@dataclass
class Served:
    """A sandbox subprocess and where it listens."""

    base_url: str
    log: Path
    process: subprocess.Popen[str]
    cpu: float = 0.0
    """CPU seconds the sandbox used, known once it has stopped."""


@contextmanager
def sandbox(
    workdir: Path,
    *,
    profiles: int,
    latency_ms: float = 0.0,
    rate_limit: int | None = None,
    rate_window: float = 1.0,
    shipped: bool = False,
    extra: Sequence[str] = (),
) -> Iterator[Served]:
    """Serve a freshly seeded sandbox until the block ends (``shipped``: without the
    TCP_NODELAY workaround; ``extra``: more ``omneo-status sandbox`` flags)."""
    log = Path(tempfile.mkstemp(prefix="sandbox-", suffix=".jsonl", dir=workdir)[1])
    launcher = ["-m", "omneo_status", "sandbox"] if shipped else ["-c", _NODELAY_SANDBOX]
    command = [
        sys.executable,
        *launcher,
        "--port",
        "0",
        "--profiles",
        str(profiles),
        "--token",
        TOKEN,
        "--latency-ms",
        str(latency_ms),
        "--log",
        str(log),
    ]
    if rate_limit is not None:
        command += ["--rate-limit", str(rate_limit), "--rate-window", str(rate_window)]
    command += extra
    env = {**child_environment(), "COLUMNS": "200", "NO_COLOR": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    served = Served("", log, process)
    try:
        served.base_url = _await_url(process)
        yield served
    finally:
        served.cpu = _stop(process)


def _stop(process: subprocess.Popen[str]) -> float:
    """Stop the sandbox (Ctrl-C, then SIGKILL after 30 s) and return its CPU seconds."""
    process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 30
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            process.kill()
        time.sleep(0.05)
    if process.stdout is not None:
        process.stdout.close()
    return usage.ru_utime + usage.ru_stime


def _await_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        found = _URL.search(line)
        if found:
            return found.group(1)
    raise RuntimeError(f"the sandbox exited ({process.wait()}) without printing its URL")


@dataclass
class LogStats:
    """What the sandbox's request log says about one run."""

    requests: int
    throttled: int
    first_at: float
    last_at: float
    times: list[float]

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.requests if self.requests else 0.0

    def rate_over_full_windows(self, window: float) -> float:
        """Requests per second over the windows the server opened, the last (partial) one left
        out: windows are rebuilt from arrival times the way the sandbox opens them."""
        opened = self.times[0]
        openings = [opened]
        counts = [0]
        for at in self.times:
            if at >= opened + window:
                opened = at
                openings.append(at)
                counts.append(0)
            counts[-1] += 1
        if len(openings) < 2:
            return self.requests / max(self.last_at - self.first_at, 1e-9)
        return sum(counts[:-1]) / (openings[-1] - openings[0])


def read_log(path: Path) -> LogStats:
    """Counts and times of every request in a sandbox log."""
    times: list[float] = []
    throttled = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            times.append(float(entry["at"]))
            throttled += entry["status"] == 429
    times.sort()
    return LogStats(len(times), throttled, times[0], times[-1], times)


# -- the tool ---------------------------------------------------------------------------------


@dataclass
class ToolRun:
    """One ``omneo-status`` process: its result and what it cost."""

    seconds: float
    cpu: float
    max_rss_mb: float
    exit_code: int
    summary: dict[str, Any]
    stderr: str


def run_tool(
    served: Served, workdir: Path, csv_path: Path, extra: Sequence[str], *, command: str = "assign"
) -> ToolRun:
    """Run ``omneo-status assign vip CSV`` as a child process and measure it."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=workdir))
    out_path, err_path = state / "stdout.json", state / "stderr.txt"
    env = {
        **{k: v for k, v in child_environment().items() if not k.startswith("OMNEO_")},
        "OMNEO_TOKEN": TOKEN,
        "OMNEO_STATE_DIR": str(state),
    }
    args = [sys.executable, "-m", "omneo_status", command, HANDLE, str(csv_path)]
    args += ["--base-url", served.base_url, "--yes", "--json", "--quiet", *extra]
    with out_path.open("w") as out, err_path.open("w") as err:
        started = time.perf_counter()
        process = subprocess.Popen(args, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    text = out_path.read_text(encoding="utf-8")
    summary: dict[str, Any] = json.loads(text) if text.strip() else {}
    return ToolRun(
        seconds=seconds,
        cpu=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,
        exit_code=process.returncode,
        summary=summary,
        stderr=err_path.read_text(encoding="utf-8"),
    )


def startup(runs: int = 10) -> tuple[float, float]:
    """Median wall and CPU seconds of ``omneo-status --version``: Python, the imports that
    command pays for, and exit."""
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "omneo_status", "--version"],
            stdout=subprocess.DEVNULL,
            env=child_environment(),
        )
        _, status, usage = os.wait4(process.pid, 0)
        walls.append(time.perf_counter() - started)
        process.returncode = os.waitstatus_to_exitcode(status)
        cpus.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def write_emails(path: Path, count: int, profiles: int, seed: int) -> Path:
    """``count`` distinct addresses of generated customers, in a seeded random order."""
    numbers = random.Random(seed).sample(range(1, profiles + 1), count)
    with path.open("w", encoding="utf-8") as handle:
        handle.write("email\n")
        handle.writelines(f"customer{n}@example.com\n" for n in numbers)
    return path


def write_sequential_emails(path: Path, count: int) -> Path:
    """``customer1..count@example.com``, written without holding them in memory."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write("email\n")
        for start in range(1, count + 1, 100_000):
            stop = min(start + 100_000, count + 1)
            handle.write("".join(f"customer{n}@example.com\n" for n in range(start, stop)))
    return path


def accounted(run: ToolRun, rows: int) -> None:
    """Stop the benchmark if the tool failed or lost a row: its timing would mean nothing."""
    counts = run.summary.get("counts", {})
    if run.exit_code != 0 or sum(counts.values()) != rows:
        raise SystemExit(
            f"the tool exited {run.exit_code} with counts {counts} for {rows} rows:\n{run.stderr}"
        )


# -- the rows ---------------------------------------------------------------------------------


@dataclass
class Table:
    """Rows of the printed result."""

    lines: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, what: str, measured: str, target: str, verdict: bool | None) -> None:
        mark = "" if verdict is None else ("ok" if verdict else "MISSED")
        self.lines.append((what, measured, target, mark))
        print(f"  {what}: {measured}  [{target}] {mark}", file=sys.stderr, flush=True)

    def render(self) -> str:
        head = ("measurement", "measured", "target", "")
        widths = [max(len(row[i]) for row in [head, *self.lines]) for i in range(4)]
        rule = "  ".join("-" * w for w in widths)
        out = [
            "  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)),
            rule,
        ]
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in self.lines]
        return "\n".join(line.rstrip() for line in out)


@dataclass(frozen=True)
class Sizes:
    """How big each row is."""

    speed_profiles: int
    speed_rows: int
    cpu_rows: int
    small_tenant: tuple[int, int]
    """(profiles, addresses) of row 3 without the ``in`` filter."""
    large_tenant: tuple[int, int]
    """(profiles, addresses) of row 3 with it."""
    rate_rows: int
    memory_rows: int


def speed_row(table: Table, work: Path, sizes: Sizes, args: argparse.Namespace) -> None:
    """Row 1: the guide's sequential script against the tool, at 20 ms of latency."""
    latency = args.latency_ms
    rows = sizes.speed_rows
    csv_path = write_emails(work / "speed.csv", rows, sizes.speed_profiles, args.seed)
    print(f"row 1: {rows} addresses at {latency:g} ms", file=sys.stderr)
    with sandbox(
        work, profiles=sizes.speed_profiles, latency_ms=latency, shipped=args.shipped_sandbox
    ) as served:
        base = baseline.run(served.base_url, TOKEN, csv_path, HANDLE)
    table.add(
        f"1. the guide's sequential script, {rows} addresses, {latency:g} ms",
        f"{base.seconds:.1f} s ({base.requests} requests)",
        "",
        None,
    )
    variants: list[tuple[str, list[str], bool]] = [
        ("--lookup single, default options", ["--lookup", "single"], True),
        (
            f"--lookup single --concurrency {args.concurrency}",
            ["--lookup", "single", "--concurrency", str(args.concurrency)],
            False,
        ),
        ("--lookup auto, default options", [], False),
    ]
    for label, extra, targeted in variants:
        measured: list[tuple[ToolRun, Served]] = []
        for _ in range(args.repeat if targeted else 1):
            with sandbox(
                work,
                profiles=sizes.speed_profiles,
                latency_ms=latency,
                shipped=args.shipped_sandbox,
            ) as served:
                run = run_tool(served, work, csv_path, extra)
            accounted(run, rows)
            measured.append((run, served))
        measured.sort(key=lambda pair: pair[0].seconds)
        run, served = measured[len(measured) // 2]
        stats = read_log(served.log)
        ratio = base.seconds / run.seconds
        spread = _spread([base.seconds / r.seconds for r, _ in measured], "x")
        table.add(
            f"1. the tool, {label}" + (f", median of {len(measured)}" if len(measured) > 1 else ""),
            f"{run.seconds:.2f} s = {ratio:.1f}x faster{spread} ({stats.requests} requests;"
            f" CPU {run.cpu:.2f} s tool, {served.cpu:.2f} s sandbox)",
            ">= 15x" if targeted else "",
            ratio >= 15 if targeted else None,
        )


def _spread(values: list[float], unit: str) -> str:
    """`` (runs: 14.8x-16.1x)`` for several runs, nothing for one."""
    if len(values) < 2:
        return ""
    digits = 1 if unit == "x" else 3
    return f" (runs: {min(values):.{digits}f}{unit}-{max(values):.{digits}f}{unit})"


def cpu_row(table: Table, work: Path, sizes: Sizes, args: argparse.Namespace) -> None:
    """Row 2: the tool's CPU seconds per 1,000 addresses with single lookups, start-up
    included; and the start-up alone."""
    rows = sizes.cpu_rows
    latency = args.latency_ms
    csv_path = write_emails(work / "cpu.csv", rows, sizes.speed_profiles, args.seed + 3)
    print(f"row 2: {rows} addresses, --lookup single, {latency:g} ms", file=sys.stderr)
    runs: list[ToolRun] = []
    for _ in range(args.repeat):
        with sandbox(
            work, profiles=sizes.speed_profiles, latency_ms=latency, shipped=args.shipped_sandbox
        ) as served:
            runs.append(run_tool(served, work, csv_path, ["--lookup", "single"]))
        accounted(runs[-1], rows)
    runs.sort(key=lambda one: one.cpu)
    run = runs[len(runs) // 2]
    per_k = run.cpu * 1000 / rows
    spread = _spread([one.cpu * 1000 / rows for one in runs], " s")
    median = f", median of {len(runs)}" if len(runs) > 1 else ""
    table.add(
        f"2. client CPU per 1,000 addresses, {rows} addresses, --lookup single, {latency:g} ms"
        + median,
        f"{per_k:.3f} s, start-up included{spread} ({run.cpu:.2f} s in {run.seconds:.1f} s)",
        "<= 0.5 s",
        per_k <= 0.5,
    )
    wall, cpu = startup()
    table.add(
        "2. start-up: omneo-status --version, median of 10",
        f"{wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU",
        "",
        None,
    )


def requests_row(table: Table, work: Path, sizes: Sizes, args: argparse.Namespace) -> None:
    """Row 3: requests per address over a whole run (lookups, batches, polls and
    verification), default options, under a 50 requests/s limit."""
    cases: list[tuple[str, tuple[int, int], list[str], float]] = [
        ("without the in filter", sizes.small_tenant, ["--no-email-in-filter"], 0.1),
        ("with the in filter", sizes.large_tenant, [], 0.025),
    ]
    for label, (profiles, rows), extra, target in cases:
        csv_path = write_emails(work / f"requests-{rows}.csv", rows, profiles, args.seed + 4)
        print(f"row 3: {rows} addresses of {profiles} profiles, {label}", file=sys.stderr)
        with sandbox(
            work,
            profiles=profiles,
            latency_ms=args.latency_ms,
            rate_limit=50,
            rate_window=1.0,
            shipped=args.shipped_sandbox,
            extra=extra,
        ) as served:
            run = run_tool(served, work, csv_path, [])
            stats = read_log(served.log)
        accounted(run, rows)
        per_address = stats.requests / rows
        lookup = run.summary.get("lookup", {})
        mode = f"; lookup {lookup.get('mode')}" if isinstance(lookup, dict) and lookup else ""
        table.add(
            f"3. requests per address, {rows} of {profiles:,} profiles, {label}, 50/s",
            f"{per_address:.3f} ({stats.requests} requests, {stats.throttled} 429s,"
            f" {run.seconds:.1f} s{mode})",
            f"<= {target:g}",
            per_address <= target,
        )


def rate_row(table: Table, work: Path, sizes: Sizes, args: argparse.Namespace) -> None:
    """Row 4: a rate-limited tenant (100/1 s), single lookups, at no latency and at 20 ms."""
    limit, window = 100, 1.0
    rows = sizes.rate_rows
    csv_path = write_emails(work / "rate.csv", rows, sizes.speed_profiles, args.seed + 1)
    cases: list[tuple[float, list[str]]] = [
        (0.0, []),
        (args.latency_ms, []),
        (args.latency_ms, ["--concurrency", str(args.concurrency)]),
    ]
    for latency, extra in cases:
        label = f"latency {latency:g} ms" + (f", concurrency {extra[-1]}" if extra else "")
        print(f"row 4: {rows} addresses, {label}", file=sys.stderr)
        with sandbox(
            work,
            profiles=sizes.speed_profiles,
            latency_ms=latency,
            rate_limit=limit,
            rate_window=window,
            shipped=args.shipped_sandbox,
        ) as served:
            run = run_tool(served, work, csv_path, ["--lookup", "single", *extra])
            stats = read_log(served.log)
        accounted(run, rows)
        rate = stats.rate_over_full_windows(window)
        share = rate / (limit / window)
        table.add(
            f"4. {limit}/{window:g}s limit, {rows} addresses, {label}: rate",
            f"{rate:.1f} req/s = {share:.1%} of the limit ({stats.requests} requests,"
            f" {run.seconds:.1f} s)",
            ">= 90%",
            share >= 0.9,
        )
        table.add(
            f"4. {limit}/{window:g}s limit, {rows} addresses, {label}: 429s",
            f"{stats.throttled} = {stats.throttled_share:.2%}",
            "< 2%",
            stats.throttled_share < 0.02,
        )


def max_rps_row(table: Table, work: Path, sizes: Sizes, args: argparse.Namespace) -> None:
    """Row rps: ``--max-rps`` keeps the tool under its cap on a tenant without a limit."""
    cap = args.max_rps
    count = min(sizes.rate_rows, int(cap * 10))
    csv_path = write_emails(work / "cap.csv", count, sizes.speed_profiles, args.seed + 2)
    print(f"row rps: {count} addresses, --max-rps {cap:g}", file=sys.stderr)
    with sandbox(
        work,
        profiles=sizes.speed_profiles,
        latency_ms=args.latency_ms,
        shipped=args.shipped_sandbox,
    ) as served:
        run = run_tool(served, work, csv_path, ["--lookup", "single", "--max-rps", str(cap)])
        stats = read_log(served.log)
    accounted(run, count)
    worst = _busiest_second(stats.times)
    rate = (stats.requests - 1) / (stats.last_at - stats.first_at)
    table.add(
        f"rps. --max-rps {cap:g}, {count} addresses",
        f"{rate:.1f} req/s overall, at most {worst} in any 1 s",
        f"<= {cap:g}",
        rate <= cap and worst <= math.ceil(cap),
    )


def _busiest_second(times: list[float]) -> int:
    busiest, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    return busiest


def memory_row(table: Table, work: Path, sizes: Sizes, args: argparse.Namespace) -> None:
    """Row 4 (memory): peak RSS of a bulk dry run over a very large file."""
    rows = sizes.memory_rows
    print(f"row mem: dry run over {rows} rows (this takes a while)", file=sys.stderr)
    csv_path = write_sequential_emails(work / "memory.csv", rows)
    with sandbox(work, profiles=rows, shipped=args.shipped_sandbox) as served:
        run = run_tool(served, work, csv_path, ["--dry-run", "--lookup", "bulk"])
    accounted(run, rows)
    table.add(
        f"4. peak RSS, --dry-run over {rows:,} rows, bulk",
        f"{run.max_rss_mb:.0f} MB ({run.seconds:.0f} s, {run.cpu:.0f} s CPU)",
        "< 200 MB",
        run.max_rss_mb < 200,
    )


ROWS: dict[str, Callable[[Table, Path, Sizes, argparse.Namespace], None]] = {
    "1": speed_row,
    "2": cpu_row,
    "3": requests_row,
    "4": rate_row,
    "rps": max_rps_row,
    "mem": memory_row,
}
"""Every row, in the order they run."""


# -- main -------------------------------------------------------------------------------------


def machine() -> str:
    """nproc, CPU model and Python version."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs, {model}, Python {platform.python_version()}"


def speed_reference() -> str:
    """How fast this machine runs Python now: a shared machine's speed drifts by a third from
    hour to hour, and every CPU figure of the table with it."""
    started = time.process_time()
    total = 0
    for number in range(3_000_000):
        total += number
    return f"a 3M-step Python loop takes {(time.process_time() - started) * 1000:.0f} ms"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke test")
    parser.add_argument(
        "--rows",
        default=",".join(ROWS),
        help="which rows to run, comma separated (default: all): " + ", ".join(ROWS),
    )
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument(
        "--concurrency", type=int, default=32, help="the high-concurrency cases of rows 1 and 4"
    )
    parser.add_argument("--max-rps", type=float, default=50.0, help="the cap of row rps")
    parser.add_argument("--seed", type=int, default=0, help="which addresses, in which order")
    parser.add_argument("--memory-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of the targeted cases of rows 1 and 2, each on a fresh sandbox (the median"
        " is the figure)",
    )
    parser.add_argument(
        "--shipped-sandbox",
        action="store_true",
        help="serve the sandbox exactly as shipped (without TCP_NODELAY: ~40 ms per answer)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the selected rows and print the table on stdout."""
    args = parse_args(argv)
    rows = set(args.rows.split(","))
    if unknown := rows - ROWS.keys():
        raise SystemExit(f"unknown rows: {', '.join(sorted(unknown))} (rows: {', '.join(ROWS)})")
    sizes = (
        Sizes(5_000, 300, 1_000, (1_000, 800), (5_000, 500), 600, 50_000)
        if args.quick
        else Sizes(10_000, 1_000, 3_000, (1_000, 800), (20_000, 2_000), 3_000, args.memory_rows)
    )
    table = Table()
    reference = speed_reference()
    print(f"machine: {machine()}; {reference}", file=sys.stderr)
    warm_up()
    with tempfile.TemporaryDirectory(prefix="omneo-bench-") as tmp:
        work = Path(tmp)
        for row in ROWS:
            if row in rows:
                ROWS[row](table, work, sizes, args)
    print(f"omneo-status throughput ({machine()}; {reference})")
    print(f"command: {' '.join(['bench/throughput.py', *sys.argv[1:]])}")
    print()
    print(table.render())


if __name__ == "__main__":
    main()
