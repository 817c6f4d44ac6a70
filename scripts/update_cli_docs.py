"""Regenerate every generated part of the docs from the live code.

    uv run python scripts/update_cli_docs.py           # rewrite what is stale
    uv run python scripts/update_cli_docs.py --check   # change nothing; exit 1 if stale

What it writes:

- ``docs/cli.md``, whole: the ``--help`` of every command, the top level first, in the order
  the app registers them (a command added to the app gets a section, a command removed loses it).
- In ``docs/sandbox.md``, the region between ``<!-- generated:NAME -->`` and
  ``<!-- /generated:NAME -->`` for each NAME in ``BLOCKS``: the options of
  ``omneo-status sandbox`` and the fields of ``SandboxConfig``, so that every sandbox variant the
  code offers is listed, with its default.

``tests/test_docs.py`` renders the same text with the same functions, so the docs cannot drift
from the tool. The help is rendered through Typer's ``CliRunner`` at a fixed width with colour
off, so it is the same on every machine (rich draws legacy Windows consoles with other box
characters, which is why the exact check runs on Linux and macOS).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import itertools
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from typer.core import TyperGroup  # noqa: TID251 - reads the command tree, renders no UI
from typer.main import get_command  # noqa: TID251
from typer.testing import CliRunner  # noqa: TID251

from omneo_status.cli import app
from omneo_status.sandbox import SandboxConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CLI_DOC = DOCS / "cli.md"
SANDBOX_DOC = DOCS / "sandbox.md"
PROG = "omneo-status"
WIDTH = 100
RERUN = "uv run python scripts/update_cli_docs.py"

HELP_ENV: Mapping[str, str | None] = {
    "COLUMNS": str(WIDTH),
    # With both COLUMNS and LINES set, rich takes the size as given even when a CI runner
    # forces a terminal; TERM=dumb then turns every colour and style code off.
    "LINES": "50",
    "TERM": "dumb",
    "NO_COLOR": "1",
    "FORCE_COLOR": None,
    "PY_COLORS": None,
    "CLICOLOR_FORCE": None,
    "TERMINAL_WIDTH": None,
}
"""The environment the help is rendered in (None: unset)."""

BLOCK = re.compile(
    r"<!-- generated:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /generated:(?P=name) -->",
    re.DOTALL,
)

# Fields of SandboxConfig that are seams for tests and benchmarks, not behaviours to document.
SANDBOX_SEAMS = frozenset({"clock", "wall_clock"})


# -- the command tree ---------------------------------------------------------------------------


def command_paths() -> list[tuple[str, ...]]:
    """Every command path of the app, the top level first, in registration order."""

    def walk(command: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                if not sub.hidden:
                    yield from walk(sub, (*path, name))

    return list(walk(get_command(app), ()))


def _command(path: tuple[str, ...]) -> object:
    command: object = get_command(app)
    for name in path:
        if not isinstance(command, TyperGroup):
            raise KeyError(" ".join(path))
        command = command.commands[name]
    return command


def is_group(path: tuple[str, ...]) -> bool:
    """Whether the command at ``path`` has subcommands (the top level, ``config``)."""
    return isinstance(_command(path), TyperGroup)


def command_help(path: tuple[str, ...]) -> str:
    """The command's help text as written in the code (its docstring or ``help=``)."""
    return str(getattr(_command(path), "help", None) or "")


def _options(path: tuple[str, ...]) -> list[Any]:
    params = getattr(_command(path), "params", ())
    return [p for p in params if getattr(p, "param_type_name", "") == "option"]


def command_options(path: tuple[str, ...]) -> dict[str, str]:
    """Every option string of the command (``--yes``, ``-y``...) with the option's help."""
    found: dict[str, str] = {}
    for param in _options(path):
        for opt in [*param.opts, *param.secondary_opts]:
            found[opt] = plain(str(getattr(param, "help", None) or ""))
    return found


def block_name(path: tuple[str, ...]) -> str:
    """A command's name as the docs show it: ``omneo-status`` for the top level, else its path."""
    return " ".join(path) if path else PROG


def plain(text: str) -> str:
    """Help text without rich's escapes (``filter\\[email]`` is shown ``filter[email]``)."""
    return " ".join(text.replace("\\[", "[").split())


# -- docs/cli.md --------------------------------------------------------------------------------


def render_help(path: tuple[str, ...]) -> str:
    """The command's ``--help`` as plain text: fixed width, no colour, no trailing spaces."""
    result = CliRunner().invoke(app, [*path, "--help"], env=dict(HELP_ENV), prog_name=PROG)
    if result.exit_code != 0:
        raise RuntimeError(f"{PROG} {' '.join(path)} --help exited {result.exit_code}")
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    return "\n".join(lines).strip("\n") + "\n"


def heading(path: tuple[str, ...]) -> str:
    """The Markdown heading of a command's section in docs/cli.md."""
    return f"`{' '.join([PROG, *path])}`"


def anchor(path: tuple[str, ...]) -> str:
    """The anchor GitHub gives that heading."""
    return "-".join([PROG, *path])


def render_section(path: tuple[str, ...]) -> str:
    """One command's section: a heading and its help in a text fence."""
    return f"## {heading(path)}\n\n```text\n{render_help(path)}```\n"


def render_cli_doc() -> str:
    """The whole of docs/cli.md."""
    paths = command_paths()
    contents = "\n".join(f"- [{heading(path)}](#{anchor(path)})" for path in paths)
    sections = "\n".join(render_section(path) for path in paths)
    return (
        "# Command reference\n\n"
        f"<!-- Generated from the live --help by scripts/update_cli_docs.py: do not edit.\n"
        f"     Regenerate with: {RERUN} -->\n\n"
        f"The `--help` of every command, as `{PROG}` prints it at {WIDTH} columns. What the\n"
        "commands are for, with examples, is in [commands.md](commands.md); the flags and\n"
        "variables are explained in [configuration.md](configuration.md).\n\n"
        f"{contents}\n\n{sections}"
    )


# -- docs/sandbox.md ------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else ""


def _default(param: Any) -> str:
    if getattr(param, "is_flag", False) and not param.default:
        return "off"
    if param.default is None or param.default == ():
        return ""
    return f"`{param.default}`"


def render_sandbox_options() -> str:
    """A table of every option of ``omneo-status sandbox``: flag, default, help."""
    rows = ["| Option | Default | What it does |", "| --- | --- | --- |"]
    for param in _options(("sandbox",)):
        if "--help" in param.opts:
            continue
        flags = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
        help_text = plain(str(getattr(param, "help", None) or ""))
        rows.append(f"| {flags} | {_default(param)} | {_cell(help_text)} |")
    return "\n".join(rows) + "\n"


def attribute_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a class (a string right under ``name: type = value``)."""
    tree = ast.parse(inspect.getsource(cls).lstrip())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef)).body
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign | ast.Assign)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            if isinstance(target, ast.Name):
                docs[target.id] = " ".join(after.value.value.split())
    return docs


def sandbox_fields() -> list[dataclasses.Field[Any]]:
    """The fields of ``SandboxConfig`` that set a behaviour (the clocks left out)."""
    return [f for f in dataclasses.fields(SandboxConfig) if f.name not in SANDBOX_SEAMS]


def _field_default(item: dataclasses.Field[Any]) -> str:
    if item.default is not dataclasses.MISSING:
        value: object = item.default
    elif item.default_factory is not dataclasses.MISSING:
        value = item.default_factory()
    else:
        return ""
    return "" if value is None else f"`{value!r}`"


def _option_of(name: str) -> Any | None:
    """The ``sandbox`` option that sets field ``name``, matched by its parameter name."""
    candidates = {name, f"no_{name}", name.removesuffix("_path"), f"no_{name.split('_')[0]}"}
    return next((p for p in _options(("sandbox",)) if p.name in candidates), None)


def render_sandbox_config() -> str:
    """A table of every behaviour field of ``SandboxConfig``: default, option, meaning."""
    docs = attribute_docs(SandboxConfig)
    rows = ["| Field | Default | Option | What it does |", "| --- | --- | --- | --- |"]
    for item in sandbox_fields():
        option = _option_of(item.name)
        flag = f"`{option.opts[0]}`" if option is not None else ""
        meaning = docs.get(item.name) or (
            plain(str(option.help or "")) if option is not None else ""
        )
        rows.append(f"| `{item.name}` | {_field_default(item)} | {flag} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


BLOCKS: dict[str, Callable[[], str]] = {
    "sandbox-options": render_sandbox_options,
    "sandbox-config": render_sandbox_config,
}
"""The generated regions of docs/sandbox.md, by name."""


def updated_blocks(text: str) -> str:
    """``text`` with every ``<!-- generated:NAME -->`` region rebuilt."""
    found = {match["name"] for match in BLOCK.finditer(text)}
    missing = set(BLOCKS) - found
    if missing:
        raise SystemExit(
            f"docs/sandbox.md has no <!-- generated:NAME --> block for {sorted(missing)}"
        )

    def rebuild(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise SystemExit(f"docs/sandbox.md: no generator for the block `{name}`")
        return f"<!-- generated:{name} -->\n{BLOCKS[name]()}<!-- /generated:{name} -->"

    return BLOCK.sub(rebuild, text)


# -- the command line -------------------------------------------------------------------------


def generated() -> dict[Path, str]:
    """Every generated file as it should be now, by path."""
    return {
        CLI_DOC: render_cli_doc(),
        SANDBOX_DOC: updated_blocks(SANDBOX_DOC.read_text(encoding="utf-8")),
    }


def main(argv: list[str] | None = None) -> int:
    """Rewrite the stale generated docs, or with ``--check`` report which are stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    stale = 0
    for path, wanted in generated().items():
        name = path.relative_to(ROOT).as_posix()
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if wanted == current:
            print(f"{name}: up to date")
            continue
        stale += 1
        if args.check:
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    wanted.splitlines(keepends=True),
                    fromfile=f"{name} (now)",
                    tofile=f"{name} (generated)",
                )
            )
            print(f"\n{name} is out of date: run `{RERUN}`")
        else:
            path.write_text(wanted, encoding="utf-8", newline="\n")
            print(f"{name}: regenerated")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
