"""Whole runs over the sandbox's variant matrix: ``assign``, ``remove`` and ``undo`` through
the CLI against each way a real tenant may answer, asserting the tenant's end state.

Each variant is one of the behaviours the docs leave open (issue 11): where the batch answer
puts ``batch_id``, counts as strings, which pagination dialect is honoured, how the email
filter compares, whether the ``in`` and status filters and the batches endpoint exist,
whether batch items carry ``entity_id``, and whether rate-limit headers are sent.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from omneo_status.sandbox import Tenant, generate_tenant

from .conftest import Sandbox, summary_of, write_csv

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "top_level_answers_string_counts": {"batch_answer": "top_level", "string_counts": True},
    "case_sensitive_email": {"email_match": "case_sensitive"},
    "per_page_only": {"page_style": "per_page"},
    "page_array_only": {"page_style": "page_array"},
    "both_page_styles": {"page_style": "both"},
    "no_in_filter": {"email_in_filter": False},
    "per_page_only_no_in_filter": {"page_style": "per_page", "email_in_filter": False},
    "no_status_filter": {"status_filter": False},
    "no_batches_no_entity_id": {"batches_endpoint": False, "item_entity_id": False},
    "items_without_entity_id": {"item_entity_id": False},
    "rate_limit_headers": {"rate_limit": 100_000},
    "rate_limit_without_headers": {"rate_limit": 100_000, "rate_limit_headers": False},
    "everything_unusual": {
        "batch_answer": "top_level",
        "string_counts": True,
        "email_match": "case_sensitive",
        "page_style": "per_page",
        "status_filter": False,
        "item_entity_id": False,
    },
}

LISTED = 150
"""Customers in the file: more than one page of 100, so bulk answers span pages."""


def crowd() -> Tenant:
    """250 customers sharing a domain; some already hold vip (the generator's ~10%)."""
    return generate_tenant(250, seed=3)


def holders(tenant: Tenant, handle: str) -> set[str]:
    return {p.email for p in tenant.profiles.values() if handle in p.statuses}


@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_assign_remove_undo_end_right(sandbox: Sandbox, tmp_path: Path, variant: str) -> None:
    sandbox.tenant = crowd()
    sandbox.config = replace(sandbox.config, **VARIANTS[variant])
    listed = [f"customer{i}@example.com" for i in range(1, LISTED + 1)]
    csv = write_csv(tmp_path / "list.csv", listed)
    before = {p.id: list(p.statuses) for p in sandbox.tenant.profiles.values()}
    vip_elsewhere = holders(sandbox.tenant, "vip") - set(listed)

    assigned = sandbox.run("assign", "vip", str(csv), "--json")
    assert assigned.exit_code == 0, assigned.stderr
    assert holders(sandbox.tenant, "vip") == set(listed) | vip_elsewhere
    counts = summary_of(assigned)["counts"]
    assert counts.get("assigned", 0) + counts.get("already_had", 0) == LISTED

    removed = sandbox.run("remove", "vip", str(csv), "--json")
    assert removed.exit_code == 0, removed.stderr
    assert holders(sandbox.tenant, "vip") == vip_elsewhere

    undone = sandbox.run("undo", summary_of(removed)["run_id"], "--json")
    assert undone.exit_code == 0, undone.stderr
    assert holders(sandbox.tenant, "vip") == set(listed) | vip_elsewhere

    # Nothing but vip ever changed, on any profile.
    for profile in sandbox.tenant.profiles.values():
        others = [h for h in profile.statuses if h != "vip"]
        assert others == [h for h in before[profile.id] if h != "vip"], profile.email


def test_a_case_sensitive_tenant_finds_addresses_written_in_capitals(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.config = replace(sandbox.config, email_match="case_sensitive")
    csv = write_csv(tmp_path / "caps.csv", ["AVA.NGUYEN@EXAMPLE.COM", "Ella.Brown@example.com"])
    result = sandbox.run("assign", "vip", str(csv), "--json")
    assert result.exit_code == 0, result.stderr
    assert sandbox.statuses("ava.nguyen@example.com") == ["vip"]
    assert sandbox.statuses("ella.brown@example.com") == ["vip"]
