"""What a script or a cron job reads (issue 21, points 8 to 12 and 15): a summary that says
what this command did, a log whose every line names its run in one time format, ``--quiet``
that keeps stderr to warnings and errors, and writes off a terminal that go ahead and say so."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from omneo_status import cli
from omneo_status.cli.runs import UNASKED
from omneo_status.jobs import job_key
from omneo_status.locking import job_lock
from omneo_status.logfile import JsonLogReporter, utc_stamp
from omneo_status.models import Action, Outcome
from omneo_status.options import JobSpec
from omneo_status.sandbox import ServerThread, create_app, demo_tenant
from omneo_status.settings import SANDBOX_BASE_URL
from omneo_status.source import prepared_input

from .conftest import EXAMPLES, Sandbox, summary_of, write_csv
from .test_json_output import Interrupting

EMAILS = str(EXAMPLES / "emails.csv")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NOTHING = {outcome.value: 0 for outcome in Outcome}


def this_run(doc: dict[str, Any]) -> dict[str, Any]:
    """``this_run`` with only its non-zero counts."""
    shown = dict(doc["this_run"])
    shown["counts"] = {k: v for k, v in shown["counts"].items() if v}
    return shown


# -- point 8: a summary that says what this command did ---------------------------------------


def test_a_new_run_did_all_of_its_run(sandbox: Sandbox) -> None:
    doc = summary_of(sandbox.run("assign", "vip", EMAILS, "--json"))
    assert (doc["already_finished"], doc["resumed"]) == (False, False)
    assert doc["this_run"] == {
        "counts": doc["counts"],
        "batches": 1,
        "profiles_sent": 4,
        "requests": len(sandbox.tenant.requests),
    }


def test_a_rerun_of_a_finished_job_says_it_did_nothing(sandbox: Sandbox) -> None:
    first = summary_of(sandbox.run("assign", "vip", EMAILS, "--json"))
    asked = len(sandbox.tenant.requests)
    again = sandbox.run("assign", "vip", EMAILS, "--json")
    assert again.exit_code == 0
    doc = summary_of(again)
    assert (doc["already_finished"], doc["resumed"]) == (True, False)
    assert doc["counts"] == first["counts"]  # the whole run's, as before
    assert doc["this_run"] == {"counts": NOTHING, "batches": 0, "profiles_sent": 0, "requests": 0}
    assert len(sandbox.tenant.requests) == asked


def test_a_resumed_run_carries_only_what_it_did(sandbox: Sandbox) -> None:
    sandbox.config.batch_delay = 10_000.0
    gave_up = summary_of(sandbox.run("assign", "vip", EMAILS, "--poll-timeout", "60", "--json"))
    assert gave_up["exit_code"] == 5 and gave_up["this_run"]["batches"] == 1
    sandbox.tenant.process_due_batches(float("inf"))
    asked = len(sandbox.tenant.requests)
    resumed = summary_of(sandbox.run("assign", "vip", EMAILS, "--json"))
    assert (resumed["already_finished"], resumed["resumed"]) == (False, True)
    assert resumed["counts"]["assigned"] == 4 and resumed["counts"]["already_had"] == 1
    # It followed the four accepted rows to their end, and sent nothing.
    assert this_run(resumed) == {
        "counts": {"assigned": 4},
        "batches": 0,
        "profiles_sent": 0,
        "requests": len(sandbox.tenant.requests) - asked,
    }


def test_a_resumed_run_that_sends_counts_its_own_batches(
    sandbox: Sandbox, runtime: cli.Runtime
) -> None:
    # Stopped at its second request (after the handles, at the tenant's one page): nothing
    # looked up, nothing sent.
    runtime.sandbox_transport = lambda: Interrupting(sandbox.transport(), sandbox.clock, 1)
    stopped = sandbox.run("assign", "vip", EMAILS, "--json")
    assert stopped.exit_code == 130 and sandbox.writes() == []
    runtime.sandbox_transport = sandbox.transport
    doc = summary_of(sandbox.run("assign", "vip", EMAILS, "--json"))
    assert doc["resumed"] is True
    # The invalid and the duplicate row were settled by the first command, as it read them.
    assert this_run(doc)["counts"] == {
        "assigned": 4,
        "already_had": 1,
        "not_found": 1,
        "ambiguous": 1,
    }
    assert (doc["this_run"]["batches"], doc["this_run"]["profiles_sent"]) == (1, 4)


def test_rows_followed_from_sent_count_under_their_end(sandbox: Sandbox) -> None:
    sandbox.config.batch_delay = 100.0
    sent = summary_of(sandbox.run("assign", "vip", EMAILS, "--no-wait", "--json"))
    assert this_run(sent)["counts"]["sent"] == 4
    sandbox.clock.now += 200.0
    doc = summary_of(sandbox.run("resume", sent["run_id"], "--json"))
    assert doc["resumed"] is True
    assert this_run(doc)["counts"] == {"assigned": 4}


def test_the_quiet_line_says_a_finished_job_was_not_run_again(sandbox: Sandbox) -> None:
    sandbox.run("assign", "vip", EMAILS)
    [line] = sandbox.run("assign", "vip", EMAILS, "--quiet").stdout.splitlines()
    assert line.startswith("assign vip (already finished: nothing sent): 4 assigned")


# -- point 10: every log line names its run, in one time format --------------------------------


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_log_line_names_its_run_and_has_one_time_format(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    log = tmp_path / "run.jsonl"
    doc = summary_of(sandbox.run("assign", "vip", EMAILS, "--json", "--log-file", str(log)))
    lines = log_lines(log)
    # From the first line (the handles checked before the run was recorded) to the summary.
    assert lines[0] == {**lines[0], "event": "stage_start", "stage": "checking handles"}
    assert lines[-1]["event"] == "summary"
    assert {line["run_id"] for line in lines} == {doc["run_id"]}
    assert all(STAMP.match(line["ts"]) for line in lines), [line["ts"] for line in lines]
    assert [list(line)[:3] for line in lines] == [["ts", "event", "run_id"]] * len(lines)
    stamps = [line["ts"] for line in lines]
    assert stamps == sorted(stamps)  # held lines keep the time they happened


def test_a_command_that_never_had_a_run_logs_run_id_null(sandbox: Sandbox, tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    result = sandbox.run("assign", "vpi", EMAILS, "--log-file", str(log))
    assert result.exit_code == 2
    lines = log_lines(log)
    assert [line["event"] for line in lines] == ["stage_start", "stage_end", "error"]
    assert {line["run_id"] for line in lines} == {None}


def test_a_locked_out_command_logs_no_run_of_its_own(sandbox: Sandbox, tmp_path: Path) -> None:
    """Its document names the run holding the lock; its log line must not pass for that
    run's (which would read as the holder ending with exit 4)."""
    holder = "20990101T000000-abcdef-0000"
    state = Path(os.environ["OMNEO_STATE_DIR"])
    with prepared_input(EMAILS, None, state_dir=state) as source:
        key = job_key(
            JobSpec(Action.ASSIGN, ("vip",)),
            base_url=SANDBOX_BASE_URL,
            digest=source.digest,
            dry_run=False,
        )
    log = tmp_path / "run.jsonl"
    with job_lock(state, key) as held:
        held.claim(holder)
        locked = sandbox.run("assign", "vip", EMAILS, "--json", "--log-file", str(log))
    assert locked.exit_code == 4
    assert summary_of(locked)["run_id"] == holder
    [line] = log_lines(log)
    assert (line["event"], line["exit_code"], line["run_id"]) == ("error", 4, None)
    assert holder in line["error"]


def test_two_processes_sharing_a_log_file_are_told_apart(tmp_path: Path) -> None:
    log = tmp_path / "shared.jsonl"
    first, second = JsonLogReporter(log), JsonLogReporter(log)
    first.info("first, before its run")
    second.info("second, before its run")
    first.bind("run-A")
    first.info("first, during its run")
    second.bind("run-B")
    second.warn("second, during its run")
    first.info("first, again")
    late = JsonLogReporter(log)
    late.write("error", error="locked out", run_id="run-A")  # a document's own id gives way
    for reporter in (first, second, late):
        reporter.close()
    seen = [(line["run_id"], line.get("message", line.get("error"))) for line in log_lines(log)]
    assert seen == [
        ("run-A", "first, before its run"),
        ("run-A", "first, during its run"),
        ("run-B", "second, before its run"),
        ("run-B", "second, during its run"),
        ("run-A", "first, again"),
        (None, "locked out"),
    ]


def test_utc_stamp_is_the_one_format() -> None:
    moment = datetime(2026, 11, 28, 18, 47, 54, 132_999, tzinfo=UTC)
    assert utc_stamp(moment) == "2026-11-28T18:47:54.132Z"
    elsewhere = moment.astimezone(timezone(timedelta(hours=11)))
    assert utc_stamp(elsewhere) == "2026-11-28T18:47:54.132Z"
    assert STAMP.match(utc_stamp())


def test_the_trace_has_the_log_s_time_format(sandbox: Sandbox, tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    assert sandbox.invoke("statuses", "--sandbox", "--trace", str(trace)).exit_code == 0
    assert all(STAMP.match(line["ts"]) for line in log_lines(trace))


# -- point 11: --quiet means warnings and errors only on stderr -----------------------------


def test_quiet_with_the_report_on_stdout_prints_no_table(sandbox: Sandbox) -> None:
    result = sandbox.run("assign", "vip", EMAILS, "--quiet", "--report", "-")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout.startswith("line,email,outcome,profile_id,batch_id,detail\n")
    assert len(result.stdout.splitlines()) == 10
    loud = sandbox.run("remove", "vip", EMAILS, "--report", "-")
    assert "Remove vip - run" in loud.stderr  # without --quiet the table goes to stderr


# -- point 12: a write off a terminal goes ahead, and says so -------------------------------


@pytest.mark.parametrize("command", ["remove", "sync"])
def test_off_a_terminal_a_write_without_yes_goes_ahead_and_says_so(
    command: str, monkeypatch: pytest.MonkeyPatch, runtime: cli.Runtime, tmp_path: Path
) -> None:
    runtime.interactive = lambda: False  # cron, a pipe: nobody can answer
    tenant = demo_tenant()
    listed = write_csv(tmp_path / "in.csv", ["chloe.martin@example.com"])
    args = [command, "vip", str(listed), "--max-remove", "100%"][: 3 if command == "remove" else 5]
    runner = CliRunner()
    with ServerThread(create_app(tenant)) as server:
        monkeypatch.setenv("OMNEO_BASE_URL", server.base_url)
        monkeypatch.setenv("OMNEO_TOKEN", "sandbox-token")
        unasked = runner.invoke(cli.app, args)
        writes = len([r for r in tenant.requests if r.method != "GET"])
        told = runner.invoke(cli.app, [*args, "--yes", "--fresh"])
    assert unasked.exit_code == 0, unasked.stderr
    assert writes >= 1  # it wrote
    assert f"Warning: {UNASKED}" in " ".join(unasked.stderr.split())
    assert told.exit_code == 0, told.stderr
    assert "Warning" not in told.stderr


def test_the_help_of_every_write_says_that_off_a_terminal_nothing_asks() -> None:
    runner = CliRunner()
    for command in ("assign", "remove", "sync", "resume", "undo"):
        shown = " ".join(runner.invoke(cli.app, [command, "--help"]).stdout.split())
        assert "Off a terminal (cron, a pipe) nothing can ask" in shown, command


# -- point 15: the small drift a script or a reader trips on --------------------------------


def test_runs_counts_a_sync_s_holder_rows_as_its_summary_does(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    listed = write_csv(tmp_path / "tonight.csv", ["ben.carter@example.com"])
    doc = summary_of(sandbox.run("sync", "vip", str(listed), "--max-remove", "100%", "--json"))
    assert doc["rows"] == 8  # one listed row, seven holders
    [view] = json.loads(sandbox.invoke("runs", "--json").stdout)
    assert view["rows"] == sum(view["counts"].values()) == doc["rows"]
    table = sandbox.invoke("runs").stdout
    assert re.search(rf"{doc['run_id']}.*│\s+8\s+│", table), table


def test_an_undo_of_a_sync_is_titled_as_one(sandbox: Sandbox, tmp_path: Path) -> None:
    listed = write_csv(tmp_path / "tonight.csv", ["ben.carter@example.com"])
    done = summary_of(sandbox.run("sync", "vip", str(listed), "--max-remove", "100%", "--json"))
    undone = sandbox.run("undo", done["run_id"])
    assert undone.exit_code == 0, undone.stderr
    title = undone.stdout.splitlines()[0]
    assert title.startswith("Undo of sync vip - run ")
    assigned = summary_of(sandbox.run("assign", "staff", EMAILS, "--json"))
    quiet = sandbox.run("undo", assigned["run_id"], "--quiet").stdout
    assert quiet.startswith("undo of assign staff: ")


def test_the_missing_sandbox_extra_names_installs_from_a_checkout_or_a_wheel() -> None:
    from omneo_status import __version__
    from omneo_status.cli import boundary

    hint = boundary.sandbox_missing().hint or ""
    assert "pipx install '.[sandbox]'" in hint
    assert f"omneo_status-{__version__}-py3-none-any.whl[sandbox]" in hint
    assert "'omneo-status[sandbox]'" not in hint  # an install from an index: none exists


def test_an_unknown_batch_id_is_not_blamed_on_the_endpoint(sandbox: Sandbox) -> None:
    result = sandbox.invoke("batch", "0b7e1c55-2f0a-4d9e-9c1a-5d2e8f3a6b41", "--sandbox")
    assert result.exit_code == 2
    assert "may not offer" not in result.stderr
    assert "Hint: Check the id" in result.stderr
