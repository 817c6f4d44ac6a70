"""The resolvers against the sandbox app in-process: exact matches only, ambiguity, case, and a
tenant that ignores a filter is detected, never guessed from. Also the batch watcher."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from omneo_status.api.client import OmneoClient
from omneo_status.models import Action, Outcome
from omneo_status.run.backoff import Backoff
from omneo_status.run.resolver import BulkEmailResolver, ProfileIdResolver, SingleEmailResolver
from omneo_status.run.watcher import BatchWatcher
from omneo_status.sandbox import SandboxConfig, Tenant, create_app, demo_tenant
from omneo_status.store.records import RowRecord, Stage

from .conftest import VirtualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def tenant() -> Tenant:
    return demo_tenant()


@pytest.fixture
def config() -> SandboxConfig:
    return SandboxConfig()


@pytest.fixture
async def client(tenant: Tenant, config: SandboxConfig) -> AsyncIterator[OmneoClient]:
    transport = httpx.ASGITransport(app=create_app(tenant, config))
    async with OmneoClient(
        "http://sandbox.test/api", SecretStr(config.token), transport=transport
    ) as connected:
        yield connected


def ids(tenant: Tenant, email: str) -> set[str]:
    return {p.id for p in tenant.by_email(email)}


async def test_single_lookup_matches_exactly_and_ignores_case(
    client: OmneoClient, tenant: Tenant
) -> None:
    found, mixed, missing, both = await SingleEmailResolver(client).resolve(
        [
            "ava.nguyen@example.com",
            "Grace.Hall@Example.com",
            "nobody@example.com",
            "sam.taylor@example.com",
        ]
    )
    assert {p.id for p in found.profiles} == ids(tenant, "ava.nguyen@example.com")
    assert {p.id for p in mixed.profiles} == ids(tenant, "grace.hall@example.com")
    assert missing.profiles == () and missing.error is None
    assert len(both.profiles) == 2  # ambiguous: decide() settles it, the resolver only reports


async def test_a_tenant_ignoring_the_email_filter_is_never_guessed_from(
    client: OmneoClient, config: SandboxConfig
) -> None:
    config.email_match = "ignored"  # every profile is listed whatever the filter
    [match] = await SingleEmailResolver(client).resolve(["ava.nguyen@example.com"])
    assert match.profiles == ()
    assert match.error is not None and "other addresses" in match.error


async def test_bulk_lookup_honoured_gives_each_address_its_own_profiles(
    client: OmneoClient, tenant: Tenant
) -> None:
    keys = ["ava.nguyen@example.com", "Grace.Hall@Example.com", "nobody@example.com"]
    found = await BulkEmailResolver(client).try_group(keys)
    assert found is not None
    assert [{p.id for p in m.profiles} for m in found] == [
        ids(tenant, "ava.nguyen@example.com"),
        ids(tenant, "grace.hall@example.com"),
        set(),
    ]
    in_filters = [r for r in tenant.requests if "filter[email][in]" in dict(r.query)]
    assert len(in_filters) == 1


async def test_bulk_lookup_ignored_is_detected_and_falls_back_to_single(
    client: OmneoClient, tenant: Tenant, config: SandboxConfig
) -> None:
    config.email_in_filter = False
    keys = ["ava.nguyen@example.com", "ben.carter@example.com"]
    bulk = BulkEmailResolver(client)
    assert await bulk.try_group(keys) is None
    matches = await bulk.resolve(keys)
    assert [{p.id for p in m.profiles} for m in matches] == [
        ids(tenant, "ava.nguyen@example.com"),
        ids(tenant, "ben.carter@example.com"),
    ]


async def test_profiles_by_id(client: OmneoClient, tenant: Tenant) -> None:
    [ava] = tenant.by_email("ava.nguyen@example.com")
    here, gone = await ProfileIdResolver(client).resolve([ava.id, "no-such-id"])
    assert [p.id for p in here.profiles] == [ava.id]
    assert gone.profiles == () and gone.error is None


# -- the watcher ------------------------------------------------------------------------------


def row(line: int, profile_id: str) -> RowRecord:
    return RowRecord(line, "x", "x", Stage.CHUNKED, None, profile_id, (), ("vip",), 1, None, "")


def watcher(client: OmneoClient, clock: VirtualClock, *, poll: float = 1800.0) -> BatchWatcher:
    return BatchWatcher(
        client, Action.ASSIGN, lambda: Backoff(clock.monotonic, clock.sleep, poll, 600.0)
    )


async def test_the_watcher_follows_a_batch_to_its_end_and_maps_failed_items(
    client: OmneoClient, tenant: Tenant, config: SandboxConfig
) -> None:
    clock = VirtualClock()
    config.clock = clock.monotonic
    config.batch_delay = 5.0
    ava, ben = (
        tenant.by_email("ava.nguyen@example.com")[0],
        tenant.by_email("ben.carter@example.com")[0],
    )
    tenant.fail_profile_ids.add(ben.id)
    batch_id = await client.send_batch(Action.ASSIGN, [(ava.id, ["vip"]), (ben.id, ["vip"])])
    watched = await watcher(client, clock).watch(batch_id, [row(2, ava.id), row(3, ben.id)])
    assert watched.gave_up is None and watched.batch is not None
    assert [(s.line, s.outcome) for s in watched.settled] == [
        (2, Outcome.ASSIGNED),
        (3, Outcome.FAILED),
    ]
    assert clock.slept[:3] == [0.5, 0.8, pytest.approx(1.28)]


async def test_the_watcher_reads_profiles_without_a_batch_endpoint_and_gives_up_in_time(
    client: OmneoClient, tenant: Tenant, config: SandboxConfig
) -> None:
    clock = VirtualClock()
    config.clock = clock.monotonic
    config.batches_endpoint = False
    config.batch_delay = 10_000.0
    [ava] = tenant.by_email("ava.nguyen@example.com")
    batch_id = await client.send_batch(Action.ASSIGN, [(ava.id, ["vip"])])
    watched = await watcher(client, clock, poll=60.0).watch(batch_id, [row(2, ava.id)])
    assert watched.settled == [] and watched.gave_up is not None
    assert "poll timeout" in watched.gave_up
    assert 60.0 <= clock.now - 1000.0 < 80.0
