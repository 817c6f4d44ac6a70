"""A run's typed results: ``RunSummary`` with its two renderers (``--json`` and the human
summary), the sync's ``SyncPlan`` as the journal keeps it, and the removal guard's figures."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from omneo_status.cli import console
from omneo_status.errors import ExitCode
from omneo_status.models import Action
from omneo_status.options import LookupMode, LookupPlan
from omneo_status.store.records import SyncPlan
from omneo_status.summary import BatchSummary, RunSummary, RunView, Verification
from omneo_status.sync import RemovalGuardError

from .conftest import Sandbox, summary_of, write_csv

PLAN = SyncPlan(
    holders=7,
    would_remove=2,
    max_remove="10%",
    allowed=False,
    holders_found_by="filter",
    holder_requests=1,
    planned=True,
)
# The plan as the journal has kept it since syncs began (``runs.sync``), byte for byte.
STORED = (
    '{"holders": 7, "would_remove": 2, "max_remove": "10%", "allowed": false,'
    ' "holders_found_by": "filter", "holder_requests": 1, "planned": true}'
)


def _summary() -> RunSummary:
    """A sync's dry run with every part of the summary present."""
    return RunSummary(
        run_id="20260131T000000Z-abcd",
        action=Action.ASSIGN,
        handles=("vip",),
        dry_run=True,
        rows=12,
        counts={"would_assign": 3, "would_remove": 2, "failed": 1, "sent": 6},
        batches=[
            BatchSummary("b1", "done", 3, 3, 0),
            BatchSummary("b2", "failed", 3, 0, 3, resent=3),
            BatchSummary("b3", "lost", 3, 0, 0, resent=2),
            BatchSummary("b4", "processing", 3, 0, 0),
        ],
        verified=Verification(checked=4, ok=3, problems=["p9 lacks [vip]"], notes=["expired"]),
        report=Path("/tmp/reports/run.csv"),
        exit_code=ExitCode.ROWS_FAILED,
        state="finished",
        lookup=LookupPlan(LookupMode.BULK, 2, "7 addresses", warning="a [bold] case"),
        sync=PLAN,
    )


def test_the_human_summary_is_drawn_from_the_run_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console.render_summary(_summary(), title_note=" (resumed)")
    lines = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == "Dry run of sync vip - run 20260131T000000Z-abcd (resumed)"
    assert [line for line in lines if line.startswith("│")] == [
        "│ would_assign │    3 │",
        "│ would_remove │    2 │",
        "│ failed       │    1 │",
        "│ sent         │    6 │",
        "│ total        │   12 │",
    ]
    assert lines[-8:] == [
        "Batches: 4 (1 succeeded, 1 failed): b1, b2, b3 (+1 more)",
        "Sent again: 5 rows, once, from 2 batches the tenant lost or that stood still:"
        " b2 (failed), b3 (lost)",
        "Lookup: bulk (about 2 requests): 7 addresses",
        "  warning: a [bold] case",
        "Verified: 3/4 profiles, 1 problem",
        "  - p9 lacks [vip]",
        "  note: expired",
        "Report: /tmp/reports/run.csv",
    ]


def test_the_one_line_summary_says_what_the_json_says() -> None:
    summary = _summary()
    document = summary.to_json()
    line = console.summary_line(summary)
    assert line == (
        "dry run of sync vip: 3 would_assign, 2 would_remove, 1 failed, 6 sent (12 rows);"
        " run 20260131T000000Z-abcd; report /tmp/reports/run.csv"
    )
    assert document["action"] == "sync" and document["report"] in line
    plain = replace(summary, sync=None, dry_run=False, counts={})
    assert plain.to_json()["action"] == "assign" and "sync" not in plain.to_json()
    assert console.summary_line(plain).startswith("assign vip: nothing to do (12 rows)")


def test_the_sync_plan_reads_what_the_journal_kept_and_keeps_it_in_the_same_words() -> None:
    plan = SyncPlan.of(json.loads(STORED))
    assert plan == PLAN
    assert json.dumps(PLAN.stored()) == STORED
    assert list(PLAN.to_json()) == [
        "holders",
        "would_remove",
        "max_remove",
        "allowed",
        "holders_found_by",
        "holder_requests",
    ]
    assert SyncPlan.of({}) is None  # a sync that has not planned yet
    assert SyncPlan.of(None) is None  # not a sync


def test_the_removal_guard_error_carries_the_plan() -> None:
    error = RemovalGuardError("stopped", hint="allow it", plan=PLAN)
    assert error.plan.would_remove == 2 and not error.plan.allowed
    assert error.to_json()["guard"] == {"holders": 7, "would_remove": 2, "max_remove": "10%"}


def test_a_run_in_the_runs_list_keeps_its_json_keys_in_order() -> None:
    view = RunView(
        run_id="r",
        created_at="c",
        updated_at="u",
        action="sync",
        handles=("vip",),
        dry_run=False,
        input_name="in.csv",
        base_url="b",
        state="finished",
        rows=1,
        counts={"assigned": 1},
        report=None,
        undo_of=None,
    )
    document = view.to_json()
    assert list(document) == [
        "run_id",
        "created_at",
        "updated_at",
        "action",
        "handles",
        "dry_run",
        "input",
        "base_url",
        "state",
        "rows",
        "counts",
        "report",
        "undo_of",
        "exit_code",
        "match",
        "status_column",
    ]
    assert document["handles"] == ["vip"] and document["input"] == "in.csv"


def test_a_sync_keeps_its_plan_in_the_journal_as_it_always_has(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    listed = write_csv(tmp_path / "in.csv", ["chloe.martin@example.com"])
    result = sandbox.run("sync", "vip", str(listed), "--dry-run", "--json")
    assert result.exit_code == 3  # six of seven holders would go: over the default 10%
    run_id = summary_of(result)["run_id"]
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite") as db:
        [(stored,)] = db.execute("SELECT sync FROM runs WHERE run_id=?", (run_id,)).fetchall()
    assert stored == (
        '{"holders": 7, "would_remove": 6, "max_remove": "10%", "allowed": false,'
        ' "holders_found_by": "filter", "holder_requests": 1, "planned": true}'
    )
    assert summary_of(result)["sync"] == {
        key: value for key, value in json.loads(stored).items() if key != "planned"
    }
