"""The command line: parse, build settings, call the core, render, exit with the right code.

This is the one place where an ``OmneoStatusError`` becomes an ``Error:`` line and an exit code.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer

from omneo_status import __version__, console
from omneo_status.client import OmneoClient, RetryPolicy
from omneo_status.errors import (
    ConfigError,
    Interrupted,
    OmneoStatusError,
    UsageError,
)
from omneo_status.events import FanoutReporter, Reporter
from omneo_status.governor import RateGovernor
from omneo_status.job import (
    JobContext,
    RunSummary,
    open_journal,
    prepared_input,
    resume_job,
    run_job,
    shown_state,
    undo_job,
)
from omneo_status.logfile import JsonLogReporter
from omneo_status.models import Action, Batch, StatusDefinition
from omneo_status.run import LookupMode, Preview, RunOptions
from omneo_status.settings import (
    SANDBOX_TOKEN,
    Settings,
    mask,
    resolve_settings,
    resolve_state_dir,
    sandbox_settings,
)

T = TypeVar("T")

# Seams for tests: the clock and sleep that retries, pacing and polling use.
_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
_clock: Callable[[], float] = time.monotonic

EXIT_CODES_HELP = (
    "Exit codes: 0 finished, no row failed; 1 fatal error (API unreachable, auth refused);"
    " 2 usage, configuration or input error (nothing written); 3 rows failed, verification"
    " problems or --max-unmatched exceeded; 4 another run of the same job holds its lock;"
    " 5 gave up waiting for batches (re-run to pick them up); 130 interrupted."
)

app = typer.Typer(
    name="omneo-status",
    help="Add or remove an Omneo CX profile status for every email in a CSV, without ever"
    " wiping the statuses those profiles already hold.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Examples:\n\n  omneo-status assign vip examples/emails.csv --sandbox\n\n"
    "  OMNEO_TENANT=acme OMNEO_TOKEN=... omneo-status assign vip customers.csv --dry-run\n\n"
    + EXIT_CODES_HELP,
)

_CONN = "Connection"
_RUN = "Run"
_OUT = "Output"

TenantOpt = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        help="Tenant name: the API is https://api.TENANT.getomneo.com/api. Env: OMNEO_TENANT.",
        rich_help_panel=_CONN,
        show_default=False,
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="API root up to /api (overrides --tenant); http:// only for loopback."
        " Env: OMNEO_BASE_URL.",
        rich_help_panel=_CONN,
        show_default=False,
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="Read the API token from this file (otherwise from the OMNEO_TOKEN variable)."
        " Env: OMNEO_TOKEN_FILE.",
        rich_help_panel=_CONN,
        show_default=False,
    ),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where runs, reports and locks live (default: the user state dir,"
        " e.g. ~/.local/state/omneo-status). Env: OMNEO_STATE_DIR.",
        rich_help_panel=_CONN,
        show_default=False,
    ),
]
ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="A named tenant from the config file (a \\[tenants.NAME] table). Env: OMNEO_PROFILE.",
        rich_help_panel=_CONN,
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The config file (default: config.toml in the user config dir). Env: OMNEO_CONFIG.",
        rich_help_panel=_CONN,
        show_default=False,
    ),
]
SandboxOpt = Annotated[
    bool,
    typer.Option(
        "--sandbox",
        help="Run against an in-process sandbox tenant seeded with demo data (no account).",
        rich_help_panel=_CONN,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout.", rich_help_panel=_OUT)
]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="No live display: a few plain lines on stderr.", rich_help_panel=_OUT
    ),
]
VerboseOpt = Annotated[
    int,
    typer.Option(
        "--verbose",
        "-v",
        count=True,
        help="More detail on stderr (-vv: every HTTP request).",
        rich_help_panel=_OUT,
    ),
]


def _version(value: bool) -> None:
    if value:
        console.print_line(f"omneo-status {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Show the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Add or remove an Omneo CX profile status for every email in a CSV, safely."""


# -- the error boundary ----------------------------------------------------------------------


def _fail(exc: OmneoStatusError, json_out: bool = False) -> typer.Exit:
    console.print_error(exc.message, exc.hint)
    if json_out and not isinstance(exc, Interrupted):
        console.print_json({"error": exc.message, "hint": exc.hint, "exit_code": exc.exit_code})
    return typer.Exit(int(exc.exit_code))


def _run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine; SIGTERM is handled like Ctrl-C (stop, save, exit 130)."""

    async def main() -> T:
        task = asyncio.current_task()
        if task is not None:
            with suppress(NotImplementedError, AttributeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await factory()

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted("Interrupted") from None


@contextmanager
def _boundary(json_out: bool = False) -> Iterator[None]:
    """Turn the tool's errors into one line on stderr (and, with --json, a JSON document)."""
    try:
        yield
    except KeyboardInterrupt:
        raise _fail(Interrupted("Interrupted"), json_out) from None
    except OmneoStatusError as exc:
        raise _fail(exc, json_out) from None


# -- connecting ------------------------------------------------------------------------------


class _TokenRedactor(logging.Filter):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._secret and self._secret in message:
            record.msg = message.replace(self._secret, "***")
            record.args = None
        return True


def _settings(
    *,
    tenant: str | None,
    base_url: str | None,
    token_file: Path | None,
    state_dir: Path | None,
    sandbox: bool,
    profile: str | None = None,
    config: Path | None = None,
) -> Settings:
    if sandbox:
        if tenant or base_url:
            raise UsageError("--sandbox cannot be combined with --tenant or --base-url")
        return sandbox_settings(state_dir)
    return resolve_settings(
        tenant=tenant,
        base_url=base_url,
        token_file=token_file,
        state_dir=state_dir,
        profile=profile,
        config=config,
    )


def _sandbox_transport() -> httpx.AsyncBaseTransport:
    try:
        from omneo_status.sandbox import SandboxConfig, create_app, demo_tenant
    except ImportError:
        raise ConfigError(
            "The sandbox needs its server libraries",
            hint="Install the extra: pip install 'omneo-status[sandbox]' (uv run has it).",
        ) from None
    return httpx.ASGITransport(app=create_app(demo_tenant(), SandboxConfig()))


def _client(
    settings: Settings,
    *,
    sandbox: bool,
    concurrency: int = 8,
    max_rps: float | None = None,
    max_retries: int = 5,
    reporter: Reporter | None = None,
    verbose: int = 0,
) -> OmneoClient:
    if verbose >= 2:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_TokenRedactor(settings.token.get_secret_value()))
        for name in ("httpx", "httpcore"):
            logger = logging.getLogger(name)
            logger.setLevel(logging.DEBUG)
            logger.addHandler(handler)

    def on_retry(what: str, wait: float) -> None:
        if reporter is not None:
            reporter.info(f"retrying {what} in {wait:.1f}s")

    return OmneoClient(
        settings.base_url,
        settings.token,
        transport=_sandbox_transport() if sandbox else None,
        governor=RateGovernor(concurrency=concurrency, max_rps=max_rps, clock=_clock, sleep=_sleep),
        retry=RetryPolicy(max_retries=max_retries),
        sleep=_sleep,
        on_retry=on_retry,
    )


# -- assign / remove -------------------------------------------------------------------------

_RUN_EPILOG = (
    "Examples:\n\n"
    "  omneo-status {verb} vip customers.csv --dry-run\n\n"
    "  omneo-status {verb} vip,staff customers.csv --yes --json\n\n"
    "  omneo-status {verb} vip examples/emails.csv --sandbox\n\n" + EXIT_CODES_HELP
)


def _run_command(action: Action) -> Callable[..., None]:
    def command(
        handle: Annotated[
            str,
            typer.Argument(
                metavar="HANDLE",
                help="Status handle, or several separated by commas (vip,staff).",
                show_default=False,
            ),
        ],
        csv_file: Annotated[
            str,
            typer.Argument(
                metavar="CSV_FILE",
                help="CSV of email addresses, or - for stdin.",
                show_default=False,
            ),
        ],
        column: Annotated[
            str | None,
            typer.Option(
                "--column",
                help="Name of the email column (default: found by its header).",
                rich_help_panel=_RUN,
                show_default=False,
            ),
        ] = None,
        dry_run: Annotated[
            bool,
            typer.Option(
                "--dry-run",
                help="Do every read and no write: preview the real plan.",
                rich_help_panel=_RUN,
            ),
        ] = False,
        yes: Annotated[
            bool,
            typer.Option("--yes", "-y", help="Do not ask before writing.", rich_help_panel=_RUN),
        ] = False,
        chunk_size: Annotated[
            int,
            typer.Option(
                "--chunk-size",
                min=1,
                max=500,
                help="Profiles per batch request.",
                rich_help_panel=_RUN,
            ),
        ] = 250,
        verify: Annotated[
            int,
            typer.Option(
                "--verify",
                min=0,
                help="Re-read this many changed profiles at the end (0: off).",
                rich_help_panel=_RUN,
            ),
        ] = 5,
        poll_timeout: Annotated[
            float,
            typer.Option(
                "--poll-timeout",
                min=0,
                help="Seconds to wait for the batches.",
                rich_help_panel=_RUN,
            ),
        ] = 1800.0,
        stall_timeout: Annotated[
            float,
            typer.Option(
                "--stall-timeout",
                min=0,
                help="Give up on a batch whose counts have not moved for this many seconds.",
                rich_help_panel=_RUN,
            ),
        ] = 600.0,
        no_wait: Annotated[
            bool,
            typer.Option(
                "--no-wait",
                help="Send and stop; follow up with `omneo-status batch`.",
                rich_help_panel=_RUN,
            ),
        ] = False,
        strict: Annotated[
            bool,
            typer.Option(
                "--strict",
                help="Rows not found, ambiguous or invalid count as failures (exit 3).",
                rich_help_panel=_RUN,
            ),
        ] = False,
        max_unmatched: Annotated[
            float | None,
            typer.Option(
                "--max-unmatched",
                min=0,
                max=100,
                metavar="PERCENT",
                help="Stop before any write if more than this share of rows would be skipped.",
                rich_help_panel=_RUN,
                show_default=False,
            ),
        ] = None,
        fresh: Annotated[
            bool,
            typer.Option(
                "--fresh", help="Start over instead of resuming the same job.", rich_help_panel=_RUN
            ),
        ] = False,
        report: Annotated[
            Path | None,
            typer.Option(
                "--report",
                help="Write the per-row report here (default: under the state dir).",
                rich_help_panel=_OUT,
                show_default=False,
            ),
        ] = None,
        log_file: Annotated[
            Path | None,
            typer.Option(
                "--log-file",
                help="Append every stage and failure as JSON lines.",
                rich_help_panel=_OUT,
                show_default=False,
            ),
        ] = None,
        lookup: Annotated[
            LookupMode,
            typer.Option(
                "--lookup",
                help="Email lookups: auto tries filter\\[email]\\[in] and keeps"
                " it only if the tenant honours it.",
                rich_help_panel=_RUN,
            ),
        ] = LookupMode.AUTO,
        concurrency: Annotated[
            int,
            typer.Option(
                "--concurrency",
                min=1,
                max=64,
                help="Requests in flight at once.",
                rich_help_panel=_RUN,
            ),
        ] = 8,
        max_rps: Annotated[
            float | None,
            typer.Option(
                "--max-rps",
                min=0.1,
                help="Cap requests per second.",
                rich_help_panel=_RUN,
                show_default=False,
            ),
        ] = None,
        max_retries: Annotated[
            int,
            typer.Option(
                "--max-retries",
                min=0,
                max=20,
                help="Retries of a failed request.",
                rich_help_panel=_RUN,
            ),
        ] = 5,
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
        verbose: VerboseOpt = 0,
        sandbox: SandboxOpt = False,
        tenant: TenantOpt = None,
        base_url: BaseUrlOpt = None,
        token_file: TokenFileOpt = None,
        profile: ProfileOpt = None,
        config: ConfigOpt = None,
        state_dir: StateDirOpt = None,
    ) -> None:
        with _boundary(json_out):
            handles = _handles(handle)
            options = RunOptions(
                action=action,
                handles=handles,
                dry_run=dry_run,
                chunk_size=chunk_size,
                verify=verify,
                poll_timeout=poll_timeout,
                stall_timeout=stall_timeout,
                no_wait=no_wait,
                strict=strict,
                max_unmatched=max_unmatched,
                lookup=lookup,
                concurrency=concurrency,
            )
            settings = _settings(
                tenant=tenant,
                base_url=base_url,
                token_file=token_file,
                state_dir=state_dir,
                sandbox=sandbox,
                profile=profile,
                config=config,
            )
            with prepared_input(
                csv_file, column, state_dir=settings.state_dir, stdin=sys.stdin.buffer
            ) as source:
                summary = _execute(
                    settings,
                    options,
                    lambda ctx: run_job(ctx, options, source, report=report, fresh=fresh),
                    # A rehearsal against the in-process sandbox changes nothing real.
                    ask=not (yes or dry_run or sandbox) and _interactive(),
                    quiet=quiet or (json_out and not sys.stderr.isatty()),
                    verbose=verbose,
                    sandbox=sandbox,
                    log_file=log_file,
                    max_rps=max_rps,
                    max_retries=max_retries,
                )
            _finish(summary, json_out)

    command.__doc__ = (
        f"{'Add' if action is Action.ASSIGN else 'Remove'} status HANDLE"
        f" {'to' if action is Action.ASSIGN else 'from'} every profile whose email is in"
        " CSV_FILE.\n\n"
        + (
            "Only the batch endpoint is used: statuses the profiles already hold are kept."
            if action is Action.ASSIGN
            else "Only the handles given are detached; every other status is kept."
        )
    )
    return command


def _interactive() -> bool:
    """Whether a person can answer a prompt (stdin and stderr are terminals)."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def _handles(text: str) -> tuple[str, ...]:
    handles = tuple(dict.fromkeys(h.strip() for h in text.split(",") if h.strip()))
    if not handles:
        raise UsageError(
            "No status handle given", hint="Example: omneo-status assign vip emails.csv"
        )
    return handles


def _execute(
    settings: Settings,
    options: RunOptions,
    job: Callable[[JobContext], Awaitable[RunSummary]],
    *,
    ask: bool,
    quiet: bool,
    verbose: int,
    sandbox: bool,
    log_file: Path | None,
    max_rps: float | None,
    max_retries: int,
) -> RunSummary:
    shown = console.ConsoleReporter(live=not quiet, verbose=verbose > 0)
    with ExitStack() as stack:
        log = JsonLogReporter(log_file) if log_file is not None else None
        if log is not None:
            stack.callback(log.close)
        reporter = FanoutReporter(shown, log) if log is not None else FanoutReporter(shown)

        def confirm(preview: Preview) -> bool:
            with shown.paused():
                return console.confirm_plan(preview, options.action.value, options.handles)

        async def go() -> RunSummary:
            client = _client(
                settings,
                sandbox=sandbox,
                concurrency=options.concurrency,
                max_rps=max_rps,
                max_retries=max_retries,
                reporter=reporter,
                verbose=verbose,
            )
            async with client:
                ctx = JobContext(
                    client=client,
                    base_url=settings.base_url,
                    state_dir=settings.state_dir,
                    reporter=reporter,
                    confirm=confirm if ask else None,
                    sleep=_sleep,
                    clock=_clock,
                )
                with shown.showing():
                    return await job(ctx)

        try:
            summary = _run_async(go)
        except OmneoStatusError as exc:
            if log is not None:
                log.write("error", message=exc.message, exit_code=int(exc.exit_code))
            raise
        if log is not None:
            log.write("summary", **summary.to_json())
        return summary


def _finish(summary: RunSummary, json_out: bool) -> None:
    if json_out:
        console.print_json(summary.to_json())
        for note in summary.notes:
            console.print_warning(note)
    else:
        console.render_summary(summary)
    raise typer.Exit(int(summary.exit_code))


app.command("assign", epilog=_RUN_EPILOG.format(verb="assign"), no_args_is_help=True)(
    _run_command(Action.ASSIGN)
)
app.command("remove", epilog=_RUN_EPILOG.format(verb="remove"), no_args_is_help=True)(
    _run_command(Action.REMOVE)
)


@app.command(epilog="Example:\n\n  OMNEO_TENANT=acme OMNEO_TOKEN=... omneo-status statuses --json")
def statuses(
    json_out: JsonOpt = False,
    verbose: VerboseOpt = 0,
    sandbox: SandboxOpt = False,
    tenant: TenantOpt = None,
    base_url: BaseUrlOpt = None,
    token_file: TokenFileOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List the tenant's status definitions (handle and name), every page of them."""
    with _boundary(json_out):
        settings = _settings(
            tenant=tenant,
            base_url=base_url,
            token_file=token_file,
            state_dir=None,
            sandbox=sandbox,
            profile=profile,
            config=config,
        )

        async def go() -> list[StatusDefinition]:
            async with _client(settings, sandbox=sandbox, verbose=verbose) as client:
                return await client.list_statuses()

        found = _run_async(go)
    if json_out:
        console.print_json([{"handle": s.handle, "name": s.name} for s in found])
    else:
        console.render_statuses(found)


@app.command(epilog="Example:\n\n  omneo-status batch 9f1c2e4a-... --json")
def batch(
    batch_id: Annotated[
        str,
        typer.Argument(
            metavar="BATCH_ID",
            help="A batch id from a run's summary or report.",
            show_default=False,
        ),
    ],
    json_out: JsonOpt = False,
    verbose: VerboseOpt = 0,
    tenant: TenantOpt = None,
    base_url: BaseUrlOpt = None,
    token_file: TokenFileOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Show one batch's state: status, counts and failed items."""
    with _boundary(json_out):
        settings = _settings(
            tenant=tenant,
            base_url=base_url,
            token_file=token_file,
            state_dir=None,
            sandbox=False,
            profile=profile,
            config=config,
        )

        async def go() -> Batch | None:
            async with _client(settings, sandbox=False, verbose=verbose) as client:
                return await client.get_batch(batch_id)

        found = _run_async(go)
        if found is None:
            raise _fail(
                UsageError(
                    f"No batch {batch_id!r} on this tenant",
                    hint="The tenant may not offer the batch endpoint; check the profiles.",
                )
            )
    if json_out:
        console.print_json(found.model_dump(mode="json"))
    else:
        console.render_batch(found)


@app.command(
    epilog="Examples:\n\n  omneo-status runs --limit 5 --json\n\n  omneo-status runs --prune 90"
)
def runs(
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs to list.")] = 20,
    prune: Annotated[
        int | None,
        typer.Option(
            "--prune",
            min=0,
            metavar="DAYS",
            help="First forget finished runs and dry runs older than DAYS (their reports stay).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
    state_dir: StateDirOpt = None,
) -> None:
    """List recent runs with their state and counts, newest first."""
    with _boundary(json_out):
        state, _ = resolve_state_dir(state_dir)
        journal = open_journal(state)
        try:
            if prune is not None:
                forgotten = journal.prune(older_than_days=prune)
                console.print_note(f"Forgot {forgotten} run(s) older than {prune} day(s)")
            found = journal.runs(limit)
            counts = [journal.counts(run.run_id) for run in found]
            states = [shown_state(state, run) for run in found]
        finally:
            journal.close()
    if json_out:
        console.print_json(
            [
                {
                    "run_id": run.run_id,
                    "created_at": run.created_at,
                    "updated_at": run.updated_at,
                    "action": run.action.value,
                    "handles": list(run.handles),
                    "dry_run": run.dry_run,
                    "input": run.input_name,
                    "base_url": run.base_url,
                    "state": run_state,
                    "rows": run.rows,
                    "counts": {k: v for k, v in count.items() if k},
                    "report": run.report,
                    "undo_of": run.undo_of,
                }
                for run, count, run_state in zip(found, counts, states, strict=True)
            ]
        )
    else:
        console.render_runs(found, counts, states)


def _by_id_command(kind: str) -> Callable[..., None]:
    def command(
        run_id: Annotated[
            str,
            typer.Argument(
                metavar="RUN_ID",
                help="A run id from `omneo-status runs` (a unique prefix will do).",
                show_default=False,
            ),
        ],
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
        ] = False,
        yes: Annotated[
            bool, typer.Option("--yes", "-y", help="Do not ask before writing.")
        ] = False,
        verify: Annotated[
            int, typer.Option("--verify", min=0, help="Profiles to re-read at the end (0: off).")
        ] = 5,
        poll_timeout: Annotated[
            float, typer.Option("--poll-timeout", min=0, help="Seconds to wait for the batches.")
        ] = 1800.0,
        stall_timeout: Annotated[
            float,
            typer.Option(
                "--stall-timeout",
                min=0,
                help="Give up on a batch that has not moved for this long.",
            ),
        ] = 600.0,
        chunk_size: Annotated[
            int, typer.Option("--chunk-size", min=1, max=500, help="Profiles per batch request.")
        ] = 250,
        concurrency: Annotated[
            int, typer.Option("--concurrency", min=1, max=64, help="Requests in flight at once.")
        ] = 8,
        max_rps: Annotated[
            float | None,
            typer.Option("--max-rps", min=0.1, show_default=False, help="Cap requests per second."),
        ] = None,
        max_retries: Annotated[
            int, typer.Option("--max-retries", min=0, max=20, help="Retries of a failed request.")
        ] = 5,
        report: Annotated[
            Path | None,
            typer.Option("--report", show_default=False, help="Write the per-row report here."),
        ] = None,
        log_file: Annotated[
            Path | None,
            typer.Option("--log-file", show_default=False, help="Append JSON-lines events."),
        ] = None,
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
        verbose: VerboseOpt = 0,
        tenant: TenantOpt = None,
        base_url: BaseUrlOpt = None,
        token_file: TokenFileOpt = None,
        profile: ProfileOpt = None,
        config: ConfigOpt = None,
        state_dir: StateDirOpt = None,
    ) -> None:
        with _boundary(json_out):
            settings = _settings(
                tenant=tenant,
                base_url=base_url,
                token_file=token_file,
                state_dir=state_dir,
                sandbox=False,
                profile=profile,
                config=config,
            )
            options = RunOptions(
                action=Action.ASSIGN,
                handles=(),
                dry_run=dry_run,
                chunk_size=chunk_size,
                verify=verify,
                poll_timeout=poll_timeout,
                stall_timeout=stall_timeout,
                concurrency=concurrency,
            )
            runner = undo_job if kind == "undo" else resume_job
            summary = _execute(
                settings,
                options,
                lambda ctx: runner(ctx, run_id, options, report=report),
                ask=not (yes or dry_run) and _interactive(),
                quiet=quiet or (json_out and not sys.stderr.isatty()),
                verbose=verbose,
                sandbox=False,
                log_file=log_file,
                max_rps=max_rps,
                max_retries=max_retries,
            )
            _finish(summary, json_out)

    return command


app.command(
    "resume",
    help="Continue an unfinished run by id, from its journal (no input file needed).",
    epilog="Example:\n\n  omneo-status resume 20261128T181500-3fa9c2-0b1e\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
)(_by_id_command("resume"))
app.command(
    "undo",
    help="Reverse exactly what a run changed: remove what it assigned (only where the"
    " profile did not hold it before), or add back what it removed.",
    epilog="Examples:\n\n  omneo-status undo 20261128T181500-3fa9c2-0b1e --dry-run\n\n"
    "  omneo-status undo 20261128T181500-3fa9c2-0b1e --yes\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
)(_by_id_command("undo"))


@app.command(
    epilog="Examples:\n\n  omneo-status sandbox --port 8765 --profiles 1000\n\n"
    "  omneo-status sandbox --rate-limit 100 --rate-window 1 --fail-rate 0.2 --batch-delay 2"
)
def sandbox(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: any free).")
    ] = 8765,
    seed: Annotated[
        Path | None,
        typer.Option(
            "--seed",
            help="Tenant JSON to load (see examples/sandbox-tenant.json).",
            show_default=False,
        ),
    ] = None,
    profiles: Annotated[
        int | None,
        typer.Option(
            "--profiles",
            min=0,
            help="Generate a deterministic tenant of N profiles instead.",
            show_default=False,
        ),
    ] = None,
    token: Annotated[str, typer.Option("--token", help="Bearer token the sandbox accepts.")] = (
        SANDBOX_TOKEN
    ),
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", min=0, help="Added to every request.")
    ] = 0.0,
    rate_limit: Annotated[
        int | None,
        typer.Option(
            "--rate-limit",
            min=1,
            help="Requests allowed per window (default: no limit).",
            show_default=False,
        ),
    ] = None,
    rate_window: Annotated[
        float, typer.Option("--rate-window", min=0.01, help="Window length in seconds.")
    ] = 1.0,
    fail_rate: Annotated[
        float,
        typer.Option("--fail-rate", min=0, max=1, help="Share of requests answered 500/502/503."),
    ] = 0.0,
    fault_seed: Annotated[
        int, typer.Option("--fault-seed", help="Seed of the fault generator.")
    ] = 0,
    batch_delay: Annotated[
        float, typer.Option("--batch-delay", min=0, help="Seconds a batch stays pending.")
    ] = 0.0,
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1, help="Most profiles in one batch request.")
    ] = 500,
    no_email_in_filter: Annotated[
        bool,
        typer.Option(
            "--no-email-in-filter", help="Ignore filter\\[email]\\[in], like a lenient server."
        ),
    ] = False,
    no_batches: Annotated[
        bool,
        typer.Option(
            "--no-batches", help="Answer 404 to GET /batches/{id}, like a tenant without it."
        ),
    ] = False,
    log: Annotated[
        Path | None,
        typer.Option("--log", help="Write every request as JSON lines.", show_default=False),
    ] = None,
) -> None:
    """Serve an in-memory Omneo tenant on a local port, to rehearse runs against."""
    with _boundary():
        try:
            from omneo_status.sandbox import (
                SandboxConfig,
                SeedError,
                create_app,
                demo_tenant,
                generate_tenant,
                load_seed,
                serve,
            )
        except ImportError:
            raise ConfigError(
                "The sandbox needs its server libraries",
                hint="Install the extra: pip install 'omneo-status[sandbox]' (uv run has it).",
            ) from None
        if seed is not None and profiles is not None:
            raise UsageError("Give --seed or --profiles, not both")
        try:
            tenant = (
                load_seed(seed)
                if seed is not None
                else generate_tenant(profiles)
                if profiles is not None
                else demo_tenant()
            )
        except SeedError as exc:
            raise UsageError(str(exc)) from None
        config = SandboxConfig(
            token=token,
            latency_ms=latency_ms,
            rate_limit=rate_limit,
            rate_window=rate_window,
            fail_rate=fail_rate,
            fault_seed=fault_seed,
            batch_delay=batch_delay,
            max_batch=max_batch,
            email_in_filter=not no_email_in_filter,
            batches_endpoint=not no_batches,
            log_path=log,
        )
        count = len(tenant.profiles)
        try:
            served = create_app(tenant, config)
        except OSError as exc:
            raise ConfigError(f"Cannot open the log file {log}: {exc.strerror or exc}") from None
        try:
            serve(
                served,
                host=host,
                port=port,
                on_ready=lambda url: console.sandbox_banner(url, token, count),
            )
        except OSError as exc:
            raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from None


config_app = typer.Typer(
    help="Inspect the configuration (flags, OMNEO_* variables and the config file).",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")


@config_app.command(
    "show",
    epilog="Examples:\n\n  omneo-status config show --profile acme\n\n"
    "  OMNEO_TENANT=acme OMNEO_TOKEN=... omneo-status config show --json",
)
def config_show(
    json_out: JsonOpt = False,
    tenant: TenantOpt = None,
    base_url: BaseUrlOpt = None,
    token_file: TokenFileOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Print the effective configuration and where each value came from; the token masked."""
    with _boundary(json_out):
        settings = _settings(
            tenant=tenant,
            base_url=base_url,
            token_file=token_file,
            state_dir=state_dir,
            sandbox=False,
            profile=profile,
            config=config,
        )
    rows = [
        ("config_file", settings.sources.get("config_file", ""), ""),
        ("profile", settings.sources.get("profile", "(none)"), ""),
        ("base_url", settings.base_url, settings.sources.get("base_url", "")),
        ("token", mask(settings.token), settings.sources.get("token", "")),
        ("state_dir", str(settings.state_dir), settings.sources.get("state_dir", "")),
    ]
    if json_out:
        console.print_json({key: {"value": value, "source": source} for key, value, source in rows})
    else:
        console.render_config(rows)


def main() -> None:
    """The console-script entry point."""
    app()
