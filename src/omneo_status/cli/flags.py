"""The flag vocabulary: every option the commands share, declared once with its help and its
default, the groups commands take them in, and what their values add up to.

A command names the flags it offers (``@with_flags(...)``): Typer sees them as keyword
parameters after the command's own arguments, and the command gets their values as one
``Given``, read back by flag (``given[DRY_RUN]`` is a ``bool``). ``run_options``,
``connection`` (with ``sources``) and ``output`` build the typed objects from those values,
field by field. Every default comes from ``omneo_status.options``.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import typer

from omneo_status import options
from omneo_status.cli.console import Display
from omneo_status.errors import UsageError
from omneo_status.options import LookupMode, RemovalLimit, RunOptions
from omneo_status.report import check_report_target
from omneo_status.settings import SettingFlags, Settings, resolve_settings, sandbox_settings

T = TypeVar("T")
V = TypeVar("V")

CONN = "Connection"
RUN = "Run"
OUT = "Output"

PRUNE_DAYS_MAX = 36_500
"""``runs --prune`` takes at most a century: a larger number can only be a typo."""


def toggle(*names: str, help: str, panel: str | None = None) -> Any:
    """An on/off option shown without a value type in the help."""
    return typer.Option(*names, help=help, rich_help_panel=panel, metavar="")


def valued(*names: str, help: str, panel: str | None = None, **limits: Any) -> Any:
    """An option taking a value; no default shown when it has none."""
    return typer.Option(*names, help=help, rich_help_panel=panel, **limits)


@dataclass(frozen=True)
class Flag(Generic[T]):
    """One option as every command that offers it declares it."""

    name: str
    """The parameter Typer passes the value as: the long option's name (``--dry-run``:
    ``dry_run``)."""
    kind: Any
    """The value's type as Typer reads it (``int``, ``Path | None``, an enum...)."""
    option: Any
    """The ``typer.Option`` that names it, explains it and bounds it."""
    default: T

    def parameter(self) -> inspect.Parameter:
        """The keyword parameter Typer builds the option from."""
        return inspect.Parameter(
            self.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=self.default,
            annotation=Annotated[self.kind, self.option],
        )


def _named(names: tuple[str, ...], kind: Any, option: Any, default: T) -> Flag[T]:
    return Flag(names[0].removeprefix("--").replace("-", "_"), kind, option, default)


def switch(*names: str, help: str, panel: str) -> Flag[bool]:
    """An option that is off unless given."""
    return _named(names, bool, toggle(*names, help=help, panel=panel), False)


def optional(
    kind: type[V], *names: str, help: str, panel: str | None = None, **limits: Any
) -> Flag[V | None]:
    """An option whose value may be left out (None), with no default shown."""
    option = valued(*names, help=help, panel=panel, show_default=False, **limits)
    return _named(names, kind | None, option, None)


def defaulted(
    kind: type[V], default: V, *names: str, help: str, panel: str | None = None, **limits: Any
) -> Flag[V]:
    """An option whose value has a default, shown in the help."""
    return _named(names, kind, valued(*names, help=help, panel=panel, **limits), default)


class Given:
    """The values Typer parsed for a command's flags."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, flag: Flag[T]) -> T:
        """The flag's value on the command line; its default on a command that does not offer
        it (``undo`` has no ``--no-wait``: its run does not skip waiting)."""
        value: T = self._values.get(flag.name, flag.default)
        return value


def with_flags(*flags: Flag[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The command ``body`` offering ``flags`` after its own parameters (its arguments): Typer
    reads them from the signature, and ``body`` gets their values, as one ``Given``, in its
    parameter annotated ``Given`` (its first, when an argument has a default; else its last)."""

    def decorate(body: Callable[..., None]) -> Callable[..., None]:
        parameters = inspect.signature(body, eval_str=True).parameters.values()
        own = [parameter for parameter in parameters if parameter.annotation is not Given]
        [given] = [parameter.name for parameter in parameters if parameter.annotation is Given]

        @functools.wraps(body)
        def command(**values: Any) -> None:
            arguments = {parameter.name: values.pop(parameter.name) for parameter in own}
            body(**arguments, **{given: Given(values)})

        signature = inspect.Signature([*own, *(flag.parameter() for flag in flags)])
        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        return command

    return decorate


# -- the arguments ---------------------------------------------------------------------------

HandleArg = Annotated[
    str | None,
    typer.Argument(
        metavar="HANDLE",
        help="Status handle, or several separated by commas (vip,staff); left out with"
        " --status-column.",
        show_default=False,
    ),
]
SyncHandleArg = Annotated[
    str | None,
    typer.Argument(
        metavar="HANDLE",
        help="The one status handle to sync; left out with --status-column.",
        show_default=False,
    ),
]
"""Optional to Typer, as CSV_FILE is: with --status-column the one argument is the file."""
CsvArg = Annotated[
    str | None,
    typer.Argument(
        metavar="CSV_FILE",
        help="CSV or workbook (.xlsx, .xls, .ods) of email addresses (or of --match keys),"
        " or - for stdin (always needed).",
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

# -- a run's flags ---------------------------------------------------------------------------

COLUMN = optional(
    str,
    "--column",
    help="Name of the key column, email unless --match says otherwise (default: found by"
    " its header).",
    panel=RUN,
)
SHEET = optional(
    str,
    "--sheet",
    help="The workbook's sheet to read: its name, or its number (1 for the first; default:"
    " the first).",
    panel=RUN,
    metavar="NAME|NUMBER",
)
STATUS_COLUMN = optional(
    str,
    "--status-column",
    help="Read each row's status from this column (give no HANDLE): a status of a group"
    " moves its customer within the group, the other statuses of the group removed.",
    panel=RUN,
    metavar="NAME",
)
MATCH = defaulted(
    str,
    "email",
    "--match",
    help="What the column holds: email, mobile, id (an Omneo profile id), or"
    " identity:HANDLE (for example identity:shopify).",
    panel=RUN,
    metavar="KEY",
)
DRY_RUN = switch("--dry-run", help="Do every read and no write: preview the real plan.", panel=RUN)
YES = switch(
    "--yes",
    "-y",
    help="Do not ask before writing. Off a terminal (cron, a pipe) nothing can ask: the run"
    " writes without asking all the same, and warns unless --yes is given.",
    panel=RUN,
)
CHUNK_SIZE = defaulted(
    int,
    options.CHUNK_SIZE,
    "--chunk-size",
    help="Profiles per batch request.",
    panel=RUN,
    min=1,
    max=options.CHUNK_SIZE_MAX,
)
VERIFY = defaulted(
    int,
    options.VERIFY,
    "--verify",
    help="Re-read this many changed profiles at the end (0: off).",
    panel=RUN,
    min=0,
)
POLL_TIMEOUT = defaulted(
    float,
    options.POLL_TIMEOUT,
    "--poll-timeout",
    help="Seconds to wait for the batches.",
    panel=RUN,
    min=0,
)
STALL_TIMEOUT = defaulted(
    float,
    options.STALL_TIMEOUT,
    "--stall-timeout",
    help="Give up on a batch whose counts have not moved for this many seconds"
    " (without a batches endpoint: whose profiles have not changed; sent again once first).",
    panel=RUN,
    min=0,
)
NO_WAIT = switch("--no-wait", help="Send and stop; follow up with `omneo-status batch`.", panel=RUN)
STRICT = switch(
    "--strict",
    help="Rows not found, ambiguous, invalid or without a status count as failures (exit 3).",
    panel=RUN,
)
MAX_UNMATCHED = optional(
    float,
    "--max-unmatched",
    help="Stop before any write if more than this share of rows would be skipped.",
    panel=RUN,
    min=0,
    max=100,
    metavar="PERCENT",
)
FRESH = switch("--fresh", help="Start over instead of resuming the same job.", panel=RUN)
LOOKUP = defaulted(
    LookupMode,
    LookupMode.AUTO,
    "--lookup",
    help="Email lookups: auto picks the plan with the fewest requests (one per address,"
    " filter\\[email]\\[in] groups, or a scan of every profile) and says why; single, bulk"
    " and scan force one.",
    panel=RUN,
)
CONCURRENCY = defaulted(
    int,
    options.CONCURRENCY,
    "--concurrency",
    help="The most requests in flight at once: the tool starts lower and finds its own"
    " level under this ceiling.",
    panel=RUN,
    min=1,
    max=options.CONCURRENCY_MAX,
)
MAX_REMOVE = defaulted(
    str,
    options.MAX_REMOVE,
    "--max-remove",
    help="Stop before any write if more holders than this would lose the status: a count"
    " (50) or a share of the current holders (20%). An input without rows needs 100%.",
    panel=RUN,
    metavar="N|P%",
)

# -- how a command shows what it does --------------------------------------------------------

REPORT = optional(
    Path,
    "--report",
    help="Write the per-row report here (default: under the state dir); - for stdout.",
    panel=OUT,
)
LOG_FILE = optional(
    Path,
    "--log-file",
    help="Append every stage and failure as JSON lines, each naming its run (run_id).",
    panel=OUT,
)
TRACE = optional(
    Path,
    "--trace",
    help="Record every HTTP exchange as JSON lines (no token), to attach to a bug report.",
    panel=OUT,
)
JSON = switch("--json", help="Print one JSON document on stdout.", panel=OUT)
QUIET = switch(
    "--quiet",
    "-q",
    help="Only warnings and errors on stderr; stdout gets one summary line (or the report, with"
    " --report -).",
    panel=OUT,
)
VERBOSE = defaulted(
    int,
    0,
    "--verbose",
    "-v",
    count=True,
    help="More detail on stderr (-vv: one line per HTTP request).",
    panel=OUT,
    metavar="",
    show_default=False,
)

# -- where a command talks to, and how hard it may push ----------------------------------------

SANDBOX = switch(
    "--sandbox",
    help="Run against an in-process sandbox tenant seeded with demo data (no account).",
    panel=CONN,
)
TENANT = optional(
    str,
    "--tenant",
    help="Tenant name: the API is https://api.TENANT.getomneo.com/api. Env: OMNEO_TENANT.",
    panel=CONN,
)
BASE_URL = optional(
    str,
    "--base-url",
    help="API root up to /api (overrides --tenant); http:// only for loopback."
    " Env: OMNEO_BASE_URL.",
    panel=CONN,
)
TOKEN_FILE = optional(
    Path,
    "--token-file",
    help="Read the API token from this file (otherwise from the OMNEO_TOKEN variable)."
    " Env: OMNEO_TOKEN_FILE.",
    panel=CONN,
)
PROFILE = optional(
    str,
    "--profile",
    help="A named tenant from the config file (a \\[tenants.NAME] table). Env: OMNEO_PROFILE.",
    panel=CONN,
)
CONFIG = optional(
    Path,
    "--config",
    help="The config file (default: config.toml in the user config dir). Env: OMNEO_CONFIG.",
    panel=CONN,
)
STATE_DIR = optional(
    Path,
    "--state-dir",
    help="Where runs, reports and locks live (default: the user state dir,"
    " e.g. ~/.local/state/omneo-status). Env: OMNEO_STATE_DIR.",
    panel=CONN,
)
MAX_RPS = optional(float, "--max-rps", help="Cap requests per second.", panel=CONN, min=0.1)
MAX_RETRIES = defaulted(
    int,
    options.MAX_RETRIES,
    "--max-retries",
    help="Retries of a failed request (a 5xx, a timeout, a lost connection; a 429 is"
    " waited out under --rate-limit-wait instead).",
    panel=CONN,
    min=0,
    max=options.MAX_RETRIES_MAX,
)
RATE_LIMIT_WAIT = optional(
    float,
    "--rate-limit-wait",
    help=f"Seconds one request may wait out 429s in all (default {options.RATE_LIMIT_WAIT:g}:"
    " another client may be using the tenant's rate limit). Env: OMNEO_RATE_LIMIT_WAIT.",
    panel=CONN,
    min=0,
    metavar="SECONDS",
)

# -- the list of runs ------------------------------------------------------------------------

LIMIT = defaulted(int, 20, "--limit", help="How many runs to list.", min=1)
PRUNE = optional(
    int,
    "--prune",
    help="First forget finished runs and dry runs older than DAYS (their reports stay).",
    min=0,
    max=PRUNE_DAYS_MAX,
    metavar="DAYS",
)

# -- the groups commands take them in (the order is the order of --help) ----------------------

EVERY_RUN = (DRY_RUN, YES, CHUNK_SIZE, VERIFY, POLL_TIMEOUT, STALL_TIMEOUT)
"""What every run command takes, a run by id included."""
FILE_RUN = (
    COLUMN,
    SHEET,
    STATUS_COLUMN,
    MATCH,
    *EVERY_RUN,
    NO_WAIT,
    STRICT,
    MAX_UNMATCHED,
    FRESH,
    LOOKUP,
    CONCURRENCY,
)
"""What a run from an input file takes (``assign``, ``remove``, ``sync``)."""
WHICH_TENANT = (TENANT, BASE_URL, TOKEN_FILE, PROFILE, CONFIG)
"""Which tenant, and its token (over the environment and the config file)."""
RUN_OUTPUT = (REPORT, LOG_FILE, TRACE, JSON, QUIET, VERBOSE)
RUN_CONNECTION = (SANDBOX, *WHICH_TENANT, STATE_DIR, MAX_RPS, MAX_RETRIES, RATE_LIMIT_WAIT)
READ_OUTPUT = (JSON, VERBOSE, TRACE)
READ_CONNECTION = (SANDBOX, *WHICH_TENANT, MAX_RETRIES, RATE_LIMIT_WAIT)
"""What a command that only reads the API takes: no pacing of its own, no state of its own."""


# -- what the values add up to ---------------------------------------------------------------


def run_options(given: Given) -> RunOptions:
    """How the run goes about it; ``UsageError`` for a --max-remove that is no limit."""
    return RunOptions(
        dry_run=given[DRY_RUN],
        chunk_size=given[CHUNK_SIZE],
        verify=given[VERIFY],
        poll_timeout=given[POLL_TIMEOUT],
        stall_timeout=given[STALL_TIMEOUT],
        no_wait=given[NO_WAIT],
        strict=given[STRICT],
        max_unmatched=given[MAX_UNMATCHED],
        lookup=given[LOOKUP],
        concurrency=given[CONCURRENCY],
        max_remove=RemovalLimit.parse(given[MAX_REMOVE]),
    )


def sources(given: Given) -> SettingFlags:
    """Where the command's settings come from besides the environment and the config file's
    defaults: the flags ``resolve_settings`` and ``describe_settings`` take."""
    return SettingFlags(
        tenant=given[TENANT],
        base_url=given[BASE_URL],
        token_file=given[TOKEN_FILE],
        state_dir=given[STATE_DIR],
        profile=given[PROFILE],
        config=given[CONFIG],
    )


@dataclass(frozen=True)
class Connection:
    """Where a command talks to and how hard it may push (the connection options)."""

    sandbox: bool
    sources: SettingFlags
    max_rps: float | None
    max_retries: int
    rate_limit_wait: float | None
    """``--rate-limit-wait``; None: from ``OMNEO_RATE_LIMIT_WAIT`` or the default."""

    def settings(self) -> Settings:
        """The resolved settings (flag > environment > config file); ``ConfigError`` if
        incomplete."""
        if self.sandbox:
            if self.sources.get("tenant") or self.sources.get("base_url"):
                raise UsageError("--sandbox cannot be combined with --tenant or --base-url")
            return sandbox_settings(self.sources.get("state_dir"))
        return resolve_settings(**self.sources)


def connection(given: Given) -> Connection:
    """Where the command talks to, from its connection flags."""
    return Connection(
        sandbox=given[SANDBOX],
        sources=sources(given),
        max_rps=given[MAX_RPS],
        max_retries=given[MAX_RETRIES],
        rate_limit_wait=given[RATE_LIMIT_WAIT],
    )


@dataclass(frozen=True)
class Output:
    """How a command shows what it does (the output options)."""

    json: bool
    quiet: bool
    verbose: int
    trace: Path | None
    log_file: Path | None
    report: Path | None

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


def output(given: Given) -> Output:
    """How the command shows what it does, from its output flags."""
    return Output(
        json=given[JSON],
        quiet=given[QUIET],
        verbose=given[VERBOSE],
        trace=given[TRACE],
        log_file=given[LOG_FILE],
        report=given[REPORT],
    )
