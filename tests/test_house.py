"""The house rules of CONTRIBUTING, held over every module of ``src/omneo_status``: the sizes (no
module over 800 lines, no class over 300, no function or method over 120) and the floors (which
package may import which). A failure names each offender."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "omneo_status"

MODULE_LINES = 800
CLASS_LINES = 300
FUNCTION_LINES = 120


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def span(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The lines a definition takes, its decorators and docstring included."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return (node.end_lineno or node.lineno) - first + 1


@cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def definitions(path: Path) -> Iterator[ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every class and function of a module, nested ones included."""
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def where(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def oversized_modules() -> list[str]:
    found = []
    for path in modules():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MODULE_LINES:
            found.append(f"{where(path)}: {lines} lines")
    return found


def oversized(kind: type[ast.AST] | tuple[type[ast.AST], ...], limit: int) -> list[str]:
    found = []
    for path in modules():
        for node in definitions(path):
            if isinstance(node, kind) and span(node) > limit:
                found.append(f"{where(path)}:{node.lineno} {node.name}: {span(node)} lines")
    return found


def test_the_package_has_modules_to_check() -> None:
    assert PACKAGE / "run" / "engine.py" in modules()
    assert any(path.parent.name == "sandbox" for path in modules())


def report(what: str, limit: int, found: list[str]) -> str:
    """The failure message: how many ``what`` (a plural) are too long, then each of them."""
    listed = "\n".join(f"  {offender}" for offender in found)
    return f"{what} over {limit} lines (CONTRIBUTING's house style): {len(found)}\n{listed}"


def test_no_module_is_over_800_lines() -> None:
    found = oversized_modules()
    assert found == [], report("modules", MODULE_LINES, found)


def test_no_class_is_over_300_lines() -> None:
    found = oversized(ast.ClassDef, CLASS_LINES)
    assert found == [], report("classes", CLASS_LINES, found)


def test_no_function_is_over_120_lines() -> None:
    found = oversized((ast.FunctionDef, ast.AsyncFunctionDef), FUNCTION_LINES)
    assert found == [], report("functions", FUNCTION_LINES, found)


def test_a_definition_is_measured_from_its_decorators_to_its_last_line() -> None:
    source = (
        "@decorated\nclass Room:\n    '''Doc.'''\n\n    def door(self) -> None:\n        pass\n"
    )
    room = ast.parse(source).body[0]
    assert isinstance(room, ast.ClassDef)
    door = room.body[1]
    assert isinstance(door, ast.FunctionDef)
    assert (span(room), span(door)) == (6, 2)


# -- the floors -------------------------------------------------------------------------------

FLOORS = {
    "cli": "the edge: nothing below it imports it",
    "run": "one run's pipeline",
    "store": "the journal",
    "api": "the Omneo API",
    "sandbox": "the fake tenant: imports nothing of the tool",
}
MAY_NOT_IMPORT = {
    "api": ("cli", "run", "store", "sandbox"),
    "store": ("cli", "run", "sandbox"),
    "run": ("cli", "sandbox"),
}
"""What each floor must never import (besides ``cli``, which nothing but ``__main__`` imports)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for each import of a module, ``from omneo_status import x`` as
    ``omneo_status.x``."""
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == "omneo_status":
                yield from ((node.lineno, f"omneo_status.{alias.name}") for alias in node.names)
            else:
                yield node.lineno, node.module


def floor(module: str) -> str | None:
    """The floor (a package of ``FLOORS``) a module belongs to; None for the top-level ones."""
    parts = module.split(".")
    return parts[1] if parts[0] == "omneo_status" and parts[1:2] and parts[1] in FLOORS else None


def crossings() -> list[str]:
    found = []
    for path in modules():
        here = module_name(path)
        mine = floor(here)
        for line, target in imports(path):
            theirs = floor(target)
            top = target.split(".")[0]
            if top == "rich" and here != "omneo_status.cli.console":
                found.append(f"{where(path)}:{line} imports rich (only cli/console.py draws)")
            elif top == "typer" and mine != "cli":
                found.append(f"{where(path)}:{line} imports typer (only the cli/ package)")
            elif theirs == "cli" and mine != "cli" and here != "omneo_status.__main__":
                found.append(f"{where(path)}:{line} imports {target}: {FLOORS['cli']}")
            elif mine == "sandbox" and target.startswith("omneo_status.") and theirs != "sandbox":
                found.append(f"{where(path)}:{line} imports {target}: {FLOORS['sandbox']}")
            elif theirs in MAY_NOT_IMPORT.get(mine or "", ()):
                found.append(f"{where(path)}:{line} imports {target}: {FLOORS[mine or '']}")
    return found


def test_no_import_runs_up_a_floor() -> None:
    found = crossings()
    assert found == [], "imports that cross the floors:\n" + "\n".join(found)


def test_the_floors_are_told_apart() -> None:
    assert floor("omneo_status.run.engine") == "run"
    assert floor("omneo_status.jobs") is None
    assert floor("omneo_status.cli") == "cli"
    assert module_name(PACKAGE / "api" / "__init__.py") == "omneo_status.api"
    assert module_name(PACKAGE / "cli" / "console.py") == "omneo_status.cli.console"
