"""One exception tree for the whole tool; every error knows its exit code.

The core raises these and never prints or exits; ``cli/boundary.py`` is the one boundary that
turns them into an ``Error: ...`` line (and a ``Hint: ...`` line) on stderr and an exit code.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import Any


class ExitCode(IntEnum):
    """The documented exit codes of every command."""

    OK = 0
    """Finished, and no row failed (skips are not failures unless ``--strict``)."""
    FATAL = 1
    """Fatal runtime error: API unreachable after retries, auth rejected, unreadable answer
    (and a run cancelled at the prompt)."""
    USAGE = 2
    """Usage, configuration or input error (unknown handle included); nothing was written."""
    ROWS_FAILED = 3
    """Finished, but rows failed, verification found problems, or a guardrail stopped the run."""
    LOCKED = 4
    """Another run of the same job holds its lock."""
    GAVE_UP_WAITING = 5
    """Gave up waiting for batches; they were accepted, and re-running picks them up."""
    INTERRUPTED = 130
    """Interrupted by Ctrl-C or SIGTERM; the journal is saved and the run can be resumed."""


class OmneoStatusError(Exception):
    """Base of every error the tool reports to the user as one line.

    ``run_id`` and ``report`` are set when the error ended a run that exists in the journal,
    so that the CLI can say how to go on and ``--json`` can carry them as keys.
    """

    exit_code: ExitCode = ExitCode.FATAL

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        run_id: str | None = None,
        report: Path | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.run_id = run_id
        self.report = report

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document of a command that ended with this error."""
        return {
            "error": self.message,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
            "run_id": self.run_id,
            "report": str(self.report) if self.report is not None else None,
        }


class UsageError(OmneoStatusError):
    """A flag, argument or combination of them is wrong."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The configuration (tenant, base URL, token, config file) is missing or invalid."""


class InputError(UsageError):
    """The input file cannot be used (encoding, no email column, empty ...)."""


class UnknownHandleError(UsageError):
    """A status handle has no definition on the tenant."""


class LockedError(OmneoStatusError):
    """Another run of the same job is in progress."""

    exit_code = ExitCode.LOCKED


class GuardrailError(OmneoStatusError):
    """A safety limit stopped the run before any write."""

    exit_code = ExitCode.ROWS_FAILED


class ApiError(OmneoStatusError):
    """The Omneo API answered with an error the tool cannot get past."""

    exit_code = ExitCode.FATAL

    def __init__(
        self, message: str, *, status_code: int | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code


class AuthError(ApiError):
    """401 or 403: the token is missing, wrong, expired or lacks a scope."""


class NotFoundError(ApiError):
    """404 for a resource the tool asked for by id."""


class ValidationFailed(ApiError):
    """422: the API refused the request body."""


class RateLimited(ApiError):
    """429 that outlasted every retry."""


class ServerError(ApiError):
    """5xx that outlasted every retry."""


class Unreachable(ApiError):
    """The API could not be reached: connection refused, DNS, timeouts (after retries), or at
    once a TLS certificate that cannot be verified or a proxy the tool cannot use."""


class BadResponse(ApiError):
    """The API answered something the tool cannot read."""


class Interrupted(OmneoStatusError):
    """The run was stopped by a signal; the journal is saved."""

    exit_code = ExitCode.INTERRUPTED


class Cancelled(OmneoStatusError):
    """The person at the prompt said no; nothing was written."""


class JournalBusy(OmneoStatusError):
    """The run journal stayed locked by another process longer than the tool waits."""


class NotJsonAnswer(ApiError):
    """The API (or a proxy in front of it) answered with something that is not JSON, such as
    an HTML error page: fatal for the run, never a row-level failure."""
