"""Requests per address over whole runs, and the scan's peak memory: what the lookup planner
saves, measured over a loopback sandbox (``omneo-status sandbox --log``).

    uv run python scripts/lookup_requests.py            # the two requests-per-address cases
    uv run python scripts/lookup_requests.py --memory   # also a 1,000,000-row scan (minutes)

Each case gets a fresh sandbox subprocess; the tool runs as its own process
(``assign vip FILE --yes --json --quiet``, default options); requests (lookups, batches, polls
and verification, 429s included) are counted in the sandbox's request log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN = "bench-token"  # noqa: S105 - the sandbox's token for this script, not a secret
_URL = re.compile(r"(http://127\.0\.0\.1:\d+/api)")


@dataclass(frozen=True)
class Measured:
    """One run: its ``--json`` summary, the requests the sandbox logged, the tool's peak RSS."""

    summary: dict[str, Any]
    requests: int
    rss_mb: float


def run_case(
    work: Path, *, profiles: int, addresses: int, flags: list[str], extra: list[str]
) -> Measured:
    """One run against a fresh sandbox: its summary, request count and the tool's peak RSS."""
    log = work / f"log-{profiles}-{addresses}.jsonl"
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
            str(profiles),
            "--log",
            str(log),
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert sandbox.stdout is not None
        base_url = next(m.group(1) for line in sandbox.stdout if (m := _URL.search(line)))
        csv = work / f"in-{addresses}.csv"
        with csv.open("w") as out:
            out.write("email\n")
            out.writelines(f"customer{n}@example.com\n" for n in range(addresses))
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNEO_")}
        env.update(
            OMNEO_BASE_URL=base_url,
            OMNEO_TOKEN=TOKEN,
            OMNEO_STATE_DIR=str(work / f"state-{profiles}-{addresses}"),
        )
        tool = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "omneo_status",
                "assign",
                "vip",
                str(csv),
                "--yes",
                "--json",
                "--quiet",
                *extra,
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert tool.stdout is not None
        document = tool.stdout.read()
        _, _, usage = os.wait4(tool.pid, 0)  # the tool's own peak RSS, not the sandbox's
        tool.returncode = 0
        summary = json.loads(document)
        assert sum(summary["counts"].values()) == addresses, summary
    finally:
        sandbox.terminate()
        sandbox.wait()
    requests = sum(1 for _ in log.open())
    return Measured(summary, requests, usage.ru_maxrss / 1024)


def main() -> None:
    """Print one line per case."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory", action="store_true", help="also the 1,000,000-row scan")
    args = parser.parse_args()
    cases: list[tuple[int, int, list[str], list[str], float]] = [
        (1000, 800, ["--rate-limit", "50", "--no-email-in-filter"], [], 0.1),
        (20000, 2000, ["--rate-limit", "50"], [], 0.025),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for profiles, addresses, flags, extra, target in cases:
            got = run_case(
                Path(tmp), profiles=profiles, addresses=addresses, flags=flags, extra=extra
            )
            lookup = got.summary["lookup"]
            per = got.requests / addresses
            print(
                f"{addresses} addresses, {profiles} profiles, {' '.join(flags)}: "
                f"{got.requests} requests = {per:.4f} per address (target <= {target}); "
                f"lookup {lookup['mode']}, {lookup['reason']}"
            )
        if args.memory:
            got = run_case(
                Path(tmp),
                profiles=1_000_000,
                addresses=1_000_000,
                flags=[],
                extra=["--dry-run", "--lookup", "scan"],
            )
            print(
                f"1,000,000 rows, 1,000,000 profiles, --dry-run --lookup scan: "
                f"peak RSS {got.rss_mb:.0f} MB, {got.requests} requests"
            )


if __name__ == "__main__":
    main()
