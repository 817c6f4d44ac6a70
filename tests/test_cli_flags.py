"""The flag vocabulary (``cli/flags.py``): every run command offers every ``RunOptions`` field
that applies to it, and what is typed on the command line reaches ``RunOptions``,
``Connection`` and ``Output`` field by field."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from omneo_status import cli, jobs
from omneo_status.cli.flags import (
    NO_WAIT,
    Connection,
    Given,
    Output,
    connection,
    output,
    run_options,
)
from omneo_status.errors import OmneoStatusError
from omneo_status.options import LookupMode, RemovalLimit, RunOptions
from omneo_status.settings import SettingFlags

from .conftest import EXAMPLES, Sandbox

RUN_COMMANDS = ("assign", "remove", "sync", "resume", "undo")

BY_ID = frozenset({"no_wait", "strict", "max_unmatched", "lookup"})
NOT_OFFERED: dict[str, frozenset[str]] = {
    # Only a sync takes a status from holders the input does not list, so only a sync (and the
    # resume of one) has a removal guard to set.
    "assign": frozenset({"max_remove"}),
    "remove": frozenset({"max_remove"}),
    "sync": frozenset(),
    # A run by id goes on from its journal: these four are a run-from-a-file's flags only.
    "resume": BY_ID,
    "undo": BY_ID | {"max_remove"},
}
"""The ``RunOptions`` fields a run command does not offer: its run takes their defaults."""

RUN_FLAGS: dict[str, tuple[list[str], Any]] = {
    "dry_run": (["--dry-run"], True),
    "chunk_size": (["--chunk-size", "7"], 7),
    "verify": (["--verify", "2"], 2),
    "poll_timeout": (["--poll-timeout", "11"], 11.0),
    "stall_timeout": (["--stall-timeout", "13"], 13.0),
    "no_wait": (["--no-wait"], True),
    "strict": (["--strict"], True),
    "max_unmatched": (["--max-unmatched", "17"], 17.0),
    "lookup": (["--lookup", "scan"], LookupMode.SCAN),
    "concurrency": (["--concurrency", "3"], 3),
    "max_remove": (["--max-remove", "19"], RemovalLimit(count=19)),
}
"""For each ``RunOptions`` field: a command line that sets it, and the value it must get."""


def params_of(command: str) -> set[str]:
    """The names of the parameters the command's parser offers."""
    parsed = get_command(cli.app).commands[command]  # type: ignore[attr-defined]
    return {param.name for param in parsed.params}


def test_the_tables_name_every_run_option_and_change_it() -> None:
    names = {field.name for field in fields(RunOptions)}
    assert set(RUN_FLAGS) == names
    defaults = RunOptions()
    for name, (_, value) in RUN_FLAGS.items():
        assert getattr(defaults, name) != value, name
    assert set(NOT_OFFERED) == set(RUN_COMMANDS)


@pytest.mark.parametrize("command", RUN_COMMANDS)
def test_every_run_command_offers_every_run_option_that_applies(command: str) -> None:
    offered = params_of(command)
    expected = {field.name for field in fields(RunOptions)} - NOT_OFFERED[command]
    assert expected - offered == set()
    # The exceptions are exact: an option a command gains leaves this list.
    assert NOT_OFFERED[command] & offered == set()


class Captured(OmneoStatusError):
    """Raised by the stand-in job once it has the options the command built."""


@pytest.mark.parametrize("command", RUN_COMMANDS)
def test_what_is_typed_reaches_run_options(
    command: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[RunOptions] = []

    async def job(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        seen.extend(arg for arg in args if isinstance(arg, RunOptions))
        raise Captured("captured")

    for name in ("run_job", "resume_job", "undo_job"):
        monkeypatch.setattr(jobs, name, job)
    given = {name: flag for name, flag in RUN_FLAGS.items() if name not in NOT_OFFERED[command]}
    head = ["vip", str(EXAMPLES / "emails.csv")] if command in ("assign", "remove", "sync") else []
    argv = [command, *head] if head else [command, "20261128T181500-3fa9c2-0b1e"]
    typed = [word for words, _ in given.values() for word in words]
    result = sandbox.run(*argv, *typed)
    assert result.exit_code == 1, result.stderr
    assert "captured" in result.stderr
    expected = RunOptions(**{name: value for name, (_, value) in given.items()})
    assert seen == [expected]


def test_the_connection_and_output_flags_reach_their_fields() -> None:
    given = Given(
        {
            "sandbox": True,
            "tenant": "acme",
            "base_url": "http://127.0.0.1:9/api",
            "token_file": Path("token"),
            "profile": "prod",
            "config": Path("config.toml"),
            "state_dir": Path("state"),
            "max_rps": 4.0,
            "max_retries": 6,
            "rate_limit_wait": 8.0,
            "json": True,
            "quiet": True,
            "verbose": 2,
            "trace": Path("trace.jsonl"),
            "log_file": Path("log.jsonl"),
            "report": Path("report.csv"),
        }
    )
    assert connection(given) == Connection(
        sandbox=True,
        sources=SettingFlags(
            tenant="acme",
            base_url="http://127.0.0.1:9/api",
            token_file=Path("token"),
            state_dir=Path("state"),
            profile="prod",
            config=Path("config.toml"),
        ),
        max_rps=4.0,
        max_retries=6,
        rate_limit_wait=8.0,
    )
    assert output(given) == Output(
        json=True,
        quiet=True,
        verbose=2,
        trace=Path("trace.jsonl"),
        log_file=Path("log.jsonl"),
        report=Path("report.csv"),
    )


def test_a_flag_a_command_does_not_offer_reads_as_its_default() -> None:
    assert Given({})[NO_WAIT] is False
    assert run_options(Given({})) == RunOptions()
