"""The client's one retry policy, error mapping and lenient parsing, over scripted answers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from omneo_status.api.client import MissingBatch, OmneoClient, PageStyle, RetryPolicy
from omneo_status.api.exchange import query_string
from omneo_status.api.governor import RateGovernor
from omneo_status.api.trace import Exchange
from omneo_status.errors import (
    AuthError,
    BadResponse,
    ConfigError,
    NotFoundError,
    NotJsonAnswer,
    RateLimited,
    ServerError,
    Unreachable,
    ValidationFailed,
)
from omneo_status.models import Action, Batch
from omneo_status.sandbox import SandboxConfig, Tenant, create_app, demo_tenant, generate_tenant

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
    answers: Sequence[Answer],
    *,
    retries: int = 5,
    total: float = 300.0,
    rate_limit_wait: float = 600.0,
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
        retry=RetryPolicy(
            max_retries=retries, max_total_wait=total, rate_limit_wait=rate_limit_wait
        ),
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
    hint = caught.value.hint or ""
    assert "OMNEO_TOKEN" in hint
    # The docs name scopes in two styles: the hint names both.
    assert "update-profiles" in hint and "profiles.*" in hint and "*" in hint
    assert ("expired" in hint and "deleted" in hint) is (status == 401)
    assert TOKEN not in str(caught.value) + hint


async def test_a_404_on_statuses_hints_that_the_base_url_lacks_api() -> None:
    client, _, _ = make_client([httpx.Response(404, text="<html>Not Found</html>")])
    async with client:
        with pytest.raises(NotFoundError) as caught:
            await client.list_statuses()
    assert caught.value.hint is not None and "/api" in caught.value.hint


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
        assert await client.get_batch("missing") == MissingBatch(endpoint=True)


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
    client, _, _ = make_client(
        [httpx.Response(429, headers={"Retry-After": "1"})], retries=2, rate_limit_wait=5
    )
    async with client:
        with pytest.raises(RateLimited):
            await client.list_statuses()
    client, _, _ = make_client([httpx.Response(502)], retries=2)
    async with client:
        with pytest.raises(ServerError):
            await client.list_statuses()


async def test_total_wait_budget_stops_retrying_early() -> None:
    client, seen, _ = make_client(
        [httpx.Response(503, headers={"Retry-After": "100"})], retries=10, total=150
    )
    async with client:
        with pytest.raises(ServerError):
            await client.list_statuses()
    assert len(seen) == 2  # 100 s once fits in 150 s; a second 100 s does not


def throttled_for(tries: int, retry_after: str = "1") -> list[Answer]:
    """``tries`` 429s that say when to come back (another client holds the limit), then 200."""
    limited = httpx.Response(
        429, json={"message": "Too Many Attempts."}, headers={"Retry-After": retry_after}
    )
    return [*([limited] * tries), ok_batch()]


async def test_429s_that_say_when_to_come_back_are_waited_out_past_the_retry_count() -> None:
    client, seen, waits = make_client(throttled_for(40), retries=5)
    async with client:
        assert await client.send_batch(Action.ASSIGN, [("p1", ["vip"])]) == "b-1"
    assert len(seen) == 41  # eight times the retries a 503 would get
    assert 40 <= sum(waits) <= 45  # each wait as long as the 429 asked, not a back-off


async def test_429s_do_not_use_up_the_retries_of_other_failures() -> None:
    server_error = httpx.Response(503, json={"message": "Server Error"})
    client, seen, _ = make_client(
        [server_error, *throttled_for(10)[:-1], server_error, ok_batch()], retries=2
    )
    async with client:
        assert await client.send_batch(Action.ASSIGN, [("p1", ["vip"])]) == "b-1"
    assert len(seen) == 13
    client, seen, _ = make_client([server_error, *throttled_for(10)[:-1], server_error], retries=1)
    async with client:
        with pytest.raises(ServerError, match="kept failing"):
            await client.send_batch(Action.ASSIGN, [("p1", ["vip"])])
    assert len(seen) == 12  # the second 503 is one more than --max-retries 1


async def test_the_rate_limit_wait_once_spent_ends_in_one_error_naming_another_client() -> None:
    client, seen, waits = make_client(throttled_for(1000, "10"), rate_limit_wait=60)
    async with client:
        with pytest.raises(RateLimited) as caught:
            await client.list_statuses()
    assert len(seen) == 6  # five waits of 10 s fit in 60 s; a sixth does not
    assert 50 <= sum(waits) <= 51
    error = caught.value
    assert error.message == (
        "GET /v3/statuses: still rate limited (429) after waiting 50 s in all, the most"
        " --rate-limit-wait allows (60 s)"
    )
    assert error.hint is not None
    assert "Another client may be using this tenant's rate limit" in error.hint
    assert "--rate-limit-wait" in error.hint


async def test_a_429_that_asks_for_no_wait_still_spends_the_time_budget() -> None:
    client, seen, _ = make_client(throttled_for(1000, "0"), rate_limit_wait=10)
    async with client:
        with pytest.raises(RateLimited):
            await client.list_statuses()
    assert len(seen) == 21  # each 429 counts at least half a second


async def test_timeouts_are_retried() -> None:
    client, seen, _ = make_client([httpx.ReadTimeout("slow"), ok_batch()])
    async with client:
        assert await client.send_batch(Action.REMOVE, [("p1", ["vip"])]) == "b-1"
    assert [r.method for r in seen] == ["DELETE", "DELETE"]


async def test_a_page_that_is_not_json_is_fatal_with_a_hint() -> None:
    html = httpx.Response(200, text="<html>Sign in</html>", headers={"content-type": "text/html"})
    client, _, _ = make_client([html])
    async with client:
        with pytest.raises(NotJsonAnswer, match=r"not JSON \(text/html\)") as caught:
            await client.list_statuses()
    assert not isinstance(caught.value, BadResponse)
    assert caught.value.hint is not None and "base URL" in caught.value.hint
    assert caught.value.exit_code == 1


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"message": "Queued for processing.", "batch_id": "b-7"}},
        {"message": "Queued for processing.", "batch_id": "b-7"},
        {"data": {"message": "Queued for processing."}, "batch_id": "b-7"},
    ],
)
async def test_the_batch_id_is_read_under_data_or_at_the_top_level(body: dict[str, object]) -> None:
    client, _, _ = make_client([httpx.Response(202, json=body)])
    async with client:
        assert await client.send_batch(Action.ASSIGN, [("p1", ["vip"])]) == "b-7"


async def test_a_batch_answer_without_a_batch_id_names_what_came_back() -> None:
    body = {"data": {"message": "Profiles queued for sync.", "padding": "x" * 500}}
    client, _, _ = make_client([httpx.Response(202, json=body)])
    async with client:
        with pytest.raises(BadResponse, match="without a batch_id") as caught:
            await client.send_batch(Action.ASSIGN, [("p1", ["vip"])])
    assert "Profiles queued for sync." in caught.value.message
    assert len(caught.value.message) < 300  # shortened, not the whole body


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
    assert isinstance(batch, Batch)
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


# -- pagination, against the sandbox's dialect variants ----------------------------------------


def sandbox_client(
    tenant: Tenant, config: SandboxConfig, exchanges: list[Exchange] | None = None
) -> OmneoClient:
    return OmneoClient(
        "http://sandbox.test/api",
        SecretStr("sandbox-token"),
        transport=httpx.ASGITransport(app=create_app(tenant, config)),
        retry=RetryPolicy(max_retries=0),
        on_exchange=None if exchanges is None else exchanges.append,
    )


def page_queries(tenant: Tenant) -> list[tuple[str, ...]]:
    keys = ("page[number]", "page")
    return [
        tuple(f"{k}={v}" for k, v in r.query if k in keys)
        for r in tenant.requests
        if r.path.endswith("/profiles")
    ]


@pytest.mark.parametrize("style", ["page_array", "per_page", "both"])
async def test_every_profile_once_whichever_dialect_the_tenant_honours(style: str) -> None:
    tenant = generate_tenant(230)
    config = SandboxConfig(page_style=style)  # type: ignore[arg-type]
    async with sandbox_client(tenant, config) as client:
        found = await client.find_profiles({})
        again = await client.find_profiles({"filter[statuses.handle]": "vip"})
    assert [p.id for p in found.profiles] == list(tenant.profiles)
    assert (found.total, found.complete) == (230, True)
    holders = [p.id for p in tenant.profiles.values() if "vip" in p.statuses]
    assert [p.id for p in again.profiles] == holders
    honoured = PageStyle.PER_PAGE if style == "per_page" else PageStyle.PAGE_ARRAY
    assert client.page_style is honoured


async def test_a_page_1_answered_again_switches_the_dialect_for_good() -> None:
    tenant = generate_tenant(230)
    async with sandbox_client(tenant, SandboxConfig(page_style="per_page")) as client:
        await client.find_profiles({})
        first_walk = page_queries(tenant)
        tenant.requests.clear()
        await client.find_profiles({})
        second_walk = page_queries(tenant)
    # page[number]=2 came back as page 1 (of 15): read again from page 1 with per_page=100.
    assert first_walk == [
        ("page[number]=1",),
        ("page[number]=2",),
        ("page=1",),
        ("page=2",),
        ("page=3",),
    ]
    assert second_walk == [("page=1",), ("page=2",), ("page=3",)]


async def test_bulk_answers_spanning_pages_in_one_dialect_are_read_whole() -> None:
    tenant = generate_tenant(200)
    emails = [f"customer{i}@example.com" for i in range(1, 151)]
    async with sandbox_client(tenant, SandboxConfig(page_style="per_page")) as client:
        found = await client.find_profiles({"filter[email][in]": ",".join(emails)})
    assert sorted(p.email or "" for p in found.profiles) == sorted(emails)
    assert len({p.id for p in found.profiles}) == 150
    assert client.page_style is PageStyle.PER_PAGE
    assert ("page=2",) in page_queries(tenant)  # the answer spans two pages of 100


def repeating_pages(meta: bool) -> httpx.MockTransport:
    """A tenant that answers page 1 of 3 whatever page is asked for, in either dialect."""

    def handler(request: httpx.Request) -> httpx.Response:
        body: dict[str, object] = {
            "data": [{"id": "a", "email": "a@x.co"}, {"id": "b", "email": "b@x.co"}],
            "links": {"next": "http://elsewhere.test/api/v3/profiles?page=2"},
        }
        if meta:
            body["meta"] = {"current_page": 1, "last_page": 3, "per_page": 2, "total": 6}
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("meta", [True, False])
async def test_a_tenant_that_pages_in_neither_dialect_is_never_trusted(meta: bool) -> None:
    seen: list[str] = []

    def record(exchange: Exchange) -> None:
        seen.append(exchange.path)

    client = OmneoClient(
        "https://api.acme.getomneo.com/api",
        SecretStr(TOKEN),
        transport=repeating_pages(meta),
        on_exchange=record,
    )
    async with client:
        with pytest.raises(BadResponse, match="cannot read every page") as caught:
            await client.find_profiles({"filter[email][in]": "a@x.co,c@x.co"})
    assert caught.value.hint is not None and "doctor" in caught.value.hint
    assert len(seen) == 4  # pages 1 and 2 in each dialect, never a links URL
    assert all(path.startswith("/v3/profiles?") for path in seen)


async def test_max_profiles_stops_early_and_says_so() -> None:
    tenant = generate_tenant(250)
    async with sandbox_client(tenant, SandboxConfig()) as client:
        found = await client.find_profiles({}, max_profiles=120)
    assert (len(found.profiles), found.total, found.complete) == (200, 250, False)


async def test_statuses_switch_dialect_too() -> None:
    tenant = Tenant()
    for i in range(120):
        tenant.add_status(f"s{i}", f"Status {i}")
    async with sandbox_client(tenant, SandboxConfig(page_style="per_page")) as client:
        statuses = await client.list_statuses()
    assert [s.handle for s in statuses] == [f"s{i}" for i in range(120)]


async def test_status_definitions_carry_their_group_and_expiry() -> None:
    async with sandbox_client(demo_tenant(), SandboxConfig()) as client:
        statuses = {s.handle: s for s in await client.list_statuses()}
    assert statuses["tier-silver"].grouped and statuses["tier-silver"].group_handle == "tier"
    assert statuses["welcome"].time_limited and statuses["welcome"].period == "30"
    assert not statuses["vip"].grouped and not statuses["vip"].time_limited


async def test_string_counts_and_missing_entity_ids_are_read() -> None:
    tenant = demo_tenant()
    [ava] = tenant.by_email("ava.nguyen@example.com")
    config = SandboxConfig(batch_answer="top_level", string_counts=True, item_entity_id=False)
    async with sandbox_client(tenant, config) as client:
        batch_id = await client.send_batch(Action.ASSIGN, [(ava.id, ["vip"]), ("ghost", ["vip"])])
        batch = await client.get_batch(batch_id)
    assert isinstance(batch, Batch)
    assert (batch.success_count, batch.failed_count, batch.processed_count) == (1, 1, 2)
    assert [item.entity_id for item in batch.items] == [None, None]
    assert [item.external_id for item in batch.items] == [ava.id, "ghost"]


async def test_probe_returns_any_answer_with_its_headers() -> None:
    config = SandboxConfig(rate_limit=50, batches_endpoint=False)
    async with sandbox_client(demo_tenant(), config) as client:
        missing = await client.probe("/batches/nope")
        statuses = await client.probe("/statuses", {"page[size]": "1"})
    assert (missing.status, missing.body) == (404, {"message": "Not Found"})
    assert statuses.status == 200 and statuses.headers["x-ratelimit-limit"] == "50"
    assert isinstance(statuses.body, dict) and len(statuses.body["data"]) == 1


# -- exchanges never carry the token ------------------------------------------------------------


async def test_exchanges_of_failing_and_succeeding_requests_never_hold_the_token() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        # A proxy error page that echoes the request headers back, as some do.
        if request.url.path.endswith("/statuses"):
            return httpx.Response(502, text=f"Bad gateway; you sent {dict(request.headers)}")
        return httpx.Response(202, json={"message": "Queued", "batch_id": "b-1"})

    exchanges: list[Exchange] = []
    client = OmneoClient(
        "https://api.acme.getomneo.com/api",
        SecretStr(TOKEN),
        transport=httpx.MockTransport(echo),
        retry=RetryPolicy(max_retries=1, initial_backoff=0.0),
        on_exchange=exchanges.append,
    )
    async with client:
        with pytest.raises(ServerError):
            await client.list_statuses()
        await client.send_batch(Action.ASSIGN, [("p1", ["vip"])])
    assert [(e.method, e.status) for e in exchanges] == [("GET", 502), ("GET", 502), ("POST", 202)]
    records = json.dumps([e.to_json() for e in exchanges])
    assert TOKEN not in records
    assert "authorization" not in {name.lower() for e in exchanges for name in e.headers}
    assert "[token]" in (exchanges[0].response_body or "")  # the echo was blanked, not dropped
    assert exchanges[2].request_body == json.dumps(
        {"profiles": [{"profile_id": "p1", "statuses": ["vip"]}]}
    )


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=4))
def test_query_strings_are_what_httpx_would_build(params: dict[str, str]) -> None:
    assert query_string(params) == str(httpx.QueryParams(params))


def test_a_query_string_escapes_an_email_filter() -> None:
    params = {"filter[email]": "a+b c@x.com", "page[size]": "100"}
    assert query_string(params) == "filter%5Bemail%5D=a%2Bb+c%40x.com&page%5Bsize%5D=100"


def test_a_base_url_httpx_cannot_parse_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Invalid base URL"):
        OmneoClient("http://exa\x00mple/api", SecretStr("t"), transport=httpx.AsyncHTTPTransport())
