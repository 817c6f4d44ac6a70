"""``doctor``: a read-only probe of what a tenant really does, in about fifteen GETs.

It never sends a write. Each check reads the answers the tool will rely on during a run (the
email filter, the ``in`` and status filters, the pagination dialect, the batches endpoint)
and reports what it saw, so a user can attach one document to a bug report.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal, TypeVar

from omneo_status.api.client import OmneoClient, ProbeAnswer, batches_endpoint_shown
from omneo_status.api.exchange import TransportInUse
from omneo_status.api.paging import PageStyle, lenient_int
from omneo_status.errors import ApiError, AuthError, ExitCode
from omneo_status.inputs import same_email
from omneo_status.models import Profile, StatusDefinition
from omneo_status.options import MAX_PAGE_SIZE
from omneo_status.wording import count

CheckResult = Literal["ok", "warn", "fail"]

IMPOSSIBLE_EMAIL = "omneo-status-doctor-{}@example.invalid"
"""An address no profile can have (``.invalid`` is reserved, RFC 2606)."""
NONSENSE_HANDLE = "omneo-status-doctor-{}"

_Enum = TypeVar("_Enum", bound=StrEnum)


@dataclass(frozen=True)
class Check:
    """One thing doctor looked at."""

    name: str
    result: CheckResult
    detail: str


class EmailFilter(StrEnum):
    """How a tenant's ``filter[email]`` compares addresses."""

    EXACT = "exact"
    """It finds an address whatever its case."""
    CASE_SENSITIVE = "case_sensitive"
    """It finds an address only in the case it is stored in."""
    IGNORED = "ignored"
    """It lists profiles whatever the address: no row can be matched by it."""


@dataclass(frozen=True)
class RateLimit:
    """The ``X-RateLimit-*`` headers of the probe's latest answer."""

    limit: int
    remaining: int

    @classmethod
    def from_json(cls, data: Any) -> RateLimit | None:
        """The kept figures; None unless both are whole numbers."""
        if not isinstance(data, dict):
            return None
        limit, remaining = lenient_int(data.get("limit")), lenient_int(data.get("remaining"))
        return cls(limit, remaining) if limit is not None and remaining is not None else None


@dataclass
class Capabilities:
    """What a tenant was found to do, each None until found out: ``doctor``'s report, and the
    record a run reads back (``capabilities.recall``)."""

    email_filter: EmailFilter | None = None
    """How ``filter[email]`` compares addresses."""
    email_in_filter: bool | None = None
    """Whether ``filter[email][in]`` is honoured."""
    status_filter: bool | None = None
    """Whether ``filter[statuses.handle]`` is honoured."""
    page_style: PageStyle | Literal["both"] | None = None
    """The pagination dialect the tenant honours, or ``both``."""
    page_size: int | None = None
    """The page size it gives in that dialect."""
    profiles: int | None = None
    """How many profiles it has (``meta.total``)."""
    rate_limit: RateLimit | None = None
    """The rate-limit headers, when the tenant sends them."""
    batches_endpoint: bool | None = None
    """Whether ``GET /v3/batches/{id}`` exists."""

    @property
    def case_sensitive(self) -> bool | None:
        """Whether ``filter[email]`` compares case-sensitively (None: not known)."""
        if self.email_filter in (EmailFilter.CASE_SENSITIVE, EmailFilter.EXACT):
            return self.email_filter is EmailFilter.CASE_SENSITIVE
        return None

    def to_json(self) -> dict[str, Any]:
        """The ``capabilities`` object of ``doctor --json`` and of doctor's kept record."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Capabilities:
        """A kept record, read leniently: an unknown key is ignored, and a value of the wrong
        kind (or a page size that is not a positive number) is not known."""
        style = data.get("page_style")
        size = lenient_int(data.get("page_size"))
        return cls(
            email_filter=_member(EmailFilter, data.get("email_filter")),
            email_in_filter=_flag(data.get("email_in_filter")),
            status_filter=_flag(data.get("status_filter")),
            page_style="both" if style == "both" else _member(PageStyle, style),
            page_size=size if size is not None and size > 0 else None,
            profiles=lenient_int(data.get("profiles")),
            rate_limit=RateLimit.from_json(data.get("rate_limit")),
            batches_endpoint=_flag(data.get("batches_endpoint")),
        )


def _member(kind: type[_Enum], value: Any) -> _Enum | None:
    """``value`` as a member of ``kind``, or None when it names none."""
    known = isinstance(value, str) and value in {member.value for member in kind}
    return kind(value) if known else None


def _flag(value: Any) -> bool | None:
    """``value`` when it is a boolean, else None."""
    return value if isinstance(value, bool) else None


@dataclass
class DoctorReport:
    """What doctor found: the checks, and the capabilities a run can rely on."""

    base_url: str
    transport: TransportInUse
    """The transport the probe went through."""
    checks: list[Check] = field(default_factory=list)
    capabilities: Capabilities = field(default_factory=Capabilities)

    @property
    def ok(self) -> bool:
        """Whether a run can work on this tenant."""
        return not any(check.result == "fail" for check in self.checks)

    @property
    def exit_code(self) -> ExitCode:
        """0 when a run can work here, 1 when it cannot."""
        return ExitCode.OK if self.ok else ExitCode.FATAL

    def to_json(self) -> dict[str, Any]:
        """The ``doctor --json`` document."""
        return {
            "base_url": self.base_url,
            "transport": self.transport.to_json(),
            "ok": self.ok,
            "checks": [asdict(check) for check in self.checks],
            "capabilities": self.capabilities.to_json(),
            "exit_code": int(self.exit_code),
        }


async def run_doctor(client: OmneoClient, base_url: str) -> DoctorReport:
    """Probe the tenant without writing anything: every check and capability, or, when the
    token or the base URL does not work, a failed check that says why (never an exception
    for an API error)."""
    report = DoctorReport(base_url, client.transport_in_use)
    doctor = _Doctor(client, report)
    if not await doctor.check_access():
        return report
    try:
        await doctor.check_profiles()
    except ApiError as exc:
        report.checks.append(Check("profiles", "fail", exc.message))
    return report


class _Doctor:
    def __init__(self, client: OmneoClient, report: DoctorReport) -> None:
        self.client = client
        self.report = report
        self.caps = report.capabilities
        self.tag = uuid.uuid4().hex[:12]
        self.last_headers: Mapping[str, str] = {}

    def add(self, name: str, result: CheckResult, detail: str) -> None:
        self.report.checks.append(Check(name, result, detail))

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> ProbeAnswer:
        answer = await self.client.probe(path, params)
        self.last_headers = answer.headers
        if answer.status in (401, 403):
            raise AuthError(f"GET /v3{path} was refused ({answer.status})")
        return answer

    async def profiles(self, params: Mapping[str, str]) -> tuple[list[Profile], dict[str, Any]]:
        """The profiles of one page of ``GET /profiles`` and its ``meta``."""
        body = (await self.get("/profiles", params)).body
        rows = body.get("data") if isinstance(body, dict) else None
        meta = body.get("meta") if isinstance(body, dict) else None
        found = [Profile.model_validate(r) for r in rows or [] if isinstance(r, dict) and "id" in r]
        return found, meta if isinstance(meta, dict) else {}

    # -- the token and the base URL --------------------------------------------------------

    async def check_access(self) -> bool:
        try:
            statuses = await self.client.list_statuses()
        except AuthError as exc:
            self.add("token", "fail", _sentence(exc))
            return False
        except ApiError as exc:  # unreachable, a 404 (no /api), a web page instead of JSON
            self.add("base_url", "fail", _sentence(exc))
            return False
        self.add("token", "ok", "GET /v3/statuses answered with the token")
        self.add("statuses", "ok" if statuses else "warn", _describe_statuses(statuses))
        return True

    # -- profiles, filters, pagination -----------------------------------------------------

    async def check_profiles(self) -> None:
        page, meta = await self.profiles(PageStyle.PAGE_ARRAY.params(1))
        total = lenient_int(meta.get("total"))
        self.caps.profiles = total
        self.add(
            "profiles",
            "ok",
            count(total, "profile") if total is not None else "an unknown number of profiles",
        )
        await self.check_pages(page)
        known = next((p for p in page if p.email and p.email.swapcase() != p.email), None)
        await self.check_email_filter(known)
        await self.check_eq_filter(known)
        await self.check_in_filter(known)
        await self.check_status_filter(page)
        await self.check_batches()
        self.check_rate_limit()  # from the latest answer

    async def check_pages(self, first: list[Profile]) -> None:
        honoured: list[PageStyle] = []
        sizes: dict[PageStyle, int | None] = {}
        first_ids = [p.id for p in first]
        for style in PageStyle:
            rows, meta = await self.profiles(style.params(2))
            current = lenient_int(meta.get("current_page"))
            moved = current == 2 if current is not None else [p.id for p in rows] != first_ids
            if moved:
                honoured.append(style)
                sizes[style] = lenient_int(meta.get("per_page"))
        if not honoured:
            self.add(
                "page_style",
                "warn",
                "page 2 came back as page 1 in both dialects "
                "(page[number] and page): only the first page of an answer can be read",
            )
            return
        shown: PageStyle | Literal["both"] = "both" if len(honoured) == 2 else honoured[0]
        size = sizes[honoured[0]] or MAX_PAGE_SIZE
        self.caps.page_style = shown
        self.caps.page_size = size
        self.add("page_style", "ok", f"pages are honoured as {shown}, {size} profiles a page")

    async def check_email_filter(self, known: Profile | None) -> None:
        impossible = IMPOSSIBLE_EMAIL.format(self.tag)
        strangers, _ = await self.profiles({"filter[email]": impossible})
        if strangers:
            self.caps.email_filter = EmailFilter.IGNORED
            self.add(
                "email_filter",
                "fail",
                f"filter[email] for an address no one has "
                f"listed {count(len(strangers), 'profile')}: the tenant ignores the email "
                "filter, so no row could be matched safely",
            )
            return
        if known is None or known.email is None:
            self.add(
                "email_filter",
                "warn",
                "no profile with a cased address to test case-sensitivity with",
            )
            return
        other_case, _ = await self.profiles({"filter[email]": known.email.swapcase()})
        if any(p.id == known.id for p in other_case):
            self.caps.email_filter = EmailFilter.EXACT
            self.add("email_filter", "ok", "filter[email] matches addresses ignoring case")
            return
        as_written, _ = await self.profiles({"filter[email]": known.email})
        if not any(p.id == known.id for p in as_written):
            self.add(
                "email_filter",
                "fail",
                f"filter[email] does not find {known.email}, an "
                "address listed on page 1 of the profiles",
            )
            return
        self.caps.email_filter = EmailFilter.CASE_SENSITIVE
        self.add(
            "email_filter",
            "warn",
            "filter[email] matches case-sensitively: addresses are looked up as written and"
            " lower-cased, and runs prefer reading every profile, which alone finds two"
            " profiles holding one address in two cases",
        )

    async def check_eq_filter(self, known: Profile | None) -> None:
        if known is None or known.email is None:
            return
        found, _ = await self.profiles({"filter[email][eq]": known.email})
        works = bool(found) and all(p.email == known.email for p in found)
        self.add(
            "email_eq_filter",
            "ok" if works else "warn",
            "filter[email][eq] (the PHP "
            "SDK's form) " + ("works" if works else "does not work; filter[email] is used"),
        )

    async def check_in_filter(self, known: Profile | None) -> None:
        if known is None or known.email is None or self.caps.email_filter is EmailFilter.IGNORED:
            self.caps.email_in_filter = False
            return
        wanted = f"{known.email},{IMPOSSIBLE_EMAIL.format(self.tag)}"
        found, _ = await self.profiles({"filter[email][in]": wanted})
        works = bool(found) and all(same_email(p.email or "", known.email) for p in found)
        self.caps.email_in_filter = works
        self.add(
            "email_in_filter",
            "ok" if works else "warn",
            "filter[email][in] "
            + (
                "works: addresses are looked up in bulk"
                if works
                else "is not honoured: addresses are looked up one by one"
            ),
        )

    async def check_status_filter(self, page: list[Profile]) -> None:
        handle = next((h for p in page for h in p.statuses), None)
        nonsense, _ = await self.profiles(
            {"filter[statuses.handle]": NONSENSE_HANDLE.format(self.tag)}
        )
        holders: list[Profile] = []
        if handle is not None:
            holders, _ = await self.profiles({"filter[statuses.handle]": handle})
        works = not nonsense and all(handle in p.statuses for p in holders)
        self.caps.status_filter = works
        self.add(
            "status_filter",
            "ok" if works else "warn",
            "filter[statuses.handle] "
            + (
                "is honoured"
                if works
                else "is ignored: the holders of a status can "
                "only be found by reading every profile"
            ),
        )

    def check_rate_limit(self) -> None:
        limit = lenient_int(self.last_headers.get("x-ratelimit-limit"))
        remaining = lenient_int(self.last_headers.get("x-ratelimit-remaining"))
        if limit is None or remaining is None:
            self.add(
                "rate_limit",
                "ok",
                "no X-RateLimit headers: the tool paces itself by 429 answers and Retry-After",
            )
            return
        self.caps.rate_limit = RateLimit(limit, remaining)
        self.add("rate_limit", "ok", f"X-RateLimit-Limit {limit}, {remaining} remaining")

    async def check_batches(self) -> None:
        answer = await self.get(f"/batches/{uuid.uuid4()}")
        exists = _batches_endpoint(answer)
        self.caps.batches_endpoint = exists
        detail = {
            True: "GET /v3/batches/{id} exists: batches are polled",
            False: "GET /v3/batches/{id} does not exist: runs check profiles instead",
            None: f"cannot tell whether GET /v3/batches/{{id}} exists: a made-up id answered"
            f" {answer.status}{_said(answer)}; a run finds out from its first batch",
        }[exists]
        self.add("batches_endpoint", "ok" if exists is not None else "warn", detail)


def _message(answer: ProbeAnswer) -> str | None:
    return answer.body.get("message") if isinstance(answer.body, dict) else None


def _said(answer: ProbeAnswer) -> str:
    message = _message(answer)
    return f" ({message!r})" if isinstance(message, str) and message.strip() else ""


def _batches_endpoint(answer: ProbeAnswer) -> bool | None:
    """Whether the batches endpoint exists, as far as the answer for a made-up id tells (a
    bare 404 cannot: see ``batches_endpoint_shown``)."""
    if answer.status < 300:
        return True
    if answer.status != 404:
        return None
    return batches_endpoint_shown(_message(answer), made_up=True)


def _describe_statuses(statuses: list[StatusDefinition]) -> str:
    if not statuses:
        return "the tenant defines no status"
    shown = []
    for status in statuses:
        notes = []
        if status.grouped:
            notes.append(f"group {status.group_handle}")
        if status.period:
            notes.append(f"expires after {status.period} {status.period_type or ''}".strip())
        elif status.absolute_expiry:
            notes.append(f"expires {status.absolute_expiry}")
        shown.append(status.handle + (f" ({', '.join(notes)})" if notes else ""))
    return f"{count(len(statuses), 'status')}: " + ", ".join(shown)


def _sentence(exc: ApiError) -> str:
    """An error and its hint as one detail line, punctuated once."""
    message = exc.message.rstrip(".")
    return f"{message}. {exc.hint}" if exc.hint else f"{message}."
