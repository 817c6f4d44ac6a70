"""The app: its top-level help and ``--version``, and every command registered on it, in the
order ``--help`` lists them. The commands live in their families' modules, which never import
this one."""

from __future__ import annotations

from typing import Annotated

import typer

from omneo_status import __version__
from omneo_status.cli import console, reads, runs, sandbox
from omneo_status.cli.boundary import EXIT_CODES_HELP, JsonAwareGroup

app = typer.Typer(
    name="omneo-status",
    cls=JsonAwareGroup,
    help="Add or remove an Omneo CX profile status for every email in a CSV, without ever"
    " wiping the statuses those profiles already hold.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Examples:\n\n  omneo-status assign vip examples/emails.csv --sandbox\n\n"
    "  export OMNEO_TENANT=acme OMNEO_TOKEN_FILE=~/.config/omneo-status/token\n\n"
    "  omneo-status assign vip customers.csv --dry-run\n\n"
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


app.command("assign", epilog=runs.RUN_EPILOG.format(verb="assign"), no_args_is_help=True)(
    runs.assign
)
app.command("remove", epilog=runs.RUN_EPILOG.format(verb="remove"), no_args_is_help=True)(
    runs.remove
)
app.command("sync", epilog=runs.SYNC_EPILOG, no_args_is_help=True)(runs.sync)
app.command("resume", epilog=runs.RESUME_EPILOG, no_args_is_help=True)(runs.resume)
app.command("undo", epilog=runs.UNDO_EPILOG, no_args_is_help=True)(runs.undo)
app.command("statuses", epilog=reads.STATUSES_EPILOG)(reads.statuses)
app.command("batch", epilog=reads.BATCH_EPILOG)(reads.batch)
app.command("doctor", epilog=reads.DOCTOR_EPILOG)(reads.doctor)
app.command("runs", epilog=reads.RUNS_EPILOG)(reads.runs)
app.command("sandbox", epilog=sandbox.SANDBOX_EPILOG)(sandbox.sandbox)

config_app = typer.Typer(
    help="Inspect the configuration (flags, OMNEO_* variables and the config file).",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")
config_app.command("show", epilog=reads.CONFIG_SHOW_EPILOG)(reads.config_show)


def main() -> None:
    """The console-script entry point."""
    app()
