"""The size rules of CONTRIBUTING's house style, held over every module of ``src/omneo_status``:
no module over 800 lines, no class over 300, no function (or method) over 120. A failure names
each offender, where it starts, and its size."""

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
    assert PACKAGE / "engine.py" in modules()
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
