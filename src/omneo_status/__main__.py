"""The entry point of ``omneo-status`` and ``python -m omneo_status``.

``--version`` is answered before anything heavy is imported (Typer, rich, httpx, the core):
scripts and monitoring call it often, and it should cost no more than starting Python.
"""

from __future__ import annotations

import os
import sys

from omneo_status import __version__


def main() -> None:
    """Answer ``--version`` at once; hand everything else to the command line."""
    if sys.argv[1:] == ["--version"]:
        sys.stdout.write(f"omneo-status {__version__}\n")
        return
    # httpx imports its own command line (click, rich, pygments) whenever those are installed,
    # which costs every run about 75 ms; the tool never uses it, and httpx copes without it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    # pydantic looks for plugins in every installed package's entry points the first time a
    # model is built (a twentieth of the start-up); the tool uses none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from omneo_status.cli import main as command_line

    command_line()


if __name__ == "__main__":
    main()
