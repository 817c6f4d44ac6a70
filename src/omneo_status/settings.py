"""Where the tool talks to and with what token: flag > environment > default.

The token is held as a ``SecretStr`` from the moment it is read, so it never reaches a repr,
a log line, a traceback or a file.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from pydantic import SecretStr

from omneo_status.errors import ConfigError

APP_NAME = "omneo-status"
SANDBOX_BASE_URL = "http://sandbox.invalid/api"
"""The base URL an in-process sandbox run (``--sandbox``) is keyed and reported under."""

SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 (guards nothing real)
"""The token the sandbox accepts unless told otherwise (it guards nothing real)."""

_TENANT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    """The resolved connection settings of one command."""

    base_url: str
    """The API root up to and including ``/api`` (no trailing slash)."""
    token: SecretStr = field(repr=False)
    state_dir: Path
    sources: Mapping[str, str] = field(default_factory=dict)
    """Where each value came from (``flag``, ``env OMNEO_TENANT``, ``default``...)."""


def default_state_dir() -> Path:
    """The platform's per-user state directory for this tool."""
    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def tenant_base_url(tenant: str) -> str:
    """``https://api.{tenant}.getomneo.com/api`` for a plain DNS-label tenant name."""
    tenant = tenant.strip()
    if not _TENANT_RE.match(tenant):
        raise ConfigError(
            f"Invalid tenant name {tenant!r}: it must be a plain DNS label "
            "(letters, digits and hyphens)",
            hint="Use --base-url for a full API address.",
        )
    return f"https://api.{tenant.lower()}.getomneo.com/api"


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_base_url(url: str) -> str:
    """Check and tidy a base URL: https (or http to loopback), no trailing slash or ``/v3``."""
    raw = url.strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"Invalid base URL {raw!r}: expected https://HOST/api",
            hint="Example: --base-url https://api.acme.getomneo.com/api",
        )
    if parts.username or parts.password:
        raise ConfigError("The base URL must not carry credentials; use OMNEO_TOKEN")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"Refusing plain http:// to {parts.hostname}: the token would travel unencrypted",
            hint="Use https://, or http:// only for a loopback sandbox (127.0.0.1).",
        )
    path = parts.path.rstrip("/")
    if path.endswith("/v3"):
        path = path[: -len("/v3")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def read_token_file(path: Path) -> SecretStr:
    """The token stored in ``path`` (surrounding whitespace dropped)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"Cannot read the token file {path}: {reason}") from None
    if not text:
        raise ConfigError(f"The token file {path} is empty")
    return SecretStr(text)


def resolve_state_dir(flag: Path | None, env: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """The state directory (flag > ``OMNEO_STATE_DIR`` > the platform default) and its source."""
    env = os.environ if env is None else env
    value, source = _pick(flag, env, "OMNEO_STATE_DIR")
    return (Path(value).expanduser(), source) if value else (default_state_dir(), "default")


def sandbox_settings(state_dir: Path | None = None) -> Settings:
    """Settings for the in-process sandbox tenant (``--sandbox``)."""
    state, source = resolve_state_dir(state_dir)
    return Settings(
        base_url=SANDBOX_BASE_URL,
        token=SecretStr(SANDBOX_TOKEN),
        state_dir=state,
        sources={"base_url": "--sandbox", "token": "--sandbox", "state_dir": source},
    )


def resolve_settings(
    *,
    tenant: str | None = None,
    base_url: str | None = None,
    token_file: Path | None = None,
    state_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from flags (the arguments) over environment variables over defaults.

    Raises ``ConfigError`` (exit 2) with a hint when the tenant or the token is missing.
    """
    env = os.environ if env is None else env
    sources: dict[str, str] = {}

    state, sources["state_dir"] = resolve_state_dir(state_dir, env)

    url_value, url_source = _pick(base_url, env, "OMNEO_BASE_URL")
    tenant_value, tenant_source = _pick(tenant, env, "OMNEO_TENANT")
    # A flag beats any environment variable, whichever of the two names it.
    if tenant is not None and base_url is None:
        url_value = None
    if url_value:
        url, sources["base_url"] = normalize_base_url(url_value), url_source
    elif tenant_value:
        url, sources["base_url"] = tenant_base_url(tenant_value), tenant_source
    else:
        raise ConfigError(
            "No tenant given",
            hint="Set OMNEO_TENANT=acme (or pass --tenant acme), or --base-url for a sandbox.",
        )

    file_value, file_source = _pick(
        str(token_file) if token_file is not None else None, env, "OMNEO_TOKEN_FILE"
    )
    if file_value and (token_file is not None or not env.get("OMNEO_TOKEN")):
        token, sources["token"] = read_token_file(Path(file_value)), file_source
    elif env.get("OMNEO_TOKEN", "").strip():
        token, sources["token"] = SecretStr(env["OMNEO_TOKEN"].strip()), "env OMNEO_TOKEN"
    else:
        raise ConfigError(
            "No API token given",
            hint="Set OMNEO_TOKEN, or pass --token-file PATH (a token with update-profiles).",
        )
    return Settings(base_url=url, token=token, state_dir=state, sources=sources)


def _pick(flag: str | Path | None, env: Mapping[str, str], name: str) -> tuple[str | None, str]:
    if flag is not None and str(flag).strip():
        return str(flag), "flag"
    value = env.get(name, "").strip()
    if value:
        return value, f"env {name}"
    return None, "default"
