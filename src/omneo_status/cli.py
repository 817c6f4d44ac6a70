"""The command line: parse, build settings, call the core, render, exit with the right code.

This is the one place where an ``OmneoStatusError`` becomes an ``Error:`` line and an exit code,
and where the core's structured results get their CLI wording ("pass --fresh", "resume RUN_ID").
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Protocol, TypeAlias, TypeVar

import httpx
import typer
from typer.core import TyperGroup

from omneo_status import __version__, capabilities, console, jobs
from omneo_status.client import OmneoClient, PageStyle, RetryPolicy
from omneo_status.console import ConsoleReporter, Display
from omneo_status.doctor import DoctorReport, run_doctor
from omneo_status.errors import (
    ConfigError,
    ExitCode,
    Interrupted,
    OmneoStatusError,
    UsageError,
)
from omneo_status.events import FanoutReporter, Reporter
from omneo_status.governor import RateGovernor
from omneo_status.jobs import JobContext, RunSummary
from omneo_status.keys import MatchKey
from omneo_status.logfile import JsonLogReporter
from omneo_status.models import Action, Batch, StatusDefinition
from omneo_status.options import (
    CHUNK_SIZE,
    CHUNK_SIZE_MAX,
    CONCURRENCY,
    CONCURRENCY_MAX,
    MAX_REMOVE,
    MAX_RETRIES,
    MAX_RETRIES_MAX,
    POLL_TIMEOUT,
    RATE_LIMIT_WAIT,
    STALL_TIMEOUT,
    VERIFY,
    JobSpec,
    LookupMode,
    RemovalLimit,
    RunOptions,
)
from omneo_status.planner import TenantFacts
from omneo_status.report import check_report_target
from omneo_status.settings import (
    SANDBOX_TOKEN,
    Settings,
    describe_settings,
    resolve_rate_limit_wait,
    resolve_settings,
    resolve_state_dir,
    sandbox_settings,
)
from omneo_status.source import prepared_input
from omneo_status.sync import SYNC_ONE
from omneo_status.trace import Exchange, TraceWriter

if TYPE_CHECKING:
    from omneo_status.sandbox import Tenant

T = TypeVar("T")

PRUNE_DAYS_MAX = 36_500
"""``runs --prune`` takes at most a century: a larger number can only be a typo."""

EXIT_CODES_HELP = (
    "Exit codes: 0 finished, no row failed; 1 fatal error (API unreachable, auth refused);"
    " 2 usage, configuration or input error (nothing written); 3 rows failed, verification"
    " problems, --max-unmatched or --max-remove exceeded; 4 another run of the same job holds"
    " its lock;"
    " 5 gave up waiting for batches (re-run to pick them up); 130 interrupted."
)


# -- the world outside the arguments ---------------------------------------------------------


class Runner(Protocol):
    """Runs a coroutine to its end on a fresh event loop (``asyncio.run``)."""

    def __call__(self, main: Coroutine[Any, Any, T], /) -> T:
        """The coroutine's result (its exception propagates)."""


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop's event loop where it is installed (not on Windows): it
    takes a tenth off the client's CPU per request (bench/README.md)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _demo_sandbox_transport() -> httpx.AsyncBaseTransport:
    try:
        from omneo_status.sandbox import SandboxConfig, create_app, demo_tenant
    except ImportError:
        raise _sandbox_missing() from None
    return httpx.ASGITransport(app=create_app(demo_tenant(), SandboxConfig()))


def _terminal_attached() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


@dataclass
class Runtime:
    """What a command takes from the world besides its arguments: time, the in-process sandbox
    of ``--sandbox`` and whether a person can answer a prompt. Tests replace it (``runtime``)."""

    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    run: Runner = run_loop
    sandbox_transport: Callable[[], httpx.AsyncBaseTransport] = field(
        default=_demo_sandbox_transport
    )
    interactive: Callable[[], bool] = _terminal_attached


def runtime() -> Runtime:
    """The runtime every command uses: real time, the demo sandbox, the real terminal."""
    return Runtime()


# -- the app, and --json for errors Typer raises itself --------------------------------------


class _JsonAwareGroup(TyperGroup):
    """Typer's group, except that with ``--json`` even a usage error Typer raises itself (an
    unknown option, a value out of range) leaves one JSON document on stdout."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(argv, prog_name, complete_var, False, **extra)
        except typer.TyperException as exc:  # Typer's own usage errors (its Click's classes)
            error = (UsageError if exc.exit_code == ExitCode.USAGE else OmneoStatusError)(
                exc.format_message(), hint="See the command's --help."
            )
            code = _report_error(error, json_out=True)
        except typer.Abort:
            code = _report_error(OmneoStatusError("Aborted"), json_out=True)
        except Exception as exc:
            # A bug: the document says so, and the traceback follows on stderr.
            _report_error(
                OmneoStatusError(
                    f"Internal error ({type(exc).__name__})",
                    hint="This is a bug; please report it with the traceback below.",
                ),
                json_out=True,
            )
            raise
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    name="omneo-status",
    cls=_JsonAwareGroup,
    help="Add or remove an Omneo CX profile status for every email in a CSV, without ever"
    " wiping the statuses those profiles already hold.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Examples:\n\n  omneo-status assign vip examples/emails.csv --sandbox\n\n"
    "  OMNEO_TENANT=acme OMNEO_TOKEN=... omneo-status assign vip customers.csv --dry-run\n\n"
    "Network: HTTPS_PROXY, NO_PROXY and SSL_CERT_FILE are read as httpx reads them;"
    " OMNEO_TRANSPORT=httpx sends every request through httpx's own transport (a way round a"
    " bug in the tool's own; docs/network.md).\n\n" + EXIT_CODES_HELP,
)


def _version(value: bool) -> None:
    if value:
        console.print_line(f"omneo-status {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Show the version and exit.",
            callback=_version,
            is_eager=True,
            metavar="",
        ),
    ] = False,
) -> None:
    """Add or remove an Omneo CX profile status for every email in a CSV, safely."""


# -- one alias per option; every default comes from omneo_status.options --------------------

_CONN = "Connection"
_RUN = "Run"
_OUT = "Output"
_VARIANTS = "Variants (what the docs leave open)"


def _flag(*names: str, help: str, panel: str | None = None) -> Any:
    """An on/off option shown without a value type in the help."""
    return typer.Option(*names, help=help, rich_help_panel=panel, metavar="")


def _value(*names: str, help: str, panel: str | None = None, **limits: Any) -> Any:
    """An option taking a value; no default shown when it has none."""
    return typer.Option(*names, help=help, rich_help_panel=panel, **limits)


HandleArg = Annotated[
    str,
    typer.Argument(
        metavar="HANDLE",
        help="Status handle, or several separated by commas (vip,staff).",
        show_default=False,
    ),
]
CsvArg = Annotated[
    str,
    typer.Argument(
        metavar="CSV_FILE",
        help="CSV of email addresses (or of --match keys), or - for stdin.",
        show_default=False,
    ),
]
RunIdArg = Annotated[
    str,
    typer.Argument(
        metavar="RUN_ID",
        help="A run id from `omneo-status runs` (a unique prefix will do).",
        show_default=False,
    ),
]
BatchIdArg = Annotated[
    str,
    typer.Argument(
        metavar="BATCH_ID", help="A batch id from a run's summary or report.", show_default=False
    ),
]

ColumnOpt = Annotated[
    str | None,
    _value(
        "--column",
        help="Name of the key column, email unless --match says otherwise (default: found by"
        " its header).",
        panel=_RUN,
        show_default=False,
    ),
]
MatchOpt = Annotated[
    str,
    _value(
        "--match",
        help="What the column holds: email, mobile, id (an Omneo profile id), or"
        " identity:HANDLE (for example identity:shopify).",
        panel=_RUN,
        metavar="KEY",
    ),
]
DryRunOpt = Annotated[
    bool, _flag("--dry-run", help="Do every read and no write: preview the real plan.", panel=_RUN)
]
YesOpt = Annotated[bool, _flag("--yes", "-y", help="Do not ask before writing.", panel=_RUN)]
ChunkSizeOpt = Annotated[
    int,
    _value(
        "--chunk-size", help="Profiles per batch request.", panel=_RUN, min=1, max=CHUNK_SIZE_MAX
    ),
]
VerifyOpt = Annotated[
    int,
    _value(
        "--verify",
        help="Re-read this many changed profiles at the end (0: off).",
        panel=_RUN,
        min=0,
    ),
]
PollTimeoutOpt = Annotated[
    float, _value("--poll-timeout", help="Seconds to wait for the batches.", panel=_RUN, min=0)
]
StallTimeoutOpt = Annotated[
    float,
    _value(
        "--stall-timeout",
        help="Give up on a batch whose counts have not moved for this many seconds"
        " (without a batches endpoint: whose profiles have not changed; sent again once first).",
        panel=_RUN,
        min=0,
    ),
]
NoWaitOpt = Annotated[
    bool,
    _flag("--no-wait", help="Send and stop; follow up with `omneo-status batch`.", panel=_RUN),
]
StrictOpt = Annotated[
    bool,
    _flag(
        "--strict",
        help="Rows not found, ambiguous or invalid count as failures (exit 3).",
        panel=_RUN,
    ),
]
MaxUnmatchedOpt = Annotated[
    float | None,
    _value(
        "--max-unmatched",
        help="Stop before any write if more than this share of rows would be skipped.",
        panel=_RUN,
        min=0,
        max=100,
        metavar="PERCENT",
        show_default=False,
    ),
]
FreshOpt = Annotated[
    bool, _flag("--fresh", help="Start over instead of resuming the same job.", panel=_RUN)
]
LookupOpt = Annotated[
    LookupMode,
    _value(
        "--lookup",
        help="Email lookups: auto picks the plan with the fewest requests (one per address,"
        " filter\\[email]\\[in] groups, or a scan of every profile) and says why; single, bulk"
        " and scan force one.",
        panel=_RUN,
    ),
]
ConcurrencyOpt = Annotated[
    int,
    _value(
        "--concurrency",
        help="The most requests in flight at once: the tool starts lower and finds its own"
        " level under this ceiling.",
        panel=_RUN,
        min=1,
        max=CONCURRENCY_MAX,
    ),
]
MaxRpsOpt = Annotated[
    float | None,
    _value("--max-rps", help="Cap requests per second.", panel=_CONN, min=0.1, show_default=False),
]
MaxRetriesOpt = Annotated[
    int,
    _value(
        "--max-retries",
        help="Retries of a failed request (a 5xx, a timeout, a lost connection; a 429 is"
        " waited out under --rate-limit-wait instead).",
        panel=_CONN,
        min=0,
        max=MAX_RETRIES_MAX,
    ),
]
RateLimitWaitOpt = Annotated[
    float | None,
    _value(
        "--rate-limit-wait",
        help=f"Seconds one request may wait out 429s in all (default {RATE_LIMIT_WAIT:g}:"
        " another client may be using the tenant's rate limit). Env: OMNEO_RATE_LIMIT_WAIT.",
        panel=_CONN,
        min=0,
        metavar="SECONDS",
        show_default=False,
    ),
]
ReportOpt = Annotated[
    Path | None,
    _value(
        "--report",
        help="Write the per-row report here (default: under the state dir); - for stdout.",
        panel=_OUT,
        show_default=False,
    ),
]
LogFileOpt = Annotated[
    Path | None,
    _value(
        "--log-file",
        help="Append every stage and failure as JSON lines.",
        panel=_OUT,
        show_default=False,
    ),
]
TraceOpt = Annotated[
    Path | None,
    _value(
        "--trace",
        help="Record every HTTP exchange as JSON lines (no token), to attach to a bug report.",
        panel=_OUT,
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, _flag("--json", help="Print one JSON document on stdout.", panel=_OUT)]
QuietOpt = Annotated[
    bool, _flag("--quiet", "-q", help="Print only errors and the final line.", panel=_OUT)
]
VerboseOpt = Annotated[
    int,
    typer.Option(
        "--verbose",
        "-v",
        count=True,
        help="More detail on stderr (-vv: one line per HTTP request).",
        rich_help_panel=_OUT,
        metavar="",
        show_default=False,
    ),
]
SandboxOpt = Annotated[
    bool,
    _flag(
        "--sandbox",
        help="Run against an in-process sandbox tenant seeded with demo data (no account).",
        panel=_CONN,
    ),
]
TenantOpt = Annotated[
    str | None,
    _value(
        "--tenant",
        help="Tenant name: the API is https://api.TENANT.getomneo.com/api. Env: OMNEO_TENANT.",
        panel=_CONN,
        show_default=False,
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    _value(
        "--base-url",
        help="API root up to /api (overrides --tenant); http:// only for loopback."
        " Env: OMNEO_BASE_URL.",
        panel=_CONN,
        show_default=False,
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    _value(
        "--token-file",
        help="Read the API token from this file (otherwise from the OMNEO_TOKEN variable)."
        " Env: OMNEO_TOKEN_FILE.",
        panel=_CONN,
        show_default=False,
    ),
]
ProfileOpt = Annotated[
    str | None,
    _value(
        "--profile",
        help="A named tenant from the config file (a \\[tenants.NAME] table). Env: OMNEO_PROFILE.",
        panel=_CONN,
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    _value(
        "--config",
        help="The config file (default: config.toml in the user config dir). Env: OMNEO_CONFIG.",
        panel=_CONN,
        show_default=False,
    ),
]
StateDirOpt = Annotated[
    Path | None,
    _value(
        "--state-dir",
        help="Where runs, reports and locks live (default: the user state dir,"
        " e.g. ~/.local/state/omneo-status). Env: OMNEO_STATE_DIR.",
        panel=_CONN,
        show_default=False,
    ),
]


# -- what the options add up to --------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """Where a command talks to and how hard it may push (the connection options)."""

    sandbox: bool = False
    tenant: str | None = None
    base_url: str | None = None
    token_file: Path | None = None
    profile: str | None = None
    config: Path | None = None
    state_dir: Path | None = None
    max_rps: float | None = None
    max_retries: int = MAX_RETRIES
    rate_limit_wait: float | None = None
    """``--rate-limit-wait``; None: from ``OMNEO_RATE_LIMIT_WAIT`` or the default."""

    def settings(self) -> Settings:
        """The resolved settings (flag > environment > config file); ``ConfigError`` if
        incomplete."""
        if self.sandbox:
            if self.tenant or self.base_url:
                raise UsageError("--sandbox cannot be combined with --tenant or --base-url")
            return sandbox_settings(self.state_dir)
        return resolve_settings(
            tenant=self.tenant,
            base_url=self.base_url,
            token_file=self.token_file,
            state_dir=self.state_dir,
            profile=self.profile,
            config=self.config,
        )


Params: TypeAlias = Mapping[str, Any]
"""A command's parameters by name (``locals()`` as the command starts)."""


def _pick(kind: type[T], params: Params) -> T:
    """``kind`` (a dataclass of options) built from the command's parameters of the same
    names: each option is declared once, as an alias, and never copied field by field."""
    names = {field.name for field in fields(kind)}  # type: ignore[arg-type]
    return kind(**{name: value for name, value in params.items() if name in names})


@dataclass(frozen=True)
class Output:
    """How a command shows what it does (the output options)."""

    json: bool = False
    quiet: bool = False
    verbose: int = 0
    trace: Path | None = None
    log_file: Path | None = None
    report: Path | None = None

    @classmethod
    def of(cls, params: Params) -> Output:
        """The output options among a command's parameters (``--json`` is ``json_out``)."""
        return _pick(cls, {**params, "json": params.get("json_out", False)})

    @property
    def report_to_stdout(self) -> bool:
        """``--report -``: the report CSV goes to stdout, the summary to stderr."""
        return self.report == Path("-")

    @property
    def display(self) -> Display:
        """The progress display: none with --quiet (or --json when stderr is no terminal)."""
        if self.quiet or (self.json and not sys.stderr.isatty()):
            return Display.QUIET
        return Display.LIVE

    def report_path(self, source: Path | None) -> Path | None:
        """The ``--report`` destination checked before anything happens (None: the default)."""
        if self.report_to_stdout:
            if self.json:
                raise UsageError("--report - and --json both want stdout; drop one of them")
            return None
        if self.report is not None:
            check_report_target(self.report, source=source)
        return self.report


# -- the error boundary ----------------------------------------------------------------------


def _advice(error: OmneoStatusError) -> OmneoStatusError:
    """The error with the CLI's advice added: how to go on with the run it ended."""
    if error.run_id is not None and error.hint is None:
        error.hint = f"Re-run the same command (or `omneo-status resume {error.run_id}`) to go on."
    return error


def _report_error(error: OmneoStatusError, *, json_out: bool) -> int:
    """Say the error (one line on stderr, and the JSON document with ``--json``); its exit code."""
    error = _advice(error)
    console.print_error(error.message, error.hint)
    if error.run_id is not None and error.run_id not in error.message:
        report = f"; report: {error.report}" if error.report is not None else ""
        console.print_note(f"Run {error.run_id}{report}")
    if json_out:
        console.print_json(error.to_json())
    return int(error.exit_code)


@contextmanager
def _boundary(json_out: bool = False) -> Iterator[None]:
    """Turn the tool's errors (and Ctrl-C) into one line on stderr, the JSON document with
    ``--json``, and the error's exit code."""
    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(_report_error(Interrupted("Interrupted"), json_out=json_out)) from None
    except OmneoStatusError as exc:
        raise typer.Exit(_report_error(exc, json_out=json_out)) from None


def _run(rt: Runtime, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` on the runtime's loop; SIGTERM is handled like Ctrl-C (exit 130)."""

    async def main() -> T:
        task = asyncio.current_task()
        if task is not None:
            with suppress(NotImplementedError, AttributeError, ValueError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await work()

    try:
        return rt.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise Interrupted("Interrupted") from None


# -- a command's session: settings, display, log, trace, client ------------------------------


class _Session:
    """Everything one command opened to talk to the API; closed when the command ends."""

    def __init__(self, rt: Runtime, conn: Connection, out: Output, stack: ExitStack) -> None:
        self.rt = rt
        self.conn = conn
        self.out = out
        self.settings = conn.settings()
        self.retry = RetryPolicy(
            max_retries=conn.max_retries,
            rate_limit_wait=resolve_rate_limit_wait(conn.rate_limit_wait),
        )
        self.shown = ConsoleReporter(
            display=out.display, verbose=out.verbose, quiet=out.quiet, clock=rt.clock
        )
        self.trace = TraceWriter(out.trace) if out.trace is not None else None
        if self.trace is not None:
            stack.callback(self.trace.close)
        self.log = JsonLogReporter(out.log_file) if out.log_file is not None else None
        if self.log is not None:
            stack.callback(self.log.close)
        self.reporter: Reporter = (
            FanoutReporter(self.shown, self.log) if self.log is not None else self.shown
        )
        self.learned = capabilities.recall(self.settings.state_dir, self.settings.base_url)
        """What ``doctor`` found on this tenant lately, if it ran."""

    def facts(self) -> TenantFacts | None:
        """What doctor found on this tenant lately, as facts for the lookup planner (None when
        it did not run); says that the run uses them."""
        if self.learned is None:
            return None
        self.reporter.info(
            f"Using what doctor found on this tenant on {self.learned.checked_at:%Y-%m-%d}"
        )
        return self.learned.facts()

    def client(self, concurrency: int = CONCURRENCY) -> OmneoClient:
        """A client for the settings, on the runtime's clock, reporting retries and requests."""
        rt = self.rt
        client = OmneoClient(
            self.settings.base_url,
            self.settings.token,
            transport=rt.sandbox_transport() if self.conn.sandbox else None,
            transport_mode=self.settings.transport,
            governor=RateGovernor(
                concurrency=concurrency, max_rps=self.conn.max_rps, clock=rt.clock, sleep=rt.sleep
            ),
            retry=self.retry,
            sleep=rt.sleep,
            on_retry=self._on_retry,
            # Building an exchange record (the answer's text, the body's JSON) costs CPU on
            # every request: only when -vv or --trace will read it.
            on_exchange=self._on_exchange
            if self.out.verbose >= 2 or self.trace is not None
            else None,
            page_style=(self.learned and self.learned.page_style) or PageStyle.PAGE_ARRAY,
        )
        if self.trace is not None:
            self.trace.transport(client.transport_in_use.to_json())
        return client

    async def call(self, work: Callable[[OmneoClient], Awaitable[T]]) -> T:
        """``work(client)`` with a fresh client, closed afterwards."""
        async with self.client() as client:
            return await work(client)

    def _on_retry(self, what: str, wait: float) -> None:
        self.shown.retrying(what, wait)
        if self.log is not None:
            self.log.info(f"retrying {what} in {wait:.1f}s")

    def _on_exchange(self, exchange: Exchange) -> None:
        self.shown.exchange(exchange)
        if self.trace is not None:
            self.trace(exchange)


@contextmanager
def _session(rt: Runtime, conn: Connection, out: Output) -> Iterator[_Session]:
    with ExitStack() as stack:
        yield _Session(rt, conn, out, stack)


# -- assign / remove / resume / undo ---------------------------------------------------------

_RUN_EPILOG = (
    "Examples:\n\n"
    "  omneo-status {verb} vip customers.csv --dry-run\n\n"
    "  omneo-status {verb} vip,staff customers.csv --yes --json\n\n"
    "  omneo-status {verb} vip examples/emails.csv --sandbox\n\n"
    "  omneo-status {verb} vip customers.csv --match identity:shopify --column 'Customer ID'\n\n"
    + EXIT_CODES_HELP
)

Job = Callable[[JobContext], Awaitable[RunSummary]]


def _handles(text: str) -> tuple[str, ...]:
    handles = tuple(dict.fromkeys(h.strip() for h in text.split(",") if h.strip()))
    if not handles:
        raise UsageError(
            "No status handle given", hint="Example: omneo-status assign vip emails.csv"
        )
    return handles


def _from_file(
    action: Action,
    handle: str,
    csv_file: str,
    *,
    column: str | None,
    match: str,
    fresh: bool,
    yes: bool,
    options: RunOptions,
    conn: Connection,
    out: Output,
    max_remove: str | None = None,
) -> None:
    """``assign``/``remove``/``sync`` (given ``max_remove``): read the file, run the job, show
    the summary, exit."""
    rt = runtime()
    with _boundary(out.json):
        spec = JobSpec(
            action, _handles(handle), sync=max_remove is not None, match=MatchKey.parse(match)
        )
        if max_remove is not None:
            if len(spec.handles) > 1:
                raise UsageError(
                    f"sync takes one status handle, not {len(spec.handles)}: {SYNC_ONE}",
                    hint=f"Run one sync per status: omneo-status sync {spec.handles[0]} ...",
                )
            options = replace(options, max_remove=RemovalLimit.parse(max_remove))
        report = out.report_path(None if csv_file == "-" else Path(csv_file))
        with (
            _session(rt, conn, out) as session,
            prepared_input(
                csv_file,
                column,
                state_dir=session.settings.state_dir,
                stdin=sys.stdin.buffer,
                match=spec.match,
            ) as source,
        ):
            summary = _execute(
                session,
                options,
                lambda ctx: jobs.run_job(ctx, spec, options, source, report=report, fresh=fresh),
                spec=spec,
                # A rehearsal against the in-process sandbox changes nothing real.
                ask=not (yes or options.dry_run or conn.sandbox) and rt.interactive(),
            )
    _finish(summary, out, fresh_advice=True)


def _by_id(
    undo: bool, run_id: str, *, yes: bool, options: RunOptions, conn: Connection, out: Output
) -> None:
    """``resume``/``undo``: run the job the journal names, show the summary, exit."""
    rt = runtime()
    runner = jobs.undo_job if undo else jobs.resume_job
    with _boundary(out.json):
        report = out.report_path(None)
        with _session(rt, conn, out) as session:
            summary = _execute(
                session,
                options,
                lambda ctx: runner(ctx, run_id, options, report=report),
                spec=None,
                ask=not (yes or options.dry_run or conn.sandbox) and rt.interactive(),
            )
    _finish(summary, out, fresh_advice=False)


def _execute(
    session: _Session, options: RunOptions, job: Job, *, spec: JobSpec | None, ask: bool
) -> RunSummary:
    """Drive one job with the session's client and display; log its end."""
    shown, rt = session.shown, session.rt
    facts = session.facts()

    def confirm(preview: console.PlanPreview) -> bool:
        with shown.paused():
            return console.confirm_plan(preview, spec)

    async def go() -> RunSummary:
        async with session.client(options.concurrency) as client:
            ctx = JobContext(
                client=client,
                base_url=session.settings.base_url,
                state_dir=session.settings.state_dir,
                reporter=session.reporter,
                confirm=confirm if ask else None,
                sleep=rt.sleep,
                clock=rt.clock,
                facts=facts,
            )
            ticker = asyncio.ensure_future(_tick(rt, shown)) if shown.ticks else None
            try:
                with shown.showing():
                    return await job(ctx)
            finally:
                if ticker is not None:
                    ticker.cancel()
                    with suppress(asyncio.CancelledError):
                        await ticker

    try:
        summary = _run(rt, go)
    except OmneoStatusError as exc:
        if session.log is not None:
            session.log.write("error", **_advice(exc).to_json())
        raise
    if session.log is not None:
        session.log.write("summary", **summary.to_json())
    return summary


async def _tick(rt: Runtime, shown: ConsoleReporter) -> None:
    """A progress line every ``PROGRESS_EVERY`` seconds, also while nothing advances."""
    while True:
        await rt.sleep(console.PROGRESS_EVERY)
        shown.tick()


def _advice_of(summary: RunSummary, *, fresh_advice: bool) -> list[str]:
    """The CLI's words for the summary's flags (shown on stderr in every mode)."""
    said: list[str] = []
    if fresh_advice and summary.already_finished:
        said.append("This job already finished; pass --fresh to run it again from the start.")
    if summary.gave_up:
        said.append(
            "Gave up waiting for some batches; they were accepted. Resume with:"
            f" omneo-status resume {summary.run_id}"
        )
    return said


def _finish(summary: RunSummary, out: Output, *, fresh_advice: bool) -> NoReturn:
    if out.json:
        console.print_json(summary.to_json())
    elif out.report_to_stdout:
        console.render_summary(summary, title_note=_title_note(summary), err=True)
        console.print_text(summary.report.read_text(encoding="utf-8"))
    elif out.quiet:
        console.print_line(console.summary_line(summary))
    else:
        console.render_summary(summary, title_note=_title_note(summary))
    for advice in _advice_of(summary, fresh_advice=fresh_advice):
        console.print_warning(advice)
    raise typer.Exit(int(summary.exit_code))


def _title_note(summary: RunSummary) -> str:
    if summary.already_finished:
        return " (already finished: nothing sent)"
    return " (resumed)" if summary.resumed else ""


@app.command(epilog=_RUN_EPILOG.format(verb="assign"), no_args_is_help=True)
def assign(
    handle: HandleArg,
    csv_file: CsvArg,
    column: ColumnOpt = None,
    match: MatchOpt = "email",
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    chunk_size: ChunkSizeOpt = CHUNK_SIZE,
    verify: VerifyOpt = VERIFY,
    poll_timeout: PollTimeoutOpt = POLL_TIMEOUT,
    stall_timeout: StallTimeoutOpt = STALL_TIMEOUT,
    no_wait: NoWaitOpt = False,
    strict: StrictOpt = False,
    max_unmatched: MaxUnmatchedOpt = None,
    fresh: FreshOpt = False,
    lookup: LookupOpt = LookupMode.AUTO,
    concurrency: ConcurrencyOpt = CONCURRENCY,
    report: ReportOpt = None,
    log_file: LogFileOpt = None,
    trace: TraceOpt = None,
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
    max_rps: MaxRpsOpt = None,
    max_retries: MaxRetriesOpt = MAX_RETRIES,
    rate_limit_wait: RateLimitWaitOpt = None,
) -> None:
    """Add status HANDLE to every profile whose email (or --match key) is in CSV_FILE.

    Only the batch endpoint is used: statuses the profiles already hold are kept.
    """
    params = locals()
    _from_file(
        Action.ASSIGN,
        handle,
        csv_file,
        column=column,
        match=match,
        fresh=fresh,
        yes=yes,
        options=_pick(RunOptions, params),
        conn=_pick(Connection, params),
        out=Output.of(params),
    )


@app.command(epilog=_RUN_EPILOG.format(verb="remove"), no_args_is_help=True)
def remove(
    handle: HandleArg,
    csv_file: CsvArg,
    column: ColumnOpt = None,
    match: MatchOpt = "email",
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    chunk_size: ChunkSizeOpt = CHUNK_SIZE,
    verify: VerifyOpt = VERIFY,
    poll_timeout: PollTimeoutOpt = POLL_TIMEOUT,
    stall_timeout: StallTimeoutOpt = STALL_TIMEOUT,
    no_wait: NoWaitOpt = False,
    strict: StrictOpt = False,
    max_unmatched: MaxUnmatchedOpt = None,
    fresh: FreshOpt = False,
    lookup: LookupOpt = LookupMode.AUTO,
    concurrency: ConcurrencyOpt = CONCURRENCY,
    report: ReportOpt = None,
    log_file: LogFileOpt = None,
    trace: TraceOpt = None,
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
    max_rps: MaxRpsOpt = None,
    max_retries: MaxRetriesOpt = MAX_RETRIES,
    rate_limit_wait: RateLimitWaitOpt = None,
) -> None:
    """Remove status HANDLE from every profile whose email (or --match key) is in CSV_FILE.

    Only the handles given are detached; every other status is kept.
    """
    params = locals()
    _from_file(
        Action.REMOVE,
        handle,
        csv_file,
        column=column,
        match=match,
        fresh=fresh,
        yes=yes,
        options=_pick(RunOptions, params),
        conn=_pick(Connection, params),
        out=Output.of(params),
    )


SyncHandleArg = Annotated[
    str,
    typer.Argument(metavar="HANDLE", help="The one status handle to sync.", show_default=False),
]
MaxRemoveOpt = Annotated[
    str,
    _value(
        "--max-remove",
        help="Stop before any write if more holders than this would lose the status: a count"
        " (50) or a share of the current holders (20%). An input without rows needs 100%.",
        panel=_RUN,
        metavar="N|P%",
    ),
]


@app.command(
    epilog="Examples:\n\n"
    "  omneo-status sync vip tonight.csv --dry-run\n\n"
    "  omneo-status sync vip tonight.csv --max-remove 50 --yes --json\n\n"
    "  omneo-status sync vip examples/emails.csv --sandbox --max-remove 100%\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
)
def sync(
    handle: SyncHandleArg,
    csv_file: CsvArg,
    max_remove: MaxRemoveOpt = MAX_REMOVE,
    column: ColumnOpt = None,
    match: MatchOpt = "email",
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    chunk_size: ChunkSizeOpt = CHUNK_SIZE,
    verify: VerifyOpt = VERIFY,
    poll_timeout: PollTimeoutOpt = POLL_TIMEOUT,
    stall_timeout: StallTimeoutOpt = STALL_TIMEOUT,
    no_wait: NoWaitOpt = False,
    strict: StrictOpt = False,
    max_unmatched: MaxUnmatchedOpt = None,
    fresh: FreshOpt = False,
    lookup: LookupOpt = LookupMode.AUTO,
    concurrency: ConcurrencyOpt = CONCURRENCY,
    report: ReportOpt = None,
    log_file: LogFileOpt = None,
    trace: TraceOpt = None,
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
    max_rps: MaxRpsOpt = None,
    max_retries: MaxRetriesOpt = MAX_RETRIES,
    rate_limit_wait: RateLimitWaitOpt = None,
) -> None:
    """Make the profiles in CSV_FILE exactly the holders of status HANDLE.

    Adds HANDLE to listed profiles that lack it and removes it from holders the file does not
    list, through the batch endpoint only; every other status is kept. The removal guard
    (--max-remove) stops before any write when too many holders would lose it.
    """
    params = locals()
    _from_file(
        Action.ASSIGN,
        handle,
        csv_file,
        column=column,
        match=match,
        fresh=fresh,
        yes=yes,
        max_remove=max_remove,
        options=_pick(RunOptions, params),
        conn=_pick(Connection, params),
        out=Output.of(params),
    )


@app.command(
    epilog="Examples:\n\n  omneo-status resume 20261128T181500-3fa9c2-0b1e\n\n"
    "  omneo-status resume 20261128T181500-3fa9c2-0b1e --max-remove 20%   (a stopped sync)\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
)
def resume(
    run_id: RunIdArg,
    max_remove: MaxRemoveOpt = MAX_REMOVE,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    chunk_size: ChunkSizeOpt = CHUNK_SIZE,
    verify: VerifyOpt = VERIFY,
    poll_timeout: PollTimeoutOpt = POLL_TIMEOUT,
    stall_timeout: StallTimeoutOpt = STALL_TIMEOUT,
    concurrency: ConcurrencyOpt = CONCURRENCY,
    report: ReportOpt = None,
    log_file: LogFileOpt = None,
    trace: TraceOpt = None,
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
    max_rps: MaxRpsOpt = None,
    max_retries: MaxRetriesOpt = MAX_RETRIES,
    rate_limit_wait: RateLimitWaitOpt = None,
) -> None:
    """Continue an unfinished run by id, from its journal (no input file needed).

    A sync stopped by its removal guard goes on with a higher --max-remove.
    """
    params = locals()
    with _boundary(json_out):
        limit = RemovalLimit.parse(max_remove)
    _by_id(
        False,
        run_id,
        yes=yes,
        options=replace(_pick(RunOptions, params), max_remove=limit),
        conn=_pick(Connection, params),
        out=Output.of(params),
    )


@app.command(
    epilog="Examples:\n\n  omneo-status undo 20261128T181500-3fa9c2-0b1e --dry-run\n\n"
    "  omneo-status undo 20261128T181500-3fa9c2-0b1e --yes\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
)
def undo(
    run_id: RunIdArg,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    chunk_size: ChunkSizeOpt = CHUNK_SIZE,
    verify: VerifyOpt = VERIFY,
    poll_timeout: PollTimeoutOpt = POLL_TIMEOUT,
    stall_timeout: StallTimeoutOpt = STALL_TIMEOUT,
    concurrency: ConcurrencyOpt = CONCURRENCY,
    report: ReportOpt = None,
    log_file: LogFileOpt = None,
    trace: TraceOpt = None,
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
    max_rps: MaxRpsOpt = None,
    max_retries: MaxRetriesOpt = MAX_RETRIES,
    rate_limit_wait: RateLimitWaitOpt = None,
) -> None:
    """Reverse exactly what a run changed, and nothing else.

    Removes what the run assigned (only where the profile did not hold it before), or adds
    back what it removed.
    """
    params = locals()
    _by_id(
        True,
        run_id,
        yes=yes,
        options=_pick(RunOptions, params),
        conn=_pick(Connection, params),
        out=Output.of(params),
    )


# -- reading commands ------------------------------------------------------------------------


@app.command(epilog="Example:\n\n  OMNEO_TENANT=acme OMNEO_TOKEN=... omneo-status statuses --json")
def statuses(
    json_out: JsonOpt = False,
    verbose: VerboseOpt = 0,
    trace: TraceOpt = None,
    sandbox: SandboxOpt = False,
    tenant: TenantOpt = None,
    base_url: BaseUrlOpt = None,
    token_file: TokenFileOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    max_retries: MaxRetriesOpt = MAX_RETRIES,
    rate_limit_wait: RateLimitWaitOpt = None,
) -> None:
    """List the tenant's status definitions (handle, name, group and expiry), every page."""
    params = locals()
    rt = runtime()
    conn = _pick(Connection, params)
    out = Output.of(params)
    with _boundary(json_out), _session(rt, conn, out) as s:
        found: list[StatusDefinition] = _run(rt, lambda: s.call(lambda c: c.list_statuses()))
    if json_out:
        console.print_json([status.to_json() for status in found])
    else:
        console.render_statuses(found)


@app.command(epilog="Example:\n\n  omneo-status batch 9f1c2e4a-... --json")
def batch(
    batch_id: BatchIdArg,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = 0,
    trace: TraceOpt = None,
    sandbox: SandboxOpt = False,
    tenant: TenantOpt = None,
    base_url: BaseUrlOpt = None,
    token_file: TokenFileOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    max_retries: MaxRetriesOpt = MAX_RETRIES,
    rate_limit_wait: RateLimitWaitOpt = None,
) -> None:
    """Show one batch's state: status, counts and failed items."""
    params = locals()
    rt = runtime()
    conn = _pick(Connection, params)
    out = Output.of(params)
    with _boundary(json_out), _session(rt, conn, out) as s:
        found = _run(rt, lambda: s.call(lambda c: c.get_batch(batch_id)))
        if not isinstance(found, Batch):
            raise UsageError(
                f"No batch {batch_id!r} on this tenant",
                hint="The tenant may not offer the batch endpoint; check the profiles.",
            )
    if json_out:
        console.print_json(found.to_json())
    else:
        console.render_batch(found)


@app.command(
    epilog="Examples:\n\n  omneo-status doctor\n\n  omneo-status doctor --json --trace doctor.jsonl"
)
def doctor(
    json_out: JsonOpt = False,
    verbose: VerboseOpt = 0,
    trace: TraceOpt = None,
    sandbox: SandboxOpt = False,
    tenant: TenantOpt = None,
    base_url: BaseUrlOpt = None,
    token_file: TokenFileOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    max_retries: MaxRetriesOpt = MAX_RETRIES,
    rate_limit_wait: RateLimitWaitOpt = None,
) -> None:
    """Probe what this tenant really does (filters, paging, rate limits), without writing.

    Exit 0 when a run can work on this tenant, 1 when it cannot. What it finds is kept in the
    state dir for a week, and runs against the same base URL start from it.
    """
    params = locals()
    rt = runtime()
    conn = _pick(Connection, params)
    out = Output.of(params)
    with _boundary(json_out), _session(rt, conn, out) as s:
        url = s.settings.base_url
        found: DoctorReport = _run(rt, lambda: s.call(lambda c: run_doctor(c, url)))
        if found.ok:
            capabilities.remember(s.settings.state_dir, url, found.capabilities)
    if json_out:
        console.print_json(found.to_json())
    else:
        console.render_doctor(found)
    raise typer.Exit(int(found.exit_code))


@app.command(
    epilog="Examples:\n\n  omneo-status runs --limit 5 --json\n\n  omneo-status runs --prune 90"
)
def runs(
    limit: Annotated[int, _value("--limit", help="How many runs to list.", min=1)] = 20,
    prune: Annotated[
        int | None,
        _value(
            "--prune",
            help="First forget finished runs and dry runs older than DAYS (their reports stay).",
            min=0,
            max=PRUNE_DAYS_MAX,
            metavar="DAYS",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
    state_dir: StateDirOpt = None,
) -> None:
    """List recent runs with their state and counts, newest first."""
    with _boundary(json_out):
        state, _ = resolve_state_dir(state_dir)
        if prune is not None:
            forgotten = jobs.prune_runs(state, prune)
            console.print_note(f"Forgot {forgotten} run(s) older than {prune} day(s)")
        found = jobs.recent_runs(state, limit)
    if json_out:
        console.print_json([view.to_json() for view in found])
    else:
        console.render_runs(found)


# -- the sandbox and the configuration -------------------------------------------------------


def _sandbox_missing() -> ConfigError:
    return ConfigError(
        "The sandbox needs its server libraries",
        hint="Install the extra: pip install 'omneo-status[sandbox]' (uv run has it).",
    )


_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 (names, not binds)


def _reachable_url(url: str, host: str) -> str:
    """The URL a client on this machine uses: a wildcard address is served on loopback too,
    and only a loopback URL is one the tool accepts over plain http."""
    loopback = _WILDCARD_HOSTS.get(host)
    if loopback is None:
        return url
    shown, replacement = (f"[{host}]", f"[{loopback}]") if ":" in host else (host, loopback)
    return url.replace(f"//{shown}:", f"//{replacement}:", 1)


def _sandbox_tenant(seed: Path | None, profiles: int | None, case_twins: int = 0) -> Tenant:
    """The tenant ``sandbox`` serves: loaded from ``--seed``, generated, or the demo one, with
    ``case_twins`` pairs of case twins added."""
    from omneo_status.sandbox import (
        SeedError,
        add_case_twins,
        demo_tenant,
        generate_tenant,
        load_seed,
    )

    if seed is not None and profiles is not None:
        raise UsageError("Give --seed or --profiles, not both")
    try:
        if seed is not None:
            tenant = load_seed(seed)
        else:
            tenant = generate_tenant(profiles) if profiles is not None else demo_tenant()
    except SeedError as exc:
        raise UsageError(str(exc)) from None
    add_case_twins(tenant, case_twins)
    return tenant


# -- sandbox: its options, then the command ------------------------------------------------

SandboxHostOpt = Annotated[str, _value("--host", help="Address to listen on.")]
SandboxPortOpt = Annotated[int, _value("--port", help="Port (0: any free).", min=0, max=65535)]
SandboxSeedOpt = Annotated[
    Path | None,
    _value(
        "--seed",
        help="Tenant JSON to load (see examples/sandbox-tenant.json).",
        show_default=False,
    ),
]
SandboxProfilesOpt = Annotated[
    int | None,
    _value(
        "--profiles",
        help="Generate a deterministic tenant of N profiles instead.",
        min=0,
        show_default=False,
    ),
]
SandboxCaseTwinsOpt = Annotated[
    int,
    _value(
        "--case-twins",
        help="Add N pairs of profiles whose addresses differ only in case"
        " (Twin0@Example.com and twin0@example.com, ...).",
        min=0,
    ),
]
SandboxTokenOpt = Annotated[str, _value("--token", help="Bearer token the sandbox accepts.")]
SandboxLatencyMsOpt = Annotated[
    float, _value("--latency-ms", help="Added to every request.", min=0)
]
SandboxRateLimitOpt = Annotated[
    int | None,
    _value(
        "--rate-limit",
        help="Requests allowed per window (default: no limit).",
        min=1,
        show_default=False,
    ),
]
SandboxRateWindowOpt = Annotated[
    float, _value("--rate-window", help="Window length in seconds.", min=0.01)
]
SandboxFailRateOpt = Annotated[
    float,
    _value("--fail-rate", help="Share of requests answered 500/502/503.", min=0, max=1),
]
SandboxFaultSeedOpt = Annotated[int, _value("--fault-seed", help="Seed of the fault generator.")]
SandboxBatchDelayOpt = Annotated[
    float, _value("--batch-delay", help="Seconds a batch stays pending.", min=0)
]
SandboxMaxBatchOpt = Annotated[
    int, _value("--max-batch", help="Most profiles in one batch request.", min=1)
]
SandboxNoEmailInFilterOpt = Annotated[
    bool,
    _flag("--no-email-in-filter", help="Ignore filter\\[email]\\[in], like a lenient server."),
]
SandboxNoBatchesOpt = Annotated[
    bool,
    _flag("--no-batches", help="Answer 404 to GET /batches/{id}, like a tenant without it."),
]
SandboxLogOpt = Annotated[
    Path | None,
    _value("--log", help="Write every request as JSON lines.", show_default=False),
]
SandboxBatchAnswerOpt = Annotated[
    str,
    _value(
        "--batch-answer",
        help="Where the batch answer puts batch_id: data (the statuses guide) or top_level"
        " (the sibling batch endpoints).",
        panel=_VARIANTS,
    ),
]
SandboxStringCountsOpt = Annotated[
    bool,
    _flag("--string-counts", help="Send batch counts as strings.", panel=_VARIANTS),
]
SandboxPageStyleOpt = Annotated[
    str,
    _value(
        "--page-style",
        help=r"Pagination honoured: page_array (page\[size]/page\[number]), per_page"
        " (per_page/page) or both.",
        panel=_VARIANTS,
    ),
]
SandboxEmailMatchOpt = Annotated[
    str,
    _value(
        "--email-match",
        help="The email filter: case_insensitive, case_sensitive, or ignored (lists everyone).",
        panel=_VARIANTS,
    ),
]
SandboxNoStatusFilterOpt = Annotated[
    bool,
    _flag(
        "--no-status-filter",
        help=r"Ignore filter\[statuses.handle] (list every profile).",
        panel=_VARIANTS,
    ),
]
SandboxNoItemEntityIdOpt = Annotated[
    bool,
    _flag(
        "--no-item-entity-id",
        help="Leave batch items' entity_id null.",
        panel=_VARIANTS,
    ),
]
SandboxNoRateLimitHeadersOpt = Annotated[
    bool,
    _flag(
        "--no-rate-limit-headers",
        help="Send no X-RateLimit-* headers (only a 429's Retry-After tells).",
        panel=_VARIANTS,
    ),
]
SandboxGroupRuleOpt = Annotated[
    bool,
    _flag(
        "--group-rule",
        help="Assigning a status of a group detaches its siblings.",
        panel=_VARIANTS,
    ),
]


@app.command(
    epilog="Examples:\n\n  omneo-status sandbox --port 8765 --profiles 1000\n\n"
    "  omneo-status sandbox --rate-limit 100 --rate-window 1 --fail-rate 0.2 --batch-delay 2\n\n"
    "  omneo-status sandbox --profiles 3000 --case-twins 1 --email-match case_sensitive"
)
def sandbox(
    host: SandboxHostOpt = "127.0.0.1",
    port: SandboxPortOpt = 8765,
    seed: SandboxSeedOpt = None,
    profiles: SandboxProfilesOpt = None,
    case_twins: SandboxCaseTwinsOpt = 0,
    token: SandboxTokenOpt = (SANDBOX_TOKEN),
    latency_ms: SandboxLatencyMsOpt = 0.0,
    rate_limit: SandboxRateLimitOpt = None,
    rate_window: SandboxRateWindowOpt = 1.0,
    fail_rate: SandboxFailRateOpt = 0.0,
    fault_seed: SandboxFaultSeedOpt = 0,
    batch_delay: SandboxBatchDelayOpt = 0.0,
    max_batch: SandboxMaxBatchOpt = 500,
    no_email_in_filter: SandboxNoEmailInFilterOpt = False,
    no_batches: SandboxNoBatchesOpt = False,
    log: SandboxLogOpt = None,
    batch_answer: SandboxBatchAnswerOpt = "data",
    string_counts: SandboxStringCountsOpt = False,
    page_style: SandboxPageStyleOpt = "page_array",
    email_match: SandboxEmailMatchOpt = "case_insensitive",
    no_status_filter: SandboxNoStatusFilterOpt = False,
    no_item_entity_id: SandboxNoItemEntityIdOpt = False,
    no_rate_limit_headers: SandboxNoRateLimitHeadersOpt = False,
    group_rule: SandboxGroupRuleOpt = False,
) -> None:
    """Serve an in-memory Omneo tenant on a local port, to rehearse runs against."""
    with _boundary():
        try:
            from omneo_status.sandbox import SandboxConfig, create_app, serve
        except ImportError:
            raise _sandbox_missing() from None
        tenant = _sandbox_tenant(seed, profiles, case_twins)
        try:
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
                batch_answer=batch_answer,  # type: ignore[arg-type]  # checked by SandboxConfig
                string_counts=string_counts,
                page_style=page_style,  # type: ignore[arg-type]
                email_match=email_match,  # type: ignore[arg-type]
                status_filter=not no_status_filter,
                item_entity_id=not no_item_entity_id,
                rate_limit_headers=not no_rate_limit_headers,
                group_rule=group_rule,
            )
        except ValueError as exc:
            raise UsageError(f"Invalid sandbox variant: {exc}") from None
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
                on_ready=lambda url: console.sandbox_banner(
                    _reachable_url(url, host), token, count, all_interfaces=host in _WILDCARD_HOSTS
                ),
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
    """Print the effective configuration and where each value came from; the token masked.

    What is missing is marked, not an error: this is the command to find out what is.
    """
    with _boundary(json_out):
        views = describe_settings(
            tenant=tenant,
            base_url=base_url,
            token_file=token_file,
            state_dir=state_dir,
            profile=profile,
            config=config,
        )
    if json_out:
        console.print_json({view.key: view.to_json() for view in views})
    else:
        console.render_config(views)


def main() -> None:
    """The console-script entry point."""
    app()
