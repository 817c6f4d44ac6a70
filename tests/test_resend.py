"""Chunks that did not reach their end the normal way: a batch the tenant lost (404), a chunk
whose profiles stood still on a tenant without the batches endpoint (sent again once, then
given up), and a run interrupted while sending (rows never sent are simply sent; rows in doubt
are read back cheaply). Everything on the virtual clock, asserted on the sandbox's request log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from omneo_status.sandbox import Tenant

from .conftest import EXAMPLES, Sandbox, VirtualClock, report_rows, summary_of

EMAILS = str(EXAMPLES / "emails.csv")
SENT_TO = (
    "ava.nguyen@example.com",
    "ben.carter@example.com",
    "grace.hall@example.com",
    "dan.lee@example.com",
)


def posts(tenant: Tenant) -> int:
    return sum(1 for r in tenant.requests if r.method == "POST")


def batch_polls(tenant: Tenant) -> list[tuple[str, int]]:
    return [(r.path, r.status) for r in tenant.requests if r.path.startswith("/api/v3/batches/")]


def single_reads(tenant: Tenant) -> list[str]:
    """The profile ids read one GET each (``GET /v3/profiles/{id}``)."""
    prefix = "/api/v3/profiles/"
    return [r.path[len(prefix) :] for r in tenant.requests if r.path.startswith(prefix)]


class StopAt(httpx.AsyncBaseTransport):
    """The sandbox, until a request matches ``when``: then the command is cancelled as Ctrl-C
    does, before that request reaches the tenant (or, with ``deliver``, once it has: its
    answer is lost)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        clock: VirtualClock,
        when: Callable[[httpx.Request], bool],
        *,
        deliver: bool = False,
    ) -> None:
        self.inner = inner
        self.clock = clock
        self.when = when
        self.deliver = deliver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.when(request):
            return await self.inner.handle_async_request(request)
        if self.deliver:
            await self.inner.handle_async_request(request)
        self.clock.interrupt()
        await asyncio.sleep(0)
        raise AssertionError("the command was not cancelled")  # pragma: no cover


def nth_post(n: int) -> Callable[[httpx.Request], bool]:
    seen = [0]

    def when(request: httpx.Request) -> bool:
        seen[0] += request.method == "POST"
        return request.method == "POST" and seen[0] == n

    return when


def stalled_run(sandbox: Sandbox) -> None:
    """A run whose batch never finishes: it gives up waiting (exit 5)."""
    sandbox.config.batch_delay = 100_000.0
    stalled = sandbox.run("assign", "vip", EMAILS, "--poll-timeout", "8", "--json")
    assert stalled.exit_code == 5, stalled.stderr
    assert posts(sandbox.tenant) == 1


# -- 2. a batch the tenant no longer knows ---------------------------------------------------


def test_a_batch_the_tenant_lost_is_sent_again_at_once_and_the_rerun_ends_exit_0(
    sandbox: Sandbox,
) -> None:
    stalled_run(sandbox)
    [lost] = [path for path, _ in batch_polls(sandbox.tenant)][:1]
    sandbox.tenant.forget_batches()  # the tenant restarted without its queue
    sandbox.config.batch_delay = 0.0
    sandbox.tenant.requests.clear()
    started = sandbox.clock.now

    rerun = sandbox.run("assign", "vip", EMAILS, "--poll-timeout", "8", "--json")

    assert rerun.exit_code == 0, rerun.stderr
    assert sandbox.clock.now - started < 5.0  # no stall wait, no poll timeout either
    doc = summary_of(rerun)
    assert doc["counts"]["assigned"] == 4 and doc["counts"]["sent"] == 0
    assert all("vip" in sandbox.statuses(email) for email in SENT_TO)
    polls = batch_polls(sandbox.tenant)
    assert polls[0] == (lost, 404) and [s for p, s in polls if p == lost] == [404]
    assert posts(sandbox.tenant) == 1  # sent again once
    first, again = doc["batches"]
    assert (first["status"], first["resent"]) == ("lost", 4)
    assert (again["status"], again["resent"]) == ("success", 0)
    assert "(404): its 4 row(s) lacking the change are sent again, once" in rerun.stderr
    sent_again = [r for r in report_rows(Path(str(doc["report"]))) if r["outcome"] == "assigned"]
    assert all(r["batch_id"] == again["batch_id"] for r in sent_again)
    assert all("sent again" in r["detail"] for r in sent_again)

    shown = sandbox.run("assign", "vip", EMAILS, "--poll-timeout", "8")
    assert shown.exit_code == 0
    assert "Sent again: 4 rows" in shown.stdout
