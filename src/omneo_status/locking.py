"""The job lock: one process at a time per job, released by the operating system when the
process ends however it ends, so a crash leaves nothing that blocks the next run.

Beside each held lock a small sidecar file names the process and, once known, the run, so a
second start of the same job can say who holds it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import filelock

from omneo_status.errors import LockedError

LOCKS_DIR = "locks"
PROBE_GRACE = 0.25
"""Seconds a start waits for a lock that someone may only be probing."""


class JobLock:
    """A held job lock; ``claim`` records the run it works on."""

    def __init__(self, sidecar: Path) -> None:
        self.sidecar = sidecar

    def claim(self, run_id: str | None) -> None:
        """Write the sidecar: this process's id and the run it works on (0600)."""
        text = json.dumps({"pid": os.getpid(), "run_id": run_id})
        fd = os.open(self.sidecar, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)


def _paths(state_dir: Path, key: str) -> tuple[Path, Path]:
    locks = state_dir / LOCKS_DIR
    return locks / f"{key[:32]}.lock", locks / f"{key[:32]}.json"


@contextmanager
def job_lock(state_dir: Path, key: str) -> Iterator[JobLock]:
    """Hold the job's lock; while another process holds it, raise ``LockedError`` at once,
    naming that process and its run."""
    lock_path, sidecar = _paths(state_dir, key)
    lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = filelock.FileLock(str(lock_path), mode=0o600)
    try:
        # A moment's patience: ``is_held`` in another process may be probing the lock.
        lock.acquire(timeout=PROBE_GRACE, poll_interval=0.05)
    except filelock.Timeout:
        raise _locked(sidecar) from None
    held = JobLock(sidecar)
    try:
        held.claim(None)
        yield held
    finally:
        with suppress(OSError):
            sidecar.unlink()
        lock.release()


def is_held(state_dir: Path, key: str) -> bool:
    """Whether a process holds the job's lock now (a killed run's journal still says running)."""
    lock_path, _ = _paths(state_dir, key)
    if not lock_path.exists():
        return False
    lock = filelock.FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    lock.release()
    return False


def _locked(sidecar: Path) -> LockedError:
    holder: dict[str, object] = {}
    with suppress(OSError, ValueError):
        loaded = json.loads(sidecar.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            holder = loaded
    run_id = holder.get("run_id")
    pid = holder.get("pid")
    who = []
    if run_id:
        who.append(f"run {run_id}")
    if pid:
        who.append(f"process {pid}")
    named = f" ({', '.join(who)})" if who else ""
    return LockedError(
        f"Another run of this job is in progress{named}",
        hint="Wait for it to finish; its lock is released when it ends, even if it is killed.",
        run_id=str(run_id) if run_id else None,
    )
