"""The commands that only read: ``statuses``, ``batch`` and ``doctor`` (from the API), ``runs``
(from the state dir) and ``config show`` (from the flags, the environment and the config
file)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from omneo_status import capabilities, jobs
from omneo_status.api.doctor import DoctorReport, run_doctor
from omneo_status.cli import boundary, console
from omneo_status.cli.flags import (
    JSON,
    LIMIT,
    MAX_RETRIES,
    PRUNE,
    RATE_LIMIT_WAIT,
    READ_CONNECTION,
    READ_OUTPUT,
    SANDBOX,
    STATE_DIR,
    WHICH_TENANT,
    BatchIdArg,
    Given,
    connection,
    output,
    sources,
    with_flags,
)
from omneo_status.cli.session import Session, open_session
from omneo_status.errors import UsageError
from omneo_status.models import Batch, StatusDefinition
from omneo_status.settings import describe_settings, resolve_state_dir
from omneo_status.wording import count

STATUSES_EPILOG = (
    "Example:\n\n  export OMNEO_TENANT=acme OMNEO_TOKEN_FILE=~/.config/omneo-status/token\n\n"
    "  omneo-status statuses --json"
)
BATCH_EPILOG = "Example:\n\n  omneo-status batch 9f1c2e4a-... --json"
DOCTOR_EPILOG = (
    "Examples:\n\n  omneo-status doctor\n\n  omneo-status doctor --json --trace doctor.jsonl"
)
RUNS_EPILOG = "Examples:\n\n  omneo-status runs --limit 5 --json\n\n  omneo-status runs --prune 90"
CONFIG_SHOW_EPILOG = (
    "Examples:\n\n  omneo-status config show --profile acme\n\n"
    "  OMNEO_TENANT=acme omneo-status config show --json"
)


_NO_BATCH_HINT = (
    "Check the id: a run's batch ids are in its summary and in its report's batch_id column."
    " Whether this tenant serves GET /v3/batches/{id} at all, `omneo-status doctor` says."
)


@contextmanager
def _reading(given: Given) -> Iterator[Session]:
    """The session of a command that reads the API, inside the error boundary."""
    rt = boundary.runtime()
    out = output(given)
    with boundary.guard(out.json), open_session(rt, connection(given), out) as session:
        yield session


@with_flags(*READ_OUTPUT, *READ_CONNECTION)
def statuses(given: Given) -> None:
    """List the tenant's status definitions (handle, name, group and expiry), every page."""
    with _reading(given) as s:
        found: list[StatusDefinition] = boundary.run(
            s.rt, lambda: s.call(lambda c: c.list_statuses())
        )
    if given[JSON]:
        console.print_json([status.to_json() for status in found])
    else:
        console.render_statuses(found)


@with_flags(*READ_OUTPUT, *READ_CONNECTION)
def batch(batch_id: BatchIdArg, given: Given) -> None:
    """Show one batch's state: status, counts and failed items."""
    with _reading(given) as s:
        found = boundary.run(s.rt, lambda: s.call(lambda c: c.get_batch(batch_id)))
        if not isinstance(found, Batch):
            raise UsageError(f"No batch {batch_id!r} on this tenant", hint=_NO_BATCH_HINT)
    if given[JSON]:
        console.print_json(found.to_json())
    else:
        console.render_batch(found)


@with_flags(*READ_OUTPUT, SANDBOX, *WHICH_TENANT, STATE_DIR, MAX_RETRIES, RATE_LIMIT_WAIT)
def doctor(given: Given) -> None:
    """Probe what this tenant really does (filters, paging, rate limits), without writing.

    Exit 0 when a run can work on this tenant, 1 when it cannot. What it finds is kept in the
    state dir for a week, and runs against the same base URL start from it.
    """
    with _reading(given) as s:
        url = s.settings.base_url
        found: DoctorReport = boundary.run(s.rt, lambda: s.call(lambda c: run_doctor(c, url)))
        if found.ok:
            capabilities.remember(s.settings.state_dir, url, found.capabilities)
    if given[JSON]:
        console.print_json(found.to_json())
    else:
        console.render_doctor(found)
    raise typer.Exit(int(found.exit_code))


@with_flags(LIMIT, PRUNE, JSON, STATE_DIR)
def runs(given: Given) -> None:
    """List recent runs with their state and counts, newest first."""
    prune = given[PRUNE]
    with boundary.guard(given[JSON]):
        state, _ = resolve_state_dir(given[STATE_DIR])
        if prune is not None:
            forgotten = jobs.prune_runs(state, prune)
            console.print_note(f"Forgot {count(forgotten, 'run')} older than {count(prune, 'day')}")
        found = jobs.recent_runs(state, given[LIMIT])
    if given[JSON]:
        console.print_json([view.to_json() for view in found])
    else:
        console.render_runs(found)


@with_flags(JSON, *WHICH_TENANT, STATE_DIR)
def config_show(given: Given) -> None:
    """Print the effective configuration and where each value came from; the token masked.

    What is missing or unusable (a config file or a profile too) is marked, not an error: it
    exits 0, since this is the command to find out what is.
    """
    with boundary.guard(given[JSON]):
        views = describe_settings(**sources(given))
    if given[JSON]:
        console.print_json({view.key: view.to_json() for view in views})
    else:
        console.render_config(views)
