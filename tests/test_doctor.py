"""``doctor`` against each sandbox variant: every capability reported as the variant plays it,
never a write, a few dozen requests at most, and exit 1 when a run could not work."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from omneo_status.api.client import OmneoClient, PageStyle, RetryPolicy
from omneo_status.api.doctor import Capabilities, DoctorReport, EmailFilter, RateLimit, run_doctor
from omneo_status.sandbox import SandboxConfig, Tenant, create_app, demo_tenant

pytestmark = pytest.mark.anyio
TOKEN = "sandbox-token"
BASE_URL = "http://sandbox.test/api"

DEFAULT_CAPABILITIES = Capabilities(
    email_filter=EmailFilter.EXACT,
    email_in_filter=True,
    status_filter=True,
    page_style=PageStyle.PAGE_ARRAY,
    page_size=100,
    profiles=31,
    rate_limit=None,
    batches_endpoint=True,
)


async def doctor(
    config: SandboxConfig | None = None,
    *,
    tenant: Tenant | None = None,
    token: str = TOKEN,
    base_url: str = BASE_URL,
) -> tuple[DoctorReport, Tenant]:
    tenant = tenant or demo_tenant()
    transport = httpx.ASGITransport(app=create_app(tenant, config or SandboxConfig()))
    async with OmneoClient(
        base_url, SecretStr(token), transport=transport, retry=RetryPolicy(max_retries=0)
    ) as client:
        report = await run_doctor(client, base_url)
    assert not tenant.writes(), "doctor must never write"
    assert len(tenant.requests) <= 36
    return report, tenant


def result_of(report: DoctorReport, name: str) -> str:
    [check] = [c for c in report.checks if c.name == name]
    return check.result


async def test_the_default_sandbox_is_fit_for_a_run() -> None:
    report, tenant = await doctor()
    assert report.capabilities == DEFAULT_CAPABILITIES
    assert (report.ok, int(report.exit_code)) == (True, 0)
    assert {r.method for r in tenant.requests} == {"GET"}
    document = report.to_json()
    assert set(document) == {"base_url", "transport", "ok", "checks", "capabilities", "exit_code"}
    assert document["base_url"] == BASE_URL
    assert document["transport"] == {"name": "ASGITransport", "proxy": None}
    assert all(set(c) == {"name", "result", "detail"} for c in document["checks"])
    assert json.dumps(document["capabilities"]) == json.dumps(
        {
            "email_filter": "exact",
            "email_in_filter": True,
            "status_filter": True,
            "page_style": "page_array",
            "page_size": 100,
            "profiles": 31,
            "rate_limit": None,
            "batches_endpoint": True,
        }
    )


async def test_statuses_are_listed_with_their_group_and_expiry() -> None:
    report, _ = await doctor()
    [statuses] = [c for c in report.checks if c.name == "statuses"]
    assert "tier-silver (group tier)" in statuses.detail
    assert "welcome (expires after 30 days)" in statuses.detail
    assert "club-gold (group club)" in statuses.detail
    assert "11 statuses" in statuses.detail


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"email_match": "case_sensitive"}, {"email_filter": EmailFilter.CASE_SENSITIVE}),
        ({"email_in_filter": False}, {"email_in_filter": False}),
        ({"status_filter": False}, {"status_filter": False}),
        ({"page_style": "per_page"}, {"page_style": PageStyle.PER_PAGE}),
        ({"page_style": "both"}, {"page_style": "both"}),
        ({"batches_endpoint": False}, {"batches_endpoint": None}),  # a bare 404: a warn
        ({"rate_limit": 1000, "rate_limit_headers": False}, {}),
        ({"batch_answer": "top_level", "string_counts": True, "item_entity_id": False}, {}),
        ({"group_rule": True}, {}),
    ],
)
async def test_each_variant_is_reported_as_it_plays(
    settings: dict[str, Any], expected: dict[str, Any]
) -> None:
    report, _ = await doctor(SandboxConfig(**settings))
    assert report.capabilities == replace(DEFAULT_CAPABILITIES, **expected)
    assert report.ok


async def test_rate_limit_headers_are_reported() -> None:
    report, tenant = await doctor(SandboxConfig(rate_limit=1000, clock=lambda: 0.0))
    assert report.capabilities.rate_limit == RateLimit(1000, 1000 - len(tenant.requests))
    assert report.to_json()["capabilities"]["rate_limit"] == {
        "limit": 1000,
        "remaining": 1000 - len(tenant.requests),
    }


async def test_an_ignored_email_filter_fails() -> None:
    report, _ = await doctor(SandboxConfig(email_match="ignored"))
    assert report.capabilities.email_filter is EmailFilter.IGNORED
    assert report.capabilities.email_in_filter is False
    assert result_of(report, "email_filter") == "fail"
    assert (report.ok, int(report.exit_code)) == (False, 1)
    assert report.to_json()["exit_code"] == 1


async def test_a_bad_token_fails_and_stops() -> None:
    report, tenant = await doctor(token="wrong")
    assert [(c.name, c.result) for c in report.checks] == [("token", "fail")]
    assert "expired" in report.checks[0].detail
    assert "wrong" not in str(report.to_json())
    assert int(report.exit_code) == 1
    assert len(tenant.requests) == 1
    assert report.capabilities == Capabilities()
    assert all(value is None for value in report.to_json()["capabilities"].values())


async def test_a_base_url_without_api_fails_with_the_hint() -> None:
    report, _ = await doctor(base_url="http://sandbox.test")
    assert [(c.name, c.result) for c in report.checks] == [("base_url", "fail")]
    assert "/api" in report.checks[0].detail
    assert not report.ok


async def test_an_unreachable_tenant_fails() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    async with OmneoClient(
        BASE_URL,
        SecretStr(TOKEN),
        transport=httpx.MockTransport(refuse),
        retry=RetryPolicy(max_retries=0),
    ) as client:
        report = await run_doctor(client, BASE_URL)
    assert [(c.name, c.result) for c in report.checks] == [("base_url", "fail")]
    assert "unreachable" in report.checks[0].detail
    assert int(report.exit_code) == 1


async def test_a_web_page_instead_of_the_api_fails() -> None:
    def login_page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, text="<html>Sign in</html>", headers={"content-type": "text/html"}
        )

    async with OmneoClient(
        BASE_URL, SecretStr(TOKEN), transport=httpx.MockTransport(login_page)
    ) as client:
        report = await run_doctor(client, BASE_URL)
    assert [(c.name, c.result) for c in report.checks] == [("base_url", "fail")]
    assert "not JSON" in report.checks[0].detail


async def test_an_empty_tenant_reports_what_it_cannot_tell() -> None:
    tenant = Tenant()
    tenant.add_status("vip", "VIP")
    report, _ = await doctor(tenant=tenant)
    assert report.capabilities.profiles == 0
    assert report.capabilities.email_filter is None
    assert result_of(report, "email_filter") == "warn"
    assert report.ok


class BatchAnswers(httpx.AsyncBaseTransport):
    """The sandbox, but a 404 to ``GET /v3/batches/{id}`` says ``message`` (a tenant that
    serves batches and answers an unknown id as it likes)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, message: str) -> None:
        self.inner = inner
        self.message = message

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = await self.inner.handle_async_request(request)
        if "/batches/" in request.url.path and answer.status_code == 404:
            return httpx.Response(404, json={"message": self.message})
        return answer


@pytest.mark.parametrize(
    ("message", "exists", "result", "says"),
    [
        ("Not Found", None, "warn", "cannot tell whether GET /v3/batches/{id} exists"),
        ("No query results for model [Batch].", True, "ok", "exists: batches are polled"),
        ("The route api/v3/batches/x could not be found.", False, "ok", "does not exist"),
    ],
)
async def test_a_404_for_a_made_up_batch_tells_only_what_it_can(
    message: str, exists: bool | None, result: str, says: str
) -> None:
    """A bare 404 for a batch id the tenant never gave is what a tenant serving batches may
    answer too: doctor says it cannot tell (a warn), never that the endpoint is missing."""
    app = create_app(demo_tenant(), SandboxConfig())
    transport = BatchAnswers(httpx.ASGITransport(app=app), message)
    async with OmneoClient(
        BASE_URL, SecretStr(TOKEN), transport=transport, retry=RetryPolicy(max_retries=0)
    ) as client:
        report = await run_doctor(client, BASE_URL)
    [check] = [c for c in report.checks if c.name == "batches_endpoint"]
    assert (report.capabilities.batches_endpoint, check.result) == (exists, result)
    assert says in check.detail
    assert report.ok
