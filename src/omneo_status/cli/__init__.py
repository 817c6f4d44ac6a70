"""The command line: parse the flags, build the settings, call the core, word its results, and
exit with the right code. A reader follows ``--help`` -> command -> code:

- ``registry``: the app and every command registered on it (the commands' modules never import
  it);
- ``flags``: every option declared once, the groups commands offer them in, and the typed
  ``RunOptions``, ``Connection`` and ``Output`` built from their values;
- ``boundary``: the runtime (time, the in-process sandbox, the terminal) and the one error
  boundary, where an ``OmneoStatusError`` becomes an ``Error:`` line and an exit code;
- ``session``: what one command opens to talk to the API (settings, display, log, trace,
  client);
- ``runs``: ``assign``, ``remove``, ``sync``, ``resume``, ``undo``;
- ``reads``: ``statuses``, ``batch``, ``doctor``, ``runs``, ``config show``;
- ``sandbox``: the ``sandbox`` command and its options.
"""

from omneo_status.cli.boundary import Runtime, run_loop
from omneo_status.cli.registry import app, main

__all__ = ["Runtime", "app", "main", "run_loop"]
