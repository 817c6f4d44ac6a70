"""A status per row (``--status-column``) and tier moves within a status group, against the
sandbox: a mixed file, a typo stopped before any write, empty cells, moves on a tenant that
keeps siblings and on one that detaches them itself, the order of a move's two writes, undo, a
group sync and its guard, and (slow) kill -9 between the two writes of a move."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from omneo_status import cli
from omneo_status.errors import InputError
from omneo_status.inputs import read_rows
from omneo_status.sandbox import (
    SandboxConfig,
    ServerThread,
    Tenant,
    create_app,
    demo_tenant,
    generate_tenant,
)

from .conftest import EXAMPLES, POSIX_ONLY, Sandbox, report_rows, summary_of
from .test_resilience import Served, count, kill_then_rerun, served

__all__ = ["served"]  # the fixture, imported for the kill -9 test

BATCH_PATH = "/api/v3/profile/status/batch.json"
TIERS = str(EXAMPLES / "tiers.csv")
CLUB = ("club-silver", "club-gold", "club-platinum")


def write(path: Path, rows: list[tuple[str, str]], header: str = "email,tier") -> Path:
    path.write_text("\n".join([header, *(f"{e},{s}" for e, s in rows)]) + "\n", encoding="utf-8")
    return path


def held(sandbox: Sandbox, email: str) -> set[str]:
    return set(sandbox.statuses(email))


def snapshot(tenant: Tenant) -> dict[str, list[str]]:
    return {p.id: sorted(p.statuses) for p in tenant.profiles.values()}


def bodies(sandbox: Sandbox, method: str) -> list[dict[str, list[str]]]:
    """Each batch write of that method as ``{profile email: handles sent}``."""
    emails = {p.id: p.email for p in sandbox.tenant.profiles.values()}
    return [
        {emails[i["profile_id"]]: i["statuses"] for i in w.body["profiles"]}
        for w in sandbox.writes()
        if w.method == method and w.path == BATCH_PATH
    ]


def by_email(report: str) -> dict[str, dict[str, str]]:
    return {row["email"]: row for row in report_rows(Path(report))}


# -- reading the status column -----------------------------------------------------------------


def test_the_status_column_is_found_by_its_header_and_read_as_written() -> None:
    data = b"Email;Tier Level\nava@x.co; club-gold \nben@x.co\n"
    layout, rows = read_rows(io.BytesIO(data), name="in.csv", status_column="tier level")
    assert (layout.delimiter, layout.column_index, layout.status_index) == (";", 0, 1)
    assert [(r.line, r.key, r.status) for r in rows] == [
        (2, "ava@x.co", " club-gold "),  # trimmed when the rows are loaded
        (3, "ben@x.co", ""),  # a short row: an empty cell
    ]
    _, plain = read_rows(io.BytesIO(data), name="in.csv")
    assert [r.status for r in plain] == [None, None]


@pytest.mark.parametrize(
    "data",
    [b"email,tier\nava@x.co,gold\n", b"ava@x.co\n", b"email,tier\n"],
    ids=["another-header", "no-header", "the-key-column"],
)
def test_a_status_column_the_file_lacks_is_refused_naming_it(data: bytes) -> None:
    wanted = "email" if data == b"email,tier\n" else "level"
    with pytest.raises(InputError, match=f"in.csv, line 1: no status column named '{wanted}'"):
        read_rows(io.BytesIO(data), name="in.csv", status_column=wanted)


# -- a status per row ---------------------------------------------------------------------------


def test_a_mixed_file_gives_each_row_its_own_status_in_the_same_batch(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    csv = write(
        tmp_path / "mixed.csv",
        [
            ("ava.nguyen@example.com", "vip"),
            ("ben.carter@example.com", "club-gold"),
            ("chloe.martin@example.com", "staff"),
            ("dan.lee@example.com", ""),
            ("ella.brown@example.com", "  "),
            ("member01@example.com", "club-gold"),
            ("member04@example.com", "vip"),
        ],
    )
    result = sandbox.run("assign", "--status-column", "tier", str(csv), "--json")
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["status_column"] == "tier"
    assert doc["handles"] == ["vip", "club-gold", "club-silver", "club-platinum", "staff"]
    counts = {k: v for k, v in doc["counts"].items() if v}
    assert counts == {"assigned": 3, "moved": 1, "already_had": 1, "no_status": 2}
    assert doc["rows"] == 7
    # Rows with different statuses travel in the same batch; the move's removal after it.
    assert bodies(sandbox, "POST") == [
        {
            "ava.nguyen@example.com": ["vip"],
            "ben.carter@example.com": ["club-gold"],
            "chloe.martin@example.com": ["staff"],
            "member01@example.com": ["club-gold"],
        }
    ]
    assert bodies(sandbox, "DELETE") == [{"member01@example.com": ["club-silver"]}]
    assert held(sandbox, "ava.nguyen@example.com") == {"vip"}
    assert held(sandbox, "ben.carter@example.com") == {"staff", "club-gold"}
    assert held(sandbox, "chloe.martin@example.com") == {"vip", "media", "staff"}
    assert held(sandbox, "dan.lee@example.com") == {"gold"}  # an empty cell changes nothing
    assert held(sandbox, "member01@example.com") == {"club-gold"}
    rows = by_email(doc["report"])
    assert list(report_rows(Path(doc["report"]))[0]) == [
        "line",
        "email",
        "status",
        "outcome",
        "profile_id",
        "batch_id",
        "detail",
    ]
    assert [(r["line"], r["status"], r["outcome"]) for r in rows.values()] == [
        ("2", "vip", "assigned"),
        ("3", "club-gold", "assigned"),
        ("4", "staff", "assigned"),
        ("5", "", "no_status"),
        ("6", "", "no_status"),
        ("7", "club-gold", "moved"),
        ("8", "vip", "already_had"),
    ]
    assert rows["dan.lee@example.com"]["detail"] == "the tier cell is empty: no status to give"
    assert rows["member01@example.com"]["detail"] == "club-silver -> club-gold"
    assert doc["verified"]["problems"] == [] and doc["verified"]["notes"] == []


def test_a_typo_in_the_status_column_stops_before_any_write(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    csv = write(
        tmp_path / "typo.csv",
        [
            ("ava.nguyen@example.com", "club-gold"),
            ("ben.carter@example.com", ""),
            ("chloe.martin@example.com", "vpi"),
            ("dan.lee@example.com", "vpi"),
        ],
    )
    result = sandbox.run("assign", "--status-column", "tier", str(csv), "--json")
    assert result.exit_code == 2
    assert summary_of(result)["error"] == (
        "Unknown status handle `vpi` (the status column, line 4): the tenant has no such"
        " status; did you mean `vip`?"
    )
    assert sandbox.writes() == []
    assert [r.path for r in sandbox.tenant.requests] == ["/api/v3/statuses"]
    assert sandbox.invoke("runs", "--json").stdout.strip() == "[]"


def test_a_missing_status_column_is_a_usage_error_naming_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    csv = write(tmp_path / "in.csv", [("ava.nguyen@example.com", "vip")])
    result = sandbox.run("assign", "--status-column", "level", str(csv))
    assert result.exit_code == 2
    assert "in.csv, line 1: no status column named 'level'" in result.stderr
    assert sandbox.tenant.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["assign", "vip", "--status-column", "tier", TIERS], "give no HANDLE (got 'vip')"),
        (["assign", TIERS], "Missing argument 'CSV_FILE'."),
        (["assign", "--status-column", "tier"], "Missing argument 'CSV_FILE'."),
        (["sync", "vip", TIERS, "--status-column", "tier"], "give no HANDLE"),
    ],
)
def test_a_handle_and_a_status_column_do_not_go_together(
    sandbox: Sandbox, args: list[str], message: str
) -> None:
    result = sandbox.run(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert sandbox.tenant.requests == []


def test_remove_takes_each_row_s_own_status_away(sandbox: Sandbox, tmp_path: Path) -> None:
    csv = write(
        tmp_path / "out.csv",
        [
            ("member03@example.com", "staff"),  # holds staff and club-gold
            ("member05@example.com", "club-gold"),
            ("member06@example.com", "club-silver"),  # holds club-platinum: nothing to do
            ("member07@example.com", ""),
        ],
    )
    result = sandbox.run("remove", "--status-column", "tier", str(csv), "--json")
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    counts = {k: v for k, v in doc["counts"].items() if v}
    assert counts == {"removed": 2, "did_not_have": 1, "no_status": 1}
    assert doc["handles"] == ["staff", "club-gold", "club-silver"]  # a removal moves no one
    assert bodies(sandbox, "DELETE") == [
        {"member03@example.com": ["staff"], "member05@example.com": ["club-gold"]}
    ]
    assert held(sandbox, "member03@example.com") == {"club-gold"}
    assert held(sandbox, "member06@example.com") == {"staff", "club-platinum"}
    assert [pair["label"] for pair in moves_of(doc)] == [
        "club-gold -> none",
        "staff -> none",
    ]


def moves_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary's moves, each with the label the terminal shows."""
    labelled = []
    for pair in doc["moves"]:
        away, to = pair["from"], pair["to"]
        label = f"new {to}" if away is None else f"{away} -> {to or 'none'}"
        labelled.append({**pair, "label": label})
    return labelled


def test_a_changed_status_in_the_same_file_is_another_job(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "tiers.csv"
    first = sandbox.run(
        "assign", "--status-column", "tier", str(write(path, [(EMAIL, "club-gold")])), "--json"
    )
    again = sandbox.run("assign", "--status-column", "tier", str(path), "--json")
    assert summary_of(again)["run_id"] == summary_of(first)["run_id"]  # the same job
    changed = write(path, [(EMAIL, "club-platinum")])
    other = sandbox.run("assign", "--status-column", "tier", str(changed), "--json")
    assert other.exit_code == 0, other.stderr
    assert summary_of(other)["run_id"] != summary_of(first)["run_id"]
    assert held(sandbox, EMAIL) == {"club-platinum"}


EMAIL = "member01@example.com"  # holds club-silver


# -- tier moves ---------------------------------------------------------------------------------

MOVES = [
    ("member01@example.com", "club-gold"),  # club-silver -> club-gold
    ("member02@example.com", "club-silver"),  # already there
    ("member03@example.com", "club-platinum"),  # staff kept; club-gold -> club-platinum
    ("member04@example.com", "club-silver"),  # vip kept; new club-silver
    ("member06@example.com", "club-silver"),  # staff kept; club-platinum -> club-silver
]
AFTER = {
    "member01@example.com": {"club-gold"},
    "member02@example.com": {"club-silver"},
    "member03@example.com": {"staff", "club-platinum"},
    "member04@example.com": {"vip", "club-silver"},
    "member06@example.com": {"staff", "club-silver"},
    "member07@example.com": {"club-silver"},  # not in the file: an assign leaves it be
}


@pytest.mark.parametrize("group_rule", [False, True], ids=["tenant-keeps", "tenant-detaches"])
def test_a_move_leaves_the_new_tier_alone_in_its_group_on_both_tenants(
    sandbox: Sandbox, tmp_path: Path, group_rule: bool
) -> None:
    sandbox.config.group_rule = group_rule
    csv = write(tmp_path / "tiers.csv", MOVES)
    result = sandbox.run("assign", "--status-column", "tier", str(csv), "--json")
    assert result.exit_code == 0, result.stderr
    for email, statuses in AFTER.items():
        assert held(sandbox, email) == statuses, email
    doc = summary_of(result)
    counts = {k: v for k, v in doc["counts"].items() if v}
    assert counts == {"moved": 3, "already_had": 1, "assigned": 1}
    # The siblings are removed explicitly, whatever the tenant does by itself.
    assert bodies(sandbox, "DELETE") == [
        {
            "member01@example.com": ["club-silver"],
            "member03@example.com": ["club-gold"],
            "member06@example.com": ["club-platinum"],
        }
    ]
    rows = by_email(doc["report"])
    assert rows["member03@example.com"]["detail"] == "club-gold -> club-platinum"
    assert rows["member06@example.com"]["detail"] == "club-platinum -> club-silver"
    assert doc["verified"] == {"checked": 4, "ok": 4, "problems": [], "notes": []}


def test_the_siblings_go_only_once_the_new_tier_landed(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.config.batch_delay = 5.0
    csv = write(tmp_path / "tiers.csv", MOVES)
    result = sandbox.run("assign", "--status-column", "tier", str(csv))
    assert result.exit_code == 0, result.stderr
    [post] = [w for w in sandbox.writes() if w.method == "POST"]
    [delete] = [w for w in sandbox.writes() if w.method == "DELETE"]
    assert delete.at >= post.at + 5.0  # a customer holds both tiers for a moment, never none
    assert held(sandbox, "member01@example.com") == {"club-gold"}


def test_a_first_write_that_failed_keeps_the_old_tier(sandbox: Sandbox, tmp_path: Path) -> None:
    [member01] = sandbox.tenant.by_email("member01@example.com")
    sandbox.tenant.fail_profile_ids.add(member01.id)
    csv = write(tmp_path / "tiers.csv", MOVES)
    result = sandbox.run("assign", "--status-column", "tier", str(csv), "--json")
    assert result.exit_code == 3
    assert held(sandbox, "member01@example.com") == {"club-silver"}  # never left without one
    assert "member01@example.com" not in {e for body in bodies(sandbox, "DELETE") for e in body}
    doc = summary_of(result)
    assert (doc["counts"]["failed"], doc["counts"]["moved"]) == (1, 2)
    assert by_email(doc["report"])["member01@example.com"]["detail"] == "Injected failure"


def test_a_profile_holding_two_tiers_keeps_only_the_one_its_row_names(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    [member05] = sandbox.tenant.by_email("member05@example.com")
    member05.statuses[:] = ["club-silver", "club-gold", "vip"]
    csv = write(tmp_path / "tiers.csv", [("member05@example.com", "club-gold")])
    result = sandbox.run("assign", "--status-column", "tier", str(csv), "--json")
    assert result.exit_code == 0, result.stderr
    assert held(sandbox, "member05@example.com") == {"club-gold", "vip"}
    assert bodies(sandbox, "POST") == []  # club-gold was there: only the removal is sent
    doc = summary_of(result)
    assert doc["counts"]["moved"] == 1
    assert moves_of(doc)[0]["label"] == "club-silver -> club-gold"


def test_a_dry_run_shows_the_moves_by_pair_and_writes_nothing(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "--status-column", "tier", TIERS, "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    assert sandbox.writes() == []
    doc = summary_of(result)
    assert [(p["label"], p["rows"]) for p in moves_of(doc)] == [
        ("club-gold -> club-platinum", 1),
        ("club-platinum -> club-silver", 1),
        ("club-silver -> club-gold", 1),
        ("new club-platinum", 1),
        ("new club-silver", 1),
    ]
    counts = {k: v for k, v in doc["counts"].items() if v}
    assert counts == {
        "would_move": 3,
        "would_assign": 2,
        "already_had": 1,
        "not_found": 1,
        "no_status": 1,
    }
    rows = by_email(doc["report"])
    assert rows["member01@example.com"]["detail"] == "would move club-silver -> club-gold"
    shown = sandbox.run("assign", "--status-column", "tier", TIERS, "--dry-run")
    assert "Moves:\n  club-gold -> club-platinum: 1\n" in shown.stdout
    assert "  new club-silver: 1\n" in shown.stdout


def test_the_prompt_shows_the_moves_before_the_first_write(
    monkeypatch: pytest.MonkeyPatch, runtime: cli.Runtime
) -> None:
    runtime.interactive = lambda: True
    tenant = demo_tenant()
    with ServerThread(create_app(tenant)) as server:
        monkeypatch.setenv("OMNEO_BASE_URL", server.base_url)
        monkeypatch.setenv("OMNEO_TOKEN", "sandbox-token")
        result = CliRunner().invoke(
            cli.app, ["assign", "--status-column", "tier", TIERS], input="n\n"
        )
    assert result.exit_code == 1, result.stderr
    assert "Moves:\n  club-gold -> club-platinum: 1\n" in result.stderr
    # a move is one profile to write
    assert "Assign club-gold, club-silver, club-platinum on 5 profiles at " in result.stderr
    assert [r for r in tenant.requests if r.method != "GET"] == []


def test_no_wait_is_refused_when_a_row_moves(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "--status-column", "tier", TIERS, "--no-wait")
    assert result.exit_code == 2
    assert "--no-wait cannot be used when a row moves its customer" in result.stderr
    assert sandbox.writes() == []


def test_a_run_that_stopped_before_its_first_write_landed_moves_when_run_again(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.config.batch_delay = 100_000.0
    csv = write(tmp_path / "tiers.csv", MOVES)
    args = ("assign", "--status-column", "tier", str(csv), "--stall-timeout", "30", "--json")
    stalled = sandbox.run(*args)
    assert stalled.exit_code == 5
    doc = summary_of(stalled)
    assert doc["counts"]["sent"] == 4 and doc["counts"]["moved"] == 0
    assert bodies(sandbox, "DELETE") == []  # the second writes wait for the first
    sandbox.config.batch_delay = 0.0
    sandbox.tenant.process_due_batches(float("inf"))
    assert held(sandbox, "member01@example.com") == {"club-silver", "club-gold"}
    resumed = sandbox.run(*args)
    assert resumed.exit_code == 0, resumed.stderr
    assert summary_of(resumed)["counts"]["moved"] == 3
    for email, statuses in AFTER.items():
        assert held(sandbox, email) == statuses, email
    assert len(bodies(sandbox, "POST")) == 1  # nothing sent twice


@pytest.mark.parametrize("group_rule", [False, True], ids=["tenant-keeps", "tenant-detaches"])
def test_undo_of_a_move_run_restores_the_tenant_exactly(
    sandbox: Sandbox, tmp_path: Path, group_rule: bool
) -> None:
    sandbox.config.group_rule = group_rule
    [member05] = sandbox.tenant.by_email("member05@example.com")
    if not group_rule:  # only a tenant that keeps siblings lets a profile hold two tiers
        member05.statuses[:] = ["club-silver", "club-gold"]  # club-gold there before the run
    before = snapshot(sandbox.tenant)
    csv = write(tmp_path / "tiers.csv", [*MOVES, ("member05@example.com", "club-gold")])
    done = sandbox.run("assign", "--status-column", "tier", str(csv), "--json")
    assert done.exit_code == 0, done.stderr
    assert snapshot(sandbox.tenant) != before
    writes = len(sandbox.writes())
    undo = sandbox.run("undo", summary_of(done)["run_id"], "--json")
    assert undo.exit_code == 0, undo.stderr
    assert snapshot(sandbox.tenant) == before
    doc = summary_of(undo)
    counts = {k: v for k, v in doc["counts"].items() if v}
    # Three moves back and member04's new tier taken away; member05 had club-gold before the
    # run (on the tenant that keeps siblings): only its old tier is given back.
    keeps = not group_rule
    assert (
        counts == {"moved": 3, "removed": 1, "assigned": 1} if keeps else {"moved": 3, "removed": 1}
    )
    rows = by_email(doc["report"])
    assert rows["member01@example.com"]["detail"] == "club-gold -> club-silver"
    undo_writes = [(w.method, len(w.body["profiles"])) for w in sandbox.writes()[writes:]]
    # The old tiers back first; member04's new tier away beside them; then the moves' new tiers.
    assert undo_writes == [("POST", 3 + keeps), ("DELETE", 1), ("DELETE", 3)]
    assert doc["verified"]["problems"] == []


# -- a group sync -------------------------------------------------------------------------------


def test_a_group_sync_is_refused_by_its_guard_then_allowed_with_max_remove(
    sandbox: Sandbox,
) -> None:
    refused = sandbox.run("sync", "--status-column", "tier", TIERS, "--json")
    assert refused.exit_code == 3
    assert sandbox.writes() == []
    # Seven profiles hold a Club tier; member07 and member10 are not in the file.
    assert summary_of(refused)["guard"] == {"holders": 7, "would_remove": 2, "max_remove": "10%"}
    assert "from 2 of 7 holders, over --max-remove 10%" in refused.stderr
    assert "--max-remove 2" in refused.stderr
    allowed = sandbox.run("sync", "--status-column", "tier", TIERS, "--max-remove", "2", "--json")
    assert allowed.exit_code == 0, allowed.stderr
    doc = summary_of(allowed)
    assert doc["action"] == "sync"
    assert [(p["label"], p["rows"]) for p in moves_of(doc)] == [
        ("club-gold -> club-platinum", 1),
        ("club-gold -> none", 1),
        ("club-platinum -> club-silver", 1),
        ("club-silver -> club-gold", 1),
        ("club-silver -> none", 1),
        ("new club-platinum", 1),
        ("new club-silver", 1),
    ]
    assert held(sandbox, "member07@example.com") == set()
    assert held(sandbox, "member10@example.com") == set()
    assert held(sandbox, "member05@example.com") == {"club-gold"}  # an empty cell: left be
    assert held(sandbox, "member08@example.com") == {"vip", "club-platinum"}
    club = {p.email for p in sandbox.tenant.profiles.values() if set(CLUB) & set(p.statuses)}
    assert club == {f"member0{i}@example.com" for i in (1, 2, 3, 4, 5, 6, 8)}
    assert all(len(set(CLUB) & set(p.statuses)) <= 1 for p in sandbox.tenant.profiles.values())


@pytest.mark.parametrize(
    ("status_filter", "found_by", "requests"),
    [(True, "filter", 3), (False, "tenant_scan", 2)],
    ids=["filter", "filter-ignored"],
)
def test_a_group_sync_finds_the_holders_of_every_status_of_the_group(
    sandbox: Sandbox, status_filter: bool, found_by: str, requests: int
) -> None:
    sandbox.config.status_filter = status_filter
    args = ("sync", "--status-column", "tier", TIERS, "--lookup", "single", "--dry-run")
    result = sandbox.run(*args, "--max-remove", "2", "--json")
    assert result.exit_code == 0, result.stderr
    plan = summary_of(result)["sync"]
    assert (plan["holders"], plan["would_remove"]) == (7, 2)
    # One filtered read per status of the group (or one page of the tenant, after the first
    # answer showed the filter ignored).
    assert (plan["holders_found_by"], plan["holder_requests"]) == (found_by, requests)
    rows = by_email(summary_of(result)["report"])
    assert rows["member10@example.com"]["detail"] == "would remove club-gold: not in the input"
    assert rows["member07@example.com"]["line"] == ""


def test_runs_names_the_status_column(sandbox: Sandbox) -> None:
    sandbox.run("assign", "--status-column", "tier", TIERS, "--dry-run")
    listed = sandbox.invoke("runs")
    assert "assign club-gold,club-silver,club-platinum from column tier" in listed.stdout
    [run] = json.loads(sandbox.invoke("runs", "--json").stdout)
    assert run["status_column"] == "tier"


# -- kill -9 between the two writes of a move ---------------------------------------------------


def tiered_tenant(n: int, seed: int) -> Tenant:
    """A generated tenant with the Club group, most of its profiles holding one Club tier."""
    tenant = generate_tenant(n, seed=seed)
    for handle in CLUB:
        tenant.add_status(handle, handle.title(), group_handle="club", group_name="Club")
    draw = random.Random(seed)
    for profile in tenant.profiles.values():
        tier = draw.choice([*CLUB, None])
        if tier is not None:
            profile.statuses.append(tier)
    return tenant


def first_write_landed(tenant: Tenant) -> bool:
    attached = [b for b in list(tenant.batches.values()) if b.action == "attach"]
    return any(b.status == "success" for b in attached) and not any(
        r.method == "DELETE" for r in list(tenant.requests)
    )


KILL_POINTS: dict[str, Callable[[Tenant], bool]] = {
    "first-write-landed": first_write_landed,
    "second-write-posted": lambda t: count(t, lambda m, p: m == "DELETE") >= 1,
}


@POSIX_ONLY
@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "group_rule"),
    [("first-write-landed", False), ("second-write-posted", False), ("first-write-landed", True)],
)
def test_kill_9_between_the_two_writes_of_a_move_then_rerun(
    point: str,
    group_rule: bool,
    served: Callable[[Tenant, SandboxConfig], Served],
    tmp_path: Path,
) -> None:
    emails = [p.email for p in tiered_tenant(120, 5).profiles.values()][:100]
    draw = random.Random(7)
    csv = write(tmp_path / "in.csv", [(email, draw.choice(CLUB)) for email in emails])
    args = ["assign", "--status-column", "tier", str(csv), "--yes", "--json", "--quiet"]
    args += ["--chunk-size", "10", "--lookup", "single", "--verify", "5"]
    clean, killed = tiered_tenant(120, 5), tiered_tenant(120, 5)
    at_kill: list[int] = []

    def until() -> bool:
        if not KILL_POINTS[point](killed):
            return False
        two = [p for p in list(killed.profiles.values()) if len(set(CLUB) & set(p.statuses)) > 1]
        at_kill.append(len(two))
        return True

    runs = kill_then_rerun(
        served,
        args,
        clean=clean,
        tenant=killed,
        until=until,
        tmp_path=tmp_path,
        group_rule=group_rule,
    )
    # Killed between the two writes: on a tenant that keeps siblings, customers held two tiers.
    assert at_kill and (at_kill[0] > 0) is (not group_rule)
    assert json.loads(runs.baseline.stdout)["counts"]["moved"] > 20
    assert "Traceback" not in runs.rerun.stderr
    assert snapshot(killed) == snapshot(clean)
    assert all(
        len(set(CLUB) & set(p.statuses)) == 1
        for p in killed.profiles.values()
        if p.email in set(emails)
    )
    assert json.loads(runs.rerun.stdout)["verified"]["problems"] == []

    def outcomes(path: Path) -> list[tuple[str, str, str, str]]:
        return [(r["line"], r["email"], r["outcome"], r["detail"]) for r in report_rows(path)]

    want = outcomes(tmp_path / "clean.csv")
    got = outcomes(tmp_path / "rerun.csv")
    assert [row[:3] for row in got] == [row[:3] for row in want]
    moved = [(line, detail) for line, _, outcome, detail in want if outcome == "moved"]
    assert moved == [(line, detail) for line, _, outcome, detail in got if outcome == "moved"]
