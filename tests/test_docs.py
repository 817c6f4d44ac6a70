"""The README is tested like code: its command reference is the real ``--help``, its quick start
runs, its exit-code table is ``ExitCode``, and every flag it names exists."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from omneo_status import cli, errors
from omneo_status.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SRC = ROOT / "src" / "omneo_status"
QUICK_START = [
    "uv run omneo-status assign vip examples/emails.csv --sandbox",
    "uv run pytest",
]


def _load_script() -> ModuleType:
    path = ROOT / "scripts" / "update_readme_help.py"
    spec = importlib.util.spec_from_file_location("update_readme_help", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _load_script()
command_paths: Callable[[], list[tuple[str, ...]]] = SCRIPT.command_paths
block_name: Callable[[tuple[str, ...]], str] = SCRIPT.block_name
render_block: Callable[[tuple[str, ...]], str] = SCRIPT.render_block
render_help: Callable[[tuple[str, ...]], str] = SCRIPT.render_help
readme_blocks: Callable[[str], dict[str, str]] = SCRIPT.readme_blocks
updated_readme: Callable[[str], str] = SCRIPT.updated_readme
is_group: Callable[[tuple[str, ...]], bool] = SCRIPT.is_group
command_help: Callable[[tuple[str, ...]], str] = SCRIPT.command_help
command_options: Callable[[tuple[str, ...]], dict[str, str]] = SCRIPT.command_options
RERUN: str = SCRIPT.RERUN

PATHS = command_paths()
PATH_IDS = [block_name(path) for path in PATHS]

# rich draws the panels of a legacy Windows console (a CI runner's pipe) with other box
# characters and one column less, so the exact comparison runs on Linux and macOS.
same_rendering = pytest.mark.skipif(
    sys.platform == "win32", reason="rich renders legacy Windows consoles differently"
)


def readme() -> str:
    return README.read_text(encoding="utf-8")


def section(title: str) -> str:
    """The body of the README's ``## title`` section, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", readme(), re.M | re.S)
    assert match is not None, f"README.md has no '## {title}' section"
    return match.group(1)


def prose() -> str:
    """The README without its generated command reference."""
    return SCRIPT.BLOCK.sub("", readme())  # type: ignore[no-any-return]


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text`` (separator rows left out)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[\s:|-]+\|", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def all_options() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in PATHS:
        for option, help_text in command_options(path).items():
            found[option] = found.get(option, "") + "\n" + help_text
    return found


# -- the command reference ---------------------------------------------------------------------


@same_rendering
@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_readme_help_block_is_the_real_help(path: tuple[str, ...]) -> None:
    name = block_name(path)
    blocks = readme_blocks(readme())
    assert name in blocks, f"README.md has no block for `{name}`: run `{RERUN}`"
    assert blocks[name] == render_block(path), (
        f"The README's `{name} --help` is out of date: run `{RERUN}`"
    )


@same_rendering
def test_readme_command_reference_is_up_to_date() -> None:
    assert updated_readme(readme()) == readme(), f"README.md is out of date: run `{RERUN}`"


def test_every_command_has_a_block_and_no_block_is_stale() -> None:
    documented = set(readme_blocks(readme()))
    registered = set(PATH_IDS)
    assert registered - documented == set(), f"Commands without a README block: run `{RERUN}`"
    assert documented - registered == set(), f"README blocks of no command: run `{RERUN}`"


def test_help_is_rendered_the_same_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = render_help(("runs",))
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert render_help(("runs",)) == plain
    assert "\x1b[" not in plain
    assert max(map(len, plain.splitlines())) <= SCRIPT.WIDTH


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_every_command_has_a_one_line_summary(path: tuple[str, ...]) -> None:
    summary = command_help(path).strip().split("\n\n")[0]
    assert summary, f"`{block_name(path)}` has no help text"
    assert "\n" not in summary, f"`{block_name(path)}`: the first paragraph is not one line"


@pytest.mark.parametrize("path", [p for p in PATHS if not is_group(p)], ids=block_name)
def test_every_command_help_has_an_example(path: tuple[str, ...]) -> None:
    assert "Example" in render_help(path), f"`{block_name(path)} --help` shows no example"


# -- exit codes -------------------------------------------------------------------------------


def exit_code_docs() -> dict[str, str]:
    """The attribute docstring of each ``ExitCode`` member, as written in errors.py."""
    tree = ast.parse(inspect.getsource(errors))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ExitCode")
    docs: dict[str, str] = {}
    for node, after in zip(cls.body, cls.body[1:], strict=False):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.targets[0].id] = " ".join(after.value.value.split())
    return docs


def test_exit_code_table_is_exit_code() -> None:
    rows = table_rows(section("Exit codes"))
    assert rows[0] == ["Code", "Name", "Meaning"]
    documented = {int(code): (name.strip("`"), meaning) for code, name, meaning in rows[1:]}
    docs = exit_code_docs()
    expected = {
        member.value: (member.name, re.sub(r"``(.+?)``", r"`\1`", docs[member.name]))
        for member in ExitCode
    }
    assert documented == expected


# -- the quick start --------------------------------------------------------------------------


def quick_start_fences() -> list[tuple[str, str]]:
    return re.findall(r"^```(\w*)\n(.*?)^```", section("Quick start"), re.M | re.S)


def test_quick_start_is_exactly_two_commands() -> None:
    language, body = quick_start_fences()[0]
    assert language == "sh"
    assert body.splitlines() == QUICK_START


def test_quick_start_runs_and_shows_what_the_readme_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = quick_start_fences()[0][1].splitlines()[0]
    words = shlex.split(first)
    assert words[:3] == ["uv", "run", "omneo-status"]
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli.app, words[3:])
    assert result.exit_code == 0, result.stderr
    shown = quick_start_fences()[1][1]
    summary = shown[shown.index("Assign vip - run") :]
    for line in summary.splitlines():
        if line.startswith("│") or line.startswith("Verified:"):
            assert line in result.stdout, f"the README shows {line!r}; the run did not"


# -- flags ------------------------------------------------------------------------------------


def test_every_flag_in_the_configuration_tables_exists() -> None:
    options = all_options()
    rows = table_rows(section("Configuration"))
    flags = [flag for row in rows for flag in re.findall(r"`(--?[a-z][a-z-]*)`", row[0])]
    assert len(flags) > 20
    unknown = [flag for flag in flags if flag not in options]
    assert unknown == [], f"The README's configuration table names flags no command has: {unknown}"


def test_the_configuration_tables_pair_each_flag_with_its_variable() -> None:
    options = all_options()
    for row in table_rows(section("Configuration")):
        flags = re.findall(r"`(--[a-z][a-z-]*)`", row[0])
        variables = re.findall(r"`(OMNEO_[A-Z_]+)`", row[1]) if len(row) > 1 else []
        if flags and variables:
            assert variables[0] in options[flags[0]], f"{flags[0]}'s help does not name it"


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    read = set()
    for source in SRC.glob("*.py"):
        read |= set(re.findall(r"\"(OMNEO_[A-Z_]+)\"", source.read_text(encoding="utf-8")))
    assert read, "no OMNEO_* variable found in the code"
    missing = sorted(name for name in read if f"`{name}`" not in section("Configuration"))
    assert missing == [], (
        f"Variables read by the code but not in the configuration table: {missing}"
    )


@pytest.mark.parametrize("path", [("assign",), ("remove",), ("sandbox",)], ids=block_name)
def test_every_option_is_explained_outside_the_reference(path: tuple[str, ...]) -> None:
    text = prose()
    missing = [
        option
        for option in command_options(path)
        if option.startswith("--") and not re.search(rf"{re.escape(option)}(?![\w-])", text)
    ]
    assert missing == [], f"README.md never explains these options of {block_name(path)}: {missing}"
