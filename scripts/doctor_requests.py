"""Lookup requests of a dry run with and without what ``doctor`` saved, measured over a
loopback sandbox (``omneo-status sandbox --log``): running ``doctor`` first must never make a
run dearer.

    uv run python scripts/doctor_requests.py

Each case gets a fresh sandbox subprocess and a fresh state directory; the tool runs as its own
process (``assign vip FILE --dry-run --json``, default options, the file being the tenant's last
customers), once without a record and once after ``doctor``. The requests counted are the run's
lookups (``GET /v3/profiles``) in the sandbox's request log, next to the requests its plan
expected.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

TOKEN = "bench-token"  # noqa: S105 - the sandbox's token for this script, not a secret
_URL = re.compile(r"(http://127\.0\.0\.1:\d+/api)")


@dataclass(frozen=True)
class Case:
    """A tenant (sandbox flags) and a file of ``addresses`` of its customers."""

    name: str
    profiles: int
    addresses: int
    flags: tuple[str, ...]


CASES = (
    Case("ignores filter[email][in]", 200, 84, ("--no-email-in-filter",)),
    Case(
        "honours only page/per_page, ignores filter[email][in]",
        1770,
        300,
        ("--page-style", "per_page", "--no-email-in-filter"),
    ),
)


def _tool(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "omneo_status", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout


def measure(work: Path, case: Case, *, doctor: bool) -> tuple[int, dict[str, object]]:
    """The lookup requests one dry run made (and its ``lookup`` plan), against a fresh sandbox."""
    log = work / "log.jsonl"
    log.unlink(missing_ok=True)
    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "omneo_status",
            "sandbox",
            "--port",
            "0",
            "--token",
            TOKEN,
            "--profiles",
            str(case.profiles),
            "--log",
            str(log),
            *case.flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert sandbox.stdout is not None
        base_url = next(m.group(1) for line in sandbox.stdout if (m := _URL.search(line)))
        csv = work / "in.csv"
        # The tenant's last customers: page 1 of a tenant ignoring the in filter shows strangers.
        first = case.profiles - case.addresses + 1
        numbers = range(first, case.profiles + 1)
        csv.write_text("email\n" + "".join(f"customer{n}@example.com\n" for n in numbers))
        state = work / ("state-doctor" if doctor else "state")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNEO_")}
        env.update(OMNEO_BASE_URL=base_url, OMNEO_TOKEN=TOKEN, OMNEO_STATE_DIR=str(state))
        if doctor:
            _tool(env, "doctor", "--json")
        before = sum(1 for _ in log.open())
        summary = json.loads(_tool(env, "assign", "vip", str(csv), "--dry-run", "--json"))
    finally:
        sandbox.terminate()
        sandbox.wait()
    lines = log.read_text().splitlines()[before:]
    lookups = sum(1 for line in lines if json.loads(line)["path"] == "/api/v3/profiles")
    lookup = summary["lookup"]
    assert isinstance(lookup, dict)
    return lookups, lookup


def main() -> None:
    """Print one line per case and record."""
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            for doctor in (False, True):
                requests, lookup = measure(Path(tmp), case, doctor=doctor)
                record = "after doctor" if doctor else "no record   "
                print(
                    f"{case.addresses} addresses, {case.profiles} profiles, {case.name},"
                    f" {record}: {requests} lookup requests (planned {lookup['requests']},"
                    f" {lookup['mode']}: {lookup['reason']})"
                )


if __name__ == "__main__":
    main()
