"""The real CLI on a pseudo-terminal, read as a person reads the screen (through pyte, a
terminal emulator): what the live display leaves and what it erases, the prompt and its
answer, and a dumb terminal. Slow: each starts the tool in a subprocess."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pyte
import pytest

from omneo_status.sandbox import ServerThread, create_app, generate_tenant

from .conftest import EXAMPLES, POSIX_ONLY, write_csv

pytestmark = [pytest.mark.slow, POSIX_ONLY]

GUARD = 120.0
"""Seconds after which a run that never ends is killed (a guard against a hang, not a
measurement)."""


def on_a_terminal(
    args: list[str],
    env: Mapping[str, str],
    *,
    answers: Mapping[str, str] | None = None,
    columns: int = 100,
    lines: int = 200,
) -> tuple[list[str], int]:
    """Run ``omneo-status ARGS`` on a pseudo-terminal of that size, typing each answer once its
    prompt shows; the screen as it is at the end (its lines, right-trimmed) and the exit code."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    full_env = {**os.environ, **env, "COLUMNS": str(columns), "LINES": str(lines)}
    process = subprocess.Popen(
        [sys.executable, "-m", "omneo_status", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=full_env,
        start_new_session=True,
    )
    os.close(slave)
    screen = pyte.Screen(columns, lines)
    stream = pyte.ByteStream(screen)
    waiting = dict(answers or {})
    seen = b""
    deadline = time.monotonic() + GUARD
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the tool closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            stream.feed(chunk)
            for prompt, answer in list(waiting.items()):
                if prompt.encode() in seen:
                    os.write(master, answer.encode())
                    del waiting[prompt]
        else:
            process.kill()
            pytest.fail(f"the run did not end; the screen:\n{_text(screen)}")
        code = process.wait(timeout=30)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return [line.rstrip() for line in screen.display], code


def _text(screen: pyte.Screen) -> str:
    return "\n".join(line.rstrip() for line in screen.display).strip()


@contextmanager
def served_tenant(profiles: int) -> Iterator[dict[str, str]]:
    """A generated tenant served on 127.0.0.1; the variables that point the tool at it."""
    with ServerThread(create_app(generate_tenant(profiles))) as server:
        yield {"OMNEO_BASE_URL": server.base_url, "OMNEO_TOKEN": "sandbox-token"}


def test_the_prompt_and_the_plan_stay_on_the_screen_after_the_answer(tmp_path: Path) -> None:
    emails = [f"customer{i}@example.com" for i in range(1, 2001, 13)]
    path = write_csv(tmp_path / "some.csv", emails)
    with served_tenant(2000) as env:
        where = env["OMNEO_BASE_URL"].removeprefix("http://").removesuffix("/api")
        screen, code = on_a_terminal(
            ["assign", "gold", str(path), "--lookup", "scan"],
            {**env, "TERM": "xterm-256color"},
            answers={"[y/n]": "y\r"},
        )
    text = "\n".join(screen).strip()
    assert code == 0, text
    # The live display's last frame before the question is left, each stage in its unit.
    assert re.search(r"^✓ scanning the tenant .* 20/20 pages", text, re.M), text
    assert re.search(r"^✓ resolving .* 154/154 rows", text, re.M), text
    prompt = next(n for n, line in enumerate(screen) if "? [y/n]" in line)
    assert re.fullmatch(
        rf"Assign gold on [\d,]+ profiles at {where}\? \[y/n\] \(n\): y", screen[prompt]
    )
    assert screen[prompt - 1].startswith("└"), text  # the plan's bottom border
    assert f"Plan: assign gold at {where}" in text
    assert re.search(r"^│ to assign +│ +[\d,]+ │$", text, re.M)
    after = "\n".join(screen[prompt + 1 :])
    assert after.lstrip().startswith("Assign gold - run ") and "Report: " in after


def test_term_dumb_gets_the_plain_lines_a_pipe_gets() -> None:
    screen, code = on_a_terminal(
        ["assign", "vip", str(EXAMPLES / "emails.csv"), "--sandbox", "--yes"],
        {"TERM": "dumb"},
    )
    text = "\n".join(screen)
    assert code == 0, text
    assert re.search(r"^reading: 9 rows done$", text, re.M), text
    assert re.search(r"^resolving: 7 rows done$", text, re.M), text
    assert re.search(r"^waiting for batches: 4 rows done$", text, re.M), text
