"""assign and remove through the CLI against an in-process sandbox: outcomes, additive writes,
chunking, dry runs, the report, the JSON summary and the exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from omneo_status import cli
from omneo_status.sandbox import generate_tenant

from .conftest import EXAMPLES, Sandbox, report_rows, summary_of, write_csv

EMAILS = str(EXAMPLES / "emails.csv")


def batch_posts(box: Sandbox) -> list[Any]:
    return [r for r in box.writes() if r.path.endswith("/profile/status/batch.json")]


def test_quick_start_shows_every_outcome_and_exits_zero(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for outcome in (
        "assigned",
        "already_had",
        "not_found",
        "ambiguous",
        "invalid_email",
        "duplicate",
    ):
        assert outcome in out
    assert "Verified: 4/4 profiles, all good" in out
    assert "Error" not in result.stderr


def test_packaged_sandbox_without_test_seams() -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli.app, ["assign", "vip", EMAILS, "--sandbox", "--json"])
    assert result.exit_code == 0, result.stderr
    counts = json.loads(result.stdout)["counts"]
    assert counts["assigned"] == 4
    assert counts["already_had"] == 1


def test_json_summary_has_the_documented_shape(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS, "--json")
    assert result.exit_code == 0
    doc = summary_of(result)
    assert set(doc) == {
        "action",
        "handles",
        "match",
        "input",
        "dry_run",
        "run_id",
        "rows",
        "counts",
        "batches",
        "verified",
        "report",
        "exit_code",
        "state",
        "lookup",
        "already_finished",
        "resumed",
        "this_run",
        "status_column",
    }
    assert doc["state"] == "finished" and set(doc["lookup"]) == {
        "mode",
        "requests",
        "reason",
        "warning",
    }
    # Nine addresses and a 31-profile tenant: its one page is the cheapest plan.
    assert doc["lookup"]["mode"] == "scan" and doc["lookup"]["requests"] == 1
    assert doc["action"] == "assign" and doc["handles"] == ["vip"] and doc["dry_run"] is False
    assert doc["input"] == EMAILS
    assert doc["rows"] == 9
    assert doc["counts"] == {
        "assigned": 4,
        "already_had": 1,
        "would_assign": 0,
        "moved": 0,
        "would_move": 0,
        "removed": 0,
        "did_not_have": 0,
        "would_remove": 0,
        "not_found": 1,
        "ambiguous": 1,
        "invalid_email": 1,
        "invalid_key": 0,
        "duplicate": 1,
        "no_status": 0,
        "failed": 0,
        "sent": 0,
    }
    [batch] = doc["batches"]
    assert batch["status"] == "success" and batch["profiles"] == 4
    assert batch["success_count"] == 4 and batch["failed_count"] == 0
    assert doc["verified"] == {"checked": 4, "ok": 4, "problems": [], "notes": []}
    assert doc["exit_code"] == 0
    assert Path(doc["report"]).exists()


def test_report_has_one_row_per_input_row_in_order(sandbox: Sandbox, tmp_path: Path) -> None:
    report = tmp_path / "out" / "report.csv"
    result = sandbox.run("assign", "vip", EMAILS, "--report", str(report))
    assert result.exit_code == 0
    rows = report_rows(report)
    assert list(rows[0]) == ["line", "email", "outcome", "profile_id", "batch_id", "detail"]
    assert [r["line"] for r in rows] == [str(n) for n in range(2, 11)]
    by_email = {r["email"]: r for r in rows}
    assert by_email["ava.nguyen@example.com"]["outcome"] == "assigned"
    assert by_email["ava.nguyen@example.com"]["batch_id"]
    assert by_email["chloe.martin@example.com"]["outcome"] == "already_had"
    assert by_email["Grace.Hall@Example.com"]["outcome"] == "assigned"
    assert by_email["nobody@example.com"]["outcome"] == "not_found"
    assert by_email["sam.taylor@example.com"]["outcome"] == "ambiguous"
    assert by_email["not-an-email"]["outcome"] == "invalid_email"
    assert by_email["AVA.NGUYEN@example.com"]["outcome"] == "duplicate"
    if os.name != "nt":
        assert report.stat().st_mode & 0o777 == 0o600


def test_assign_is_additive_and_never_puts(sandbox: Sandbox) -> None:
    before = {p.id: list(p.statuses) for p in sandbox.tenant.profiles.values()}
    result = sandbox.run("assign", "vip", EMAILS)
    assert result.exit_code == 0
    assert sandbox.statuses("ben.carter@example.com") == ["staff", "vip"]
    assert sandbox.statuses("grace.hall@example.com") == ["staff", "gold", "vip"]
    assert sandbox.statuses("chloe.martin@example.com") == ["vip", "media"]
    writes = sandbox.writes()
    assert writes and all(
        r.method == "POST" and r.path.endswith("/profile/status/batch.json") for r in writes
    )
    [post] = writes
    sent = {item["profile_id"]: item["statuses"] for item in post.body["profiles"]}
    assert all(handles == ["vip"] for handles in sent.values())
    # Nobody else was touched: the ambiguous pair and strangers keep what they had.
    for profile in sandbox.tenant.profiles.values():
        if profile.id not in sent:
            assert list(profile.statuses) == before[profile.id]


def test_only_missing_handles_are_sent(sandbox: Sandbox, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "a.csv", ["grace.hall@example.com", "ella.brown@example.com"])
    result = sandbox.run("assign", "vip,gold", str(csv), "--json")
    assert result.exit_code == 0
    [post] = batch_posts(sandbox)
    sent = {item["profile_id"]: item["statuses"] for item in post.body["profiles"]}
    grace = sandbox.tenant.by_email("grace.hall@example.com")[0].id
    ella = sandbox.tenant.by_email("ella.brown@example.com")[0].id
    assert sent == {grace: ["vip"], ella: ["vip", "gold"]}


def test_remove_detaches_only_the_handle(sandbox: Sandbox, tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "r.csv",
        ["chloe.martin@example.com", "henry.king@example.com", "ava.nguyen@example.com"],
    )
    result = sandbox.run("remove", "vip", str(csv), "--json")
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["counts"]["removed"] == 2 and doc["counts"]["did_not_have"] == 1
    assert sandbox.statuses("chloe.martin@example.com") == ["media"]
    assert sandbox.statuses("henry.king@example.com") == []
    [delete] = sandbox.writes()
    assert delete.method == "DELETE"


def test_dry_run_writes_nothing_and_matches_the_real_run(sandbox: Sandbox, tmp_path: Path) -> None:
    dry_report = tmp_path / "dry.csv"
    dry = sandbox.run("assign", "vip", EMAILS, "--dry-run", "--report", str(dry_report))
    assert dry.exit_code == 0
    assert sandbox.writes() == []
    real_report = tmp_path / "real.csv"
    real = sandbox.run("assign", "vip", EMAILS, "--report", str(real_report))
    assert real.exit_code == 0
    planned = {r["line"]: r["outcome"] for r in report_rows(dry_report)}
    done = {r["line"]: r["outcome"] for r in report_rows(real_report)}
    assert {k for k, v in planned.items() if v == "would_assign"} == {
        k for k, v in done.items() if v == "assigned"
    }
    assert {k: v for k, v in planned.items() if v != "would_assign"} == {
        k: v for k, v in done.items() if v != "assigned"
    }


def test_unknown_handle_stops_before_anything_else(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vpi", EMAILS)
    assert result.exit_code == 2
    assert "Unknown status handle `vpi`" in result.stderr
    assert "did you mean `vip`" in result.stderr
    assert "Hint: List the tenant's statuses" in result.stderr
    assert result.stdout == ""
    assert sandbox.writes() == []
    assert {r.path for r in sandbox.tenant.requests} == {"/api/v3/statuses"}


@pytest.mark.parametrize(
    ("rows", "chunk", "expected"), [(6, 3, [3, 3]), (7, 3, [3, 3, 1]), (5, 500, [5])]
)
def test_chunking_at_the_boundary(
    sandbox: Sandbox, tmp_path: Path, rows: int, chunk: int, expected: list[int]
) -> None:
    sandbox.tenant = generate_tenant(50, seed=3)
    targets = [p.email for p in sandbox.tenant.profiles.values() if "vip" not in p.statuses]
    csv = write_csv(tmp_path / "c.csv", targets[:rows])
    result = sandbox.run("assign", "vip", str(csv), "--chunk-size", str(chunk), "--json")
    assert result.exit_code == 0, result.stderr
    sizes = [len(r.body["profiles"]) for r in batch_posts(sandbox)]
    assert sorted(sizes, reverse=True) == expected
    assert summary_of(result)["counts"]["assigned"] == rows


def test_chunk_size_over_500_is_refused(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS, "--chunk-size", "501")
    assert result.exit_code == 2
    assert "--chunk-size" in result.stderr
    assert sandbox.tenant.requests == []


def test_a_failed_batch_item_is_mapped_to_its_row(sandbox: Sandbox, tmp_path: Path) -> None:
    dan = sandbox.tenant.by_email("dan.lee@example.com")[0]
    sandbox.tenant.fail_profile_ids.add(dan.id)
    report = tmp_path / "r.csv"
    result = sandbox.run("assign", "vip", EMAILS, "--json", "--report", str(report))
    assert result.exit_code == 3
    doc = summary_of(result)
    assert doc["counts"]["failed"] == 1 and doc["counts"]["assigned"] == 3
    [row] = [r for r in report_rows(report) if r["outcome"] == "failed"]
    assert row["email"] == "dan.lee@example.com"
    assert row["detail"] == "Injected failure"
    assert row["profile_id"] == dan.id


def test_batches_answered_404_fall_back_to_reading_profiles(sandbox: Sandbox) -> None:
    sandbox.config.batches_endpoint = False
    result = sandbox.run("assign", "vip", EMAILS, "--json")
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["counts"]["assigned"] == 4
    assert any(
        r.path.startswith("/api/v3/batches/") and r.status == 404 for r in sandbox.tenant.requests
    )


def test_batch_delay_is_polled_to_the_end(sandbox: Sandbox) -> None:
    sandbox.config.batch_delay = 20.0
    result = sandbox.run("assign", "vip", EMAILS, "--json")
    assert result.exit_code == 0, result.stderr
    polls = [r for r in sandbox.tenant.requests if r.path.startswith("/api/v3/batches/")]
    assert len(polls) > 3  # pending, pending, ..., success
    assert sandbox.statuses("ava.nguyen@example.com") == ["vip"]
    waits = sandbox.clock.slept
    assert waits and max(waits) <= 10.0 and min(waits) >= 0.5 * 0.5


def test_poll_timeout_gives_exit_5_and_a_resume_command(sandbox: Sandbox) -> None:
    sandbox.config.batch_delay = 10_000.0
    result = sandbox.run("assign", "vip", EMAILS, "--poll-timeout", "60", "--json")
    assert result.exit_code == 5
    doc = summary_of(result)
    assert doc["counts"]["sent"] == 4
    assert "omneo-status resume" in result.stderr or "omneo-status resume" in result.stdout


def test_no_wait_sends_and_lists_batches(sandbox: Sandbox) -> None:
    sandbox.config.batch_delay = 100.0
    result = sandbox.run("assign", "vip", EMAILS, "--no-wait", "--json")
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["counts"]["sent"] == 4
    assert len(doc["batches"]) == 1
    assert not any(r.path.startswith("/api/v3/batches/") for r in sandbox.tenant.requests)


def test_strict_turns_skips_into_failures(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS, "--strict")
    assert result.exit_code == 3


def test_verification_catches_a_wiped_status(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omneo_status.sandbox import Tenant

    original = Tenant.process_due_batches

    def wipe_after(
        self: Tenant, now: float, wall_now: float | None = None, *, group_rule: bool = False
    ) -> int:
        count = original(self, now, wall_now, group_rule=group_rule)
        ben = self.by_email("ben.carter@example.com")[0]
        if "vip" in ben.statuses:
            ben.statuses[:] = ["vip"]  # as a replacing PUT would
        return count

    monkeypatch.setattr(Tenant, "process_due_batches", wipe_after)
    result = sandbox.run("assign", "vip", EMAILS, "--json", "--verify", "10")
    assert result.exit_code == 3
    problems = summary_of(result)["verified"]["problems"]
    assert any("ben.carter@example.com" in p and "staff" in p for p in problems)


def test_verify_zero_turns_verification_off(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS, "--json", "--verify", "0")
    assert summary_of(result)["verified"]["checked"] == 0


def test_bulk_lookup_ignored_by_a_lenient_server_falls_back(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.config.email_in_filter = False
    result = sandbox.run("assign", "vip", EMAILS, "--lookup", "bulk", "--json", "-v")
    assert result.exit_code == 0, result.stderr
    assert summary_of(result)["counts"]["assigned"] == 4
    assert "does not honour filter[email][in]" in result.stderr
    # Only the five intended profiles changed hands: nobody else got vip.
    holders = {p.email for p in sandbox.tenant.profiles.values() if "vip" in p.statuses}
    originally = {
        p.email
        for p in __import__("omneo_status.sandbox", fromlist=["x"]).demo_tenant().profiles.values()
        if "vip" in p.statuses
    }
    assert holders - originally == {
        "ava.nguyen@example.com",
        "ben.carter@example.com",
        "grace.hall@example.com",
        "dan.lee@example.com",
    }


def test_bulk_lookup_honoured_uses_in_filter(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS, "--lookup", "bulk", "--json")
    assert result.exit_code == 0
    queries = [dict(r.query) for r in sandbox.tenant.requests if r.path == "/api/v3/profiles"]
    assert any("filter[email][in]" in q for q in queries)
    assert summary_of(result)["counts"]["assigned"] == 4


def test_a_server_ignoring_the_single_email_filter_touches_nobody(
    sandbox: Sandbox, runtime: cli.Runtime
) -> None:
    import httpx

    from omneo_status.sandbox import create_app

    inner = create_app(sandbox.tenant, sandbox.config)

    async def lenient(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            query = scope["query_string"].decode()
            kept = "&".join(p for p in query.split("&") if not p.startswith("filter%5Bemail%5D"))
            scope = {**scope, "query_string": kept.encode()}
        await inner(scope, receive, send)

    runtime.sandbox_transport = lambda: httpx.ASGITransport(app=lenient)
    result = sandbox.run("assign", "vip", EMAILS, "--lookup", "single", "--json")
    assert result.exit_code == 3
    doc = summary_of(result)
    assert doc["counts"]["failed"] == 7 and doc["counts"]["assigned"] == 0
    assert sandbox.writes() == []


@pytest.mark.parametrize(
    ("content", "extra"),
    [
        (
            b"\xef\xbb\xbfEmail;Name\r\nava.nguyen@example.com;Ava\r\nben.carter@example.com;Ben\r\n",
            [],
        ),
        (b"first\tE-Mail\nAva\tava.nguyen@example.com\nBen\tben.carter@example.com\n", []),
        (b"ava.nguyen@example.com\nben.carter@example.com\n", []),
        (
            b'id,contact\n1,ava.nguyen@example.com\n\n2,"ben.carter@example.com"\n',
            ["--column", "contact"],
        ),
    ],
    ids=["bom-semicolon-crlf", "tab", "no-header", "named-column"],
)
def test_csv_shapes(sandbox: Sandbox, tmp_path: Path, content: bytes, extra: list[str]) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    result = sandbox.run("assign", "vip", str(path), "--json", *extra)
    assert result.exit_code == 0, result.stderr
    assert summary_of(result)["counts"]["assigned"] == 2


def test_stdin_as_dash(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "assign", "vip", "-", "--json", input="email\nava.nguyen@example.com\nnobody@example.com\n"
    )
    assert result.exit_code == 0, result.stderr
    doc = summary_of(result)
    assert doc["counts"]["assigned"] == 1 and doc["counts"]["not_found"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"email\n\xff\xfe@x.com\n", "line 2: not valid UTF-8"),
        (b"name,phone\nava,123\n", "no email column"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    sandbox: Sandbox, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = sandbox.run("assign", "vip", str(path))
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.stderr
    assert sandbox.tenant.requests == []


def test_missing_file(sandbox: Sandbox, tmp_path: Path) -> None:
    result = sandbox.run("assign", "vip", str(tmp_path / "nope.csv"))
    assert result.exit_code == 2
    assert "Cannot read" in result.stderr


def test_header_only_file_is_an_empty_run(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "h.csv", [])
    result = sandbox.run("assign", "vip", str(path), "--json")
    assert result.exit_code == 0
    assert summary_of(result)["rows"] == 0
    assert sandbox.writes() == []


def test_confirmation_prompt_no_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, runtime: cli.Runtime
) -> None:
    from omneo_status.sandbox import ServerThread, create_app, demo_tenant

    runtime.interactive = lambda: True
    tenant = demo_tenant()
    runner = CliRunner()
    with ServerThread(create_app(tenant)) as server:
        monkeypatch.setenv("OMNEO_BASE_URL", server.base_url)
        monkeypatch.setenv("OMNEO_TOKEN", "sandbox-token")
        result = runner.invoke(cli.app, ["assign", "vip", EMAILS], input="n\n")
        assert result.exit_code == 1
        assert "nothing was written" in result.stderr
        assert [r for r in tenant.requests if r.method != "GET"] == []
        again = runner.invoke(cli.app, ["assign", "vip", EMAILS], input="y\n")
    assert again.exit_code == 0, again.stderr
    assert "Plan" in again.stderr and "Assign vip on 4 profiles at 127.0.0.1:" in again.stderr
    assert tenant.by_email("ava.nguyen@example.com")[0].statuses == ["vip"]


def test_sandbox_rehearsals_do_not_ask(sandbox: Sandbox, runtime: cli.Runtime) -> None:
    runtime.interactive = lambda: True
    result = sandbox.invoke("assign", "vip", EMAILS, "--sandbox")
    assert result.exit_code == 0
    assert "Plan" not in result.stderr


def test_verbose_lines_show_with_json_off_a_terminal_and_not_with_quiet(sandbox: Sandbox) -> None:
    """``--json -v 2>> log`` keeps the -v lines (a cron job's log); ``--quiet`` silences them."""
    shown = sandbox.run("assign", "vip", EMAILS, "--json", "-v")
    assert shown.exit_code == 0, shown.stderr
    assert "queued as batch" in shown.stderr
    silent = sandbox.run("remove", "vip", EMAILS, "--json", "-v", "--quiet")
    assert silent.exit_code == 0, silent.stderr
    assert summary_of(silent)["counts"]["removed"] == 5  # a batch was queued, and not said
    assert "queued as batch" not in silent.stderr
