"""The shape of the ``cli`` package: one module registers the app and every command, and no
other module of the package imports it, so the package has no import loop."""

from __future__ import annotations

import ast
from pathlib import Path

import omneo_status.cli

PACKAGE = "omneo_status.cli"
ROOT = Path(omneo_status.cli.__file__).parent
MODULES = sorted(path.stem for path in ROOT.glob("*.py") if path.stem != "__init__")


def imports_within(module: str) -> set[str]:
    """The modules of the package that ``module`` imports (``from omneo_status.cli import x``
    counts as importing ``x``)."""
    tree = ast.parse((ROOT / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module == PACKAGE:
                found.update(alias.name for alias in node.names)
            elif node.module.startswith(f"{PACKAGE}."):
                found.add(node.module.removeprefix(f"{PACKAGE}."))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE:
                    found.add("__init__")
                elif alias.name.startswith(f"{PACKAGE}."):
                    found.add(alias.name.removeprefix(f"{PACKAGE}."))
    return found


def test_every_name_imported_from_the_package_is_one_of_its_modules() -> None:
    for module in MODULES:
        assert imports_within(module) <= set(MODULES), module


def test_only_the_package_s_face_imports_the_registry() -> None:
    assert {m for m in MODULES if "registry" in imports_within(m)} == set()
    assert "registry" in MODULES


def test_the_package_has_no_import_loop() -> None:
    graph = {module: imports_within(module) for module in MODULES}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join([*path, module])
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, (*path, module))
        done.add(module)

    for module in MODULES:
        visit(module, ())
    assert done == set(MODULES)
