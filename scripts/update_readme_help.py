"""Regenerate the README's command reference from the real ``--help`` of every command.

    uv run python scripts/update_readme_help.py           # rewrite README.md
    uv run python scripts/update_readme_help.py --check   # exit 1 if README.md is out of date

Each command's help sits between ``<!-- help:NAME -->`` and ``<!-- /help:NAME -->`` markers
(NAME is ``omneo-status`` for the top level, else the command path: ``assign``,
``config show``). Everything from the first marker to the last is generated: a command added
to the app gets a block, a command removed loses its block. ``tests/test_docs.py`` renders the
help with the same functions, so the README cannot drift from the tool.

The help is rendered through Typer's ``CliRunner`` at a fixed width with colour off, so it is
the same on every machine (rich draws legacy Windows consoles with other box characters, which
is why the README check runs on Linux and macOS).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from typer.core import TyperGroup  # noqa: TID251 - reads the command tree, renders no UI
from typer.main import get_command  # noqa: TID251
from typer.testing import CliRunner  # noqa: TID251

from omneo_status.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PROG = "omneo-status"
WIDTH = 100

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
    r"<!-- help:(?P<name>[^>]+?) -->\n(?P<body>.*?)<!-- /help:(?P=name) -->\n?", re.DOTALL
)
RERUN = "uv run python scripts/update_readme_help.py"


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


def command_options(path: tuple[str, ...]) -> dict[str, str]:
    """Every option string of the command (``--yes``, ``-y``...) with the option's help."""
    found: dict[str, str] = {}
    for param in getattr(_command(path), "params", ()):
        if getattr(param, "param_type_name", "") != "option":
            continue
        for opt in [*param.opts, *param.secondary_opts]:
            found[opt] = str(getattr(param, "help", None) or "")
    return found


def block_name(path: tuple[str, ...]) -> str:
    """The marker name of a command: ``omneo-status`` for the top level, else its path."""
    return " ".join(path) if path else PROG


def render_help(path: tuple[str, ...]) -> str:
    """The command's ``--help`` as plain text: fixed width, no colour, no trailing spaces."""
    result = CliRunner().invoke(app, [*path, "--help"], env=dict(HELP_ENV), prog_name=PROG)
    if result.exit_code != 0:
        raise RuntimeError(f"{PROG} {' '.join(path)} --help exited {result.exit_code}")
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    return "\n".join(lines).strip("\n") + "\n"


def render_block(path: tuple[str, ...]) -> str:
    """One README block: the markers, a collapsible summary and the help in a text fence."""
    name = block_name(path)
    shown = " ".join([PROG, *path, "--help"])
    return (
        f"<!-- help:{name} -->\n"
        f"<details>\n<summary><code>{shown}</code></summary>\n\n"
        f"```text\n{render_help(path)}```\n\n"
        f"</details>\n"
        f"<!-- /help:{name} -->\n"
    )


def readme_blocks(text: str) -> dict[str, str]:
    """The help blocks of a README, by name, each with its markers."""
    return {match["name"]: match[0].rstrip("\n") + "\n" for match in BLOCK.finditer(text)}


def updated_readme(text: str) -> str:
    """The README with its generated region (first help block to last) rebuilt."""
    matches = list(BLOCK.finditer(text))
    if not matches:
        raise SystemExit(
            "README.md has no <!-- help:NAME --> ... <!-- /help:NAME --> block to regenerate;"
            " add an empty one where the command reference goes."
        )
    start, end = matches[0].start(), matches[-1].end()
    generated = "\n".join(render_block(path) for path in command_paths())
    return text[:start] + generated + text[end:]


def main(argv: list[str] | None = None) -> int:
    """Rewrite README.md, or with ``--check`` report whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if README.md is stale"
    )
    parser.add_argument("--readme", type=Path, default=README, help="the file to update")
    args = parser.parse_args(argv)
    current = args.readme.read_text(encoding="utf-8")
    wanted = updated_readme(current)
    if wanted == current:
        print(f"{args.readme.name}: the command reference is up to date")
        return 0
    if args.check:
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            wanted.splitlines(keepends=True),
            fromfile=f"{args.readme.name} (now)",
            tofile=f"{args.readme.name} (generated)",
        )
        sys.stdout.writelines(diff)
        print(f"\n{args.readme.name} is out of date: run `{RERUN}`")
        return 1
    args.readme.write_text(wanted, encoding="utf-8", newline="\n")
    print(f"{args.readme.name}: command reference regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
