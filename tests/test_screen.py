"""What the terminal shows (issue 21, points 1 to 7): each stage's progress in its own unit,
ETAs only once founded, TERM=dumb, the plan and the prompt's words, numbers and plurals, narrow
terminals, and Typer's own usage errors in the one error format. The prompt kept on a real
screen is in ``test_terminal.py`` (a pseudo-terminal)."""

from __future__ import annotations

import io
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from omneo_status import cli
from omneo_status.cli import console
from omneo_status.cli.console import ConsoleReporter, Display
from omneo_status.cli.progress import ETA_AFTER, Stages
from omneo_status.events import Step
from omneo_status.keys import MatchKey
from omneo_status.models import Action
from omneo_status.options import JobSpec
from omneo_status.run.engine import Preview
from omneo_status.sandbox import generate_tenant
from omneo_status.settings import tenant_name
from omneo_status.summary import RunView
from omneo_status.wording import closest, count

from .conftest import EXAMPLES, Sandbox, VirtualClock, write_csv

EMAILS = str(EXAMPLES / "emails.csv")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- numbers and words -------------------------------------------------------------------------


def test_one_pluralising_helper_reads_every_count_one_way() -> None:
    assert count(1, "request") == "1 request"
    assert count(0, "request") == "0 requests"
    assert count(4479, "profile") == "4,479 profiles"
    assert count(2, "batch") == "2 batches"
    assert count(1, "single lookup") == "1 single lookup"
    assert count(3, "address") == "3 addresses"


def test_did_you_mean_only_when_the_word_is_close() -> None:
    options = ["--dry-run", "--verbose", "--json", "--yes"]
    assert closest("--dry-rn", options) == "--dry-run"
    assert closest("--jsn", options) == "--json"
    assert closest("--bogus", options) is None  # Click suggested --verbose
    assert closest("asign", ["assign", "remove"]) == "assign"


# -- stages in their own units, and founded ETAs -----------------------------------------------


def test_a_stage_counts_in_its_own_unit() -> None:
    clock = Clock()
    stages = Stages(clock)
    stages.start(Step.SCAN, 600)
    stages.advance(Step.SCAN, 335)
    assert stages.tallies[Step.SCAN].count() == "335/600 pages"
    stages.start(Step.HOLDERS, None)
    stages.advance(Step.HOLDERS, 1)
    assert stages.tallies[Step.HOLDERS].count() == "1 profile"
    stages.start(Step.HANDLES, None)
    assert stages.line(Step.HANDLES) == "checking handles: under way"
    stages.finish(Step.SCAN)
    assert stages.ended(Step.SCAN) == "scanning the tenant: 335 pages done"


def test_no_eta_before_it_is_founded() -> None:
    clock = Clock()
    stages = Stages(clock)
    stages.start(Step.SCAN, 600)
    assert stages.eta(Step.SCAN) is None  # nothing done
    clock.now += 10
    stages.advance(Step.SCAN, 10)  # under a tenth of the pages
    assert stages.eta(Step.SCAN) is None
    assert stages.line(Step.SCAN) == "scanning the tenant: 10/600 pages (1.0/s)"
    stages.advance(Step.SCAN, 50)
    assert stages.eta(Step.SCAN) == pytest.approx(90.0)  # 540 pages at 6 a second
    assert stages.line(Step.SCAN).endswith("(6.0/s, ETA 0:01:30)")


def test_no_rate_or_eta_in_the_first_instants_of_a_stage() -> None:
    clock = Clock()
    stages = Stages(clock)
    stages.start(Step.WAIT, 100)
    clock.now += ETA_AFTER / 2
    stages.advance(Step.WAIT, 25)
    stages.advance(Step.WAIT, 25)
    assert stages.eta(Step.WAIT) is None
    assert stages.rate(Step.WAIT) is None  # a burst in the first instants is no rate
    assert stages.line(Step.WAIT) == "waiting for batches: 50/100 rows"
    clock.now += ETA_AFTER
    assert stages.eta(Step.WAIT) is not None


def test_an_eta_grows_while_nothing_moves_instead_of_standing_still() -> None:
    clock = Clock()
    stages = Stages(clock)
    stages.start(Step.WAIT, 4479)
    clock.now += 8
    stages.advance(Step.WAIT, 1000)
    assert stages.eta(Step.WAIT) is None  # one batch ending is one jump, not a rate
    stages.advance(Step.WAIT, 500)
    first = stages.eta(Step.WAIT)
    clock.now += 5  # no batch finished for five seconds
    later = stages.eta(Step.WAIT)
    assert first is not None and later is not None and later > first


def test_no_eta_while_an_earlier_stage_still_feeds_this_one() -> None:
    clock = Clock()
    stages = Stages(clock)
    stages.start(Step.RESOLVE, 1000)
    stages.start(Step.SEND, None)
    stages.extend(Step.SEND, 250)
    clock.now += 10
    stages.advance(Step.RESOLVE, 200)
    stages.advance(Step.RESOLVE, 200)
    stages.advance(Step.SEND, 250)
    stages.extend(Step.SEND, 250)
    assert stages.eta(Step.RESOLVE) is not None
    assert stages.eta(Step.SEND) is None  # its total grows while rows are resolved
    stages.advance(Step.RESOLVE, 600)
    stages.finish(Step.RESOLVE)
    assert stages.eta(Step.SEND) is None  # timed from now on
    clock.now += ETA_AFTER
    stages.advance(Step.SEND, 50)
    stages.advance(Step.SEND, 50)
    assert stages.eta(Step.SEND) == pytest.approx(ETA_AFTER * 150 / 100)


def test_units_an_earlier_attempt_did_count_but_not_in_the_rate() -> None:
    clock = Clock()
    stages = Stages(clock)
    stages.start(Step.SCAN, 600, done=300)
    clock.now += 10
    stages.advance(Step.SCAN, 30)
    tally = stages.tallies[Step.SCAN]
    assert tally.count() == "330/600 pages" and tally.rate(clock()) == 3.0


# -- the console reporter ------------------------------------------------------------------


def recording(width: int = 120, *, terminal: bool = False) -> Console:
    return Console(
        file=io.StringIO(), record=True, width=width, force_terminal=terminal, no_color=True
    )


def test_plain_lines_say_each_stage_in_its_unit() -> None:
    clock = Clock()
    screen = recording()
    shown = ConsoleReporter(display=Display.LIVE, clock=clock, console=screen)
    assert shown.display is Display.LINES  # not a terminal
    shown.start(Step.SCAN, 600, done=2)
    clock.now += 10
    shown.advance(Step.SCAN, 48)
    shown.advance(Step.SCAN, 50)
    shown.tick()
    shown.finish(Step.SCAN)
    assert screen.export_text().splitlines() == [
        "[0:00:10] scanning the tenant: 100/600 pages (9.8/s, ETA 0:00:51)",
        "scanning the tenant: 100 pages done",
    ]


def test_term_dumb_on_a_terminal_gets_the_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    screen = recording(terminal=True)
    shown = ConsoleReporter(display=Display.LIVE, clock=Clock(), console=screen)
    assert screen.is_terminal and shown.display is Display.LINES
    monkeypatch.setenv("TERM", "xterm-256color")
    live = ConsoleReporter(display=Display.LIVE, clock=Clock(), console=recording(terminal=True))
    assert live.display is Display.LIVE


def test_the_live_display_shows_pages_and_leaves_out_an_unfounded_eta() -> None:
    clock = Clock()
    screen = recording(terminal=True)
    shown = ConsoleReporter(display=Display.LIVE, clock=clock, console=screen)
    with shown.showing():
        shown.start(Step.RESOLVE, 4792)
        shown.start(Step.SCAN, 600)
        clock.now += 3
        shown.advance(Step.SCAN, 20)
        assert shown._progress is not None
        frame = _frame(screen, shown)
        assert re.search(r"scanning the tenant .* 20/600 pages +6\.7/s +0:00:03\s*$", frame, re.M)
        assert "ETA" not in frame and "-:--:--" not in frame
        clock.now += 3
        shown.advance(Step.SCAN, 100)
        frame = _frame(screen, shown)
        assert re.search(r"120/600 pages +20/s +0:00:06 ETA 0:00:24", frame)
        assert re.search(r"resolving .* 0/4,792 rows +0:00:06\s*$", frame, re.M)  # no ETA


def _frame(screen: Console, shown: ConsoleReporter) -> str:
    """The live display as drawn now."""
    assert shown._progress is not None
    with screen.capture() as captured:
        screen.print(shown._progress.get_renderable())
    return captured.get()


def test_the_live_display_fits_narrow_terminals_without_cutting_a_count() -> None:
    clock = Clock()
    for width, bar in ((120, True), (80, True), (60, False)):
        screen = recording(width, terminal=True)
        shown = ConsoleReporter(display=Display.LIVE, clock=clock, console=screen)
        with shown.showing():
            shown.start(Step.WAIT, 4479)
            shown.advance(Step.WAIT, 1500)
            frame = _frame(screen, shown)
        assert "1,500/4,479 rows" in frame, (width, frame)
        assert ("━" in frame) is bar, (width, frame)


# -- the plan and the prompt ---------------------------------------------------------------


def test_the_plan_reads_as_the_summary_and_the_prompt_names_the_job_and_tenant(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    spec = JobSpec(Action.ASSIGN, ("vip",), match=MatchKey.parse("email"))
    counts = {"not_found": 12, "already_had": 1500, "duplicate": 9}
    preview = Preview(spec, counts, to_send=4479, in_flight=500)
    assert console.confirm_plan(preview, "acme") is True
    lines = [line.rstrip() for line in capsys.readouterr().err.splitlines()]
    assert lines[0] == "Plan: assign vip at acme"
    assert [line for line in lines if line.startswith("│")] == [
        "│ already_had │ 1,500 │",  # the summary's order, not the alphabet's
        "│ not_found   │    12 │",
        "│ duplicate   │     9 │",
        "│ sent before │   500 │",
        "│ to assign   │ 4,479 │",
        "│ total       │ 6,500 │",  # a resumed run's plan adds up to its rows
    ]
    assert lines[-1] == "Assign vip on 4,479 profiles at acme? [y/n] (n):"


def test_a_resumed_runs_prompt_names_its_job_and_tenant(
    runtime: cli.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omneo_status.sandbox import ServerThread, create_app, demo_tenant

    runtime.interactive = lambda: True
    runner = CliRunner()
    with ServerThread(create_app(demo_tenant())) as server:
        monkeypatch.setenv("OMNEO_BASE_URL", server.base_url)
        monkeypatch.setenv("OMNEO_TOKEN", "sandbox-token")
        said_no = runner.invoke(cli.app, ["assign", "vip", EMAILS], input="n\n")
        assert said_no.exit_code == 1, said_no.stderr
        run_id = re.findall(r"^Run (\S+);", said_no.stderr, re.M)[0]
        resumed = runner.invoke(cli.app, ["resume", run_id], input="n\n")
    assert resumed.exit_code == 1, resumed.stderr
    where = server.base_url.removeprefix("http://").removesuffix("/api")
    assert f"Plan: assign vip at {where}" in resumed.stderr
    assert f"Assign vip on 4 profiles at {where}? [y/n] (n): " in resumed.stderr
    rows = [line.split() for line in resumed.stderr.splitlines() if line.startswith("│")]
    assert rows[-2:] == [["│", "to", "assign", "│", "4", "│"], ["│", "total", "│", "9", "│"]]


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://api.acme.getomneo.com/api", "acme"),
        ("http://127.0.0.1:8765/api", "127.0.0.1:8765"),
        ("https://omneo.example.org/api", "omneo.example.org"),
    ],
)
def test_the_prompt_names_the_tenant(url: str, name: str) -> None:
    assert tenant_name(url) == name


# -- the summary -----------------------------------------------------------------------------


def test_the_summary_uses_thousands_separators_and_agreeing_nouns(
    sandbox: Sandbox, clock: VirtualClock, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(1200)
    emails = [f"customer{i}@example.com" for i in range(1, 1101)]
    path = write_csv(tmp_path / "many.csv", emails)
    result = sandbox.run("assign", "gold", str(path), "--lookup", "scan", "--verify", "1")
    assert result.exit_code == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert rows[-1].split() == ["│", "total", "│", "1,100", "│"]
    assert "Verified: 1/1 profile, all good" in result.stdout
    assert "Lookup: scan (about 12 requests): --lookup scan: reading the tenant's 1,200" in (
        result.stdout
    )
    quiet = sandbox.run("remove", "gold", str(write_csv(tmp_path / "one.csv", emails[:1])), "-q")
    assert "(1 row);" in quiet.stdout


# -- progress off a terminal, end to end -------------------------------------------------------


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_a_scan_shows_its_pages_off_a_terminal(
    verbose: list[str], sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(3000)
    sandbox.config.rate_limit, sandbox.config.rate_window = 2, 1.0  # 30 pages: ~15 s
    path = write_csv(tmp_path / "few.csv", ["customer7@example.com", "customer2999@example.com"])
    result = sandbox.run("assign", "gold", str(path), "--lookup", "scan", *verbose)
    assert result.exit_code == 0, result.stderr
    ticks = re.findall(r"^\[[\d:]+\] scanning the tenant: (\d+)/30 pages", result.stderr, re.M)
    assert ticks and all(0 < int(done) < 30 for done in ticks)
    assert "scanning the tenant: 30 pages done" in result.stderr
    assert "-:--:--" not in result.stderr and "unknown" not in result.stderr


def test_a_syncs_holders_are_read_in_profiles(sandbox: Sandbox) -> None:
    result = sandbox.run("sync", "vip", EMAILS, "--lookup", "single", "--max-remove", "100%")
    assert result.exit_code == 0, result.stderr
    assert re.search(r"^reading the holders: 7 profiles done$", result.stderr, re.M)


# -- narrow terminals ------------------------------------------------------------------------


def _views(inputs: list[str]) -> list[RunView]:
    return [
        RunView(
            run_id=f"20261203T14{n:02d}41-b6c4df-7d3{n}",
            created_at="2026-12-03T14:50:41Z",
            updated_at="2026-12-03T14:51:41Z",
            action="assign",
            handles=("vip",),
            dry_run=False,
            input_name=name,
            base_url="https://api.acme.getomneo.com/api",
            state="finished",
            rows=4479,
            counts={"failed": 2},
            report=None,
            undo_of=None,
        )
        for n, name in enumerate(inputs)
    ]


@pytest.mark.parametrize("columns", [40, 80, 200])
def test_runs_never_cuts_a_run_id(
    columns: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    long_input = "/home/ops/exports/2026-12-01/customers-vip-full-export.csv"
    views = _views(["big.csv", long_input])
    console.render_runs(views)
    shown = capsys.readouterr().out
    for view in views:
        assert view.run_id in shown
    assert "…" not in shown and long_input in shown  # a long line is the terminal's to wrap
    if columns == 200:
        assert "│ 4,479 │" in shown.replace("  ", "")
    else:  # one block a run: the id on its own line, the input whole
        assert "  assign vip, finished: 4,479 rows, 2 failed" in shown.splitlines()


@pytest.mark.parametrize("columns", [60, 200])
def test_runs_says_how_many_rows_a_stopped_run_has_still_to_decide(
    columns: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    [view] = _views(["big.csv"])
    counts = {"assigned": 232, "pending": 768}
    console.render_runs([replace(view, state="interrupted", rows=1000, counts=counts)])
    shown = capsys.readouterr().out
    assert "interrupted, 768 pending" in shown
    assert "768 failed" not in shown


@pytest.mark.parametrize(
    ("command", "value"),
    [
        (["assign"], "https://api.TENANT.getomneo.com/api"),
        (["assign"], "~/.local/state/omneo-status"),
        (["sandbox"], "examples/sandbox-tenant.json"),
    ],
)
def test_help_at_80_columns_wraps_values_instead_of_cutting_them(
    command: list[str], value: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = sandbox.invoke(*command, "--help")
    assert result.exit_code == 0
    assert "…" not in result.stdout
    cells = [line.strip("│ ").split("  ")[-1].strip() for line in result.stdout.splitlines()]
    assert value in "".join(cells)


def test_help_flows_a_commands_description_at_80_columns(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = sandbox.invoke("sync", "--help")
    after = [line.strip() for line in result.stdout.split(" Adds HANDLE")[1].splitlines()]
    paragraph = after[: after.index("")]
    assert all(len(line) > 60 for line in paragraph[:-1])  # full lines, not ragged ones


@pytest.mark.parametrize("command", [[], ["assign"], ["sandbox"], ["config", "show"]])
def test_help_shows_no_type_after_a_switch(command: list[str], sandbox: Sandbox) -> None:
    result = sandbox.invoke(*command, "--help")
    assert result.exit_code == 0
    assert "--help" in result.stdout and "<bool>" not in result.stdout


# -- Typer's own usage errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error", "hint"),
    [
        (
            ["assign", "vip", EMAILS, "--bogus"],
            "No such option: --bogus",
            "Run `omneo-status assign --help` to see its arguments and options.",
        ),
        (
            ["assign", "vip", EMAILS, "--dry-rn"],
            "No such option: --dry-rn; did you mean `--dry-run`?",
            "Run `omneo-status assign --help` to see its arguments and options.",
        ),
        (
            ["asign", "vip", EMAILS],
            "No such command 'asign'; did you mean `assign`?",
            "Run `omneo-status --help` to see the commands.",
        ),
        (
            ["assign", "vip"],
            "Missing argument 'CSV_FILE'.",
            "Give a status HANDLE and a CSV_FILE, or --status-column NAME and a CSV_FILE.",
        ),
        (
            ["runs", "--limit", "0"],
            "Invalid value for '--limit': Input should be greater than or equal to 1",
            "Run `omneo-status runs --help` to see its options.",
        ),
        (
            ["config", "shw"],
            "No such command 'shw'; did you mean `show`?",
            "Run `omneo-status config --help` to see the commands.",
        ),
    ],
)
def test_typers_usage_errors_read_as_every_other_error(
    args: list[str], error: str, hint: str, sandbox: Sandbox
) -> None:
    result = sandbox.invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"Error: {error}", f"Hint: {hint}"]
    assert result.stdout == ""


def test_a_usage_error_under_json_is_the_same_document(sandbox: Sandbox) -> None:
    import json

    result = sandbox.invoke("assign", "vip", EMAILS, "--dry-rn", "--json")
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document["error"] == "No such option: --dry-rn; did you mean `--dry-run`?"
    assert document["hint"] == "Run `omneo-status assign --help` to see its arguments and options."
    assert result.stderr.startswith("Error: No such option: --dry-rn")


def test_a_stage_that_caught_up_stops_its_clock_until_it_has_more() -> None:
    clock = Clock()
    stages = Stages(clock)
    stages.start(Step.SEND, 500)
    clock.now += 4
    stages.advance(Step.SEND, 500)  # every row planned so far is sent
    clock.now += 20
    tally = stages.tallies[Step.SEND]
    assert tally.elapsed(clock()) == 4 and not tally.under_way
    stages.extend(Step.SEND, 250)  # a batch sent again
    assert tally.elapsed(clock()) == 24 and tally.under_way


def test_rows_resolved_after_a_scan_are_timed_from_the_scans_end() -> None:
    clock = Clock()
    stages = Stages(clock)
    stages.start(Step.RESOLVE, 4792)
    stages.start(Step.SCAN, 600)
    for _ in range(30):  # a 30-second scan
        clock.now += 1
        stages.advance(Step.SCAN, 20)
    clock.now += 0.5
    stages.advance(Step.RESOLVE, 578)
    assert stages.eta(Step.RESOLVE) is None  # not 3 minutes from a rate of 19 a second
    assert stages.tallies[Step.RESOLVE].rate(clock()) == 578 / 0.5
    clock.now += ETA_AFTER
    stages.advance(Step.RESOLVE, 1000)
    eta = stages.eta(Step.RESOLVE)
    assert eta is not None and eta < 10


@pytest.mark.parametrize("terminal", [True, False])
def test_prose_breaks_between_words_on_a_terminal_and_nowhere_else(terminal: bool) -> None:
    text = (
        "Lookup: scan (about 601 requests): the tenant ignores filter[email][in]: reading the"
        " tenant's 60,000 profiles in 600 pages of 100 costs fewer requests than 5,000 single"
        " lookups"
    )
    out = Console(file=io.StringIO(), width=80, force_terminal=terminal, color_system=None)
    console.say(out, console.escape(text))
    lines = out.file.getvalue().splitlines()  # type: ignore[attr-defined]
    if not terminal:  # a log or a pipe: one line, for grep
        assert lines == [text]
        return
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines)
    assert " ".join(line.strip() for line in lines) == text  # no word cut in two
