"""The client's one retry policy, error mapping and lenient parsing, over scripted answers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import SecretStr

from omneo_status.client import OmneoClient, RetryPolicy
from omneo_status.errors import (
    AuthError,
    BadResponse,
    RateLimited,
    ServerError,
    Unreachable,
    ValidationFailed,
)
from omneo_status.governor import RateGovernor
from omneo_status.models import Action

pytestmark = pytest.mark.anyio
TOKEN = "tok-3b9f1d8e7c6a5b4f"


Answer = httpx.Response | Exception


def scripted(
    answers: Sequence[Answer], seen: list[httpx.Request], times: list[float], now: list[float]
) -> httpx.MockTransport:
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        times.append(now[0])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handler)


SENT_AT: list[float] = []


def make_client(
    answers: Sequence[Answer], *, retries: int = 5, total: float = 300.0
) -> tuple[OmneoClient, list[httpx.Request], list[float]]:
    """A client over scripted answers, in virtual time; ``SENT_AT`` gets each request's time."""
    seen: list[httpx.Request] = []
    waits: list[float] = []
    now = [0.0]
    SENT_AT.clear()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    governor = RateGovernor(
        concurrency=4, sleep=sleep, clock=lambda: now[0], wall_clock=lambda: time.time() + now[0]
    )
    client = OmneoClient(
        "https://api.acme.getomneo.com/api",
        SecretStr(TOKEN),
        transport=scripted(answers, seen, SENT_AT, now),
        governor=governor,
        retry=RetryPolicy(max_retries=retries, max_total_wait=total),
        sleep=sleep,
    )
    return client, seen, waits


def ok_batch() -> httpx.Response:
    return httpx.Response(202, json={"data": {"message": "Queued", "batch_id": "b-1"}})


async def test_503_then_429_then_success_honours_retry_after() -> None:
    client, seen, waits = make_client(
        [
            httpx.Response(503, json={"message": "Server Error"}),
            httpx.Response(
                429, json={"message": "Too Many Attempts."}, headers={"Retry-After": "3"}
            ),
            ok_batch(),
        ]
    )
    async with client:
        batch_id = await client.send_batch(Action.ASSIGN, [("p1", ["vip"])])
    assert batch_id == "b-1"
    assert len(seen) == 3
    assert 0.25 <= waits[0] <= 0.5  # first back-off, jittered
    assert SENT_AT[2] - SENT_AT[1] >= 3.0  # never sooner than the 429's Retry-After
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(seen[0].content) == {"profiles": [{"profile_id": "p1", "statuses": ["vip"]}]}


async def test_retry_after_as_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    client, _, _ = make_client(
        [
            httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)}),
            ok_batch(),
        ]
    )
    async with client:
        await client.send_batch(Action.ASSIGN, [("p1", ["vip"])])
    assert 25 <= SENT_AT[1] - SENT_AT[0] <= 31


async def test_ratelimit_reset_is_used_without_retry_after() -> None:
    reset = int(datetime.now(UTC).timestamp()) + 20
    client, _, _ = make_client(
        [httpx.Response(429, headers={"X-RateLimit-Reset": str(reset)}), ok_batch()]
    )
    async with client:
        await client.send_batch(Action.ASSIGN, [("p1", ["vip"])])
    assert 15 <= SENT_AT[1] - SENT_AT[0] <= 21


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_are_not_retried(status: int) -> None:
    client, seen, _ = make_client([httpx.Response(status, json={"message": "Unauthenticated."})])
    async with client:
        with pytest.raises(AuthError) as caught:
            await client.list_statuses()
    assert len(seen) == 1
    assert caught.value.hint and "OMNEO_TOKEN" in caught.value.hint
    assert TOKEN not in str(caught.value) + caught.value.hint


async def test_422_is_not_retried_and_names_the_field() -> None:
    body = {
        "message": "The given data was invalid.",
        "errors": {"profiles.0.profile_id": ["The profiles.0.profile_id field is required."]},
    }
    client, seen, _ = make_client([httpx.Response(422, json=body)])
    async with client:
        with pytest.raises(ValidationFailed, match=r"profiles\.0\.profile_id"):
            await client.send_batch(Action.ASSIGN, [("", ["vip"])])
    assert len(seen) == 1


async def test_404_on_a_profile_is_none_not_an_error() -> None:
    client, _, _ = make_client([httpx.Response(404, json={"message": "No query results"})])
    async with client:
        assert await client.get_profile("missing") is None
        assert await client.get_batch("missing") is None


async def test_connection_errors_give_up_after_max_retries() -> None:
    client, seen, waits = make_client([httpx.ConnectError("connection refused")], retries=3)
    async with client:
        with pytest.raises(Unreachable, match="unreachable") as caught:
            await client.list_statuses()
    assert len(seen) == 4
    assert len(waits) == 3
    assert waits == sorted(waits) or max(waits) <= 30  # growing back-off, capped
    assert TOKEN not in caught.value.message


async def test_persistent_429_and_5xx_map_to_their_errors() -> None:
    client, _, _ = make_client([httpx.Response(429, headers={"Retry-After": "1"})], retries=2)
    async with client:
        with pytest.raises(RateLimited):
            await client.list_statuses()
    client, _, _ = make_client([httpx.Response(502)], retries=2)
    async with client:
        with pytest.raises(ServerError):
            await client.list_statuses()


async def test_total_wait_budget_stops_retrying_early() -> None:
    client, seen, _ = make_client(
        [httpx.Response(429, headers={"Retry-After": "100"})], retries=10, total=150
    )
    async with client:
        with pytest.raises(RateLimited):
            await client.list_statuses()
    assert len(seen) == 2  # 100 s once fits in 150 s; a second 100 s does not


async def test_timeouts_are_retried() -> None:
    client, seen, _ = make_client([httpx.ReadTimeout("slow"), ok_batch()])
    async with client:
        assert await client.send_batch(Action.REMOVE, [("p1", ["vip"])]) == "b-1"
    assert [r.method for r in seen] == ["DELETE", "DELETE"]


async def test_answers_the_tool_cannot_read_are_bad_responses() -> None:
    client, _, _ = make_client([httpx.Response(200, text="<html>oops</html>")])
    async with client:
        with pytest.raises(BadResponse):
            await client.list_statuses()
    client, _, _ = make_client([httpx.Response(202, json={"data": {"message": "Queued"}})])
    async with client:
        with pytest.raises(BadResponse, match="batch_id"):
            await client.send_batch(Action.ASSIGN, [("p1", ["vip"])])


async def test_lenient_parsing_of_numbers_statuses_and_counts() -> None:
    client, _, _ = make_client(
        [
            httpx.Response(
                200,
                json={
                    "data": {
                        "id": 42,
                        "status": "pending",
                        "total_count": "3",
                        "success_count": "<string>",
                        "items": None,
                        "extra": 1,
                    }
                },
            )
        ]
    )
    async with client:
        batch = await client.get_batch("42")
    assert batch is not None
    assert batch.id == "42" and batch.total_count == 3 and batch.success_count is None
    client, _, _ = make_client(
        [
            httpx.Response(
                200,
                json={
                    "data": {"id": 7, "email": "a@b.co", "statuses": [{"handle": "vip"}, "staff"]}
                },
            )
        ]
    )
    async with client:
        profile = await client.get_profile("7")
    assert profile is not None and profile.statuses == ("vip", "staff") and profile.id == "7"


async def test_statuses_follow_every_page() -> None:
    pages: Callable[[int], httpx.Response] = lambda n: httpx.Response(  # noqa: E731
        200,
        json={
            "data": [{"id": n * 10 + i, "handle": f"h{n}-{i}", "name": "x"} for i in range(2)],
            "links": {"next": "yes" if n < 3 else None},
            "meta": {"current_page": n, "last_page": 3, "total": 6},
        },
    )
    client, seen, _ = make_client([pages(1), pages(2), pages(3)])
    async with client:
        found = await client.list_statuses()
    assert [s.handle for s in found] == ["h1-0", "h1-1", "h2-0", "h2-1", "h3-0", "h3-1"]
    assert [r.url.params["page[number]"] for r in seen] == ["1", "2", "3"]
