"""Every default lives in ``options.py``: the client's retries, timeouts and page size and the
governor's starting level are read from there, and the docs say what it says."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from omneo_status.api.client import OmneoClient, RetryPolicy
from omneo_status.api.governor import RateGovernor
from omneo_status.options import (
    CONNECT_TIMEOUT,
    MAX_PAGE_SIZE,
    MAX_RETRIES,
    RATE_LIMIT_WAIT,
    REQUEST_TIMEOUT,
    RETRY_BACKOFF,
    RETRY_BACKOFF_MAX,
    RETRY_TOTAL_WAIT,
    START_CONCURRENCY,
)

pytestmark = pytest.mark.anyio
DOCS = Path(__file__).resolve().parent.parent / "docs"


async def test_requests_carry_the_timeouts_and_page_size_of_the_options() -> None:
    seen: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [], "meta": {"last_page": 1}})

    async with OmneoClient(
        "http://api.test/api", SecretStr("t"), transport=httpx.MockTransport(reply)
    ) as client:
        await client.find_profiles({"filter[email]": "a@example.com"})

    assert seen[0].extensions["timeout"] == {
        "connect": CONNECT_TIMEOUT,
        "read": REQUEST_TIMEOUT,
        "write": REQUEST_TIMEOUT,
        "pool": REQUEST_TIMEOUT,
    }
    assert seen[0].url.params["page[size]"] == str(MAX_PAGE_SIZE)


def test_the_retry_policy_and_the_governor_default_to_the_options() -> None:
    assert RetryPolicy() == RetryPolicy(
        max_retries=MAX_RETRIES,
        initial_backoff=RETRY_BACKOFF,
        max_backoff=RETRY_BACKOFF_MAX,
        max_total_wait=RETRY_TOTAL_WAIT,
        rate_limit_wait=RATE_LIMIT_WAIT,
    )
    assert RateGovernor().max_concurrency == START_CONCURRENCY
    assert RateGovernor(concurrency=64).concurrency == START_CONCURRENCY


def test_the_docs_state_the_defaults_of_the_options() -> None:
    retries = " ".join((DOCS / "retries.md").read_text(encoding="utf-8").split())
    configuration = " ".join((DOCS / "configuration.md").read_text(encoding="utf-8").split())

    assert f"timeouts ({REQUEST_TIMEOUT:g} s per request, {CONNECT_TIMEOUT:g} s to connect)" in (
        retries
    )
    assert f"grow from {RETRY_BACKOFF:g} s, doubling up to {RETRY_BACKOFF_MAX:g} s" in retries
    assert f"`--max-retries` (default {MAX_RETRIES})" in retries
    assert f"once its waits would pass {RETRY_TOTAL_WAIT / 60:g} minutes" in retries
    assert f"(default {RATE_LIMIT_WAIT:g}, ten minutes;" in retries
    assert re.search(rf"the tool starts at {START_CONCURRENCY}\b", configuration)
