"""What a command runs in, and how it ends: the runtime (time, the in-process sandbox, the
terminal) and the one error boundary.

This is the one place where an ``OmneoStatusError`` becomes an ``Error:`` line and an exit code
(with ``--json``, one JSON document too), and where an error that ends a run gets the CLI's
advice ("resume RUN_ID").
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
import typer
from typer.core import TyperCommand, TyperGroup

from omneo_status import __version__
from omneo_status.cli import console
from omneo_status.errors import ConfigError, ExitCode, Interrupted, OmneoStatusError, UsageError
from omneo_status.wording import closest

T = TypeVar("T")

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


def sandbox_missing() -> ConfigError:
    """The error for ``--sandbox`` or ``sandbox`` without the sandbox's server libraries."""
    return ConfigError(
        "The sandbox needs its server libraries (the `sandbox` extra)",
        hint="Install the tool again with the extra, from where it came: a checkout (pipx"
        " install '.[sandbox]') or a wheel (uv tool install"
        f" './omneo_status-{__version__}-py3-none-any.whl[sandbox]'); uv run in a checkout"
        " has it.",
    )


def _demo_sandbox_transport() -> httpx.AsyncBaseTransport:
    try:
        from omneo_status.sandbox import SandboxConfig, create_app, demo_tenant
    except ImportError:
        raise sandbox_missing() from None
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
    """The runtime every command uses: real time, the demo sandbox, the real terminal.

    Commands call it as ``boundary.runtime()``, so that a test can replace it here."""
    return Runtime()


# -- the error boundary ----------------------------------------------------------------------


def advice(error: OmneoStatusError) -> OmneoStatusError:
    """The error with the CLI's advice added: how to go on with the run it ended."""
    if error.run_id is not None and error.hint is None:
        error.hint = f"Re-run the same command (or `omneo-status resume {error.run_id}`) to go on."
    return error


def report_error(error: OmneoStatusError, *, json_out: bool) -> int:
    """Say the error (one line on stderr, and the JSON document with ``--json``); its exit code."""
    error = advice(error)
    console.print_error(error.message, error.hint)
    if error.run_id is not None and error.run_id not in error.message:
        report = f"; report: {error.report}" if error.report is not None else ""
        console.print_note(f"Run {error.run_id}{report}")
    if json_out:
        console.print_json(error.to_json())
    return int(error.exit_code)


@contextmanager
def guard(json_out: bool = False) -> Iterator[None]:
    """Turn the tool's errors (and Ctrl-C) into one line on stderr, the JSON document with
    ``--json``, and the error's exit code."""
    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(report_error(Interrupted("Interrupted"), json_out=json_out)) from None
    except OmneoStatusError as exc:
        raise typer.Exit(report_error(exc, json_out=json_out)) from None


def run(rt: Runtime, work: Callable[[], Awaitable[T]]) -> T:
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


class HelpCommand(TyperCommand):
    """Typer's command, with its help drawn as every help here is (``console.fold_help``) and
    no value type after a switch (``-h, --help``, ``--show-completion``)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The command's help, its long values wrapped rather than cut."""
        console.fold_help()
        super().format_help(ctx, formatter)

    def get_params(self, ctx: Any) -> list[Any]:
        """Its parameters, a switch (``-h, --help``) shown without a value type."""
        return _switches(super().get_params(ctx))


class HelpGroup(TyperGroup):
    """Typer's group, with its help drawn as ``HelpCommand``'s is, and a command it does not
    know refused with the one meant, when that is clear."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The group's help, its long values wrapped rather than cut."""
        console.fold_help()
        super().format_help(ctx, formatter)

    def get_params(self, ctx: Any) -> list[Any]:
        """Its parameters, a switch (``-h, --help``) shown without a value type."""
        return _switches(super().get_params(ctx))

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """The command ``args`` names; an unknown one is refused with the command it is close
        to, if one is (``wording.closest``)."""
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as exc:
            guess = closest(args[0], self.list_commands(ctx)) if args else None
            if guess is not None and hasattr(exc, "message"):
                exc.message = f"{exc.message.rstrip('.')}; did you mean `{guess}`?"
            raise


def _switches(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # Typer would show <bool>
    return params


class JsonAwareGroup(HelpGroup):
    """The app's group: a usage error Typer finds itself (an unknown option, a missing
    argument, a value out of range) is said the one way every error is, ``Error:`` and
    ``Hint:`` on stderr with exit 2, and with ``--json`` also as one JSON document on stdout."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        json_out = "--json" in argv
        try:
            code = super().main(argv, prog_name, complete_var, False, **extra)
        except typer.TyperException as exc:  # Typer's own usage errors (its Click's classes)
            code = _said(exc, json_out)
        except typer.Abort:
            code = report_error(OmneoStatusError("Aborted"), json_out=json_out)
        except Exception as exc:
            if json_out:  # a bug: the document says so, and the traceback follows on stderr
                report_error(
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


def _said(exc: typer.TyperException, json_out: bool) -> int:
    """Say one of Typer's own errors as the tool's; its exit code. Help shown for want of
    arguments was said already (exit 2, as Typer exits)."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        return int(ExitCode.USAGE)
    ctx = getattr(exc, "ctx", None)
    message = exc.format_message()
    option = getattr(exc, "option_name", None)
    if option is not None and ctx is not None:  # an unknown option: Click's list of guesses
        known = [name for param in ctx.command.params for name in param.opts if "--" in name]
        guess = closest(option, known)
        message = getattr(exc, "message", message)
        message += f"; did you mean `{guess}`?" if guess is not None else ""
    kind = UsageError if exc.exit_code == ExitCode.USAGE else OmneoStatusError
    return report_error(kind(message, hint=_usage_hint(ctx)), json_out=json_out)


def _usage_hint(ctx: Any) -> str:
    """Where to read how the command is used."""
    if ctx is None:
        return "Run `omneo-status --help` to see the commands."
    if isinstance(ctx.command, TyperGroup):
        what = "the commands"
    elif any(param.param_type_name == "argument" for param in ctx.command.params):
        what = "its arguments and options"
    else:
        what = "its options"
    return f"Run `{ctx.command_path} --help` to see {what}."
