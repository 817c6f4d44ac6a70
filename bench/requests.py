"""Requests the tool asks of a tenant, case by case, counted in the sandbox's request log.

    uv run python bench/requests.py                    # every case but the million rows
    uv run python bench/requests.py lookups            # requests per address (rows 3 of the table)
    uv run python bench/requests.py lookups --memory   # and a 1,000,000-row scan's peak memory
    uv run python bench/requests.py doctor             # running doctor first is never dearer
    uv run python bench/requests.py sync               # sync reads the tenant once
    uv run python bench/requests.py resume             # a resume after Ctrl-C while sending
    uv run python bench/requests.py resume --rows 5100 --chunk-size 250

``lookups``, ``doctor`` and ``sync`` start a fresh ``omneo-status sandbox --log`` subprocess per
run and run the tool as its own process, so every request (lookups, batches, polls,
verification, 429s) is in the log. ``resume`` runs in-process, so that the first run can be
cancelled exactly as its second batch request is about to go out (see :func:`resume`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from omneo_status.api.client import OmneoClient
from omneo_status.errors import Interrupted
from omneo_status.events import Step
from omneo_status.jobs import JobContext, run_job
from omneo_status.models import Action
from omneo_status.options import JobSpec, RunOptions
from omneo_status.sandbox import SandboxConfig, Tenant, create_app, generate_tenant
from omneo_status.source import prepared_input

TOKEN = "bench-token"
_URL = re.compile(r"(http://127\.0\.0\.1:\d+/api)")


# -- a sandbox subprocess and the tool as its own process ---------------------------------------


@dataclass(frozen=True)
class Served:
    """A served sandbox: where it listens, where it logs, and an environment for the tool."""

    base_url: str
    log: Path
    env: dict[str, str]

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        """The logged requests, from the ``since``-th on."""
        return [json.loads(line) for line in self.log.read_text().splitlines()[since:]]

    def tool(self, *args: str) -> tuple[str, float]:
        """Run ``omneo-status ARGS``; its stdout and its own peak RSS in MB."""
        tool = subprocess.Popen(
            [sys.executable, "-m", "omneo_status", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert tool.stdout is not None
        out = tool.stdout.read()
        _, _, usage = os.wait4(tool.pid, 0)  # the tool's own peak RSS, not the sandbox's
        tool.returncode = 0
        return out, usage.ru_maxrss / 1024


@contextmanager
def served(work: Path, name: str, profiles: int, flags: Sequence[str]) -> Iterator[Served]:
    """A fresh ``omneo-status sandbox`` of ``profiles`` generated profiles (and ``flags``) on a
    free loopback port, with its own log and state directory; stopped on the way out."""
    log = work / f"log-{name}.jsonl"
    command = ["sandbox", "--port", "0", "--token", TOKEN, "--profiles", str(profiles)]
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "omneo_status", *command, "--log", str(log), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert sandbox.stdout is not None
        base_url = next(m.group(1) for line in sandbox.stdout if (m := _URL.search(line)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNEO_")}
        state = work / f"state-{name}"
        env.update(OMNEO_BASE_URL=base_url, OMNEO_TOKEN=TOKEN, OMNEO_STATE_DIR=str(state))
        yield Served(base_url, log, env)
    finally:
        sandbox.terminate()
        sandbox.wait()


def write_customers(path: Path, numbers: Iterable[int]) -> Path:
    """A CSV of ``customerN@example.com`` addresses (the sandbox's generated customers)."""
    path.write_text("email\n" + "".join(f"customer{n}@example.com\n" for n in numbers))
    return path


# -- lookups: requests per address ----------------------------------------------------------------


def lookups(work: Path, *, memory: bool) -> None:
    """Whole ``assign`` runs at a 50/s limit: requests per address against the targets."""
    cases = [
        (1000, 800, ["--rate-limit", "50", "--no-email-in-filter"], 0.1),
        (20000, 2000, ["--rate-limit", "50"], 0.025),
    ]
    for profiles, addresses, flags, target in cases:
        with served(work, f"lookups-{profiles}", profiles, flags) as tenant:
            csv = write_customers(work / f"in-{addresses}.csv", range(addresses))
            out, _ = tenant.tool("assign", "vip", str(csv), "--yes", "--json", "--quiet")
            summary = json.loads(out)
            requests = len(tenant.requests())
        assert sum(summary["counts"].values()) == addresses, summary
        lookup = summary["lookup"]
        print(
            f"{addresses} addresses, {profiles} profiles, {' '.join(flags)}: {requests} requests"
            f" = {requests / addresses:.4f} per address (target <= {target}); lookup"
            f" {lookup['mode']}, {lookup['reason']}"
        )
    if memory:
        rows = 1_000_000
        with served(work, "memory", rows, []) as tenant:
            csv = write_customers(work / "in-million.csv", range(rows))
            args = ("assign", "vip", str(csv), "--yes", "--json", "--quiet", "--dry-run")
            _, rss = tenant.tool(*args, "--lookup", "scan")
            requests = len(tenant.requests())
        print(
            f"1,000,000 rows, 1,000,000 profiles, --dry-run --lookup scan: peak RSS {rss:.0f} MB,"
            f" {requests} requests"
        )


# -- doctor: a saved record never makes a run dearer ----------------------------------------------

DOCTOR_CASES = (
    ("ignores filter[email][in]", 200, 84, ("--no-email-in-filter",)),
    (
        "honours only page/per_page, ignores filter[email][in]",
        1770,
        300,
        ("--page-style", "per_page", "--no-email-in-filter"),
    ),
)


def doctor(work: Path) -> None:
    """A dry run's lookups (``GET /v3/profiles``) without a saved record and after ``doctor``;
    the file is the tenant's last customers (page 1 of a tenant ignoring the ``in`` filter
    shows strangers)."""
    for number, (name, profiles, addresses, flags) in enumerate(DOCTOR_CASES):
        for after_doctor in (False, True):
            with served(work, f"doctor-{number}-{after_doctor}", profiles, flags) as tenant:
                numbers = range(profiles - addresses + 1, profiles + 1)
                csv = write_customers(work / f"doctor-{number}.csv", numbers)
                if after_doctor:
                    tenant.tool("doctor", "--json")
                before = len(tenant.requests())
                out, _ = tenant.tool("assign", "vip", str(csv), "--dry-run", "--json")
                logged = tenant.requests(before)
            made = sum(1 for r in logged if r["path"] == "/api/v3/profiles")
            lookup = json.loads(out)["lookup"]
            record = "after doctor" if after_doctor else "no record   "
            print(
                f"{addresses} addresses, {profiles} profiles, {name}, {record}: {made} lookup"
                f" requests (planned {lookup['requests']}, {lookup['mode']}: {lookup['reason']})"
            )


# -- sync: the tenant read once ------------------------------------------------------------------


def sync(work: Path) -> None:
    """``sync vip FILE --dry-run`` on 2,000 profiles that ignore ``filter[statuses.handle]``,
    the file naming every customer and 100 of them twice: requests by kind."""
    profiles = 2000
    numbers = [*range(1, profiles + 1), *range(1, 101)]
    csv = write_customers(work / "dups.csv", numbers)
    for extra in ((), ("--lookup", "bulk")):
        name = "sync" + "-".join(extra)
        with served(work, name, profiles, ["--no-status-filter"]) as tenant:
            args = ("sync", "vip", str(csv), "--dry-run", "--max-remove", "100%", "--json")
            out, _ = tenant.tool(*args, "--quiet", *extra)
            logged = tenant.requests()
        kinds = Counter(
            f"{r['method']} {r['path']}"
            + (" (status filter)" if "statuses.handle" in json.dumps(r) else "")
            for r in logged
        )
        summary = json.loads(out)
        print(
            f"sync, {profiles} profiles ignoring the status filter, {len(numbers)} rows"
            f" {' '.join(extra) or '(default)'}: {len(logged)} requests"
            f" ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))});"
            f" lookup {summary['lookup']['mode']}, holders by {summary['sync']['holders_found_by']}"
        )


# -- resume: after an interruption while sending ---------------------------------------------------


class Silent:
    """A reporter that shows nothing."""

    def start(self, step: Step, total: int | None = None, done: int = 0) -> None:
        """Nothing to show."""

    def advance(self, step: Step, amount: int = 1) -> None:
        """Nothing to show."""

    def extend(self, step: Step, amount: int) -> None:
        """Nothing to show."""

    def finish(self, step: Step) -> None:
        """Nothing to show."""

    def info(self, message: str) -> None:
        """Nothing to show."""

    def warn(self, message: str) -> None:
        """Nothing to show."""

    def row_failed(self, line: int, email: str, detail: str) -> None:
        """Nothing to show."""


class Stopping(httpx.AsyncBaseTransport):
    """The sandbox; cancels ``task`` instead of sending the ``stop_at``-th batch request."""

    def __init__(self, inner: httpx.AsyncBaseTransport, stop_at: int | None) -> None:
        self.inner = inner
        self.stop_at = stop_at
        self.posts = 0
        self.task: asyncio.Task[object] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # a network wait lets the other tasks run
        if request.method == "POST":
            self.posts += 1
            if self.posts == self.stop_at and self.task is not None:
                self.task.cancel()
                await asyncio.Event().wait()  # never sent: the run's cancellation ends it
        return await self.inner.handle_async_request(request)


async def _attempt(
    tenant: Tenant, csv: Path, state: Path, chunk_size: int, stop_at: int | None
) -> str:
    """One run of the job; how it ended."""
    base_url = "http://sandbox.test/api"
    transport = Stopping(httpx.ASGITransport(app=create_app(tenant, SandboxConfig())), stop_at)
    async with OmneoClient(base_url, SecretStr("sandbox-token"), transport=transport) as client:
        ctx = JobContext(client, base_url, state, Silent())
        options = RunOptions(chunk_size=chunk_size, verify=0)
        with prepared_input(str(csv), None, state_dir=state) as source:
            job = asyncio.ensure_future(
                run_job(ctx, JobSpec(Action.ASSIGN, ("vip",)), options, source)
            )
            transport.task = job
            try:
                summary = await job
            except Interrupted:
                return "interrupted"
    return f"exit {int(summary.exit_code)}: {summary.counts}"


def _request_kind(method: str, path: str) -> str:
    if path.startswith("/api/v3/profiles/"):
        return "profile_by_id"
    if path == "/api/v3/profiles":
        return "profile_list"
    if method == "POST":
        return "batch_post"
    if path.startswith("/api/v3/batches/"):
        return "batch_poll"
    return "other"


async def resume(work: Path, *, profiles: int, rows: int, chunk_size: int) -> None:
    """Cancel an ``assign`` (as Ctrl-C does) as its second batch request is about to go out, then
    run the job again: what that resume asks of the tenant, by kind."""
    tenant = generate_tenant(profiles, seed=18)
    csv = work / "resume.csv"
    emails = [p.email or "" for p in tenant.profiles.values()][:rows]
    csv.write_text("email\n" + "\n".join(emails) + "\n", encoding="utf-8")
    state = work / "state-resume"
    stopped = await _attempt(tenant, csv, state, chunk_size, stop_at=2)
    with sqlite3.connect(state / "journal.sqlite") as db:
        chunks = db.execute("SELECT state, COUNT(*) FROM chunks GROUP BY 1 ORDER BY 1").fetchall()
    before = len(tenant.requests)
    resumed = await _attempt(tenant, csv, state, chunk_size, stop_at=None)
    counts = Counter(_request_kind(r.method, r.path) for r in tenant.requests[before:])
    print(
        f"resume of {rows} rows in chunks of {chunk_size} ({stopped}; chunks left {dict(chunks)}):"
        f" {sum(counts.values())} requests ({dict(sorted(counts.items()))}); {resumed}"
    )


def main() -> None:
    """Run the cases asked for (all but the million rows by default)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="lookups, doctor, sync, resume (default: all)")
    parser.add_argument("--memory", action="store_true", help="lookups: the 1,000,000-row scan")
    parser.add_argument("--profiles", type=int, default=10_000, help="resume: the tenant's size")
    parser.add_argument("--rows", type=int, default=5_000, help="resume: the run's rows")
    parser.add_argument("--chunk-size", type=int, default=500, help="resume: its chunk size")
    args = parser.parse_args()
    known = ["lookups", "doctor", "sync", "resume"]
    cases = args.cases or known
    if unknown := set(cases) - set(known):
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "lookups" in cases:
            lookups(work, memory=args.memory)
        if "doctor" in cases:
            doctor(work)
        if "sync" in cases:
            sync(work)
        if "resume" in cases:
            asyncio.run(
                resume(work, profiles=args.profiles, rows=args.rows, chunk_size=args.chunk_size)
            )


if __name__ == "__main__":
    main()
