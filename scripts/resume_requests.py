"""Requests made by the resume of a run interrupted while it was sending, counted in the request
log of an in-process sandbox (nothing sleeps, no socket).

    uv run python scripts/resume_requests.py                   # 5,000 rows, chunks of 500
    uv run python scripts/resume_requests.py --rows 5100 --chunk-size 250

The run (``assign vip``, default options but ``--chunk-size`` and ``--verify 0``, over a
tenant of ``--profiles`` generated profiles) is cancelled, as Ctrl-C does, when its second
batch request is about to go out: its first chunk was accepted, the second never reached the
tenant. The same job is then run again, and what that resume asks of the tenant is counted:
profiles read one by one (``GET /v3/profiles/{id}``), other profile reads (bulk lookups, pages),
batch requests, batch polls, and the total. Every request first lets the other tasks run, as a
network wait would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
from collections import Counter
from pathlib import Path

import httpx
from pydantic import SecretStr

from omneo_status.client import OmneoClient
from omneo_status.errors import Interrupted
from omneo_status.events import Step
from omneo_status.jobs import JobContext, run_job
from omneo_status.models import Action
from omneo_status.options import JobSpec, RunOptions
from omneo_status.sandbox import SandboxConfig, Tenant, create_app, generate_tenant
from omneo_status.source import prepared_input

BASE_URL = "http://sandbox.test/api"


class Silent:
    """A reporter that shows nothing."""

    def start(self, step: Step, total: int | None = None) -> None:
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


async def attempt(
    tenant: Tenant, csv: Path, state: Path, chunk_size: int, stop_at: int | None
) -> str:
    """One run of the job; how it ended."""
    transport = Stopping(httpx.ASGITransport(app=create_app(tenant, SandboxConfig())), stop_at)
    async with OmneoClient(BASE_URL, SecretStr("sandbox-token"), transport=transport) as client:
        ctx = JobContext(client, BASE_URL, state, Silent())
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


def journal_state(state: Path) -> dict[str, dict[str, int]]:
    """What the interrupted run left in its journal: chunks by state, rows by stage."""
    with sqlite3.connect(state / "journal.sqlite") as db:
        chunks = db.execute("SELECT state, COUNT(*) FROM chunks GROUP BY 1 ORDER BY 1").fetchall()
        rows = db.execute("SELECT stage, COUNT(*) FROM rows GROUP BY 1 ORDER BY 1").fetchall()
    return {"chunks": dict(chunks), "rows": dict(rows)}


def kind(method: str, path: str) -> str:
    """What a request was, for the counts."""
    if path.startswith("/api/v3/profiles/"):
        return "profile_by_id"
    if path == "/api/v3/profiles":
        return "profile_list"
    if method == "POST":
        return "batch_post"
    if path.startswith("/api/v3/batches/"):
        return "batch_poll"
    return "other"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--chunk-size", type=int, default=500)
    args = parser.parse_args()
    tenant = generate_tenant(args.profiles, seed=18)
    with tempfile.TemporaryDirectory() as work:
        csv = Path(work) / "in.csv"
        emails = [p.email or "" for p in tenant.profiles.values()][: args.rows]
        csv.write_text("email\n" + "\n".join(emails) + "\n", encoding="utf-8")
        state = Path(work) / "state"
        stopped = await attempt(tenant, csv, state, args.chunk_size, stop_at=2)
        left = journal_state(state)
        before = len(tenant.requests)
        resumed = await attempt(tenant, csv, state, args.chunk_size, stop_at=None)
        counts = Counter(kind(r.method, r.path) for r in tenant.requests[before:])
    print(
        json.dumps(
            {
                "rows": args.rows,
                "chunk_size": args.chunk_size,
                "first_run": stopped,
                "left_by_it": left,
                "resume": resumed,
                "resume_requests": {**dict(sorted(counts.items())), "total": sum(counts.values())},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
