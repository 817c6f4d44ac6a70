"""Tokens at the edges (issue 9, section 3): a token that cannot go in an HTTP header, from any
source, is a configuration error (exit 2) in one line that never shows any of the token."""

from __future__ import annotations

import json
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from typer.testing import CliRunner

from omneo_status import cli
from omneo_status.errors import ConfigError, ExitCode
from omneo_status.settings import checked_token, describe_settings, resolve_settings

from .conftest import VirtualClock

FIRST = "tok-7f3e9a1c5b2d"
SECOND = "4e8a0c6f2b9d1e3a"


@dataclass(frozen=True)
class Case:
    """A bad token, where it comes from, and what the error must say about it."""

    id: str
    token: str
    source: str
    """``env``, ``file``, ``token_env``, ``token_file``, ``config`` or ``keyring``."""
    says: str


CASES = [
    Case("env-newline", f"{FIRST}\n{SECOND}", "env", "in OMNEO_TOKEN holds more than one line"),
    Case("env-crlf", f"{FIRST}\r\n{SECOND}\n", "env", "(a line break at position 17)"),
    Case("env-curly", f"\u201c{FIRST}{SECOND}\u201d", "env", "(a curly quote, at position 1)"),
    Case("env-space", f"{FIRST} {SECOND}", "env", "(a space, at position 17)"),
    Case("env-nbsp", f"{FIRST}\u00a0{SECOND}", "env", "(a space, at position 17)"),
    Case("env-accent", f"{FIRST}\u00e9{SECOND}", "env", "(a non-ASCII character, at position 17)"),
    Case("env-control", f"{FIRST}\x07{SECOND}", "env", "(a control character, at position 17)"),
    Case("env-zero-width", f"{FIRST}\u200b{SECOND}", "env", "(an invisible character"),
    Case("file-second-line", f"{FIRST}\n{SECOND}\n", "file", "holds more than one line"),
    Case("file-curly", f"\u2018{FIRST}{SECOND}\u2019\n", "file", "a curly quote"),
    Case("token-env", f"{FIRST}\n{SECOND}", "token_env", "in $ACME_TOKEN (profile acme)"),
    Case("token-file", f"{FIRST}\n{SECOND}", "token_file", "holds more than one line"),
    Case("config-token", f"{FIRST}\u201d{SECOND}", "config", "a curly quote, at position 17"),
    Case("keyring", f"{FIRST}\n{SECOND}", "keyring", "in the keyring (service"),
]


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=True)  # a JSON string is a TOML basic string


def _point_at_token(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], dict[str, str]]:
    """Put the case's token where its source says; the extra arguments and environment."""
    token_path = tmp_path / "token.txt"
    config = tmp_path / "config.toml"
    table = {
        "token_env": 'token_env = "ACME_TOKEN"',
        "token_file": f"token_file = {_toml_string(str(token_path))}",
        "config": f"token = {_toml_string(case.token)}",
        "keyring": 'keyring = "omneo-test"',
    }
    if case.source == "env":
        return [], {"OMNEO_TOKEN": case.token}
    token_path.write_text(case.token, encoding="utf-8")
    os.chmod(token_path, 0o600)
    if case.source == "file":
        return ["--token-file", str(token_path)], {}
    config.write_text(f"[tenants.acme]\n{table[case.source]}\n", encoding="utf-8")
    os.chmod(config, 0o600)
    if case.source == "keyring":
        fake = types.ModuleType("keyring")
        fake.get_password = lambda service, user: case.token  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "keyring", fake)
    return ["--profile", "acme", "--config", str(config)], {"ACME_TOKEN": case.token}


def _pieces(token: str) -> list[str]:
    """The token, and each of its lines and the parts around its bad character."""
    parts = [token, FIRST, SECOND, *token.splitlines()]
    return [part.strip() for part in parts if len(part.strip()) >= 8]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_token_is_exit_2_in_one_line_without_the_token(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: VirtualClock
) -> None:
    csv_file = tmp_path / "in.csv"
    csv_file.write_text("email\na@b.co\n", encoding="utf-8")
    log = tmp_path / "run.jsonl"
    state = tmp_path / "state"
    extra, env = _point_at_token(case, tmp_path, monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = ["assign", "vip", str(csv_file), "--base-url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(cli.app, [*args, *extra, "--json", "--log-file", str(log)])

    assert result.exit_code == ExitCode.USAGE, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert case.says in errors[0]
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["exit_code"] == ExitCode.USAGE
    assert clock.slept == []  # refused before any request, so no retry waited
    files = [log, *state.rglob("*")] if log.exists() else list(state.rglob("*"))
    blobs = [result.stdout, result.stderr] + [
        path.read_text(encoding="utf-8", errors="replace") for path in files if path.is_file()
    ]
    for blob in blobs:
        for piece in _pieces(case.token):
            assert piece not in blob


def test_surrounding_whitespace_and_a_final_newline_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {FIRST}{SECOND}\n", encoding="utf-8")
    path.chmod(0o600)
    from_file = resolve_settings(tenant="acme", token_file=path, env={})
    from_env = resolve_settings(tenant="acme", env={"OMNEO_TOKEN": f"\t{FIRST}{SECOND}\r\n"})
    assert from_file.token.get_secret_value() == FIRST + SECOND
    assert from_env.token.get_secret_value() == FIRST + SECOND


@pytest.mark.parametrize("token", ["Bearer-x.y_z~+/=", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln", "!~"])
def test_every_visible_ascii_token_is_accepted(token: str) -> None:
    assert checked_token(token, "in OMNEO_TOKEN") == SecretStr(token)


_VISIBLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_HEX = st.text("0123456789abcdef", min_size=8, max_size=20)
_BAD = st.characters(blacklist_categories=["Cs"]).filter(lambda c: not "!" <= c <= "~")


@given(st.text(_VISIBLE, min_size=1), st.text(" \t\r\n\u00a0\u3000"), st.text(" \t\r\n"))
def test_visible_ascii_with_surrounding_whitespace_is_the_token(
    token: str, before: str, after: str
) -> None:
    assert checked_token(before + token + after, "in X").get_secret_value() == token


@given(_HEX, _BAD, _HEX)
def test_an_inner_bad_character_is_refused_without_showing_the_token(
    before: str, bad: str, after: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        checked_token(before + bad + after, "in OMNEO_TOKEN")
    shown = caught.value.message + (caught.value.hint or "")
    assert f"at position {len(before) + 1}" in shown
    assert before not in shown
    assert after not in shown
    assert bad.isspace() or bad not in shown


def test_config_show_marks_a_bad_token_instead_of_failing() -> None:
    views = describe_settings(tenant="acme", env={"OMNEO_TOKEN": f"{FIRST}\n{SECOND}"})
    token = next(view for view in views if view.key == "token")
    assert token.missing
    assert "more than one line" in token.value
    assert FIRST not in token.value and SECOND not in token.value
