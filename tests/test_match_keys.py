"""Match keys beyond email (``--match mobile|id|identity:HANDLE``), end to end against the
sandbox: exactly the matched profiles change, malformed keys cost no request, every key
resumes, guards, previews, verifies and undoes like email."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from omneo_status.api.client import OmneoClient
from omneo_status.errors import UsageError
from omneo_status.jobs import job_key
from omneo_status.keys import (
    EMAIL,
    KeyKind,
    MatchKey,
    is_profile_id,
    is_valid_identifier,
    is_valid_mobile,
    normalize_mobile,
)
from omneo_status.models import Action
from omneo_status.options import JobSpec
from omneo_status.report import read_report
from omneo_status.run.resolver import IdentityResolver, MobileResolver
from omneo_status.sandbox import SandboxConfig, SandboxProfile, Tenant

from .conftest import EXAMPLES, POSIX_ONLY, Sandbox, report_rows, summary_of, write_csv
from .test_resilience import Served, kill_then_rerun, served

__all__ = ["served"]  # the fixture, shared with test_resilience

EXAMPLE_EMAILS = EXAMPLES / "emails.csv"


@dataclass(frozen=True)
class Key:
    """One match key as a test uses it: the flag, the report column, a profile's cell."""

    match: str
    column: str
    header: str
    cell: Callable[[SandboxProfile, int], str]
    unknown: str
    malformed: tuple[str, ...]


def _mobile_cell(profile: SandboxProfile, i: int) -> str:
    number = profile.mobile_phone or ""
    # Every third number written as people write them: the policy removes the punctuation.
    return f"{number[:3]} ({number[3:6]}) {number[6:9]}-{number[9:]}" if i % 3 == 0 else number


def _id_cell(profile: SandboxProfile, i: int) -> str:
    return profile.id.upper() if i % 4 == 0 else profile.id


def _identity_cell(profile: SandboxProfile, i: int) -> str:
    return f" {profile.identities[0][1]} " if i % 5 == 0 else profile.identities[0][1]


KEYS = {
    "mobile": Key(
        "mobile", "mobile", "Phone", _mobile_cell, "+61499999999", ("not a number", "12", "+61 4x")
    ),
    "id": Key(
        "id",
        "id",
        "profile_id",
        _id_cell,
        str(uuid.UUID(int=42, version=4)),
        ("f190fa1a-4a72-4943-8278", "12345", "f190fa1a4a7249438278c1bf9018d2cb"),
    ),
    "identity": Key(
        "identity:shopify",
        "identity",
        "Shopify ID",
        _identity_cell,
        "7299999999999",
        ("a/b", "x" * 300, "tab\there", ".", ".."),
    ),
}


def snapshot(tenant: Tenant) -> dict[str, list[str]]:
    return {p.id: list(p.statuses) for p in tenant.profiles.values()}


def profile_requests(sandbox: Sandbox) -> list[str]:
    return [r.path for r in sandbox.tenant.requests if r.path.startswith("/api/v3/profiles")]


@pytest.mark.parametrize("name", sorted(KEYS))
def test_thirty_known_keys_and_one_unknown_change_exactly_the_matched_profiles(
    sandbox: Sandbox, tmp_path: Path, name: str
) -> None:
    key = KEYS[name]
    profiles = list(sandbox.tenant.profiles.values())
    left_out, chosen = profiles[0], profiles[1:]
    assert len(chosen) == 30
    cells = [key.cell(p, i) for i, p in enumerate(chosen)] + [key.unknown]
    csv = write_csv(tmp_path / "in.csv", [f'"{c}"' for c in cells], header=key.header)
    before = snapshot(sandbox.tenant)

    result = sandbox.run("assign", "vip", str(csv), "--match", key.match, "--json")

    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["match"] == key.match
    nonzero = {k: v for k, v in doc["counts"].items() if v}
    assert nonzero.pop("not_found") == 1
    assert set(nonzero) <= {"assigned", "already_had"}
    assert sum(nonzero.values()) == 30
    assert nonzero["already_had"] == sum("vip" in before[p.id] for p in chosen)
    after = snapshot(sandbox.tenant)
    for profile in chosen:
        held = before[profile.id]
        assert after[profile.id] == (held if "vip" in held else [*held, "vip"])
    assert after[left_out.id] == before[left_out.id]
    assert doc["verified"]["checked"] > 0 and doc["verified"]["problems"] == []
    rows = report_rows(Path(doc["report"]))
    assert list(rows[0]) == ["line", key.column, "outcome", "profile_id", "batch_id", "detail"]
    assert [r["profile_id"] for r in rows[:-1]] == [p.id for p in chosen]
    assert rows[-1]["outcome"] == "not_found"


@pytest.mark.parametrize("name", sorted(KEYS))
def test_malformed_keys_are_invalid_key_without_a_request(
    sandbox: Sandbox, tmp_path: Path, name: str
) -> None:
    key = KEYS[name]
    cells = [f'n,"{c}"' for c in key.malformed] + ["n,"]
    csv = write_csv(tmp_path / "in.csv", cells, header=f"name,{key.header}")
    result = sandbox.run("assign", "vip", str(csv), "--match", key.match, "--json")
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert {k: v for k, v in doc["counts"].items() if v} == {"invalid_key": len(cells)}
    assert profile_requests(sandbox) == []
    assert sandbox.writes() == []
    details = [r["detail"] for r in report_rows(Path(doc["report"]))]
    assert details[-1] == "empty cell"
    assert all(d and d != "empty cell" for d in details[:-1])


@pytest.mark.parametrize("name", sorted(KEYS))
def test_strict_fails_malformed_keys_and_max_unmatched_stops_before_a_write(
    sandbox: Sandbox, tmp_path: Path, name: str
) -> None:
    key = KEYS[name]
    profile = next(iter(sandbox.tenant.profiles.values()))
    csv = write_csv(
        tmp_path / "in.csv",
        [f'"{key.cell(profile, 1)}"', f'"{key.malformed[0]}"'],
        header=key.header,
    )
    stopped = sandbox.run("assign", "vip", str(csv), "--match", key.match, "--max-unmatched", "10")
    assert stopped.exit_code == 3 and "over the limit of 10%" in stopped.stderr
    assert sandbox.writes() == []
    strict = sandbox.run("assign", "vip", str(csv), "--match", key.match, "--strict", "--json")
    assert strict.exit_code == 3
    assert summary_of(strict)["counts"]["assigned"] == 1


def test_mobile_duplicates_are_found_on_the_normalised_number(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "in.csv", ["+61413000003", "+61 413-000 (003)"], header="mobile")
    result = sandbox.run("assign", "vip", str(csv), "--match", "mobile", "--json")
    rows = report_rows(Path(summary_of(result)["report"]))
    assert [r["outcome"] for r in rows] == ["already_had", "duplicate"]
    assert rows[1]["detail"] == "same mobile number as line 2"
    assert rows[1]["mobile"] == "'+61 413-000 (003)"  # the cell as read, kept from formulas


def test_a_dry_run_by_mobile_previews_and_writes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "in.csv", ["+61412000001", "+61412000002"], header="mobile")
    result = sandbox.run("remove", "staff", str(csv), "--match", "mobile", "--dry-run", "--json")
    doc = summary_of(result)
    assert {k: v for k, v in doc["counts"].items() if v} == {"would_remove": 1, "did_not_have": 1}
    assert sandbox.writes() == []


def test_a_lookup_mode_for_another_key_is_said_to_apply_to_emails_only(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "in.csv", ["+61412000001", "+61412000002"], header="mobile")
    args = ["remove", "staff", str(csv), "--match", "mobile", "--dry-run", "--json"]
    result = sandbox.run(*args, "--lookup", "scan")
    assert "--lookup scan applies to emails only: each mobile is looked up on its own" in (
        result.stderr
    )
    doc = summary_of(result)
    assert {k: v for k, v in doc["counts"].items() if v} == {"would_remove": 1, "did_not_have": 1}
    assert "applies to emails only" not in sandbox.run(*args).stderr  # auto: nothing to say


def test_runs_says_which_key_a_run_matched_by(sandbox: Sandbox, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "in.csv", ["+61412000001"], header="mobile")
    assert sandbox.run("assign", "vip", str(csv), "--match", "mobile", "--dry-run").exit_code == 0
    assert sandbox.run("assign", "vip", str(EXAMPLE_EMAILS), "--dry-run").exit_code == 0
    listed = json.loads(sandbox.invoke("runs", "--json").stdout)
    assert [run["match"] for run in listed] == ["email", "mobile"]
    table = sandbox.invoke("runs").stdout
    assert "assign vip by mobile (dry run)" in table


def test_identity_reads_the_documented_path_and_is_exact(sandbox: Sandbox, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "in.csv", ["7210000000001", "07210000000001"], header="shopify")
    result = sandbox.run("assign", "vip", str(csv), "--match", "identity:shopify", "--json")
    rows = report_rows(Path(summary_of(result)["report"]))
    assert [r["outcome"] for r in rows] == ["assigned", "not_found"]
    assert rows[1]["detail"] == "no profile has this shopify identity"
    reads = [r for r in sandbox.tenant.requests if r.path.startswith("/api/v3/profiles/72")]
    assert reads[0].path == "/api/v3/profiles/7210000000001"
    assert ("identity[handle]", "shopify") in reads[0].query


def test_identity_is_unambiguous_where_the_email_is_shared(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    shared = sandbox.tenant.by_email("sam.taylor@example.com")
    assert len(shared) == 2
    ids = [p.identities[0][1] for p in shared]
    csv = write_csv(tmp_path / "in.csv", ids, header="shopify")
    result = sandbox.run("assign", "vip", str(csv), "--match", "identity:shopify", "--json")
    assert summary_of(result)["counts"]["assigned"] == 2
    assert all("vip" in p.statuses for p in shared)


def test_an_identity_handle_that_finds_no_row_is_named_in_a_warning(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "in.csv", ["7210000000001", "7210000000002", ""], header="shopfiy")
    args = ("assign", "vip", str(csv), "--match", "identity:shopfiy")
    result = sandbox.run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    warning = "no profile was found by the identity `shopfiy`; check the handle"
    assert warning in result.stderr
    assert summary_of(result)["counts"]["not_found"] == 2
    guarded = sandbox.run(*args, "--max-unmatched", "50", "--fresh")
    assert guarded.exit_code == 3
    assert warning in guarded.stderr and "over the limit of 50%" in guarded.stderr
    assert sandbox.writes() == []
    # One row found is enough to show that the handle exists: no warning.
    csv = write_csv(tmp_path / "in.csv", ["7210000000001", "7299999999999"], header="shopify")
    found = sandbox.run("assign", "vip", str(csv), "--match", "identity:shopify", "--dry-run")
    assert found.exit_code == 0 and "no profile was found by the identity" not in found.stderr


def test_an_identity_column_needs_its_name_unless_a_header_names_the_handle(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "in.csv", ["7210000000001"], header="Customer ID")
    refused = sandbox.run("assign", "vip", str(csv), "--match", "identity:shopify")
    assert refused.exit_code == 2
    assert "no shopify identifier column" in refused.stderr and "--column" in refused.stderr
    assert sandbox.tenant.requests == []
    named = sandbox.run(
        "assign", "vip", str(csv), "--match", "identity:shopify", "--column", "Customer ID"
    )
    assert named.exit_code == 0, named.stderr


def test_a_headerless_file_of_ids_is_read(sandbox: Sandbox, tmp_path: Path) -> None:
    profile = next(iter(sandbox.tenant.profiles.values()))
    csv = write_csv(tmp_path / "in.csv", [profile.id], header=None)
    result = sandbox.run("assign", "vip", str(csv), "--match", "id", "--json")
    assert summary_of(result)["counts"]["assigned"] == 1


@pytest.mark.parametrize("text", ["phone", "identity", "identity:", "email:x", "identity:a/b"])
def test_an_unknown_match_key_is_one_line_and_exit_2(sandbox: Sandbox, text: str) -> None:
    result = sandbox.run("assign", "vip", "whatever.csv", "--match", text)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --match")
    assert "Traceback" not in result.stderr
    assert sandbox.tenant.requests == []


def test_the_job_key_includes_the_match_key_and_email_jobs_keep_theirs() -> None:
    def key(match: MatchKey) -> str:
        spec = JobSpec(Action.ASSIGN, ("vip",), match=match)
        return job_key(spec, base_url="u", digest="d", dry_run=False)

    keys = {key(MatchKey.parse(m)) for m in ("email", "mobile", "id", "identity:shopify")}
    assert len(keys) == 4
    assert key(EMAIL) == job_key(
        JobSpec(Action.ASSIGN, ("vip",)), base_url="u", digest="d", dry_run=False
    )
    assert key(MatchKey.parse("identity:shopify")) != key(MatchKey.parse("identity:other"))


def test_the_same_file_by_another_key_is_another_job(sandbox: Sandbox, tmp_path: Path) -> None:
    profile = next(iter(sandbox.tenant.profiles.values()))
    csv = write_csv(tmp_path / "in.csv", [profile.id], header="id")
    first = summary_of(sandbox.run("assign", "vip", str(csv), "--match", "id", "--json"))
    again = summary_of(sandbox.run("assign", "vip", str(csv), "--match", "id", "--json"))
    assert again["run_id"] == first["run_id"]  # finished: shown again
    sandbox.tenant.add_identity(profile.id, "pos", profile.id)
    other = sandbox.run("assign", "vip", str(csv), "--match", "identity:pos", "--column", "id")
    assert other.exit_code == 0
    assert "already finished" not in other.stderr


def test_undo_of_a_mobile_run_restores_the_profiles(sandbox: Sandbox, tmp_path: Path) -> None:
    before = snapshot(sandbox.tenant)
    csv = write_csv(tmp_path / "in.csv", ["+61412000001", "+61413000003"], header="mobile")
    doc = summary_of(sandbox.run("assign", "vip", str(csv), "--match", "mobile", "--json"))
    assert doc["counts"]["assigned"] == 1
    undone = summary_of(sandbox.run("undo", doc["run_id"], "--json"))
    assert undone["match"] == "mobile" and undone["counts"]["removed"] == 1
    assert snapshot(sandbox.tenant) == before
    assert [r.key for r in read_report(Path(undone["report"]))] == ["'+61412000001"]


def test_runs_resume_by_their_match_key(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.config.batch_delay = 100_000.0
    csv = write_csv(tmp_path / "in.csv", ["7210000000001", "7210000000002"], header="shopify")
    args = ("assign", "vip", str(csv), "--match", "identity:shopify", "--json")
    stalled = sandbox.run(*args, "--stall-timeout", "30")
    assert stalled.exit_code == 5
    sandbox.config.batch_delay = 0.0
    sandbox.tenant.process_due_batches(float("inf"))
    start = len(sandbox.tenant.requests)
    resumed = summary_of(sandbox.run("resume", summary_of(stalled)["run_id"], "--json"))
    assert resumed["match"] == "identity:shopify"
    assert resumed["counts"]["assigned"] == 2
    rows = report_rows(Path(resumed["report"]))
    assert list(rows[0])[1] == "identity"
    # The resumed run follows its batch: no identity is looked up again.
    assert not any(
        ("identity[handle]", "shopify") in r.query for r in sandbox.tenant.requests[start:]
    )


# -- the policies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal", "valid"),
    [
        ("+61 412 000 001", "+61412000001", True),
        ("(02) 9000-0001", "0290000001", True),
        ("\u00a0+64 21 000 0005\u200b", "+64210000005", True),
        ("+61412000001x", "+61412000001x", False),
        ("61+412000001", "61+412000001", False),
        ("12345", "12345", False),
        ("6.1412E+10", "6.1412E+10", False),
        ("+1234567890123456", "+1234567890123456", False),
    ],
)
def test_the_mobile_policy(raw: str, normal: str, valid: bool) -> None:
    assert normalize_mobile(raw) == normal
    assert is_valid_mobile(normal) is valid


def test_the_id_and_identifier_policies() -> None:
    assert MatchKey.parse("ID").rule.normalize(" F190FA1A-4A72-4943-8278-C1BF9018D2CB ") == (
        "f190fa1a-4a72-4943-8278-c1bf9018d2cb"
    )
    assert is_profile_id("f190fa1a-4a72-4943-8278-c1bf9018d2cb")
    assert not is_profile_id("f190fa1a4a7249438278c1bf9018d2cb")
    rule = MatchKey.parse("identity:shopify").rule
    assert rule.normalize(" Abc-1 ") == "Abc-1" and rule.key("Abc-1") != rule.key("abc-1")
    assert is_valid_identifier("Abc 1") and not is_valid_identifier("a/b")
    # A dot segment would be resolved away in the URL path (/profiles/.. is /).
    assert not any(is_valid_identifier(dots) for dots in (".", ".."))
    assert is_valid_identifier("...") and is_valid_identifier(".5")
    assert [rule.is_header(h) for h in ("Shopify", "shopify_id", "Shopify Customer ID", "id")] == [
        True,
        True,
        True,
        False,
    ]


def test_match_key_parsing() -> None:
    assert MatchKey.parse(" Mobile ") == MatchKey(KeyKind.MOBILE)
    assert str(MatchKey.parse("identity:shopify")) == "identity:shopify"
    assert MatchKey.parse("identity:shopify").column == "identity"
    with pytest.raises(UsageError):
        MatchKey.parse("identity: ")


# -- resolvers against a tenant that answers wrongly ------------------------------------------


def _client(answer: Callable[[httpx.Request], httpx.Response]) -> OmneoClient:
    return OmneoClient(
        "http://tenant.test/api", SecretStr("t"), transport=httpx.MockTransport(answer)
    )


def _page(*profiles: dict[str, object]) -> httpx.Response:
    meta = {"current_page": 1, "last_page": 1, "total": len(profiles)}
    return httpx.Response(200, json={"data": list(profiles), "meta": meta})


@pytest.mark.anyio
async def test_a_mobile_filter_answered_with_other_numbers_never_counts() -> None:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["filter[mobile_phone]"])
        return _page({"id": "a", "mobile_phone": "+61 412 000 001"}, {"id": "b"})

    async with _client(answer) as client:
        [stranger] = await MobileResolver(client).resolve(["+61412000001"])
    assert stranger.error is not None and "other numbers" in stranger.error
    assert stranger.profiles == ()
    assert asked == ["+61412000001"]


@pytest.mark.anyio
async def test_a_mobile_filter_answered_right_counts_every_holder() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return _page(
            {"id": "a", "mobile_phone": "+61 412 000 001"},
            {"id": "b", "mobile_phone": "+61412000001"},
        )

    async with _client(answer) as client:
        [both] = await MobileResolver(client).resolve(["+61412000001"])
    assert [p.id for p in both.profiles] == ["a", "b"]


@pytest.mark.anyio
async def test_an_identity_answer_that_lists_other_identities_never_counts() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        listed = [{"handle": "shopify", "identifier": "99"}]
        if request.url.path.endswith("/silent"):
            return httpx.Response(200, json={"data": {"id": "p2"}})
        return httpx.Response(200, json={"data": {"id": "p1", "identities": listed}})

    async with _client(answer) as client:
        wrong, silent = await IdentityResolver(client, "shopify").resolve(["12", "silent"])
    assert wrong.error is not None and "p1" in wrong.error and wrong.profiles == ()
    # A profile that lists no identities at all is the documented read's answer: trusted.
    assert [p.id for p in silent.profiles] == ["p2"]


def test_the_sandbox_seed_keeps_mobiles_and_identities(tmp_path: Path) -> None:
    from omneo_status.sandbox import SeedError, demo_tenant, tenant_from_seed

    seed = demo_tenant().to_seed()
    again = tenant_from_seed(json.loads(json.dumps(seed)))
    assert again.by_mobile("+61 412 000 001")[0].email == "ava.nguyen@example.com"
    chloe = again.by_identity("shopify", "7210000000003")
    assert chloe is not None and chloe.email == "chloe.martin@example.com"
    seed["profiles"][1]["identities"] = seed["profiles"][0]["identities"]
    with pytest.raises(SeedError, match="belongs to another profile"):
        tenant_from_seed(seed)


# -- kill -9 and re-run, for every key (slow: subprocesses and a served sandbox) ---------------


def keyed_tenant(n: int) -> Tenant:
    """A generated tenant whose profiles also have a mobile number and a shopify identity."""
    from omneo_status.sandbox import generate_tenant

    tenant = generate_tenant(n, seed=21)
    for i, profile in enumerate(list(tenant.profiles.values()), start=1):
        tenant.set_mobile(profile.id, f"+6141{i:07d}")
        tenant.add_identity(profile.id, "shopify", f"81{i:08d}")
    return tenant


KILL_CELLS: dict[str, Callable[[SandboxProfile], str]] = {
    "mobile": lambda p: p.mobile_phone or "",
    "id": lambda p: p.id,
    "identity:shopify": lambda p: p.identities[0][1],
}


@POSIX_ONLY
@pytest.mark.slow
@pytest.mark.parametrize("match", list(KILL_CELLS))
def test_kill_9_then_rerun_ends_like_an_uninterrupted_run_for_every_key(
    match: str, served: Callable[[Tenant, SandboxConfig], Served], tmp_path: Path
) -> None:
    tenant, clean_tenant = keyed_tenant(120), keyed_tenant(120)
    cells = [KILL_CELLS[match](p) for p in list(tenant.profiles.values())[:90]] + ["+0", "9"]
    csv = write_csv(tmp_path / "in.csv", [f'"{c}"' for c in cells], header="key")
    args = ["assign", "vip", str(csv), "--match", match, "--column", "key", "--yes", "--json"]
    args += ["--quiet", "--chunk-size", "15", "--concurrency", "4", "--verify", "3"]

    rerun = kill_then_rerun(
        served,
        args,
        clean=clean_tenant,
        tenant=tenant,
        until=lambda: any(r.method == "POST" for r in list(tenant.requests)),
        tmp_path=tmp_path,
    ).rerun
    assert json.loads(rerun.stdout)["match"] == match

    assert snapshot(tenant) == snapshot(clean_tenant)
    column = MatchKey.parse(match).column

    def outcomes(name: str) -> list[tuple[str, ...]]:
        rows = report_rows(tmp_path / name)
        return [(r["line"], r[column], r["outcome"], r["profile_id"]) for r in rows]

    assert outcomes("rerun.csv") == outcomes("clean.csv")
    # "+0" and "9" are malformed numbers and ids, but possible identifiers nobody has.
    malformed = "not_found" if match.startswith("identity") else "invalid_key"
    assert [row[2] for row in outcomes("rerun.csv")[-2:]] == [malformed, malformed]
