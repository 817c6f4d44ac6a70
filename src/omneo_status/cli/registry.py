"""The app: its top-level help and ``--version``, and every command registered on it, in the
order ``--help`` lists them. The commands live in their families' modules, which never import
this one."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from omneo_status import __version__
from omneo_status.cli import console, reads, runs, sandbox
from omneo_status.cli.boundary import EXIT_CODES_HELP, HelpCommand, HelpGroup, JsonAwareGroup

app = typer.Typer(
    name="omneo-status",
    cls=JsonAwareGroup,
    suggest_commands=False,  # JsonAwareGroup suggests a command only when it is close
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


def _flowed(doc: str | None) -> str:
    """A docstring as a command's help: each paragraph on one line, for rich to wrap to the
    terminal's width (Typer keeps the line breaks of every paragraph but the first)."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


def _register(
    group: typer.Typer, name: str, command: Callable[..., Any], epilog: str, **how: Any
) -> None:
    group.command(name, epilog=epilog, help=_flowed(command.__doc__), cls=HelpCommand, **how)(
        command
    )


_register(app, "assign", runs.assign, runs.RUN_EPILOG.format(verb="assign"), no_args_is_help=True)
_register(app, "remove", runs.remove, runs.RUN_EPILOG.format(verb="remove"), no_args_is_help=True)
_register(app, "sync", runs.sync, runs.SYNC_EPILOG, no_args_is_help=True)
_register(app, "resume", runs.resume, runs.RESUME_EPILOG, no_args_is_help=True)
_register(app, "undo", runs.undo, runs.UNDO_EPILOG, no_args_is_help=True)
_register(app, "statuses", reads.statuses, reads.STATUSES_EPILOG)
_register(app, "batch", reads.batch, reads.BATCH_EPILOG)
_register(app, "doctor", reads.doctor, reads.DOCTOR_EPILOG)
_register(app, "runs", reads.runs, reads.RUNS_EPILOG)
_register(app, "sandbox", sandbox.sandbox, sandbox.SANDBOX_EPILOG)

config_app = typer.Typer(
    cls=HelpGroup,
    suggest_commands=False,
    help="Inspect the configuration (flags, OMNEO_* variables and the config file).",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")
_register(config_app, "show", reads.config_show, reads.CONFIG_SHOW_EPILOG)


def main() -> None:
    """The console-script entry point."""
    app()
