"""Where the tool talks to and with what token: flag > environment > default.

The token is held as a ``SecretStr`` from the moment it is read, so it never reaches a repr,
a log line, a traceback or a file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from pydantic import SecretStr

from omneo_status.errors import ConfigError
from omneo_status.options import RATE_LIMIT_WAIT, TRANSPORT, TransportMode

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
    transport: TransportMode = TRANSPORT
    """Which HTTP transport a network run uses (``OMNEO_TRANSPORT``, or the config file's
    ``transport``)."""


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


def tenant_name(base_url: str) -> str:
    """How a person names the tenant a base URL reaches: ``acme`` for
    ``https://api.acme.getomneo.com/api``, else the URL's host (and port)."""
    host = urlsplit(base_url).netloc
    label = host.removeprefix("api.").removesuffix(".getomneo.com")
    if host.startswith("api.") and host.endswith(".getomneo.com") and _TENANT_RE.match(label):
        return label
    return host or base_url


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
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - the check: a port that is not a number from 0 to 65535
    except ValueError as exc:  # an unclosed [IPv6] bracket, a port out of range ...
        raise ConfigError(
            f"Invalid base URL {raw!r}: {exc}",
            hint="Example: --base-url https://api.acme.getomneo.com/api",
        ) from None
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


def check_private(path: Path, what: str, *, instead: str = "") -> None:
    """The one rule for a file that holds a token (a token file, or a config file with a plain
    ``token``): as ssh treats a private key, a file of yours that its group or anyone else can
    get at (any of the mode bits 077) is refused with ``ConfigError`` and the ``chmod`` that
    fixes it (``instead``: what else to do, for the hint).

    A file owned by another user (a secret mounted by root for a container, say) is not
    checked, since its reader cannot change its mode; nor is any file on Windows, whose modes
    do not say who can read it.
    """
    if os.name == "nt":  # pragma: no cover - POSIX modes only
        return
    try:
        status = path.stat()
    except OSError:
        return  # reading it says why, in the caller's words
    if status.st_uid != os.getuid() or not status.st_mode & 0o077:
        return
    raise ConfigError(
        f"The {what} {path} holds a token but others can read it"
        f" (mode {status.st_mode & 0o777:04o})",
        hint=f"chmod 600 {path}{instead}",
    )


def read_token_file(path: Path) -> SecretStr:
    """The token stored in ``path``: one line, surrounding whitespace dropped, checked by
    :func:`checked_token`; ``ConfigError`` (never showing the token) when it cannot be read or
    used, or when others can read it (:func:`check_private`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"Cannot read the token file {path}: {reason}") from None
    check_private(path, "token file")
    if not text.strip():
        raise ConfigError(f"The token file {path} is empty")
    return checked_token(text, f"in {path}")


# Quotes a word processor, a chat or a wiki puts in place of straight ones on a paste.
_CURLY_QUOTES = frozenset(
    "\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u2032\u2033\u00ab\u00bb"
)
_PASTE_HINT = (
    "Copy the token again as plain text: a paste from a document or a chat can bring curly "
    "quotes, spaces or invisible characters."
)


def checked_token(value: str, where: str) -> SecretStr:
    """The token (read from ``where``, as in ``"in OMNEO_TOKEN"``) without surrounding whitespace.

    A token that is empty, spans several lines, or holds a character that cannot be sent in an
    HTTP header (anything but visible ASCII: a curly quote, a space, a control or a non-ASCII
    character) raises ``ConfigError`` saying what is wrong and where, never any of the token.
    """
    token = value.strip()
    if not token:
        raise ConfigError(f"The token {where} is empty")
    for position, char in enumerate(token, start=1):
        if char in "\r\n":
            raise ConfigError(
                f"The token {where} holds more than one line (a line break at position {position})",
                hint="A token is one line: keep only the token (a final newline is fine).",
            )
        if not "!" <= char <= "~":
            raise ConfigError(
                f"The token {where} contains a character that cannot be sent in an HTTP header "
                f"({_kind_of(char)}, at position {position})",
                hint=_PASTE_HINT,
            )
    return SecretStr(token)


def _kind_of(char: str) -> str:
    """What a character that has no place in a token is, in words (never the character)."""
    if char in _CURLY_QUOTES:
        return "a curly quote"
    if char.isspace():
        return "a space"
    if unicodedata.category(char) == "Cf":
        return "an invisible character"
    if unicodedata.category(char) == "Cc":
        return "a control character"
    return "a non-ASCII character"


def resolve_state_dir(flag: Path | None, env: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """The state directory (flag > ``OMNEO_STATE_DIR`` > the platform default) and its source."""
    env = os.environ if env is None else env
    value, source = _pick(flag, env, "OMNEO_STATE_DIR")
    return (Path(value).expanduser(), source) if value else (default_state_dir(), "default")


def resolve_rate_limit_wait(flag: float | None, env: Mapping[str, str] | None = None) -> float:
    """How long one request may wait out 429s, in seconds: the flag, else
    ``OMNEO_RATE_LIMIT_WAIT``, else ``RATE_LIMIT_WAIT``; ``ConfigError`` when the variable is
    not a number of seconds (0 or more)."""
    if flag is not None:
        return flag
    env = os.environ if env is None else env
    text = env.get("OMNEO_RATE_LIMIT_WAIT", "").strip()
    if not text:
        return RATE_LIMIT_WAIT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigError(
            f"OMNEO_RATE_LIMIT_WAIT={text!r} is not a number of seconds",
            hint="Give seconds, 0 or more (OMNEO_RATE_LIMIT_WAIT=1800), or unset it for the"
            f" default ({RATE_LIMIT_WAIT:g}).",
        )
    return seconds


def sandbox_settings(state_dir: Path | None = None) -> Settings:
    """Settings for the in-process sandbox tenant (``--sandbox``)."""
    state, source = resolve_state_dir(state_dir)
    return Settings(
        base_url=SANDBOX_BASE_URL,
        token=SecretStr(SANDBOX_TOKEN),
        state_dir=state,
        sources={"base_url": "--sandbox", "token": "--sandbox", "state_dir": source},
    )


def default_config_path() -> Path:
    """The platform's per-user config file for this tool."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


@dataclass(frozen=True)
class ConfigFile:
    """The parsed config file (empty when the default file does not exist)."""

    path: Path
    data: Mapping[str, Any]
    present: bool = True
    """Whether the file exists (the default one may not)."""

    def profile(self, name: str) -> Mapping[str, Any]:
        """The ``[tenants.NAME]`` table, or ``ConfigError`` naming the ones that exist (or
        saying that there is no config file to hold it)."""
        tenants = self.data.get("tenants", {})
        if not self.present:
            raise ConfigError(
                f"No profile {name!r}: there is no config file ({self.path} does not exist)",
                hint="Create it with a [tenants.NAME] table (docs/configuration.md), or drop"
                " --profile.",
            )
        if not isinstance(tenants, dict) or name not in tenants:
            known = ", ".join(sorted(tenants)) if isinstance(tenants, dict) and tenants else "none"
            raise ConfigError(
                f"No profile {name!r} in {self.path} (profiles: {known})",
                hint="Add a [tenants.NAME] table to the config file, or drop --profile.",
            )
        table = tenants[name]
        if not isinstance(table, dict):
            raise ConfigError(f"{self.path}: [tenants.{name}] must be a table")
        unknown = set(table) - _PROFILE_KEYS
        if unknown:
            raise ConfigError(
                f"{self.path}: [tenants.{name}] has unknown keys: {', '.join(sorted(unknown))}",
                hint=f"Known keys: {', '.join(sorted(_PROFILE_KEYS))}.",
            )
        return table


_PROFILE_KEYS = {"tenant", "base_url", "token_env", "token_file", "token", "keyring", "state_dir"}


def config_path(path: Path | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """Where the config file is: ``--config``, else ``OMNEO_CONFIG``, else the default; and
    whether it was named (a named file must exist)."""
    value, _ = _pick(path, env, "OMNEO_CONFIG")
    return (Path(value).expanduser(), True) if value else (default_config_path(), False)


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> ConfigFile:
    """The config file named by ``--config``/``OMNEO_CONFIG``, else the default one if present."""
    env = os.environ if env is None else env
    target, explicit = config_path(path, env)
    if not target.exists():
        if explicit:
            raise ConfigError(f"The config file {target} does not exist")
        return ConfigFile(target, {}, present=False)
    try:
        data = tomllib.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the config file {target}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The config file {target} is not valid TOML: {exc}") from None
    return ConfigFile(target, data)


def mask(secret: SecretStr) -> str:
    """A token shown as ``****`` and, for long ones, its last four characters."""
    value = secret.get_secret_value()
    return "****" + value[-4:] if len(value) >= 16 else "****"


class SettingFlags(TypedDict, total=False):
    """The flags a command's settings are read with; a flag left out or None is not given."""

    tenant: str | None
    base_url: str | None
    token_file: Path | None
    state_dir: Path | None
    profile: str | None
    config: Path | None


def resolve_settings(
    *, env: Mapping[str, str] | None = None, **flags: Unpack[SettingFlags]
) -> Settings:
    """Settings from flags over environment variables (``env``, else the process's) over a
    config profile.

    Raises ``ConfigError`` (exit 2) with a hint when the tenant or the token is missing or
    unusable (a token is checked by :func:`checked_token`), or the config file is broken.
    """
    env = os.environ if env is None else env
    context = _context(flags.get("profile"), flags.get("config"), env)
    sources = dict(context.sources)
    state, sources["state_dir"] = _state_dir(flags.get("state_dir"), env, context)
    url = _base_url(flags.get("tenant"), flags.get("base_url"), env, context)
    if url is None:
        raise ConfigError(
            "No tenant given",
            hint="Set OMNEO_TENANT=acme (or pass --tenant acme, or --profile NAME from the"
            " config file), or --base-url for a sandbox.",
        )
    token = _token(flags.get("token_file"), env, context)
    if token is None:
        raise ConfigError("No API token given", hint=_AUTH_HINT)
    (url_value, sources["base_url"]), (token_value, sources["token"]) = url, token
    transport, sources["transport"] = _transport(env, context)
    return Settings(
        base_url=url_value,
        token=token_value,
        state_dir=state,
        sources=sources,
        transport=transport,
    )


_AUTH_HINT = "Set OMNEO_TOKEN, or pass --token-file PATH (a token with update-profiles)."


@dataclass(frozen=True)
class _Context:
    """The config file and the profile a command reads its settings from."""

    conf: ConfigFile
    table: Mapping[str, Any]
    """The profile's ``[tenants.NAME]`` table (empty without a profile)."""
    profile: str | None
    sources: Mapping[str, str]
    """``config_file`` and, with a profile, ``profile``: where they came from."""

    @property
    def where(self) -> str:
        return f"profile {self.profile}" if self.profile else ""


def _context(
    profile: str | None,
    config: Path | None,
    env: Mapping[str, str],
    problems: dict[str, str] | None = None,
) -> _Context:
    """The config file and the profile to read settings from; ``ConfigError`` when either
    cannot be used. Given ``problems`` (``config show``), it raises nothing: it puts the
    error there under ``config_file`` or ``profile`` and goes on without that file or table."""
    profile_name, profile_source = _pick(profile, env, "OMNEO_PROFILE")
    try:
        conf = load_config(config, env)
    except ConfigError as exc:
        if problems is None:
            raise
        problems["config_file"] = exc.message
        conf = ConfigFile(config_path(config, env)[0], {}, present=False)
    if profile_name is None and isinstance(conf.data.get("default_profile"), str):
        profile_name, profile_source = conf.data["default_profile"], f"{conf.path} default_profile"
    table: Mapping[str, Any] = {}
    if problems is not None and profile_name and "config_file" in problems:
        problems["profile"] = f"{profile_name} not read: the config file cannot be used"
    elif profile_name:
        try:
            table = conf.profile(profile_name)
        except ConfigError as exc:
            if problems is None:
                raise
            problems["profile"] = exc.message
    sources = {"config_file": str(conf.path) + ("" if conf.present else " (not present)")}
    if profile_name:
        sources["profile"] = f"{profile_name} ({profile_source})"
    unusable = problems is not None and "profile" in problems
    return _Context(conf, table, None if unusable else profile_name, sources)


def _state_dir(flag: Path | None, env: Mapping[str, str], context: _Context) -> tuple[Path, str]:
    state, source = resolve_state_dir(flag, env)
    if source == "default" and context.table.get("state_dir"):
        return Path(str(context.table["state_dir"])).expanduser(), context.where
    return state, source


def _base_url(
    tenant: str | None, base_url: str | None, env: Mapping[str, str], context: _Context
) -> tuple[str, str] | None:
    """The base URL and its source; None when nothing names a tenant."""
    url_value, url_source = _pick(base_url, env, "OMNEO_BASE_URL")
    tenant_value, tenant_source = _pick(tenant, env, "OMNEO_TENANT")
    # A flag beats any environment variable, whichever of the two names it.
    if tenant is not None and base_url is None:
        url_value = None
    table = context.table
    if url_value:
        return normalize_base_url(url_value), url_source
    if tenant_value:
        return tenant_base_url(tenant_value), tenant_source
    if table.get("base_url"):
        return normalize_base_url(str(table["base_url"])), context.where
    if table.get("tenant"):
        return tenant_base_url(str(table["tenant"])), context.where
    return None


def _transport(env: Mapping[str, str], context: _Context) -> tuple[TransportMode, str]:
    """The transport mode and its source: ``OMNEO_TRANSPORT`` > the config file's top-level
    ``transport`` > ``auto``; ``ConfigError`` naming where a value that is not a mode came
    from."""
    value, source = _pick(None, env, "OMNEO_TRANSPORT")
    where = "OMNEO_TRANSPORT"
    if value is None and "transport" in context.conf.data:
        value, source = str(context.conf.data["transport"]), str(context.conf.path)
        where = f"transport in {context.conf.path}"
    if value is None:
        return TRANSPORT, "default"
    try:
        return TransportMode(value.strip().lower()), source
    except ValueError:
        raise ConfigError(
            f"{where} is {value!r}, which is not a transport",
            hint="Use auto (the default: the tool's own, httpx's through a proxy) or httpx.",
        ) from None


def _token(
    token_file: Path | None, env: Mapping[str, str], context: _Context
) -> tuple[SecretStr, str] | None:
    """The token and its source, checked wherever it came from; None when nothing gives one."""
    file_value, file_source = _pick(
        str(token_file) if token_file is not None else None, env, "OMNEO_TOKEN_FILE"
    )
    if file_value and (token_file is not None or not env.get("OMNEO_TOKEN")):
        return read_token_file(Path(file_value).expanduser()), file_source
    if env.get("OMNEO_TOKEN", "").strip():
        return checked_token(env["OMNEO_TOKEN"], "in OMNEO_TOKEN"), "env OMNEO_TOKEN"
    table, where = context.table, f"profile {context.profile}"
    if table.get("token_env"):
        name = str(table["token_env"])
        if not env.get(name, "").strip():
            raise ConfigError(
                f"The {where} takes its token from ${name}, which is not set",
                hint=f"export {name}=... (a token with update-profiles).",
            )
        return checked_token(env[name], f"in ${name} ({where})"), f"{where} (env {name})"
    if table.get("token_file"):
        path = Path(str(table["token_file"])).expanduser()
        return read_token_file(path), f"{where} (file {path})"
    if table.get("keyring"):
        return _keyring_token(context.profile or "", table["keyring"]), f"{where} (keyring)"
    if table.get("token"):
        conf = context.conf
        check_private(conf.path, "config file", instead=", or use token_env, token_file or keyring")
        token = checked_token(str(table["token"]), f"in {conf.path} ({where})")
        return token, f"{where} (config file)"
    return None


def _keyring_token(profile: str, setting: Any) -> SecretStr:
    service = setting if isinstance(setting, str) else APP_NAME
    try:
        import keyring  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise ConfigError(
            "The profile asks for the system keyring, but the keyring library is not installed",
            hint="pip install keyring, or use token_env / token_file.",
        ) from None
    value = keyring.get_password(service, profile)
    if not value:
        raise ConfigError(
            f"No token in the keyring for service {service!r}, user {profile!r}",
            hint=f"keyring set {service} {profile}",
        )
    return checked_token(str(value), f"in the keyring (service {service!r}, user {profile!r})")


def _pick(flag: str | Path | None, env: Mapping[str, str], name: str) -> tuple[str | None, str]:
    if flag is not None and str(flag).strip():
        return str(flag), "flag"
    value = env.get(name, "").strip()
    if value:
        return value, f"env {name}"
    return None, "default"


@dataclass(frozen=True)
class SettingView:
    """One line of ``config show``: a setting, its value (the token masked) and its source."""

    key: str
    value: str
    source: str
    missing: bool = False
    """True when the setting is required and nothing provides it (``value`` then says why)."""

    def to_json(self) -> dict[str, Any]:
        """The setting's entry in ``config show --json`` (keyed by ``key`` there)."""
        return {"value": self.value, "source": self.source, "missing": self.missing}


def describe_settings(
    *, env: Mapping[str, str] | None = None, **flags: Unpack[SettingFlags]
) -> list[SettingView]:
    """What ``config show`` lists: ``config_file``, ``profile``, ``base_url``, ``token`` (masked),
    ``state_dir`` and ``transport``, each with its source.

    It raises nothing: a setting that is missing or cannot be used (a config file named but
    absent or not TOML, a profile it lacks, a tenant or a token) comes back with
    ``missing=True`` and a value saying what is wrong or what to set, and the others are read
    without it (a token is never shown beyond :func:`mask`).
    """
    env = os.environ if env is None else env
    problems: dict[str, str] = {}
    context = _context(flags.get("profile"), flags.get("config"), env, problems)
    state, state_source = _state_dir(flags.get("state_dir"), env, context)
    views = [
        SettingView(key, f"unusable: {problems[key]}", "", missing=True)
        if key in problems
        else SettingView(key, context.sources.get(key, "(none)"), "")
        for key in ("config_file", "profile")
    ]
    try:
        url = _base_url(flags.get("tenant"), flags.get("base_url"), env, context)
    except ConfigError as exc:
        views.append(SettingView("base_url", f"unusable: {exc.message}", "", missing=True))
    else:
        views.append(
            SettingView("base_url", *url)
            if url
            else SettingView("base_url", _NOT_SET_TENANT, "", missing=True)
        )
    try:
        token = _token(flags.get("token_file"), env, context)
    except ConfigError as exc:
        views.append(SettingView("token", f"unusable: {exc.message}", "", missing=True))
    else:
        views.append(
            SettingView("token", mask(token[0]), token[1])
            if token
            else SettingView("token", f"not set: {_AUTH_HINT}", "", missing=True)
        )
    views.append(SettingView("state_dir", str(state), state_source))
    try:
        mode, mode_source = _transport(env, context)
    except ConfigError as exc:
        views.append(SettingView("transport", f"unusable: {exc.message}", "", missing=True))
    else:
        views.append(SettingView("transport", mode.value, mode_source))
    return views


_NOT_SET_TENANT = (
    "not set: set OMNEO_TENANT (or pass --tenant, --base-url, or --profile NAME from the "
    "config file)"
)
