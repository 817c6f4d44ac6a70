"""The docs are tested like code: the command reference is the real ``--help``, the sandbox
tables are the real options and fields, the README's quick start runs, its exit-code table is
``ExitCode``, every flag, variable and command line the docs name exists, and every link
resolves."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import shlex
import sys
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from omneo_status import cli, errors
from omneo_status.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "omneo_status"
README_LIMIT = 30_000
QUICK_START = [
    "uv run omneo-status assign vip examples/emails.csv --sandbox",
    "uv run pytest",
]
# Typer's own options, explained by their help alone.
TYPER_OPTIONS = {"--help", "-h", "--install-completion", "--show-completion"}


def _load_script() -> ModuleType:
    path = ROOT / "scripts" / "update_cli_docs.py"
    spec = importlib.util.spec_from_file_location("update_cli_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _load_script()
command_paths: Callable[[], list[tuple[str, ...]]] = SCRIPT.command_paths
block_name: Callable[[tuple[str, ...]], str] = SCRIPT.block_name
render_section: Callable[[tuple[str, ...]], str] = SCRIPT.render_section
render_help: Callable[[tuple[str, ...]], str] = SCRIPT.render_help
is_group: Callable[[tuple[str, ...]], bool] = SCRIPT.is_group
command_help: Callable[[tuple[str, ...]], str] = SCRIPT.command_help
command_options: Callable[[tuple[str, ...]], dict[str, str]] = SCRIPT.command_options
RERUN: str = SCRIPT.RERUN
CLI_DOC: Path = SCRIPT.CLI_DOC
SANDBOX_DOC: Path = SCRIPT.SANDBOX_DOC

PATHS = command_paths()
PATH_IDS = [block_name(path) for path in PATHS]

# rich draws the panels of a legacy Windows console (a CI runner's pipe) with other box
# characters and one column less, so the exact comparison runs on Linux and macOS.
same_rendering = pytest.mark.skipif(
    sys.platform == "win32", reason="rich renders legacy Windows consoles differently"
)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def doc_files() -> list[Path]:
    """Every Markdown file a user or contributor reads."""
    return [README, ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def prose() -> str:
    """Everything written about the tool, the generated command reference left out."""
    return "\n".join(read(path) for path in doc_files() if path != CLI_DOC)


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section of ``text``, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"no '## {title}' section"
    return match.group(1)


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


# -- the generated docs -------------------------------------------------------------------------


@same_rendering
@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_cli_doc_shows_the_real_help_of_each_command(path: tuple[str, ...]) -> None:
    assert render_section(path) in read(CLI_DOC), (
        f"docs/cli.md: `{block_name(path)} --help` is missing or out of date: run `{RERUN}`"
    )


@same_rendering
def test_generated_docs_are_up_to_date() -> None:
    for path, wanted in SCRIPT.generated().items():
        assert read(path) == wanted, f"{path.name} is out of date: run `{RERUN}`"


def test_sandbox_doc_lists_every_option_and_config_field() -> None:
    text = read(SANDBOX_DOC)
    options = [o for o in command_options(("sandbox",)) if o not in TYPER_OPTIONS]
    assert "--rate-limit" in options
    assert [o for o in options if f"`{o}`" not in text] == []
    fields = [item.name for item in SCRIPT.sandbox_fields()]
    assert "batch_delay" in fields
    assert [name for name in fields if f"`{name}`" not in text] == []


@pytest.mark.slow  # regenerates every help page (seconds)
def test_check_mode_finds_a_stale_file_and_the_script_rewrites_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale_cli = tmp_path / "docs" / "cli.md"
    sandbox_doc = tmp_path / "docs" / "sandbox.md"
    stale_cli.parent.mkdir()
    stale_cli.write_text("# Command reference\n\nold\n", encoding="utf-8")
    sandbox_doc.write_text(read(SANDBOX_DOC), encoding="utf-8")
    monkeypatch.setattr(SCRIPT, "ROOT", tmp_path)
    monkeypatch.setattr(SCRIPT, "CLI_DOC", stale_cli)
    monkeypatch.setattr(SCRIPT, "SANDBOX_DOC", sandbox_doc)

    assert SCRIPT.main(["--check"]) == 1
    assert read(stale_cli) == "# Command reference\n\nold\n"
    assert "docs/cli.md is out of date" in capsys.readouterr().out

    assert SCRIPT.main([]) == 0
    assert SCRIPT.main(["--check"]) == 0
    assert "## `omneo-status assign`" in read(stale_cli)


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


# -- the README -------------------------------------------------------------------------------


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes: move detail into docs/"


def test_readme_first_contact_names_doctor_dry_run_and_trace() -> None:
    text = section(read(README), "First contact with a real tenant")
    for needed in ("omneo-status doctor", "--dry-run", "--trace", "doctor --json"):
        assert needed in text, f"'First contact with a real tenant' never mentions {needed}"


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
    rows = table_rows(section(read(README), "Exit codes"))
    assert rows[0] == ["Code", "Name", "Meaning"]
    documented = {int(code): (name.strip("`"), meaning) for code, name, meaning in rows[1:]}
    docs = exit_code_docs()
    expected = {
        member.value: (member.name, re.sub(r"``(.+?)``", r"`\1`", docs[member.name]))
        for member in ExitCode
    }
    assert documented == expected


def quick_start_fences() -> list[tuple[str, str]]:
    text = section(read(README), "Quick start")
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)


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
    # Every line, in order; only the run's own ids and where its report went may differ.
    assert _unstamped(summary) == _unstamped(result.stdout)
    assert any(line.startswith("Lookup: ") for line in summary.splitlines())


def _unstamped(text: str) -> list[str]:
    """The lines of a summary with its run id, batch ids and report path blanked."""
    text = re.sub(r"\d{8}T\d{6}-[0-9a-f]{6}-[0-9a-f]{4}", "RUN_ID", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)
    text = re.sub(r"^Report: .*$", "Report: PATH", text, flags=re.M)
    return [line.rstrip() for line in text.strip().splitlines()]


# -- flags and variables ------------------------------------------------------------------------


def configuration() -> str:
    return read(DOCS / "configuration.md")


def test_every_flag_in_the_configuration_tables_exists() -> None:
    options = all_options()
    rows = table_rows(configuration())
    flags = [flag for row in rows for flag in re.findall(r"`(--?[a-z][a-z-]*)`", row[0])]
    assert len(flags) > 20
    unknown = [flag for flag in flags if flag not in options]
    assert unknown == [], f"docs/configuration.md names flags no command has: {unknown}"


def test_the_configuration_tables_pair_each_flag_with_its_variable() -> None:
    options = all_options()
    pairs = 0
    for row in table_rows(configuration()):
        flags = re.findall(r"`(--[a-z][a-z-]*)`", row[0])
        variables = re.findall(r"`(OMNEO_[A-Z_]+)`", row[1]) if len(row) > 1 else []
        if flags and variables and flags[0] in options:
            pairs += 1
            assert variables[0] in options[flags[0]], f"{flags[0]}'s help does not name it"
    assert pairs >= 5


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    read_by_code: set[str] = set()
    for source in SRC.rglob("*.py"):
        read_by_code |= set(re.findall(r"\"(OMNEO_[A-Z_]+)\"", read(source)))
    assert read_by_code, "no OMNEO_* variable found in the code"
    missing = sorted(name for name in read_by_code if f"`{name}`" not in configuration())
    assert missing == [], f"Variables read by the code but not in docs/configuration.md: {missing}"


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_every_option_is_explained_outside_the_reference(path: tuple[str, ...]) -> None:
    text = prose()
    missing = [
        option
        for option in command_options(path)
        if option.startswith("--")
        and option not in TYPER_OPTIONS
        and not re.search(rf"{re.escape(option)}(?![\w-])", text)
    ]
    assert missing == [], f"The docs never explain these options of {block_name(path)}: {missing}"


# -- command lines in the docs ------------------------------------------------------------------


def shell_lines() -> Iterator[tuple[str, str]]:
    """Every command line of every ``sh`` block: (file name, the line, continuations joined)."""
    for path in doc_files():
        for body in re.findall(r"^\s*```sh\n(.*?)^\s*```", read(path), re.M | re.S):
            for line in body.replace("\\\n", " ").splitlines():
                if line.strip():
                    yield path.name, line.strip()


def command_line_problems(line: str) -> list[str]:
    """What is wrong with an ``omneo-status ...`` command line: unknown commands or options."""
    words = shlex.split(line, comments=True)
    if "omneo-status" not in words:
        return []
    words = words[words.index("omneo-status") + 1 :]
    path: tuple[str, ...] = ()
    problems = []
    for word in words:
        if re.match(r"[|&;<>]|\d?>", word):
            break  # the shell takes over: a pipe, a redirection, a background job
        if is_group(path) and not word.startswith("-"):
            if (*path, word) not in PATHS:
                problems.append(f"no command `{block_name((*path, word))}`")
                break
            path = (*path, word)
        elif re.fullmatch(r"-[a-z]{2,}", word):  # -vv
            problems += [f"-{c}" for c in word[1:] if f"-{c}" not in command_options(path)]
        elif word.startswith("-") and word != "-":
            option = word.split("=", 1)[0]
            if option not in command_options(path) and option not in TYPER_OPTIONS:
                problems.append(f"`{block_name(path)}` has no option {option}")
    return problems


def test_the_command_line_checker_can_fail() -> None:
    assert command_line_problems("omneo-status assign vip a.csv --dry-run > out") == []
    assert command_line_problems("omneo-status assing vip a.csv") != []
    assert command_line_problems("omneo-status assign vip a.csv --dry-rum") != []
    assert command_line_problems("curl -g --nonsense") == []


@pytest.mark.slow  # runs the CLI for every command line (seconds)
def test_every_command_line_in_the_docs_is_a_real_command() -> None:
    lines = list(shell_lines())
    assert len([line for _, line in lines if "omneo-status" in line]) > 20
    problems = [
        f"{name}: {line}: {problem}"
        for name, line in lines
        for problem in command_line_problems(line)
    ]
    assert problems == []


# -- links --------------------------------------------------------------------------------------


def without_code_blocks(text: str) -> str:
    """Markdown without its fenced blocks, where a ``#`` line is not a heading."""
    return re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.M | re.S)


def without_code(text: str) -> str:
    """Markdown without fenced blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", without_code_blocks(text))


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in re.finditer(r"^#{1,6} (.+?)\s*$", without_code_blocks(read(path)), re.M):
        text = unicodedata.normalize("NFC", match.group(1)).lower().replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> Iterator[str]:
    for target in re.findall(r"\]\(([^)\s]+)\)", without_code(read(path))):
        if not re.match(r"[a-z]+:", target):
            yield target


def test_anchors_follow_github() -> None:
    assert "first-contact-with-a-real-tenant" in anchors(README)
    assert "--json" in anchors(DOCS / "output.md")
    assert "omneo-status-config-show" in anchors(CLI_DOC)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path: Path) -> None:
    broken = []
    for link in relative_links(path):
        target, _, fragment = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{link}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{link}: no such heading")
    assert broken == [], f"{path.name}: broken links {broken}"


# -- drift a reader copies --------------------------------------------------------------------


def test_every_example_file_the_docs_name_is_shipped() -> None:
    named = {
        match
        for path in doc_files()
        for match in re.findall(r"examples/[\w.-]+\.(?:csv|json|sh)", read(path))
    }
    assert len(named) >= 5
    assert sorted(name for name in named if not (ROOT / name).exists()) == []


def test_a_sandbox_command_line_in_the_docs_names_only_files_that_exist() -> None:
    """A ``--sandbox`` line runs as written on a fresh clone, so every file it names is there."""
    missing = [
        f"{name}: {line}: {word}"
        for name, line in shell_lines()
        if "omneo-status" in line and "--sandbox" in line
        for word in shlex.split(line, comments=True)
        if word.endswith((".csv", ".json")) and not (ROOT / word).exists()
    ]
    assert missing == []


def test_no_example_puts_the_token_on_a_command_line() -> None:
    """Copied into a crontab, a token on the command line lands in every cron mail's subject
    (and in ``ps``): the examples read it from a file or an exported variable."""
    helps = {block_name(path): render_help(path) for path in PATHS}
    assert [name for name, text in helps.items() if "OMNEO_TOKEN=" in text] == []
    shown = [
        f"{path.name}: {line.strip()}"
        for path in doc_files()
        for body in re.findall(r"^\s*```(?:sh|crontab)\n(.*?)^\s*```", read(path), re.M | re.S)
        for line in body.replace("\\\n", " ").splitlines()
        if re.search(r"OMNEO_TOKEN=\S", line)
    ]
    assert shown == []


def test_the_changelog_gives_the_bulk_group_its_real_size() -> None:
    from omneo_status.run.resolver import BULK_GROUP

    text = " ".join(read(ROOT / "CHANGELOG.md").split())
    said = re.findall(r"(\d+) (?:at a time|addresses, never a URL)", text)
    assert said and all(int(size) == BULK_GROUP for size in said), said
