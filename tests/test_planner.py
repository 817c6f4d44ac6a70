"""The lookup planner and the tenant scan, over the sandbox: which plan ``auto`` picks and why,
that a scan keeps every guarantee of the lookups (exact keys, case, ambiguity, not found,
duplicates), that it survives a list moving under it, resumes without reading a page twice, and
that bulk groups are as large as a page and no longer than the URL allows.

Then ``LookupPlanner`` on its own, carried out as the engine does: a table of tenants (size, page
style, the ``in`` filter honoured or not, the case rule, a list without a total, what doctor
knew) by files (1, 5 and 150 addresses), each cell with the plan's mode, its requests (equal to
those made) and what its reason names; forced modes; an address in another case than the
tenant's; and a scan an earlier attempt began."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from omneo_status.api.client import OmneoClient
from omneo_status.cli import boundary
from omneo_status.errors import AuthError
from omneo_status.options import LookupMode, LookupPlan
from omneo_status.run.planner import CASE_NOTE, Chosen, LookupPlanner, TenantFacts
from omneo_status.run.resolver import URL_MAX, Resolver
from omneo_status.sandbox import SandboxConfig, Tenant, create_app, generate_tenant
from omneo_status.sandbox.app import PageStyle
from omneo_status.store.journal import Journal, RunJournal
from omneo_status.store.records import Stage

from ._middle import Recorder, Scripted, connect, json_answer, new_run, open_journal, without_total
from .conftest import Sandbox, VirtualClock, report_rows, summary_of, write_csv

PROFILES = "/api/v3/profiles"


def lookups(tenant: Tenant) -> list[dict[str, str]]:
    """The query of every profile list request, in order."""
    return [dict(r.query) for r in tenant.requests if r.path == PROFILES and r.method == "GET"]


def scan_pages(tenant: Tenant) -> list[int]:
    """The page numbers of every unfiltered profile list request (the scan's reads)."""
    return [
        int(q.get("page[number]", "1"))
        for q in lookups(tenant)
        if not any(k.startswith("filter") for k in q)
    ]


def customers(tenant: Tenant, count: int, start: int = 0) -> list[str]:
    return [p.email for p in tenant.profiles.values()][start : start + count]


def run_json(sandbox: Sandbox, csv: Path, *extra: str) -> dict[str, Any]:
    result = sandbox.run("assign", "vip", str(csv), "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return summary_of(result)


# -- the planner's choices ----------------------------------------------------------------


def test_a_small_file_against_a_large_tenant_is_looked_up_in_bulk(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(3000, seed=3)
    csv = write_csv(tmp_path / "in.csv", customers(sandbox.tenant, 150, start=500))
    doc = run_json(sandbox, csv)
    assert doc["lookup"]["mode"] == "bulk"
    assert "honours filter[email][in]" in doc["lookup"]["reason"]
    in_filter = [q for q in lookups(sandbox.tenant) if "filter[email][in]" in q]
    assert len(in_filter) == 2  # 150 addresses in groups as large as a page (100)
    assert scan_pages(sandbox.tenant) == [1]  # only the probe of the tenant's size
    assert doc["lookup"]["requests"] == 3
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == 150


def test_a_file_covering_much_of_a_small_tenant_scans_it(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.tenant = generate_tenant(300, seed=4)
    emails = [*customers(sandbox.tenant, 250), "nobody@example.com"]
    csv = write_csv(tmp_path / "in.csv", emails)
    doc = run_json(sandbox, csv)
    assert doc["lookup"] == {
        "mode": "scan",
        "requests": 3,
        "reason": "251 addresses, reading the tenant's 300 profiles in 3 pages of 100:"
        " fewer requests than 3 bulk lookups",
        "warning": None,
    }
    assert sorted(scan_pages(sandbox.tenant)) == [1, 2, 3]
    assert not any(any(k.startswith("filter") for k in q) for q in lookups(sandbox.tenant))
    assert doc["counts"]["not_found"] == 1
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == 250
    for email in emails[:250]:
        assert "vip" in sandbox.statuses(email)


@pytest.mark.parametrize(
    ("addresses", "mode"),
    [(150, "scan"), (5, "single")],
)
def test_without_the_in_filter_the_cheaper_of_scan_and_single_wins(
    sandbox: Sandbox, tmp_path: Path, addresses: int, mode: str
) -> None:
    sandbox.tenant = generate_tenant(1000, seed=5)
    sandbox.config.email_in_filter = False
    csv = write_csv(tmp_path / "in.csv", customers(sandbox.tenant, addresses, start=100))
    doc = run_json(sandbox, csv)
    assert doc["lookup"]["mode"] == mode
    assert "ignores filter[email][in]" in doc["lookup"]["reason"]
    tried = [q for q in lookups(sandbox.tenant) if "filter[email][in]" in q]
    assert len(tried) == 1  # the ignored filter is seen on one page
    singles = [q for q in lookups(sandbox.tenant) if "filter[email]" in q]
    if mode == "scan":
        assert sorted(scan_pages(sandbox.tenant)) == list(range(1, 11))
        assert singles == []
    else:
        assert scan_pages(sandbox.tenant) == [1]
        assert len(singles) == addresses
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == addresses


def test_the_plan_shows_in_the_summary_and_at_verbose(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.tenant = generate_tenant(300, seed=4)
    csv = write_csv(tmp_path / "in.csv", customers(sandbox.tenant, 250))
    result = sandbox.run("assign", "vip", str(csv), "-v")
    assert result.exit_code == 0, result.stderr
    assert "Lookup: scan (about 3 requests): 250 addresses" in result.stdout
    assert "Lookup: scan, about 3 requests" in result.stderr


def test_forced_modes_are_obeyed(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.tenant = generate_tenant(300, seed=4)
    csv = write_csv(tmp_path / "in.csv", customers(sandbox.tenant, 3))
    doc = run_json(sandbox, csv, "--lookup", "scan")
    assert doc["lookup"]["mode"] == "scan" and doc["lookup"]["reason"].startswith("--lookup scan")
    assert sorted(scan_pages(sandbox.tenant)) == [1, 2, 3]
    single = run_json(sandbox, csv, "--lookup", "single", "--fresh")
    assert single["lookup"] == {
        "mode": "single",
        "requests": 3,
        "reason": "--lookup single: one request per address",
        "warning": None,
    }


# -- the scan's guarantees ----------------------------------------------------------------


def tricky_tenant() -> Tenant:
    tenant = generate_tenant(250, seed=6)
    tenant.add_profile("Mixed.Case@Example.com")
    tenant.add_profile("twin@example.com")
    tenant.add_profile("TWIN@example.com")
    tenant.add_profile("straße@example.com")
    tenant.add_profile("near@example.co")
    return tenant


TRICKY = [
    "mixed.case@example.com",  # found whatever the case
    "twin@example.com",  # two profiles: ambiguous
    "strasse@example.com",  # lower(), not casefold(): not the same address
    "near@example.com",  # a near miss is not a match
    "nobody@example.com",
    "MIXED.CASE@example.com",  # the same address again: duplicate
]


@pytest.mark.parametrize("mode", ["scan", "single", "bulk"])
def test_every_mode_gives_the_same_outcomes(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    sandbox.tenant = tricky_tenant()
    sandbox.config.email_in_filter = mode != "single"
    report = tmp_path / f"{mode}.csv"
    csv = write_csv(tmp_path / "in.csv", TRICKY)
    doc = run_json(sandbox, csv, "--lookup", mode, "--report", str(report))
    assert doc["lookup"]["mode"] == mode
    outcomes = [(r["email"], r["outcome"]) for r in report_rows(report)]
    assert outcomes == [
        ("mixed.case@example.com", "assigned"),
        ("twin@example.com", "ambiguous"),
        ("strasse@example.com", "not_found"),
        ("near@example.com", "not_found"),
        ("nobody@example.com", "not_found"),
        ("MIXED.CASE@example.com", "duplicate"),
    ]
    assert sandbox.statuses("Mixed.Case@Example.com") == ["vip"]


def shifting(sandbox: Sandbox, shift: Callable[[Tenant], None]) -> None:
    """Serve the sandbox, shifting its profile list once, right after page 1 of a scan."""
    inner = create_app(sandbox.tenant, sandbox.config)
    done: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await inner(scope, receive, send)
        query = scope.get("query_string", b"").decode()
        if scope.get("path") == PROFILES and "filter" not in query and not done:
            done.append(True)
            shift(sandbox.tenant)

    boundary.runtime().sandbox_transport = lambda: httpx.ASGITransport(app=app)


def insert_first(tenant: Tenant) -> None:
    profile = tenant.add_profile("newcomer@example.com")
    tenant.profiles = {profile.id: profile} | {
        k: v for k, v in tenant.profiles.items() if k != profile.id
    }


def delete_first(tenant: Tenant) -> None:
    first = next(iter(tenant.profiles))
    del tenant.profiles[first]


@pytest.mark.parametrize("shift", [insert_first, delete_first])
def test_a_list_moving_under_the_scan_loses_and_doubles_nobody(
    sandbox: Sandbox, tmp_path: Path, shift: Callable[[Tenant], None]
) -> None:
    sandbox.tenant = generate_tenant(300, seed=7)
    # The profiles on both sides of each page boundary: a shift repeats or skips one of them.
    everyone = customers(sandbox.tenant, 300)
    emails = [e for i, e in enumerate(everyone) if i % 100 in (0, 1, 98, 99)][1:]
    shifting(sandbox, shift)
    csv = write_csv(tmp_path / "in.csv", emails)
    result = sandbox.run("assign", "vip", str(csv), "--lookup", "scan", "--json")
    assert result.exit_code == 0, result.stderr
    assert "changed during the scan" in result.stderr
    doc = summary_of(result)
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == len(emails)
    assert doc["counts"]["ambiguous"] == 0 and doc["counts"]["not_found"] == 0
    for email in emails:
        assert "vip" in sandbox.statuses(email)


def test_a_scan_stopped_by_an_error_resumes_without_reading_a_page_twice(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.tenant = generate_tenant(2000, seed=8)
    inner = create_app(sandbox.tenant, sandbox.config)
    served: list[str] = []

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        query = scope.get("query_string", b"").decode()
        if scope.get("path") == PROFILES and "filter" not in query:
            served.append(query)
            if len(served) == 8:  # the 8th page read is refused: the run stops there
                scope = {**scope, "headers": []}
        await inner(scope, receive, send)

    boundary.runtime().sandbox_transport = lambda: httpx.ASGITransport(app=failing)
    csv = write_csv(tmp_path / "in.csv", customers(sandbox.tenant, 1500))
    args = ("assign", "vip", str(csv), "--lookup", "scan", "--json", "--concurrency", "1")
    stopped = sandbox.run(*args)
    assert stopped.exit_code == 1, stopped.stderr  # refused (401): the run stops, saved
    before = sorted(scan_pages(sandbox.tenant))
    assert before == list(range(1, 9))
    assert sandbox.writes() == []

    sandbox.tenant.requests.clear()
    resumed = sandbox.run(*args)
    assert resumed.exit_code == 0, resumed.stderr
    again = sorted(scan_pages(sandbox.tenant))
    assert again == list(range(8, 21))  # the refused page and those never read, only
    doc = summary_of(resumed)
    assert doc["lookup"]["reason"].startswith("continuing the tenant scan")
    assert doc["counts"]["assigned"] + doc["counts"]["already_had"] == 1500


# -- bulk groups -----------------------------------------------------------------------------


def test_bulk_groups_never_outgrow_the_url(sandbox: Sandbox, tmp_path: Path) -> None:
    tenant = generate_tenant(10, seed=9)
    long = [f"{'x' * 50}.{n}@a-rather-long-domain-name.example.com" for n in range(120)]
    for email in long:
        tenant.add_profile(email)
    sandbox.tenant = tenant
    csv = write_csv(tmp_path / "in.csv", long)
    doc = run_json(sandbox, csv, "--lookup", "bulk")
    assert doc["lookup"]["mode"] == "bulk"
    groups = [q["filter[email][in]"].split(",") for q in lookups(sandbox.tenant) if q]
    assert len(groups) > 2 and sum(len(g) for g in groups) == 120
    for group in groups:
        query = {"filter[email][in]": ",".join(group), "page[size]": "100", "page[number]": "1"}
        url = f"http://sandbox.test/api/v3/profiles?{httpx.QueryParams(query)}"
        assert len(url) <= URL_MAX
    assert doc["counts"]["assigned"] == 120


# -- the planner on its own: a table of tenants x files ---------------------------------------

DOCTOR = "doctor, 2026-01-31"


@dataclass(frozen=True)
class Shape:
    """A tenant as the planner meets it (``doctor``: what a run knows of it beforehand)."""

    name: str
    profiles: int
    page_style: PageStyle = "page_array"
    in_filter: bool = True
    case_sensitive: bool = False
    total: bool = True
    doctor: TenantFacts | None = None


@dataclass
class Carried:
    """A plan as chosen, as it stood at the end, and what carrying it out cost."""

    chosen: LookupPlan | None
    plan: LookupPlan | None
    decided: int
    """Rows that got a match."""
    notes: dict[int, str] = field(default_factory=dict)
    """The caveats of the matches that carry one, by line."""
    changes: list[LookupPlan] = field(default_factory=list)
    """The plans the planner said it changed to while the lookups went on."""
    made: int = 0
    """Profile list requests the tenant answered (page reads, lookups by filter)."""
    groups: int = 0
    """Of those, the lookups in bulk (``filter[email][in]``)."""


async def carry_out(client: OmneoClient, run: RunJournal, mode: LookupMode, facts: Any) -> Carried:
    """Choose, then look every row up as the engine does: the scan first (if any), then the
    resolver in its groups, then the scan the lookups may have switched to."""
    changes: list[LookupPlan] = []
    planner = LookupPlanner(
        client,
        run,
        mode=mode,
        concurrency=4,
        reporter=Recorder(),
        facts=facts,
        on_change=changes.append,
    )
    chosen = await planner.choose()
    decided = {row.line for row, _ in chosen.settled}
    notes = {row.line: m.note for row, m in chosen.settled if m.note}

    async def scanned(chosen: Chosen) -> Resolver:
        if chosen.scan is not None:
            state = await chosen.scan.read(chosen.first)
            for batch in chosen.scan.matched(state):
                decided.update(row.line for row, _ in batch)
        return chosen.resolver

    async def by_filter(resolver: Resolver) -> None:
        rows = [r for r in run.rows_in_stage(Stage.LOOKUP) if r.line not in decided]
        for start in range(0, len(rows), resolver.group_size):
            group = rows[start : start + resolver.group_size]
            matches = await resolver.resolve([row.address for row in group])
            for row, match in zip(group, matches, strict=True):
                if not match.deferred:
                    decided.add(row.line)
                if match.note:
                    notes[row.line] = match.note

    await by_filter(await scanned(chosen))
    rest = planner.rest()
    if rest is not None:
        await by_filter(await scanned(rest))
    return Carried(chosen.plan, planner.plan, len(decided), notes, changes)


class Desk:
    """A tenant of a given shape behind the sandbox, and a journal for the runs looked up."""

    def __init__(self, shape: Shape, journal: Journal, tenant: Tenant | None = None) -> None:
        self.shape = shape
        self.journal = journal
        self.clock = VirtualClock()
        self.tenant = tenant or generate_tenant(shape.profiles, seed=3)
        config = SandboxConfig(
            clock=self.clock.monotonic,
            wall_clock=self.clock.wall,
            page_style=shape.page_style,
            email_in_filter=shape.in_filter,
            email_match="case_sensitive" if shape.case_sensitive else "case_insensitive",
        )
        self.transport = Scripted(self.tenant, config)
        if not shape.total:
            self.transport.after.append(without_total)

    def carry(self, run: RunJournal, mode: LookupMode = LookupMode.AUTO) -> Carried:
        """Plan and carry out the lookups of the run's rows; counts the requests it made."""
        before = len(self.tenant.requests)

        async def main() -> Carried:
            async with connect(self.transport, self.clock) as client:
                return await carry_out(client, run, mode, self.shape.doctor)

        carried = self.clock.run(main())
        made = [dict(r.query) for r in self.tenant.requests[before:] if r.path == PROFILES]
        carried.made = len(made)
        carried.groups = sum(1 for query in made if "filter[email][in]" in query)
        return carried


def plan_lookups(
    shape: Shape, addresses: list[str], tmp_path: Path, mode: LookupMode = LookupMode.AUTO
) -> Carried:
    """Plan and carry out the lookups of ``addresses`` on a tenant of that shape."""
    with open_journal(tmp_path) as journal:
        return Desk(shape, journal).carry(new_run(journal, addresses), mode)


def the_file(count: int) -> list[str]:
    """``count`` addresses as the tenant holds them (of ``generate_tenant(n, seed=3)``), past
    page 1's first rows, then addresses nobody has."""
    held = [f"customer{n}@example.com" for n in range(8, 40)]
    return [*held, *(f"nobody{n}@example.com" for n in range(200))][:count]


SMALL = Shape("40 profiles", 40)
MEDIUM = Shape("300 profiles", 300)
LARGE = Shape("3000 profiles", 3000)
FILES = (1, 5, 150)
ONE = "one address: one request"
KNOWN_IGNORED = TenantFacts(email_in_filter=False, measured=DOCTOR)
KNOWN_SENSITIVE = TenantFacts(case_sensitive=True, measured=DOCTOR)
KNOWN_BOTH = TenantFacts(email_in_filter=False, case_sensitive=True, measured=DOCTOR)

TABLE: list[tuple[Shape, list[tuple[str, int, str]]]] = [
    # a tenant, then for 1, 5 and 150 addresses: the mode, its requests, what its reason names
    (SMALL, [("single", 1, ONE), *[("scan", 1, "the tenant's 40 profiles in 1 page of 100")] * 2]),
    (
        MEDIUM,
        [
            ("single", 1, ONE),
            ("bulk", 2, "honours filter[email][in]: 1 request of up to 5 addresses, fewer than 3"),
            (
                "bulk",
                3,
                "honours filter[email][in]: 2 requests of up to 100 addresses, fewer than 3",
            ),
        ],
    ),
    (
        LARGE,
        [
            ("single", 1, ONE),
            ("bulk", 2, "up to 5 addresses, fewer than 30 pages"),
            ("bulk", 3, "up to 100 addresses, fewer than 30 pages"),
        ],
    ),
    (
        replace(MEDIUM, name="300, the in filter ignored", in_filter=False),
        [
            ("single", 1, ONE),
            ("scan", 4, "ignores filter[email][in]: reading the tenant's 300 profiles in 3 pages"),
            ("scan", 4, "300 profiles in 3 pages of 100 costs fewer requests than 150 single"),
        ],
    ),
    (
        replace(LARGE, name="3000, the in filter ignored", in_filter=False),
        [
            ("single", 1, ONE),
            ("single", 7, "ignores filter[email][in]: 5 single lookups cost fewer requests than"),
            ("scan", 31, "3,000 profiles in 30 pages of 100 costs fewer requests than 150 single"),
        ],
    ),
    (
        replace(LARGE, name="3000, ignored as doctor found", in_filter=False, doctor=KNOWN_IGNORED),
        [
            ("single", 1, ONE),
            ("single", 6, f"ignores filter[email][in] ({DOCTOR}): 5 single lookups"),
            ("scan", 30, f"ignores filter[email][in] ({DOCTOR}): reading the tenant's 3,000"),
        ],
    ),
    (
        replace(MEDIUM, name="300, per_page", page_style="per_page"),
        [
            ("single", 1, ONE),
            ("bulk", 3, "up to 5 addresses, fewer than 3 pages"),
            ("bulk", 4, "up to 100 addresses, fewer than 3 pages"),
        ],
    ),
    (
        replace(LARGE, name="3000, per_page", page_style="per_page"),
        [
            ("single", 1, ONE),
            ("bulk", 3, "up to 5 addresses, fewer than 30 pages"),
            ("bulk", 4, "up to 100 addresses, fewer than 30 pages"),
        ],
    ),
    (
        replace(MEDIUM, name="300, case-sensitive unknown", case_sensitive=True),
        [
            ("single", 1, ONE),
            ("bulk", 2, "up to 5 addresses, fewer than 3 pages"),
            ("bulk", 3, "up to 100 addresses, fewer than 3 pages"),
        ],
    ),
    (
        replace(MEDIUM, name="300, case-sensitive", case_sensitive=True, doctor=KNOWN_SENSITIVE),
        [
            ("scan", 3, f"is case-sensitive ({DOCTOR}): reading the tenant's 300 profiles"),
            ("scan", 3, "for at most 3 times the requests of 1 bulk lookup"),
            ("scan", 3, "for at most 3 times the requests of 2 bulk lookups"),
        ],
    ),
    (
        replace(LARGE, name="3000, case-sensitive", case_sensitive=True, doctor=KNOWN_SENSITIVE),
        [
            ("bulk", 2, "up to 1 address, fewer than 30 pages"),
            ("bulk", 2, "up to 5 addresses, fewer than 30 pages"),
            ("bulk", 3, "up to 100 addresses, fewer than 30 pages"),
        ],
    ),
    (
        replace(MEDIUM, name="300, ignored and case-sensitive", in_filter=False, doctor=KNOWN_BOTH),
        [
            ("scan", 3, f"ignores filter[email][in] ({DOCTOR}); the tenant's email filter is"),
            ("scan", 3, "300 profiles in 3 pages of 100 costs fewer requests than 5 single"),
            ("scan", 3, "300 profiles in 3 pages of 100 costs fewer requests than 150 single"),
        ],
    ),
    (
        replace(LARGE, name="3000, no total", total=False),
        [
            ("single", 1, ONE),
            ("bulk", 2, "honours filter[email][in]: 1 request of up to 5 addresses"),
            ("bulk", 3, "honours filter[email][in]: 2 requests of up to 100 addresses"),
        ],
    ),
    (
        replace(LARGE, name="3000, no total, the in filter ignored", total=False, in_filter=False),
        [
            ("single", 1, ONE),
            ("single", 7, "5 single lookups cost fewer requests (its list does not say its size)"),
            ("single", 152, "150 single lookups cost fewer requests (its list does not say its"),
        ],
    ),
]

CELLS = [
    pytest.param(shape, count, cell, id=f"{shape.name}-{count}")
    for shape, cells in TABLE
    for count, cell in zip(FILES, cells, strict=True)
]


@pytest.mark.parametrize(("shape", "count", "expected"), CELLS)
def test_the_planner_picks_the_cheapest_plan_and_costs_what_it_says(
    shape: Shape, count: int, expected: tuple[str, int, str], tmp_path: Path
) -> None:
    mode, requests, names = expected
    carried = plan_lookups(shape, the_file(count), tmp_path)
    plan = carried.plan
    assert plan is not None and plan == carried.chosen and carried.changes == []
    assert (plan.mode.value, plan.requests) == (mode, requests)
    assert carried.made == requests  # the plan's count is what the lookups cost
    assert names in plan.reason
    assert carried.decided == count
    if shape.doctor is KNOWN_SENSITIVE and plan.mode is not LookupMode.SCAN:
        assert plan.warning is not None
        assert f"is case-sensitive ({DOCTOR})" in plan.warning
        assert "would cost more than 3 times the" in plan.warning
    else:
        assert plan.warning is None


FORCED = [
    pytest.param(
        MEDIUM, LookupMode.SINGLE, ("single", 5, "--lookup single: one request per address"), None
    ),
    pytest.param(
        MEDIUM, LookupMode.BULK, ("bulk", 1, "--lookup bulk: the tenant honours the filter"), None
    ),
    pytest.param(
        replace(MEDIUM, in_filter=False),
        LookupMode.BULK,
        ("single", 6, "the tenant does not honour filter[email][in]; looking emails up one by one"),
        "the tenant does not honour filter[email][in]",
        id="bulk-ignored",
    ),
    pytest.param(
        replace(MEDIUM, in_filter=False, doctor=KNOWN_IGNORED),
        LookupMode.BULK,
        ("single", 5, f"does not honour filter[email][in] ({DOCTOR}); looking emails up one"),
        f"({DOCTOR})",
        id="bulk-ignored-as-doctor-found",
    ),
    pytest.param(
        MEDIUM,
        LookupMode.SCAN,
        ("scan", 3, "--lookup scan: reading the tenant's 300 profiles in 3 pages of 100"),
        None,
    ),
    pytest.param(
        replace(LARGE, case_sensitive=True, doctor=KNOWN_SENSITIVE),
        LookupMode.SINGLE,
        ("single", 5, "--lookup single: one request per address"),
        "and --lookup single was asked for",
        id="single-case-sensitive",
    ),
]


@pytest.mark.parametrize(("shape", "mode", "expected", "warns"), FORCED)
def test_a_forced_mode_is_obeyed_where_the_tenant_allows_it(
    shape: Shape,
    mode: LookupMode,
    expected: tuple[str, int, str],
    warns: str | None,
    tmp_path: Path,
) -> None:
    carried = plan_lookups(shape, the_file(5), tmp_path, mode)
    plan = carried.plan
    assert plan is not None and (plan.mode.value, plan.requests) == expected[:2]
    assert expected[2] in plan.reason and carried.made == plan.requests
    if warns is None:
        assert plan.warning is None
    else:
        assert plan.warning is not None and warns in plan.warning
    assert carried.decided == 5


def test_nothing_to_look_up_is_no_plan_and_no_request(tmp_path: Path) -> None:
    carried = plan_lookups(MEDIUM, [], tmp_path)
    assert carried.plan is None and carried.made == 0


# -- an address in another case than the tenant's ---------------------------------------------

FOUND_IN_ANOTHER_CASE = "CUSTOMER8@EXAMPLE.COM was found only in another case"
AS_LOWER = "CUSTOMER8@EXAMPLE.COM was found only as customer8@example.com"

ANOTHER_CASE = [
    # the tenant, the addresses, then the plan at the end, its requests, the requests made (the
    # lookup as written that shows the rule, and page 1 read to price a scan, are not planned)
    pytest.param(MEDIUM, 5, ("bulk", 2, 3), None, id="case-insensitive"),
    pytest.param(
        replace(MEDIUM, case_sensitive=True), 5, ("scan", 4, 5), None, id="scan-within-reach"
    ),
    pytest.param(
        replace(LARGE, case_sensitive=True),
        5,
        ("bulk", 2, 3),
        f"is case-sensitive ({FOUND_IN_ANOTHER_CASE})",
        id="scan-out-of-reach",
    ),
    pytest.param(
        replace(LARGE, case_sensitive=True),
        1,
        ("single", 1, 3),
        f"is case-sensitive ({AS_LOWER})",
        id="one-address",
    ),
    pytest.param(
        replace(LARGE, case_sensitive=True, total=False),
        5,
        ("bulk", 2, 3),
        "the tenant's list does not say its size, so it cannot be scanned",
        id="no-total",
    ),
]


@pytest.mark.parametrize(("shape", "count", "expected", "warns"), ANOTHER_CASE)
def test_an_address_in_another_case_shows_the_rule_and_the_plan_follows_it(
    shape: Shape, count: int, expected: tuple[str, int, int], warns: str | None, tmp_path: Path
) -> None:
    addresses = the_file(count)
    addresses[0] = addresses[0].upper()
    carried = plan_lookups(shape, addresses, tmp_path)
    plan = carried.plan
    assert plan is not None and (plan.mode.value, plan.requests, carried.made) == expected
    assert carried.decided == count
    if warns is None:
        assert plan.warning is None and carried.notes == {}
    else:
        assert plan.warning is not None and warns in plan.warning
        assert carried.notes == {2: CASE_NOTE}  # the row matched through the change of case
    if plan.mode is LookupMode.SCAN:
        assert plan.reason.startswith(
            f"the tenant's email filter is case-sensitive ({FOUND_IN_ANOTHER_CASE})"
        )


@pytest.mark.parametrize(("profiles", "mode"), [(500, LookupMode.SCAN), (3000, LookupMode.BULK)])
def test_a_rule_shown_after_the_plan_was_chosen_is_told_as_a_change(
    profiles: int, mode: LookupMode, tmp_path: Path
) -> None:
    """The address in another case is past the group tried while planning: the plan changes
    while the lookups go on, and the planner says so (a switch to the scan leaves the later
    groups to it, unsent)."""
    nobody = [f"nobody{n}@example.com" for n in range(210)]
    addresses = [*nobody[:110], *(f"customer{n}@example.com" for n in range(8, 48)), *nobody[110:]]
    addresses[120] = addresses[120].upper()  # a profile's address, in the second bulk group
    shape = Shape("case-sensitive", profiles, case_sensitive=True)
    carried = plan_lookups(shape, addresses, tmp_path)
    assert carried.chosen is not None and carried.chosen.mode is LookupMode.BULK
    assert carried.plan is not None and carried.changes == [carried.plan]
    assert carried.plan.mode is mode and carried.decided == 250
    if mode is LookupMode.BULK:
        assert carried.plan.warning is not None and carried.notes == {122: CASE_NOTE}
        assert carried.groups == 3
    else:
        assert carried.groups == 2  # the third group was left to the scan


def test_a_rule_that_cannot_be_checked_is_warned_of_as_possible(tmp_path: Path) -> None:
    """The lookup as written that would show the rule is refused: the rule stays unknown, and
    the plan says the filter may be case-sensitive."""
    with open_journal(tmp_path) as journal:
        desk = Desk(replace(LARGE, case_sensitive=True), journal)

        def refuse_as_written(request: httpx.Request) -> httpx.Response | None:
            if request.url.params.get("filter[email]") == "CUSTOMER8@EXAMPLE.COM":
                return json_answer(422, {"message": "The given data was invalid."})
            return None

        desk.transport.before.append(refuse_as_written)
        addresses = the_file(5)
        addresses[0] = addresses[0].upper()
        carried = desk.carry(new_run(journal, addresses))
    assert carried.plan is not None and carried.plan.warning is not None
    assert "may be case-sensitive (an address found in another case could not be checked)" in (
        carried.plan.warning
    )


def test_a_scan_an_earlier_attempt_began_is_continued_not_begun_again(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        desk = Desk(replace(MEDIUM, name="1000 profiles", profiles=1000), journal)
        refused: list[str] = []

        def refuse_page_6_once(request: httpx.Request) -> httpx.Response | None:
            params = request.url.params
            if params.get("page[number]") == "6" and "filter[email]" not in params and not refused:
                refused.append(str(request.url))
                return json_answer(401, {"message": "Unauthenticated."})
            return None

        desk.transport.before.append(refuse_page_6_once)
        run = new_run(journal, the_file(150))
        with pytest.raises(AuthError):
            desk.carry(run, LookupMode.SCAN)
        read = len(scan_pages(desk.tenant))
        carried = desk.carry(run)
    assert carried.plan is not None and carried.plan.mode is LookupMode.SCAN
    assert carried.plan.reason == (
        f"continuing the tenant scan an earlier attempt began ({read} of 10 pages read)"
    )
    assert carried.plan.requests == carried.made == 10 - read
    assert carried.decided == 150
