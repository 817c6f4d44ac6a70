"""Configuration: flag > environment > config profile > default, and every refusal."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omneo_status import cli
from omneo_status.errors import ConfigError
from omneo_status.settings import (
    SettingView,
    describe_settings,
    normalize_base_url,
    resolve_settings,
    tenant_base_url,
)

from .conftest import POSIX_ONLY

TOKEN = "tok-9d8c7b6a5f4e3d2c1b0a"


def test_tenant_gives_the_documented_url() -> None:
    settings = resolve_settings(env={"OMNEO_TENANT": "acme", "OMNEO_TOKEN": TOKEN})
    assert settings.base_url == "https://api.acme.getomneo.com/api"
    assert settings.token.get_secret_value() == TOKEN
    assert settings.sources["base_url"] == "env OMNEO_TENANT"
    assert TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.acme.getomneo.com/api", "https://api.acme.getomneo.com/api"),
        ("https://api.acme.getomneo.com/api/", "https://api.acme.getomneo.com/api"),
        ("https://api.acme.getomneo.com/api/v3", "https://api.acme.getomneo.com/api"),
        ("https://api.acme.getomneo.com/api/v3/", "https://api.acme.getomneo.com/api"),
        ("http://127.0.0.1:8765/api", "http://127.0.0.1:8765/api"),
        ("http://localhost:8765/api/v3", "http://localhost:8765/api"),
        ("http://[::1]:8765/api", "http://[::1]:8765/api"),
    ],
)
def test_base_url_is_tidied(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://api.acme.getomneo.com/api",
        "http://10.0.0.5/api",
        "ftp://x/api",
        "api.acme.com",
        "https://user:pw@api.acme.getomneo.com/api",
        "http://127.0.0.1:99999/api",
        "http://127.0.0.1:abc/api",
        "http://[::1/api",
    ],
)
def test_unsafe_or_malformed_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        normalize_base_url(url)


@pytest.mark.parametrize("tenant", ["evil.com/#", "a b", "acme.evil", "-acme", "", "x" * 64])
def test_tenant_must_be_a_dns_label(tenant: str) -> None:
    with pytest.raises(ConfigError, match="DNS label"):
        tenant_base_url(tenant)


def test_flags_beat_environment() -> None:
    env = {"OMNEO_TENANT": "acme", "OMNEO_BASE_URL": "https://x.example/api", "OMNEO_TOKEN": TOKEN}
    assert resolve_settings(env=env).base_url == "https://x.example/api"
    assert resolve_settings(tenant="other", env=env).base_url == (
        "https://api.other.getomneo.com/api"
    )


def test_token_file_beats_the_environment(tmp_path: Path) -> None:
    path = write_private(tmp_path / "token", "  from-file-token\n")
    settings = resolve_settings(tenant="acme", token_file=path, env={"OMNEO_TOKEN": TOKEN})
    assert settings.token.get_secret_value() == "from-file-token"


@pytest.mark.parametrize(
    ("env", "message"),
    [({"OMNEO_TOKEN": TOKEN}, "No tenant given"), ({"OMNEO_TENANT": "acme"}, "No API token")],
)
def test_missing_tenant_or_token(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        resolve_settings(env=env)
    assert caught.value.hint


def write_config(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


write_private = write_config


def test_profiles_from_the_config_file(tmp_path: Path) -> None:
    conf = write_config(
        tmp_path / "c.toml",
        '[tenants.acme]\ntenant = "acme"\ntoken_env = "ACME_OMNEO_TOKEN"\n'
        '[tenants.lab]\nbase_url = "http://127.0.0.1:9/api"\ntoken = "plain-token"\n',
    )
    acme = resolve_settings(profile="acme", config=conf, env={"ACME_OMNEO_TOKEN": TOKEN})
    assert acme.base_url == "https://api.acme.getomneo.com/api"
    assert acme.token.get_secret_value() == TOKEN
    lab = resolve_settings(config=conf, env={"OMNEO_PROFILE": "lab"})
    assert lab.base_url == "http://127.0.0.1:9/api"
    assert lab.token.get_secret_value() == "plain-token"
    # The environment still beats the file.
    assert (
        resolve_settings(
            profile="acme", config=conf, env={"ACME_OMNEO_TOKEN": TOKEN, "OMNEO_TENANT": "zeta"}
        ).base_url
        == "https://api.zeta.getomneo.com/api"
    )


@POSIX_ONLY
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
@pytest.mark.parametrize("where", ["token file", "config file"])
def test_a_token_others_can_read_is_refused_wherever_it_is(
    tmp_path: Path, where: str, mode: int
) -> None:
    """One rule for both files that can hold a token: open to anyone but its owner, refused
    with the chmod that fixes it, and never a word of the token."""
    if where == "token file":
        path = write_private(tmp_path / "token", "plain-token-5e1f\n", mode=mode)
        given: dict[str, object] = {"tenant": "acme", "token_file": path}
    else:
        path = write_config(
            tmp_path / "c.toml", '[tenants.lab]\ntenant = "lab"\ntoken = "plain-token-5e1f"\n', mode
        )
        given = {"profile": "lab", "config": path}
    with pytest.raises(ConfigError) as caught:
        resolve_settings(env={}, **given)  # type: ignore[arg-type]
    error = caught.value
    assert error.message == (
        f"The {where} {path} holds a token but others can read it (mode {mode:04o})"
    )
    assert error.hint is not None and error.hint.startswith(f"chmod 600 {path}")
    assert "plain-token" not in error.message + error.hint
    os.chmod(path, 0o600)
    assert resolve_settings(env={}, **given).token.get_secret_value() == "plain-token-5e1f"  # type: ignore[arg-type]


@POSIX_ONLY
def test_a_token_file_of_another_owner_is_not_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ssh does: a file its reader does not own (a secret mounted by root) cannot be
    chmodded by that reader, so its mode is not held against it."""
    path = write_private(tmp_path / "token", "mounted-token\n", mode=0o644)
    monkeypatch.setattr(os, "getuid", lambda: path.stat().st_uid + 1)
    settings = resolve_settings(tenant="acme", token_file=path, env={})
    assert settings.token.get_secret_value() == "mounted-token"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tenants.acme\n", "not valid TOML"),
        ('[tenants.acme]\ntenant = "acme"\ncolour = 1\n', "unknown keys"),
        ('[tenants.other]\ntenant = "x"\n', "No profile 'acme'"),
        ('[tenants.acme]\ntenant = "acme"\ntoken_env = "NOPE"\n', "NOPE"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    conf = write_config(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError, match=message):
        resolve_settings(profile="acme", config=conf, env={})


def test_default_profile_and_missing_explicit_file(tmp_path: Path) -> None:
    conf = write_config(
        tmp_path / "c.toml",
        'default_profile = "acme"\n[tenants.acme]\ntenant = "acme"\ntoken_file = "%s"\n'
        % (tmp_path / "t"),
    )
    write_private(tmp_path / "t", TOKEN)
    assert resolve_settings(config=conf, env={}).base_url.startswith("https://api.acme.")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_settings(config=tmp_path / "nope.toml", env={})


def test_config_show_masks_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNEO_TENANT", "acme")
    monkeypatch.setenv("OMNEO_TOKEN", TOKEN)
    result = CliRunner().invoke(cli.app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert '"****1b0a"' in result.stdout
    assert "env OMNEO_TENANT" in result.stdout


def test_cli_missing_configuration_is_exit_2_with_a_hint() -> None:
    result = CliRunner().invoke(cli.app, ["statuses"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: No tenant given")
    assert "Hint:" in result.stderr


def test_cli_refuses_plain_http_to_a_remote_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNEO_TOKEN", TOKEN)
    result = CliRunner().invoke(cli.app, ["statuses", "--base-url", "http://example.com/api"])
    assert result.exit_code == 2
    assert "Refusing plain http://" in result.stderr


def test_cli_bad_tenant_makes_no_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNEO_TOKEN", TOKEN)
    result = CliRunner().invoke(cli.app, ["statuses", "--tenant", "evil.com/#"])
    assert result.exit_code == 2
    assert "DNS label" in result.stderr


# --- config show: what there is, even when settings are incomplete (issue 9, section 6) -------


def views_of(**kwargs: object) -> dict[str, SettingView]:
    views = describe_settings(**kwargs)  # type: ignore[arg-type]
    assert [view.key for view in views] == [
        "config_file",
        "profile",
        "base_url",
        "token",
        "state_dir",
        "transport",
    ]
    return {view.key: view for view in views}


def test_describe_settings_when_everything_is_set(tmp_path: Path) -> None:
    views = views_of(env={"OMNEO_TENANT": "acme", "OMNEO_TOKEN": TOKEN}, state_dir=tmp_path)
    assert views["base_url"] == SettingView(
        "base_url", "https://api.acme.getomneo.com/api", "env OMNEO_TENANT"
    )
    assert views["token"] == SettingView("token", "****1b0a", "env OMNEO_TOKEN")
    assert views["state_dir"] == SettingView("state_dir", str(tmp_path), "flag")
    assert not any(view.missing for view in views.values())


def test_describe_settings_marks_a_missing_tenant_and_token(tmp_path: Path) -> None:
    views = views_of(env={"OMNEO_STATE_DIR": str(tmp_path)})
    assert views["base_url"].missing and "OMNEO_TENANT" in views["base_url"].value
    assert views["token"].missing and "OMNEO_TOKEN" in views["token"].value
    assert views["state_dir"] == SettingView("state_dir", str(tmp_path), "env OMNEO_STATE_DIR")
    assert views["profile"].value == "(none)"
    assert not views["state_dir"].missing


def test_describe_settings_shows_the_token_when_only_the_tenant_is_missing() -> None:
    views = views_of(env={"OMNEO_TOKEN": TOKEN})
    assert views["base_url"].missing
    assert views["token"] == SettingView("token", "****1b0a", "env OMNEO_TOKEN")


@pytest.mark.parametrize(
    ("kwargs", "key", "says"),
    [
        ({"base_url": "http://example.com/api"}, "base_url", "Refusing plain http://"),
        ({"tenant": "evil.com/#"}, "base_url", "DNS label"),
        ({"tenant": "acme", "token_file": Path("/nonexistent/token")}, "token", "Cannot read"),
    ],
)
def test_describe_settings_marks_an_unusable_setting(
    kwargs: dict[str, object], key: str, says: str
) -> None:
    views = views_of(env={"OMNEO_TOKEN": TOKEN}, **kwargs)
    assert views[key].missing
    assert views[key].value.startswith("unusable: ") and says in views[key].value
    other = "token" if key == "base_url" else "base_url"
    assert not views[other].missing


def test_describe_settings_marks_an_unset_token_env_of_a_profile(tmp_path: Path) -> None:
    conf = write_config(
        tmp_path / "c.toml", '[tenants.acme]\ntenant = "acme"\ntoken_env = "ACME_TOKEN"\n'
    )
    views = views_of(profile="acme", config=conf, env={})
    assert views["profile"].value == "acme (flag)"
    assert views["base_url"] == SettingView(
        "base_url", "https://api.acme.getomneo.com/api", "profile acme"
    )
    assert views["token"].missing and "$ACME_TOKEN, which is not set" in views["token"].value


def test_describe_settings_shows_what_it_has_beside_a_broken_config_file(tmp_path: Path) -> None:
    conf = write_config(tmp_path / "c.toml", "[tenants.acme\n")
    views = views_of(config=conf, profile="acme", env={"OMNEO_TENANT": "acme"})
    assert views["config_file"].missing
    assert views["config_file"].value.startswith(f"unusable: The config file {conf} is not valid")
    assert views["profile"] == SettingView(
        "profile", "unusable: acme not read: the config file cannot be used", "", missing=True
    )
    assert views["base_url"] == SettingView(
        "base_url", "https://api.acme.getomneo.com/api", "env OMNEO_TENANT"
    )


def test_describe_settings_marks_a_named_config_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    views = views_of(config=missing, env={"OMNEO_TOKEN": TOKEN})
    assert views["config_file"] == SettingView(
        "config_file", f"unusable: The config file {missing} does not exist", "", missing=True
    )
    assert views["token"] == SettingView("token", "****1b0a", "env OMNEO_TOKEN")


def test_a_profile_without_a_config_file_says_there_is_none(tmp_path: Path) -> None:
    """The message names the file as absent, not as a file lacking the profile."""
    absent = tmp_path / "config-home" / "omneo-status" / "config.toml"  # the fixture's
    env = {"OMNEO_TOKEN": TOKEN}
    views = views_of(profile="acme", env=env)
    assert views["config_file"] == SettingView("config_file", f"{absent} (not present)", "")
    assert views["profile"] == SettingView(
        "profile",
        f"unusable: No profile 'acme': there is no config file ({absent} does not exist)",
        "",
        missing=True,
    )
    with pytest.raises(ConfigError, match="there is no config file"):
        resolve_settings(profile="acme", env=env)


def test_config_show_exits_0_with_a_missing_profile_and_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    runner = CliRunner()
    for args in (["--profile", "acme"], ["--config", str(missing)]):
        table = runner.invoke(cli.app, ["config", "show", *args])
        assert table.exit_code == 0, table.stderr
        assert "unusable" in table.stdout
        assert table.stderr.startswith("Warning: Not set or unusable:")
        doc = runner.invoke(cli.app, ["config", "show", *args, "--json"])
        assert doc.exit_code == 0
        shown = json.loads(doc.stdout)
        assert shown["profile" if args[0] == "--profile" else "config_file"]["missing"] is True
        assert shown["state_dir"]["missing"] is False
