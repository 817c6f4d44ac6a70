"""The sandbox tenant, reached in-process through httpx.ASGITransport."""

from __future__ import annotations

import gc
import json
import random
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

import omneo_status.sandbox as sandbox_package
from omneo_status.sandbox import (
    RecordedRequest,
    SandboxConfig,
    SandboxProfile,
    SeedError,
    StatusDefinition,
    Tenant,
    create_app,
    demo_tenant,
    generate_tenant,
    load_seed,
    tenant_from_seed,
)
from omneo_status.sandbox.state import SEED_TIMESTAMP, iso_timestamp, uuid4_from_int

TOKEN = "sandbox-token"
BATCH = "/profile/status/batch.json"
WALL = 1_800_000_000.0
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
DEMO_PROFILES = 31


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@asynccontextmanager
async def sandbox(
    tenant: Tenant, config: SandboxConfig | None = None, *, token: str | None = TOKEN
) -> AsyncIterator[httpx.AsyncClient]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    app = create_app(tenant, config)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://sandbox/api/v3", headers=headers
    ) as client:
        yield client


def only(tenant: Tenant, email: str) -> SandboxProfile:
    [profile] = tenant.by_email(email)
    return profile


def entry(profile_id: str, *handles: str) -> dict[str, Any]:
    return {"profile_id": profile_id, "statuses": list(handles)}


async def send_batch(
    client: httpx.AsyncClient, method: str, entries: list[dict[str, Any]]
) -> httpx.Response:
    return await client.request(method, BATCH, json={"profiles": entries})


async def batch_of(client: httpx.AsyncClient, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    batch = await client.get(f"/batches/{response.json()['data']['batch_id']}")
    assert batch.status_code == 200
    data: dict[str, Any] = batch.json()["data"]
    return data


async def batch_sent(
    tenant: Tenant, method: str, *entries: dict[str, Any], config: SandboxConfig | None = None
) -> tuple[httpx.Response, dict[str, Any]]:
    """The answer to one batch sent to a sandbox of ``tenant``, and the batch as
    ``GET /batches/{id}`` then shows it."""
    async with sandbox(tenant, config) as client:
        response = await send_batch(client, method, list(entries))
        return response, await batch_of(client, response)


# -- auth and routing -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_missing_or_wrong_token_is_401(token: str | None) -> None:
    async with sandbox(demo_tenant(), token=token) as client:
        response = await client.get("/statuses")
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthenticated."}
    assert response.headers["content-type"] == "application/json"


@pytest.mark.anyio
async def test_only_the_bearer_scheme_is_accepted() -> None:
    async with sandbox(demo_tenant(), token=None) as client:
        basic = await client.get("/statuses", headers={"Authorization": f"Basic {TOKEN}"})
        bearer = await client.get("/statuses", headers={"Authorization": f"bearer {TOKEN}"})
    assert basic.status_code == 401
    assert bearer.status_code == 200


@pytest.mark.anyio
async def test_a_custom_token() -> None:
    config = SandboxConfig(token="other")
    async with sandbox(demo_tenant(), config, token="other") as client:
        assert (await client.get("/statuses")).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("url", ["http://sandbox/", "http://sandbox/api/v2/profiles", "/nothing"])
async def test_unknown_paths_are_404(url: str) -> None:
    async with sandbox(demo_tenant()) as client:
        response = await client.get(url)
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


@pytest.mark.anyio
async def test_a_known_path_with_another_method_is_405() -> None:
    async with sandbox(demo_tenant()) as client:
        response = await client.patch("/profiles/abc")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PUT"
    assert "PATCH" in response.json()["message"]


# -- statuses ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_statuses_envelope_and_links() -> None:
    async with sandbox(demo_tenant()) as client:
        first = (await client.get("/statuses", params={"page[size]": 3})).json()
        last = (await client.get("/statuses", params={"page[size]": 3, "page[number]": 4})).json()
    base = "http://sandbox/api/v3/statuses"
    assert [s["handle"] for s in first["data"]] == ["vip", "staff", "influencer"]
    assert first["links"] == {
        "first": f"{base}?page[number]=1&page[size]=3",
        "last": f"{base}?page[number]=4&page[size]=3",
        "prev": None,
        "next": f"{base}?page[number]=2&page[size]=3",
    }
    assert first["meta"] == {
        "current_page": 1,
        "from": 1,
        "last_page": 4,
        "links": [],
        "path": base,
        "per_page": 3,
        "to": 3,
        "total": 11,
    }
    assert [s["handle"] for s in last["data"]] == ["club-gold", "club-platinum"]
    assert last["links"]["prev"] == f"{base}?page[number]=3&page[size]=3"
    assert last["links"]["next"] is None
    assert (last["meta"]["from"], last["meta"]["to"]) == (10, 11)


@pytest.mark.anyio
async def test_status_shape() -> None:
    async with sandbox(demo_tenant()) as client:
        status = (await client.get("/statuses")).json()["data"][0]
    assert status == {
        "id": 1,
        "name": "VIP",
        "handle": "vip",
        "sort_order": 0,
        "description": None,
        "group_handle": None,
        "group_name": None,
        "period": None,
        "period_type": None,
        "absolute_expiry": None,
        "created_at": SEED_TIMESTAMP,
        "updated_at": SEED_TIMESTAMP,
    }
    assert TIMESTAMP.match(status["created_at"])


@pytest.mark.anyio
async def test_a_page_beyond_the_last_is_empty() -> None:
    async with sandbox(demo_tenant()) as client:
        body = (await client.get("/statuses", params={"page[number]": 9})).json()
    assert body["data"] == []
    assert (body["meta"]["from"], body["meta"]["to"]) == (None, None)
    assert body["meta"]["current_page"] == 9
    assert body["meta"]["last_page"] == 1
    assert body["links"]["next"] is None
    assert body["links"]["prev"] is not None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "per_page", "page"),
    [
        ({}, 15, 1),
        ({"page[size]": "0"}, 1, 1),
        ({"page[size]": "-4"}, 1, 1),
        ({"page[size]": "1000"}, 100, 1),
        ({"page[number]": "0"}, 15, 1),
        ({"page[number]": "-2"}, 15, 1),
    ],
)
async def test_page_parameters_are_clamped(
    params: dict[str, str], per_page: int, page: int
) -> None:
    async with sandbox(demo_tenant()) as client:
        meta = (await client.get("/profiles", params=params)).json()["meta"]
    assert (meta["per_page"], meta["current_page"]) == (per_page, page)


@pytest.mark.anyio
async def test_non_integer_page_parameters_are_422() -> None:
    async with sandbox(demo_tenant()) as client:
        response = await client.get("/statuses", params={"page[size]": "ten", "page[number]": "x"})
    assert response.status_code == 422
    assert response.json() == {
        "message": "The given data was invalid.",
        "errors": {
            "page.size": ["The page.size must be an integer."],
            "page.number": ["The page.number must be an integer."],
        },
    }


@pytest.mark.anyio
async def test_filter_by_handle_is_exact_and_kept_in_links() -> None:
    async with sandbox(demo_tenant()) as client:
        vip = (await client.get("/statuses", params={"filter[handle]": "vip"})).json()
        upper = (await client.get("/statuses", params={"filter[handle]": "VIP"})).json()
    assert [s["handle"] for s in vip["data"]] == ["vip"]
    assert vip["links"]["first"].endswith("?page[number]=1&page[size]=15&filter[handle]=vip")
    assert upper["data"] == []


@pytest.mark.anyio
async def test_get_one_status() -> None:
    async with sandbox(demo_tenant()) as client:
        found = await client.get("/statuses/2")
        missing = await client.get("/statuses/99")
        nonsense = await client.get("/statuses/abc")
    assert found.json()["data"]["handle"] == "staff"
    assert missing.status_code == nonsense.status_code == 404
    assert missing.json() == {"message": "No query results for model [Status]."}


# -- profiles ---------------------------------------------------------------------------------


async def emails_for(client: httpx.AsyncClient, params: dict[str, str]) -> list[str]:
    response = await client.get("/profiles", params={"page[size]": "100", **params})
    assert response.status_code == 200
    return [profile["email"] for profile in response.json()["data"]]


@pytest.mark.anyio
async def test_profiles_list_everything_in_insertion_order() -> None:
    tenant = demo_tenant()
    async with sandbox(tenant) as client:
        body = (await client.get("/profiles")).json()
        third = (await client.get("/profiles", params={"page[number]": 3})).json()
    assert body["meta"]["total"] == DEMO_PROFILES
    assert body["meta"]["last_page"] == 3
    assert [p["id"] for p in body["data"]] == list(tenant.profiles)[:15]
    assert [p["email"] for p in third["data"]] == ["member20@example.com"]


@pytest.mark.anyio
@pytest.mark.parametrize("key", ["filter[email]", "filter[email][eq]", "filter[email][in]"])
async def test_email_filters_trim_and_ignore_case(key: str) -> None:
    async with sandbox(demo_tenant()) as client:
        found = await emails_for(client, {key: "  Chloe.Martin@EXAMPLE.com "})
    assert found == ["chloe.martin@example.com"]


@pytest.mark.anyio
async def test_email_filter_finds_every_holder_of_an_ambiguous_email() -> None:
    async with sandbox(demo_tenant()) as client:
        found = await emails_for(client, {"filter[email]": "sam.taylor@example.com"})
        nobody = (await client.get("/profiles", params={"filter[email]": "no@example.com"})).json()
    assert found == ["sam.taylor@example.com"] * 2
    assert nobody["data"] == []
    assert nobody["meta"]["total"] == 0
    assert nobody["meta"]["last_page"] == 1
    assert nobody["meta"]["from"] is None


@pytest.mark.anyio
async def test_email_in_filter_answers_in_tenant_order() -> None:
    wanted = "sam.taylor@example.com, CHLOE.martin@example.com,ben.carter@example.com,x@y.z"
    async with sandbox(demo_tenant()) as client:
        found = await emails_for(client, {"filter[email][in]": wanted})
    assert found == [
        "ben.carter@example.com",
        "chloe.martin@example.com",
        "sam.taylor@example.com",
        "sam.taylor@example.com",
    ]


@pytest.mark.anyio
async def test_email_in_filter_is_ignored_when_the_server_does_not_know_it() -> None:
    config = SandboxConfig(email_in_filter=False)
    async with sandbox(demo_tenant(), config) as client:
        body = (await client.get("/profiles", params={"filter[email][in]": "a@b.c"})).json()
    assert body["meta"]["total"] == DEMO_PROFILES
    assert len(body["data"]) == 15


@pytest.mark.anyio
async def test_filter_by_status_handle() -> None:
    async with sandbox(demo_tenant()) as client:
        vip = await emails_for(client, {"filter[statuses.handle]": "vip"})
    assert vip == [
        "chloe.martin@example.com",
        "henry.king@example.com",
        "member04@example.com",
        "member08@example.com",
        "member12@example.com",
        "member16@example.com",
        "member20@example.com",
    ]


@pytest.mark.anyio
async def test_filters_combine_with_and() -> None:
    emails = "chloe.martin@example.com,ben.carter@example.com,henry.king@example.com"
    async with sandbox(demo_tenant()) as client:
        vip_of_three = await emails_for(
            client, {"filter[email][in]": emails, "filter[statuses.handle]": "vip"}
        )
        eq_and_in = await emails_for(
            client, {"filter[email]": "ben.carter@example.com", "filter[email][in]": emails}
        )
        disjoint = await emails_for(
            client, {"filter[email]": "ava.nguyen@example.com", "filter[email][in]": emails}
        )
    assert vip_of_three == ["chloe.martin@example.com", "henry.king@example.com"]
    assert eq_and_in == ["ben.carter@example.com"]
    assert disjoint == []


@pytest.mark.anyio
async def test_email_filters_use_the_index_and_never_scan() -> None:
    class NoScan(dict[str, SandboxProfile]):
        def values(self) -> Any:
            raise AssertionError("scanned every profile")

    tenant = generate_tenant(1000)
    tenant.profiles = NoScan(tenant.profiles)
    async with sandbox(tenant) as client:
        found = await emails_for(client, {"filter[email]": "CUSTOMER500@example.com"})
        several = await emails_for(
            client,
            {
                "filter[email][in]": "customer7@example.com,customer3@example.com",
                "filter[statuses.handle]": "vip",
            },
        )
    assert found == ["customer500@example.com"]
    assert set(several) <= {"customer3@example.com", "customer7@example.com"}


@pytest.mark.anyio
async def test_get_one_profile() -> None:
    tenant = demo_tenant()
    chloe = only(tenant, "chloe.martin@example.com")
    async with sandbox(tenant) as client:
        response = await client.get(f"/profiles/{chloe.id}", params={"include": "statuses"})
        missing = await client.get(f"/profiles/{uuid.uuid4()}")
    assert response.json() == {
        "data": {
            "id": chloe.id,
            "email": "chloe.martin@example.com",
            "mobile_phone": "+61413000003",
            "first_name": "Chloe",
            "last_name": "Martin",
            "identities": [{"handle": "shopify", "identifier": "7210000000003"}],
            "statuses": ["vip", "media"],
            "tags": [],
            "profile_type": "active",
            "created_at": SEED_TIMESTAMP,
            "updated_at": SEED_TIMESTAMP,
        }
    }
    assert missing.status_code == 404
    assert missing.json() == {"message": "No query results for model [Profile]."}


@pytest.mark.anyio
async def test_put_replaces_the_whole_status_set() -> None:
    tenant = demo_tenant()
    chloe = only(tenant, "chloe.martin@example.com")
    config = SandboxConfig(wall_clock=lambda: WALL)
    async with sandbox(tenant, config) as client:
        response = await client.put(
            f"/profiles/{chloe.id}",
            json={"statuses": ["gold", "nope", "gold"], "first_name": "Clo"},
        )
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["statuses"] == ["gold"]
    assert data["first_name"] == "Clo"
    assert data["updated_at"] == iso_timestamp(WALL)
    assert tenant.statuses_of(chloe.id) == ["gold"]


@pytest.mark.anyio
async def test_put_changes_the_email_and_the_index() -> None:
    tenant = demo_tenant()
    ben = only(tenant, "ben.carter@example.com")
    async with sandbox(tenant) as client:
        await client.put(f"/profiles/{ben.id}", json={"email": " Ben@New.example "})
        found = await emails_for(client, {"filter[email]": "ben@new.example"})
        old = await emails_for(client, {"filter[email]": "ben.carter@example.com"})
    assert found == ["Ben@New.example"]
    assert old == []
    assert tenant.statuses_of(ben.id) == ["staff"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"statuses": "vip"}, {"statuses": ["The statuses must be an array."]}),
        ({"statuses": ["vip", 1]}, {"statuses.1": ["The statuses.1 must be a string."]}),
        ({"email": "nope"}, {"email": ["The email must be a valid email address."]}),
        ({"first_name": 3}, {"first_name": ["The first_name must be a string."]}),
    ],
)
async def test_put_validation(body: dict[str, Any], errors: dict[str, list[str]]) -> None:
    tenant = demo_tenant()
    chloe = only(tenant, "chloe.martin@example.com")
    async with sandbox(tenant) as client:
        response = await client.put(f"/profiles/{chloe.id}", json=body)
        missing = await client.put(f"/profiles/{uuid.uuid4()}", json={"statuses": []})
    assert response.status_code == 422
    assert response.json()["errors"] == errors
    assert tenant.statuses_of(chloe.id) == ["vip", "media"]
    assert missing.status_code == 404


# -- status batches ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_post_batch_is_additive() -> None:
    tenant = demo_tenant()
    ben = only(tenant, "ben.carter@example.com")
    ava = only(tenant, "ava.nguyen@example.com")
    response, batch = await batch_sent(
        tenant, "POST", entry(ben.id, "vip", "staff", "vip"), entry(ava.id, "vip")
    )
    assert response.json()["data"]["message"] == "Queued for processing."
    batch_id = response.json()["data"]["batch_id"]
    assert uuid.UUID(batch_id).version == 4
    assert tenant.statuses_of(ben.id) == ["staff", "vip"]
    assert tenant.statuses_of(ava.id) == ["vip"]
    assert batch["id"] == batch_id
    assert batch["status"] == "success"
    assert (batch["total_count"], batch["success_count"], batch["failed_count"]) == (2, 2, 0)
    assert batch["processed_count"] == 2
    assert batch["import_job_id"] is None
    assert batch["entity_type"] == "profile_status"
    first = batch["items"][0]
    assert (first["entity_id"], first["external_id"]) == (ben.id, ben.id)
    assert (first["status"], first["error"]) == ("success", None)
    assert isinstance(first["id"], int)
    assert TIMESTAMP.match(first["updated_at"])
    assert TIMESTAMP.match(batch["created_at"])


@pytest.mark.anyio
async def test_resending_a_held_status_changes_nothing() -> None:
    tenant = demo_tenant()
    grace = only(tenant, "grace.hall@example.com")
    async with sandbox(tenant) as client:
        for _ in range(2):
            await send_batch(client, "POST", [entry(grace.id, "gold")])
    assert tenant.statuses_of(grace.id) == ["staff", "gold"]


@pytest.mark.anyio
async def test_unknown_handles_are_dropped_without_a_word() -> None:
    tenant = demo_tenant()
    ava = only(tenant, "ava.nguyen@example.com")
    response, batch = await batch_sent(tenant, "POST", entry(ava.id, "vpi"))
    assert response.status_code == 202
    assert batch["status"] == "success"
    assert batch["items"][0]["status"] == "success"
    assert tenant.statuses_of(ava.id) == []


@pytest.mark.anyio
async def test_an_unknown_profile_fails_only_its_own_item() -> None:
    tenant = demo_tenant()
    ava = only(tenant, "ava.nguyen@example.com")
    ghost = str(uuid.uuid4())
    async with sandbox(tenant) as client:
        mixed = await batch_of(
            client, await send_batch(client, "POST", [entry(ghost, "vip"), entry(ava.id, "vip")])
        )
        alone = await batch_of(client, await send_batch(client, "POST", [entry(ghost, "vip")]))
    assert mixed["status"] == "success"
    assert (mixed["success_count"], mixed["failed_count"], mixed["processed_count"]) == (1, 1, 2)
    assert mixed["items"][0]["status"] == "failed"
    assert mixed["items"][0]["error"] == "Profile not found."
    assert tenant.statuses_of(ava.id) == ["vip"]
    assert alone["status"] == "failed"
    assert alone["failed_count"] == 1


@pytest.mark.anyio
async def test_injected_profile_failures() -> None:
    tenant = demo_tenant()
    ava = only(tenant, "ava.nguyen@example.com")
    dan = only(tenant, "dan.lee@example.com")
    tenant.fail_profile_ids.add(ava.id)
    _, batch = await batch_sent(tenant, "POST", entry(ava.id, "vip"), entry(dan.id, "vip"))
    assert [item["error"] for item in batch["items"]] == ["Injected failure", None]
    assert tenant.statuses_of(ava.id) == []
    assert tenant.statuses_of(dan.id) == ["gold", "vip"]


@pytest.mark.anyio
async def test_delete_batch_detaches_only_the_handles_sent() -> None:
    tenant = demo_tenant()
    grace = only(tenant, "grace.hall@example.com")
    chloe = only(tenant, "chloe.martin@example.com")
    response, batch = await batch_sent(
        tenant, "DELETE", entry(grace.id, "gold", "vip", "nope"), entry(chloe.id, "vip")
    )
    assert response.json()["data"]["message"] == "Queued for processing."
    assert batch["status"] == "success"
    assert tenant.statuses_of(grace.id) == ["staff"]
    assert tenant.statuses_of(chloe.id) == ["media"]


REQUIRED = "The profiles field is required."


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "errors"),
    [
        (b"", {"profiles": [REQUIRED]}),
        (b"not json", {"profiles": [REQUIRED]}),
        (b"[1, 2]", {"profiles": [REQUIRED]}),
        (b"{}", {"profiles": [REQUIRED]}),
        (b'{"profiles": []}', {"profiles": [REQUIRED]}),
        (b'{"profiles": "vip"}', {"profiles": ["The profiles must be an array."]}),
        (b'{"profiles": [7]}', {"profiles.0": ["The profiles.0 must be an array."]}),
        (
            b'{"profiles": [{}]}',
            {
                "profiles.0.profile_id": ["The profiles.0.profile_id field is required."],
                "profiles.0.statuses": ["The profiles.0.statuses field is required."],
            },
        ),
        (
            b'{"profiles": [{"profile_id": " ", "statuses": []}]}',
            {
                "profiles.0.profile_id": ["The profiles.0.profile_id field is required."],
                "profiles.0.statuses": ["The profiles.0.statuses field is required."],
            },
        ),
        (
            b'{"profiles": [{"profile_id": "a", "statuses": ["vip"]},'
            b' {"profile_id": 5, "statuses": "vip"}]}',
            {
                "profiles.1.profile_id": ["The profiles.1.profile_id must be a string."],
                "profiles.1.statuses": ["The profiles.1.statuses must be an array."],
            },
        ),
        (
            b'{"profiles": [{"profile_id": "a", "statuses": ["vip", null]}]}',
            {"profiles.0.statuses.1": ["The profiles.0.statuses.1 must be a string."]},
        ),
    ],
)
@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_batch_validation(method: str, content: bytes, errors: dict[str, list[str]]) -> None:
    tenant = demo_tenant()
    async with sandbox(tenant) as client:
        response = await client.request(
            method, BATCH, content=content, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json() == {"message": "The given data was invalid.", "errors": errors}
    assert tenant.batches == {}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("max_batch", "size", "accepted"), [(500, 500, True), (500, 501, False), (2, 3, False)]
)
async def test_max_batch(max_batch: int, size: int, accepted: bool) -> None:
    tenant = generate_tenant(size)
    ids = list(tenant.profiles)
    async with sandbox(tenant, SandboxConfig(max_batch=max_batch)) as client:
        response = await send_batch(client, "POST", [entry(pid, "vip") for pid in ids])
    if accepted:
        assert response.status_code == 202
        assert all("vip" in tenant.statuses_of(pid) for pid in ids)
    else:
        assert response.status_code == 422
        assert response.json()["errors"] == {
            "profiles": [f"The profiles may not have more than {max_batch} items."]
        }


@pytest.mark.anyio
async def test_a_batch_stays_pending_until_its_delay_passes() -> None:
    tenant = demo_tenant()
    ava = only(tenant, "ava.nguyen@example.com")
    clock = FakeClock()
    config = SandboxConfig(batch_delay=5.0, clock=clock)
    async with sandbox(tenant, config) as client:
        response = await send_batch(client, "POST", [entry(ava.id, "vip")])
        batch_url = f"/batches/{response.json()['data']['batch_id']}"
        pending = (await client.get(batch_url)).json()["data"]
        clock.advance(4.9)
        still = (await client.get(batch_url)).json()["data"]
        held_meanwhile = tenant.statuses_of(ava.id)
        clock.advance(0.2)
        done = (await client.get(batch_url)).json()["data"]
    assert pending["status"] == still["status"] == "pending"
    assert (pending["processed_count"], pending["success_count"], pending["failed_count"]) == (
        0,
        0,
        0,
    )
    assert pending["total_count"] == 1
    assert pending["items"][0]["status"] == "pending"
    assert held_meanwhile == []
    assert done["status"] == "success"
    assert (done["processed_count"], done["success_count"]) == (1, 1)
    assert tenant.statuses_of(ava.id) == ["vip"]


@pytest.mark.anyio
async def test_due_batches_are_applied_by_any_request() -> None:
    tenant = demo_tenant()
    ava = only(tenant, "ava.nguyen@example.com")
    clock = FakeClock()
    config = SandboxConfig(batch_delay=1.0, clock=clock)
    async with sandbox(tenant, config) as client:
        await send_batch(client, "POST", [entry(ava.id, "vip")])
        await send_batch(client, "DELETE", [entry(ava.id, "vip")])
        clock.advance(1.0)
        profile = (await client.get(f"/profiles/{ava.id}")).json()["data"]
    # Applied in the order queued: attached, then detached.
    assert profile["statuses"] == []
    assert all(batch.status == "success" for batch in tenant.batches.values())


def test_process_due_batches_directly() -> None:
    tenant = demo_tenant()
    ava = only(tenant, "ava.nguyen@example.com")
    tenant.queue_batch("b1", "attach", [(ava.id, ["vip"])], due_at=10.0, created_at=WALL)
    assert tenant.process_due_batches(9.0) == 0
    assert tenant.process_due_batches(10.0, WALL + 1) == 1
    assert tenant.statuses_of(ava.id) == ["vip"]
    assert tenant.batches["b1"].to_json()["updated_at"] == iso_timestamp(WALL + 1)
    assert tenant.process_due_batches(11.0) == 0


@pytest.mark.anyio
async def test_a_tenant_that_forgets_its_batches_never_applies_them_and_answers_404() -> None:
    tenant = demo_tenant()
    ava = only(tenant, "ava.nguyen@example.com")
    clock = FakeClock()
    async with sandbox(tenant, SandboxConfig(batch_delay=5.0, clock=clock)) as client:
        response = await send_batch(client, "POST", [entry(ava.id, "vip")])
        batch_url = f"/batches/{response.json()['data']['batch_id']}"
        assert (await client.get(batch_url)).status_code == 200
        assert tenant.forget_batches() == 1
        clock.advance(10.0)
        gone = await client.get(batch_url)
    assert gone.status_code == 404
    assert gone.json() == {"message": "No query results for model [Batch]."}
    assert tenant.statuses_of(ava.id) == []
    assert tenant.process_due_batches(float("inf")) == 0


@pytest.mark.anyio
async def test_batches_endpoint_can_be_switched_off() -> None:
    tenant = demo_tenant()
    ava = only(tenant, "ava.nguyen@example.com")
    async with sandbox(tenant, SandboxConfig(batches_endpoint=False)) as client:
        response = await send_batch(client, "POST", [entry(ava.id, "vip")])
        batch = await client.get(f"/batches/{response.json()['data']['batch_id']}")
    assert response.status_code == 202
    assert batch.status_code == 404
    assert tenant.statuses_of(ava.id) == ["vip"]


@pytest.mark.anyio
async def test_unknown_batch_is_404() -> None:
    async with sandbox(demo_tenant()) as client:
        response = await client.get(f"/batches/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json() == {"message": "No query results for model [Batch]."}


# -- rate limit, latency and faults -----------------------------------------------------------


@pytest.mark.anyio
async def test_rate_limit_headers_429_and_recovery() -> None:
    clock = FakeClock()
    config = SandboxConfig(rate_limit=3, rate_window=10.0, clock=clock, wall_clock=lambda: WALL)
    async with sandbox(demo_tenant(), config) as client:
        allowed = [await client.get("/statuses") for _ in range(2)]
        unauthenticated = await client.get("/statuses", headers={"Authorization": "Bearer no"})
        clock.advance(3.5)
        refused = await client.get("/statuses")
        clock.advance(6.5)
        recovered = await client.get("/statuses")
    assert [r.status_code for r in allowed] == [200, 200]
    assert [r.headers["X-RateLimit-Remaining"] for r in allowed] == ["2", "1"]
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["X-RateLimit-Remaining"] == "0"
    assert refused.status_code == 429
    assert refused.json() == {"message": "Too Many Attempts."}
    assert refused.headers["Retry-After"] == "7"
    assert refused.headers["X-RateLimit-Reset"] == str(int(WALL + 7))
    assert refused.headers["X-RateLimit-Limit"] == "3"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert recovered.status_code == 200
    assert recovered.headers["X-RateLimit-Remaining"] == "2"
    assert "Retry-After" not in recovered.headers


@pytest.mark.anyio
async def test_retry_after_is_at_least_one_second() -> None:
    clock = FakeClock()
    config = SandboxConfig(rate_limit=1, rate_window=1.0, clock=clock)
    async with sandbox(demo_tenant(), config) as client:
        await client.get("/statuses")
        clock.advance(0.99)
        refused = await client.get("/statuses")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"


@pytest.mark.anyio
async def test_no_rate_limit_headers_without_a_limit() -> None:
    async with sandbox(demo_tenant()) as client:
        response = await client.get("/statuses")
    assert "X-RateLimit-Limit" not in response.headers


@pytest.mark.anyio
async def test_latency_is_slept_before_answering() -> None:
    async with sandbox(demo_tenant(), SandboxConfig(latency_ms=1)) as client:
        response = await client.get("/statuses")
    assert response.status_code == 200


async def fault_codes(config: SandboxConfig, count: int) -> list[int]:
    async with sandbox(demo_tenant(), config) as client:
        return [(await client.get("/statuses")).status_code for _ in range(count)]


@pytest.mark.anyio
async def test_faults_repeat_for_the_same_seed() -> None:
    first = await fault_codes(SandboxConfig(fail_rate=0.3, fault_seed=7), 60)
    second = await fault_codes(SandboxConfig(fail_rate=0.3, fault_seed=7), 60)
    other = await fault_codes(SandboxConfig(fail_rate=0.3, fault_seed=8), 60)
    assert first == second
    assert first != other
    assert set(first) <= {200, 500, 502, 503}


@pytest.mark.anyio
async def test_fault_share_is_roughly_the_fail_rate() -> None:
    codes = Counter(await fault_codes(SandboxConfig(fail_rate=0.2, fault_seed=3), 1000))
    failures = codes[500] + codes[502] + codes[503]
    assert 120 <= failures <= 280
    assert min(codes[500], codes[502], codes[503]) > 0
    assert codes[200] + failures == 1000


@pytest.mark.anyio
async def test_faults_come_after_auth_and_carry_the_server_error_body() -> None:
    config = SandboxConfig(fail_rate=1.0)
    async with sandbox(demo_tenant(), config, token="wrong") as client:
        assert (await client.get("/statuses")).status_code == 401
    async with sandbox(demo_tenant(), config) as client:
        failed = await client.get("/statuses")
    assert failed.status_code in {500, 502, 503}
    assert failed.json() == {"message": "Server Error"}


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_half_the_batch_faults_happen_after_the_write(method: str) -> None:
    tenant = generate_tenant(40)
    if method == "DELETE":
        for profile in tenant.profiles.values():
            profile.statuses[:] = ["gold"]
    config = SandboxConfig(fail_rate=1.0, fault_seed=11)
    ids = list(tenant.profiles)
    async with sandbox(tenant, config) as client:
        codes = [
            (await send_batch(client, method, [entry(pid, "gold")])).status_code for pid in ids
        ]
    assert set(codes) <= {500, 502, 503}
    changed = [pid for pid in ids if ("gold" in tenant.statuses_of(pid)) == (method == "POST")]
    # Every batch that was queued despite the 5xx was applied; the others left no trace.
    assert len(tenant.batches) == len(changed)
    assert 5 <= len(changed) <= 35


# -- recording ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_request_is_recorded_with_its_answer(tmp_path: Path) -> None:
    tenant = demo_tenant()
    ava = only(tenant, "ava.nguyen@example.com")
    log = tmp_path / "requests.jsonl"
    config = SandboxConfig(log_path=log, wall_clock=lambda: WALL)
    async with sandbox(tenant, config) as client:
        await client.get("/profiles", params={"filter[email]": "ava.nguyen@example.com"})
        await send_batch(client, "POST", [entry(ava.id, "vip")])
        await client.request("DELETE", BATCH, content=b"not json")
        await client.get("/nowhere")
        await client.get("/statuses", headers={"Authorization": "Bearer nope"})
    assert [(r.method, r.path, r.status) for r in tenant.requests] == [
        ("GET", "/api/v3/profiles", 200),
        ("POST", "/api/v3/profile/status/batch.json", 202),
        ("DELETE", "/api/v3/profile/status/batch.json", 422),
        ("GET", "/api/v3/nowhere", 404),
        ("GET", "/api/v3/statuses", 401),
    ]
    first = tenant.requests[0]
    assert first.query == [("filter[email]", "ava.nguyen@example.com")]
    assert first.body is None
    assert first.at == WALL
    assert tenant.requests[1].body == {"profiles": [entry(ava.id, "vip")]}
    assert tenant.requests[2].body == "not json"
    assert [r.method for r in tenant.writes()] == ["POST", "DELETE"]
    lines = log.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [r.to_json() for r in tenant.requests]
    assert json.loads(lines[0])["query"] == [["filter[email]", "ava.nguyen@example.com"]]


def test_an_unwritable_log_path_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="No such file"):
        create_app(demo_tenant(), SandboxConfig(log_path=tmp_path / "missing" / "log.jsonl"))


@pytest.mark.parametrize(
    "settings",
    [
        {"fail_rate": 1.5},
        {"fail_rate": -0.1},
        {"rate_limit": -1},
        {"rate_window": 0.0},
        {"max_batch": 0},
        {"latency_ms": -1.0},
        {"batch_delay": -1.0},
        {"batch_answer": "nested"},
        {"page_style": "offset"},
        {"email_match": "fuzzy"},
    ],
)
def test_impossible_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        SandboxConfig(**settings)


def test_recorded_request_json() -> None:
    request = RecordedRequest("GET", "/api/v3/statuses", [("a", "b")], None, 200, 1.5)
    assert request.to_json() == {
        "method": "GET",
        "path": "/api/v3/statuses",
        "query": [["a", "b"]],
        "body": None,
        "status": 200,
        "at": 1.5,
    }


# -- tenant, seeds and the demo ---------------------------------------------------------------


def test_tenant_methods() -> None:
    tenant = Tenant()
    vip = tenant.add_status("vip", "VIP")
    assert vip == StatusDefinition(id=1, handle="vip", name="VIP")
    assert tenant.add_status("gold", "Gold").id == 2
    with pytest.raises(ValueError, match="already defined"):
        tenant.add_status("vip", "Again")
    with pytest.raises(ValueError, match="already defined"):
        tenant.add_status("new", "New", id=1)
    one = tenant.add_profile("A@Example.com", statuses=["vip", "vip"], first_name="A")
    two = tenant.add_profile("a@example.com ", id="fixed-id")
    assert one.statuses == ["vip"]
    assert uuid.UUID(one.id).version == 4
    assert tenant.profile("fixed-id") is two
    assert tenant.profile("nope") is None
    assert tenant.by_email("a@EXAMPLE.com") == [one, two]
    assert tenant.statuses_of(one.id) == ["vip"]
    with pytest.raises(ValueError, match="already exists"):
        tenant.add_profile("b@example.com", id="fixed-id")
    with pytest.raises(ValueError, match="not defined"):
        tenant.add_profile("b@example.com", statuses=["staff"])
    tenant.set_email(two.id, "b@example.com")
    assert tenant.by_email("a@example.com") == [one]
    assert tenant.by_email("b@example.com") == [two]


def test_generated_profile_ids_skip_taken_ones() -> None:
    tenant = Tenant()
    taken = uuid4_from_int(random.Random(0).getrandbits(128))
    tenant.add_profile("first@example.com", id=taken)
    assert tenant.add_profile("second@example.com").id != taken


@pytest.mark.anyio
async def test_a_sandbox_bug_is_recorded_as_500_and_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = demo_tenant()

    def broken(now: float, wall_now: float | None = None, *, group_rule: bool = False) -> int:
        raise RuntimeError("bug")

    monkeypatch.setattr(tenant, "process_due_batches", broken)
    async with sandbox(tenant) as client:
        with pytest.raises(RuntimeError, match="bug"):
            await client.get("/statuses")
    assert [r.status for r in tenant.requests] == [500]


def test_generation_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        generate_tenant(3)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_profile_ids_are_deterministic() -> None:
    def ids() -> list[str]:
        tenant = Tenant()
        return [tenant.add_profile(f"{i}@example.com").id for i in range(3)]

    assert ids() == ids()


def test_uuid4_from_int_matches_the_uuid_module() -> None:
    rng = random.Random(5)
    for _ in range(200):
        bits = rng.getrandbits(128)
        assert uuid4_from_int(bits) == str(uuid.UUID(int=bits, version=4))


def test_iso_timestamps() -> None:
    assert iso_timestamp(0.5) == "1970-01-01T00:00:00.500000Z"
    assert iso_timestamp(None) == SEED_TIMESTAMP


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_a_good_seed(tmp_path: Path) -> None:
    seed = {
        "statuses": [{"handle": "vip", "name": "VIP"}, {"handle": "gold", "id": 9}],
        "profiles": [
            {"email": "a@example.com", "statuses": ["vip"]},
            {"id": "p-2", "email": "b@example.com", "first_name": "B", "tags": ["t"]},
        ],
    }
    tenant = load_seed(write(tmp_path / "seed.json", json.dumps(seed)))
    assert [(s.id, s.handle, s.name) for s in tenant.statuses] == [
        (1, "vip", "VIP"),
        (9, "gold", "gold"),
    ]
    first, second = tenant.profiles.values()
    assert first.statuses == ["vip"]
    assert uuid.UUID(first.id).version == 4
    assert (second.id, second.first_name, second.tags) == ("p-2", "B", ["t"])
    again = load_seed(tmp_path / "seed.json")
    assert list(again.profiles) == list(tenant.profiles)
    assert tenant_from_seed(tenant.to_seed()).to_seed() == tenant.to_seed()


def test_missing_seed_file(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="seed file not found"):
        load_seed(tmp_path / "absent.json")


def test_unreadable_seed(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="cannot read seed file"):
        load_seed(tmp_path)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SeedError, match="not UTF-8"):
        load_seed(binary)


def test_invalid_json_seed(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match=r"not valid JSON \(line 1, column 14"):
        load_seed(write(tmp_path / "bad.json", '{"statuses": ]'))


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        ([], "must be a JSON object"),
        ({"profiles": []}, "'statuses' must be a list"),
        ({"statuses": [], "profiles": {}}, "'profiles' must be a list"),
        ({"statuses": ["vip"], "profiles": []}, r"statuses\[0\] must be an object"),
        ({"statuses": [{"name": "VIP"}], "profiles": []}, r"statuses\[0\]\.handle must be"),
        ({"statuses": [{"handle": "v", "id": "1"}], "profiles": []}, "id must be an integer"),
        ({"statuses": [{"handle": "v", "id": True}], "profiles": []}, "id must be an integer"),
        ({"statuses": [{"handle": "v", "name": 3}], "profiles": []}, "name must be a string"),
        (
            {"statuses": [{"handle": "v", "description": 3}], "profiles": []},
            "description must be a string or null",
        ),
        (
            {"statuses": [{"handle": "v"}, {"handle": "v"}], "profiles": []},
            r"statuses\[1\]: status handle 'v' is already defined",
        ),
        ({"statuses": [], "profiles": [{"email": ""}]}, r"profiles\[0\]\.email must be"),
        ({"statuses": [], "profiles": [{"email": "a@b", "id": 4}]}, r"profiles\[0\]\.id must"),
        (
            {"statuses": [], "profiles": [{"email": "a@b", "statuses": "vip"}]},
            "statuses must be a list of strings",
        ),
        (
            {"statuses": [], "profiles": [{"email": "a@b", "statuses": ["vip"]}]},
            "status handle 'vip' is not defined",
        ),
        (
            {
                "statuses": [],
                "profiles": [{"email": "a@b", "id": "x"}, {"email": "c@d", "id": "x"}],
            },
            r"profiles\[1\]: profile id 'x' already exists",
        ),
    ],
)
def test_wrongly_shaped_seeds(tmp_path: Path, seed: Any, message: str) -> None:
    path = write(tmp_path / "seed.json", json.dumps(seed))
    with pytest.raises(SeedError, match=message) as caught:
        load_seed(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "\n" not in str(caught.value)


def test_generated_tenants_are_deterministic() -> None:
    def snapshot(tenant: Tenant) -> list[tuple[str, str, list[str]]]:
        return [(p.id, p.email, p.statuses) for p in tenant.profiles.values()]

    one, two = generate_tenant(300, seed=4), generate_tenant(300, seed=4)
    assert snapshot(one) == snapshot(two)
    assert snapshot(generate_tenant(300, seed=5)) != snapshot(one)
    assert [s.handle for s in one.statuses] == ["vip", "staff", "influencer", "media", "gold"]
    assert [s.name for s in one.statuses] == ["VIP", "Staff", "Influencer", "Media", "Gold"]


def test_generated_tenant_shape() -> None:
    tenant = generate_tenant(2000, seed=1)
    assert len(tenant.profiles) == 2000
    rng = random.Random(1)
    expected_first = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    first = next(iter(tenant.profiles.values()))
    assert (first.id, first.email) == (expected_first, "customer1@example.com")
    assert only(tenant, "customer2000@example.com").first_name
    held = Counter(h for p in tenant.profiles.values() for h in p.statuses)
    assert all(len(p.statuses) <= 1 for p in tenant.profiles.values())
    assert 140 <= held["vip"] <= 260
    assert 300 <= held["staff"] + held["influencer"] + held["media"] + held["gold"] <= 500
    added = tenant.add_profile("late@example.com")
    assert tenant.by_email("late@example.com") == [added]
    assert generate_tenant(0).profiles == {}
    with pytest.raises(ValueError, match="negative"):
        generate_tenant(-1)


def test_demo_tenant_content() -> None:
    tenant = demo_tenant()
    assert [(s.handle, s.name) for s in tenant.statuses] == [
        ("vip", "VIP"),
        ("staff", "Staff"),
        ("influencer", "Influencer"),
        ("media", "Media"),
        ("gold", "Gold"),
        ("tier-silver", "Silver tier"),
        ("tier-platinum", "Platinum tier"),
        ("welcome", "Welcome offer"),
        ("club-silver", "Club Silver"),
        ("club-gold", "Club Gold"),
        ("club-platinum", "Club Platinum"),
    ]
    tiers = [s for s in tenant.statuses if s.group_handle == "tier"]
    assert [s.handle for s in tiers] == ["tier-silver", "tier-platinum"]
    club = [s for s in tenant.statuses if s.group_handle == "club"]
    assert [s.handle for s in club] == ["club-silver", "club-gold", "club-platinum"]
    welcome = tenant.status_by_handle("welcome")
    assert welcome is not None and (welcome.period, welcome.period_type) == (30, "days")
    variant_only = {"tier-silver", "tier-platinum", "welcome"}
    assert not any(variant_only & set(p.statuses) for p in tenant.profiles.values())
    in_club = {
        p.email: [h for h in p.statuses if h.startswith("club-")]
        for p in tenant.profiles.values()
        if any(h.startswith("club-") for h in p.statuses)
    }
    assert in_club == {
        "member01@example.com": ["club-silver"],
        "member02@example.com": ["club-silver"],
        "member03@example.com": ["club-gold"],
        "member05@example.com": ["club-gold"],
        "member06@example.com": ["club-platinum"],
        "member07@example.com": ["club-silver"],
        "member10@example.com": ["club-gold"],
    }
    assert len(tenant.profiles) == DEMO_PROFILES
    expected = {
        "ava.nguyen@example.com": [],
        "ben.carter@example.com": ["staff"],
        "chloe.martin@example.com": ["vip", "media"],
        "dan.lee@example.com": ["gold"],
        "ella.brown@example.com": [],
        "finn.wilson@example.com": ["influencer"],
        "grace.hall@example.com": ["staff", "gold"],
        "henry.king@example.com": ["vip"],
        "isla.wright@example.com": [],
    }
    for email, statuses in expected.items():
        assert only(tenant, email).statuses == statuses
    assert only(tenant, "grace.hall@example.com").last_name == "Hall"
    assert [p.statuses for p in tenant.by_email("sam.taylor@example.com")] == [["media"], []]
    members = [p for p in tenant.profiles.values() if p.email.startswith("member")]
    assert [p.email for p in members] == [f"member{i:02d}@example.com" for i in range(1, 21)]
    assert only(tenant, "member12@example.com").statuses == ["vip", "staff"]
    assert only(tenant, "member04@example.com").statuses == ["vip"]
    assert only(tenant, "member09@example.com").statuses == ["staff"]
    assert only(tenant, "member11@example.com").statuses == []
    assert all(uuid.UUID(pid).version == 4 for pid in tenant.profiles)


def demo_bytes() -> bytes:
    return resources.files("omneo_status.sandbox").joinpath("demo_tenant.json").read_bytes()


def test_demo_file_is_pretty_printed_and_round_trips() -> None:
    text = demo_bytes().decode("utf-8")
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
    assert demo_tenant().to_seed() == json.loads(text)


def test_examples_copy_is_identical() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "sandbox-tenant.json"
    assert example.read_bytes() == demo_bytes()


def test_sandbox_imports_nothing_else_from_the_package() -> None:
    imports = re.compile(r"^\s*(?:from|import)\s+(omneo_status[\w.]*)", re.M)
    sources = sorted(Path(sandbox_package.__file__).parent.glob("*.py"))
    assert len(sources) == 5
    for source in sources:
        for module in imports.findall(source.read_text(encoding="utf-8")):
            assert module.startswith("omneo_status.sandbox"), (source.name, module)


# -- variants: what the docs leave open -------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["data", "top_level"])
async def test_the_batch_answer_puts_the_batch_id_where_the_variant_says(where: str) -> None:
    tenant = demo_tenant()
    ava = only(tenant, "ava.nguyen@example.com")
    config = SandboxConfig(batch_answer="top_level" if where == "top_level" else "data")
    async with sandbox(tenant, config) as client:
        body = (await send_batch(client, "POST", [entry(ava.id, "vip")])).json()
    answer = body if where == "top_level" else body["data"]
    assert answer["message"] == "Queued for processing."
    assert answer["batch_id"] in tenant.batches
    assert ("data" in body) is (where == "data")


@pytest.mark.anyio
async def test_string_counts_and_items_without_entity_id() -> None:
    tenant = demo_tenant()
    ava = only(tenant, "ava.nguyen@example.com")
    config = SandboxConfig(string_counts=True, item_entity_id=False)
    _, batch = await batch_sent(
        tenant, "POST", entry(ava.id, "vip"), entry("nobody", "vip"), config=config
    )
    assert (batch["success_count"], batch["failed_count"], batch["processed_count"]) == (
        "1",
        "1",
        "2",
    )
    assert batch["total_count"] == 2
    assert [item["entity_id"] for item in batch["items"]] == [None, None]
    assert [item["external_id"] for item in batch["items"]] == [ava.id, "nobody"]


async def page_numbers(client: httpx.AsyncClient, params: dict[str, str]) -> tuple[int, int]:
    meta = (await client.get("/profiles", params=params)).json()["meta"]
    return meta["current_page"], meta["per_page"]


PAGE_ARRAY = {"page[size]": "10", "page[number]": "2"}
PER_PAGE = {"per_page": "10", "page": "2"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("style", "array_answer", "plain_answer"),
    [
        ("page_array", (2, 10), (1, 15)),
        ("per_page", (1, 15), (2, 10)),
        ("both", (2, 10), (2, 10)),
    ],
)
async def test_only_the_honoured_pagination_dialect_moves_the_page(
    style: Any, array_answer: tuple[int, int], plain_answer: tuple[int, int]
) -> None:
    async with sandbox(demo_tenant(), SandboxConfig(page_style=style)) as client:
        assert await page_numbers(client, PAGE_ARRAY) == array_answer
        assert await page_numbers(client, PER_PAGE) == plain_answer


@pytest.mark.anyio
async def test_per_page_links_use_their_own_dialect() -> None:
    async with sandbox(demo_tenant(), SandboxConfig(page_style="per_page")) as client:
        body = (await client.get("/profiles", params={**PER_PAGE, "filter[x]": "y"})).json()
    assert body["links"]["next"] == "http://sandbox/api/v3/profiles?page=3&per_page=10&filter[x]=y"


@pytest.mark.anyio
async def test_a_case_sensitive_email_filter() -> None:
    config = SandboxConfig(email_match="case_sensitive")
    async with sandbox(demo_tenant(), config) as client:
        exact = await emails_for(client, {"filter[email]": " chloe.martin@example.com "})
        other_case = await emails_for(client, {"filter[email]": "Chloe.Martin@example.com"})
        in_list = await emails_for(
            client, {"filter[email][in]": "CHLOE.martin@example.com,ben.carter@example.com"}
        )
    assert exact == ["chloe.martin@example.com"]
    assert other_case == []
    assert in_list == ["ben.carter@example.com"]


@pytest.mark.anyio
@pytest.mark.parametrize("key", ["filter[email]", "filter[email][eq]", "filter[email][in]"])
async def test_an_ignored_email_filter_lists_everyone(key: str) -> None:
    config = SandboxConfig(email_match="ignored")
    async with sandbox(demo_tenant(), config) as client:
        body = (await client.get("/profiles", params={key: "nobody@example.invalid"})).json()
    assert body["meta"]["total"] == DEMO_PROFILES


@pytest.mark.anyio
async def test_email_matching_follows_the_tools_email_rule() -> None:
    tenant = demo_tenant()
    decomposed = tenant.add_profile("Rene\u0301@example.com")  # e + combining acute accent
    async with sandbox(tenant) as client:
        zero_width = await emails_for(
            client, {"filter[email]": "\u200bava.nguyen@example.com\ufeff"}
        )
        composed = await client.get("/profiles", params={"filter[email]": "REN\u00c9@example.com"})
    assert zero_width == ["ava.nguyen@example.com"]
    assert [p["id"] for p in composed.json()["data"]] == [decomposed.id]


@pytest.mark.anyio
async def test_an_ignored_status_filter_lists_everyone() -> None:
    async with sandbox(demo_tenant(), SandboxConfig(status_filter=False)) as client:
        body = (await client.get("/profiles", params={"filter[statuses.handle]": "vip"})).json()
    assert body["meta"]["total"] == DEMO_PROFILES


@pytest.mark.anyio
async def test_rate_limit_without_headers() -> None:
    clock = FakeClock()
    config = SandboxConfig(rate_limit=1, rate_limit_headers=False, clock=clock)
    async with sandbox(demo_tenant(), config) as client:
        first = await client.get("/statuses")
        second = await client.get("/statuses")
    assert first.status_code == 200 and "x-ratelimit-limit" not in first.headers
    assert second.status_code == 429 and second.headers["retry-after"] == "1"
    assert not [name for name in second.headers if name.startswith("x-ratelimit")]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("group_rule", "held"),
    [
        (False, ["tier-silver", "welcome", "tier-platinum"]),
        (True, ["welcome", "tier-platinum"]),
    ],
)
async def test_the_group_rule_detaches_siblings(group_rule: bool, held: list[str]) -> None:
    tenant = demo_tenant()
    ava = only(tenant, "ava.nguyen@example.com")
    async with sandbox(tenant, SandboxConfig(group_rule=group_rule)) as client:
        await send_batch(client, "POST", [entry(ava.id, "tier-silver", "welcome")])
        await send_batch(client, "POST", [entry(ava.id, "tier-platinum")])
    assert ava.statuses == held


@pytest.mark.anyio
async def test_status_definitions_show_their_group_and_expiry() -> None:
    async with sandbox(demo_tenant()) as client:
        rows = (await client.get("/statuses", params={"page[size]": "100"})).json()["data"]
    by_handle = {row["handle"]: row for row in rows}
    assert (by_handle["tier-silver"]["group_handle"], by_handle["tier-silver"]["group_name"]) == (
        "tier",
        "Tier",
    )
    assert (by_handle["welcome"]["period"], by_handle["welcome"]["period_type"]) == (30, "days")
    assert by_handle["vip"]["group_handle"] is None and by_handle["vip"]["period"] is None


def test_status_fields_round_trip_through_a_seed() -> None:
    tenant = demo_tenant()
    again = tenant_from_seed(tenant.to_seed())
    assert [s.to_json() for s in again.statuses] == [s.to_json() for s in tenant.statuses]
    with pytest.raises(SeedError, match=r"statuses\[0\]\.period must be an integer"):
        tenant_from_seed({"statuses": [{"handle": "x", "period": "30"}], "profiles": []})


@pytest.mark.parametrize(
    "raw",
    [
        " Ava.Nguyen@Example.COM ",
        "\u00a0ava@example.com\u200b",
        "\ufeffava@example.com\u2060",
        "Rene\u0301@example.com",
        "REN\u00c9@example.com",
        "stra\u00dfe@example.com",
        "STRASSE@example.com",
        "\u0130nci@example.com",
        "\u212bngstr\u00f6m@example.com",
    ],
)
def test_the_sandbox_keys_emails_as_the_tool_does(raw: str) -> None:
    # The sandbox keeps its own copy of the email rule (it imports nothing from the tool):
    # this is what keeps the two copies from drifting apart.
    from omneo_status.inputs import email_key, normalize_email
    from omneo_status.sandbox.state import exact_email, normalise_email

    assert normalise_email(raw) == email_key(raw)
    assert exact_email(raw) == normalize_email(raw)
