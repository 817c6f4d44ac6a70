"""The sequential script the Omneo guide describes: the yardstick ``throughput.py`` measures
``omneo-status`` against.

One request at a time over one keep-alive connection: check that the status handle exists,
look every email up with ``filter[email]``, then send the profiles that lack the status in
chunks of 250 to ``POST /v3/profile/status/batch.json`` and poll each batch until it is done.
No retries, no pacing: it is run only against a sandbox without a rate limit or faults.

    uv run python bench/baseline.py http://127.0.0.1:8765/api emails.csv vip
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

CHUNK = 250
POLL_EVERY = 0.5
DONE = frozenset({"success", "completed", "failed"})


@dataclass
class BaselineResult:
    """What the sequential script did."""

    requests: int
    looked_up: int
    assigned: int
    seconds: float


def read_emails(path: Path) -> list[str]:
    """The ``email`` column of a CSV file."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["email"].strip() for row in csv.DictReader(handle)]


def run(base_url: str, token: str, path: Path, handle: str) -> BaselineResult:
    """Give ``handle`` to every profile whose email is in ``path``, one request at a time."""
    started = time.perf_counter()
    emails = read_emails(path)
    requests = 0
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    with httpx.Client(base_url=base_url.rstrip("/") + "/v3", headers=headers) as http:

        def call(method: str, url: str, **kwargs: Any) -> Any:
            nonlocal requests
            requests += 1
            response = http.request(method, url, **kwargs)
            response.raise_for_status()
            return response.json()

        page, handles = 1, set[str]()
        while True:
            body = call("GET", "/statuses", params={"page[size]": 100, "page[number]": page})
            handles.update(status["handle"] for status in body["data"])
            if not body["links"]["next"]:
                break
            page += 1
        if handle not in handles:
            raise SystemExit(f"no status {handle!r} on this tenant")

        to_send: list[str] = []
        for email in emails:
            found = call("GET", "/profiles", params={"filter[email]": email})["data"]
            if len(found) == 1 and handle not in found[0]["statuses"]:
                to_send.append(found[0]["id"])

        for start in range(0, len(to_send), CHUNK):
            chunk = to_send[start : start + CHUNK]
            body = call(
                "POST",
                "/profile/status/batch.json",
                json={"profiles": [{"profile_id": pid, "statuses": [handle]} for pid in chunk]},
            )
            batch_id = body["data"]["batch_id"]
            while call("GET", f"/batches/{batch_id}")["data"]["status"] not in DONE:
                time.sleep(POLL_EVERY)
    return BaselineResult(requests, len(emails), len(to_send), time.perf_counter() - started)


def main() -> None:
    """``baseline.py BASE_URL CSV_FILE HANDLE`` with the token in ``OMNEO_TOKEN``."""
    import os

    base_url, path, handle = sys.argv[1:4]
    result = run(base_url, os.environ.get("OMNEO_TOKEN", "sandbox-token"), Path(path), handle)
    print(
        f"{result.looked_up} emails, {result.assigned} assigned, {result.requests} requests"
        f" in {result.seconds:.2f}s"
    )


if __name__ == "__main__":
    main()
