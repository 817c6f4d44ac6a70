"""An ASGI app that answers like an Omneo v3 tenant, over a shared in-memory :class:`Tenant`.

Every request goes through the same steps, in this order:

1. It is recorded in ``tenant.requests`` (its status is filled in once it is answered; with
   ``log_path`` set, one JSON line is appended then). A request whose handling raised (a
   sandbox bug, or a cancelled request) is recorded as 500 and the exception propagates.
2. Batches that have come due are applied (``tenant.process_due_batches(clock())``).
3. ``latency_ms`` is slept.
4. Rate limit (only with ``rate_limit`` set): every arrival counts, whether or not it will
   pass auth. Windows are fixed: one opens at the first request after the previous one ended
   and lasts ``rate_window`` seconds of ``clock()``. Over the limit: 429.
5. Auth: ``Authorization: Bearer <token>``, else 401.
6. Fault injection: one draw from ``random.Random(fault_seed)`` per request that passed auth
   (always three numbers, so the fault sequence depends only on the request count): with
   probability ``fail_rate`` the answer is 500, 502 or 503 ``{"message": "Server Error"}``.
   On the two batch writes (POST/DELETE ``/profile/status/batch.json``) half of the injected
   faults, chosen by the same draw, happen *after* the batch was queued (and, with
   ``batch_delay`` 0, applied): the write took effect but its answer is lost, as when a
   gateway times out in front of a server that finished. Every other fault happens before any
   effect.
7. Routing: paths outside ``/api/v3`` or unknown under it answer 404 ``{"message": "Not
   Found"}``; a known path with another method answers 405 with an ``Allow`` header.

With the rate limit on, every answer (429s and 401s included) carries ``X-RateLimit-Limit``
and ``X-RateLimit-Remaining`` (unless ``rate_limit_headers`` is off); a 429 adds
``Retry-After`` and ``X-RateLimit-Reset``.

The docs leave several behaviours open; each is a :class:`SandboxConfig` field (a *variant*)
whose default is what the sandbox always did: where the batch answer puts ``batch_id``,
counts as strings, which pagination dialect is honoured, how the email filter compares,
whether the ``in`` and status filters and the batches endpoint exist, whether batch items
carry ``entity_id``, and whether assigning a status of a group detaches its siblings.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import math
import os
import random
import re
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from omneo_status.sandbox.state import (
    BatchAction,
    RecordedRequest,
    SandboxProfile,
    Tenant,
    exact_email,
    normalise_email,
    normalise_mobile,
)

API_PREFIX = "/api/v3"
DEFAULT_PAGE_SIZE = 15
MAX_PAGE_SIZE = 100
FAULT_CODES = (500, 502, 503)
INVALID_DATA = "The given data was invalid."

_T = TypeVar("_T")

BatchAnswer = Literal["data", "top_level"]
PageStyle = Literal["page_array", "per_page", "both"]
EmailMatch = Literal["case_insensitive", "case_sensitive", "ignored"]


@dataclass
class SandboxConfig:
    """How the sandbox behaves: credentials, latency, limits, faults, batch timing, and the
    variants of what the docs leave open."""

    token: str = "sandbox-token"  # noqa: S105 - the sandbox's well-known default, not a secret
    latency_ms: float = 0.0
    rate_limit: int | None = None
    rate_window: float = 1.0
    fail_rate: float = 0.0
    fault_seed: int = 0
    batch_delay: float = 0.0
    max_batch: int = 500
    email_in_filter: bool = True
    """Honour filter[email][in] (a comma-separated list); off, it is ignored."""
    batches_endpoint: bool = True
    """Serve GET /batches/{id}; off, it answers 404 like a tenant without it."""
    batch_answer: BatchAnswer = "data"
    """Where the status batch answer puts batch_id: under data (the statuses guide) or
    top_level (every sibling batch endpoint)."""
    string_counts: bool = False
    """Send a batch's success, failed and processed counts as strings, as the docs type them."""
    page_style: PageStyle = "page_array"
    """The pagination dialect honoured: page_array (page[size]/page[number]), per_page
    (per_page/page) or both; the other is ignored, so page 1 comes back."""
    email_match: EmailMatch = "case_insensitive"
    """How the email filters compare: case_insensitive, case_sensitive, or ignored (every
    profile is listed)."""
    status_filter: bool = True
    """Honour filter[statuses.handle]; off, it is ignored and every profile is listed."""
    item_entity_id: bool = True
    """Fill batch items' entity_id with the profile id; off, it is null."""
    rate_limit_headers: bool = True
    """Send X-RateLimit-Limit/Remaining with the rate limit on; off, only a 429's
    Retry-After tells."""
    group_rule: bool = False
    """Assigning a status of a group detaches the profile's other statuses of that group."""
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    log_path: Path | None = None

    def __post_init__(self) -> None:
        """Refuse settings no server could have, with a one-line ValueError."""
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be between 0 and 1, not {self.fail_rate}")
        if self.rate_limit is not None and self.rate_limit < 0:
            raise ValueError(f"rate_limit must not be negative, not {self.rate_limit}")
        if self.rate_window <= 0:
            raise ValueError(f"rate_window must be positive, not {self.rate_window}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {self.max_batch}")
        if self.latency_ms < 0 or self.batch_delay < 0:
            raise ValueError("latency_ms and batch_delay must not be negative")
        for name, kind in (
            ("batch_answer", BatchAnswer),
            ("page_style", PageStyle),
            ("email_match", EmailMatch),
        ):
            allowed = get_args(kind)
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")


def create_app(tenant: Tenant, config: SandboxConfig | None = None) -> Starlette:
    """Build the ASGI app serving ``tenant`` (shared, not copied) under ``/api/v3``.

    ``app.state.tenant`` and ``app.state.config`` give them back. Raises OSError at once if
    ``config.log_path`` cannot be opened for appending.
    """
    config = config or SandboxConfig()
    sandbox = _Sandbox(tenant, config)
    app = Starlette(
        routes=[
            Route(
                "/{path:path}",
                sandbox.handle,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            )
        ]
    )
    app.state.tenant = tenant
    app.state.config = config
    return app


# -- plumbing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Body:
    is_json: bool
    value: Any  # parsed JSON, the raw text when it is not JSON, or None when empty


def _parse_body(raw: bytes) -> _Body:
    if not raw.strip():
        return _Body(is_json=False, value=None)
    text = raw.decode("utf-8", errors="replace")
    try:
        return _Body(is_json=True, value=json.loads(text))
    except ValueError:
        return _Body(is_json=False, value=text)


class _HttpError(Exception):
    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload


def _not_found(message: str = "Not Found") -> _HttpError:
    return _HttpError(404, {"message": message})


def _invalid(errors: dict[str, list[str]]) -> _HttpError:
    return _HttpError(422, {"message": INVALID_DATA, "errors": errors})


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(payload, status_code=status, headers=headers)


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int
    after_write: bool


class _RateLimiter:
    """Fixed windows: the first request after a window ends opens the next one."""

    def __init__(self, limit: int, config: SandboxConfig) -> None:
        self.limit = limit
        self.config = config
        self.window_end: float | None = None
        self.count = 0

    def hit(self) -> tuple[bool, dict[str, str]]:
        now = self.config.clock()
        if self.window_end is None or now >= self.window_end:
            self.window_end = now + self.config.rate_window
            self.count = 0
        self.count += 1
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - self.count)),
        }
        if self.count <= self.limit:
            return True, headers
        wait = self.window_end - now
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
        headers["X-RateLimit-Reset"] = str(math.ceil(self.config.wall_clock() + wait))
        return False, headers


_Handler = Callable[[Request, dict[str, str], _Body], Response]


@dataclass(frozen=True, slots=True)
class _Endpoint:
    handler: _Handler
    batch_write: bool = False


# -- the app --------------------------------------------------------------------------------


class _Sandbox:
    def __init__(self, tenant: Tenant, config: SandboxConfig) -> None:
        self.tenant = tenant
        self.config = config
        self.limiter = (
            None if config.rate_limit is None else _RateLimiter(config.rate_limit, config)
        )
        self.faults = random.Random(config.fault_seed)
        self._log_fd: int | None = None
        if config.log_path is not None:
            # One descriptor for the app's life (closed when the app is collected) rather than
            # an open and a close per request; O_APPEND keeps every line whole.
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            self._log_fd = os.open(config.log_path, flags, 0o644)
            weakref.finalize(self, os.close, self._log_fd)
        self.routes: list[tuple[re.Pattern[str], dict[str, _Endpoint]]] = [
            (re.compile(r"/statuses"), {"GET": _Endpoint(self.list_statuses)}),
            (re.compile(r"/statuses/(?P<id>[^/]+)"), {"GET": _Endpoint(self.get_status)}),
            (re.compile(r"/profiles"), {"GET": _Endpoint(self.list_profiles)}),
            (
                re.compile(r"/profiles/(?P<id>[^/]+)"),
                {"GET": _Endpoint(self.get_profile), "PUT": _Endpoint(self.put_profile)},
            ),
            (
                re.compile(r"/profile/status/batch\.json"),
                {
                    "POST": _Endpoint(self.attach_statuses, batch_write=True),
                    "DELETE": _Endpoint(self.detach_statuses, batch_write=True),
                },
            ),
            (re.compile(r"/batches/(?P<id>[^/]+)"), {"GET": _Endpoint(self.get_batch)}),
        ]

    async def handle(self, request: Request) -> Response:
        body = _parse_body(await request.body())
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=request.query_params.multi_items(),
            body=body.value,
            status=0,
            at=self.config.wall_clock(),
        )
        self.tenant.requests.append(record)
        try:
            response = await self._answer(request, body)
        except BaseException:
            record.status = 500
            self._log(record)
            raise
        record.status = response.status_code
        self._log(record)
        return response

    def _log(self, record: RecordedRequest) -> None:
        if self._log_fd is not None:
            os.write(self._log_fd, (json.dumps(record.to_json()) + "\n").encode())

    def _process_due(self) -> None:
        self.tenant.process_due_batches(
            self.config.clock(), self.config.wall_clock(), group_rule=self.config.group_rule
        )

    async def _answer(self, request: Request, body: _Body) -> Response:
        self._process_due()
        if self.config.latency_ms > 0:
            await asyncio.sleep(self.config.latency_ms / 1000)
        headers: dict[str, str] = {}
        if self.limiter is not None:
            allowed, headers = self.limiter.hit()
            if not self.config.rate_limit_headers:
                headers = {k: v for k, v in headers.items() if not k.startswith("X-RateLimit")}
            if not allowed:
                return _json(429, {"message": "Too Many Attempts."}, headers)
        if not self._authorised(request):
            return _json(401, {"message": "Unauthenticated."}, headers)
        fault = self._draw_fault()
        endpoint, params = self._resolve(request.method, request.url.path)
        write_first = fault is not None and fault.after_write and endpoint.batch_write
        if fault is not None and not write_first:
            return _json(fault.status, {"message": "Server Error"}, headers)
        self._process_due()
        try:
            response = endpoint.handler(request, params, body)
        except _HttpError as error:
            response = _json(error.status, error.payload)
        if fault is not None:
            response = _json(fault.status, {"message": "Server Error"})
        response.headers.update(headers)
        return response

    def _authorised(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.config.token.encode())

    def _draw_fault(self) -> _Fault | None:
        roll = self.faults.random()
        status = FAULT_CODES[self.faults.randrange(len(FAULT_CODES))]
        after_write = self.faults.random() < 0.5
        return _Fault(status, after_write) if roll < self.config.fail_rate else None

    def _resolve(self, method: str, path: str) -> tuple[_Endpoint, dict[str, str]]:
        """The endpoint for a request and its path parameters (404/405 answerers as fallbacks)."""
        if path.startswith(API_PREFIX + "/"):
            sub = path[len(API_PREFIX) :]
            for pattern, methods in self.routes:
                match = pattern.fullmatch(sub)
                if match is None:
                    continue
                if method in methods:
                    return methods[method], match.groupdict()
                return _Endpoint(_method_not_allowed(method, path, sorted(methods))), {}
        return _Endpoint(_route_not_found), {}

    # -- statuses ---------------------------------------------------------------------------

    def list_statuses(self, request: Request, params: dict[str, str], body: _Body) -> Response:
        query = dict(request.query_params)
        size, number = _page_params(query, self.config.page_style)
        statuses = self.tenant.statuses
        if "filter[handle]" in query:
            statuses = [s for s in statuses if s.handle == query["filter[handle]"]]
        rows = [status.to_json() for status in _slice(statuses, size, number)]
        return _paginated(
            request, rows, total=len(statuses), page=(size, number), style=self.config.page_style
        )

    def get_status(self, request: Request, params: dict[str, str], body: _Body) -> Response:
        wanted = params["id"]
        for status in self.tenant.statuses:
            if str(status.id) == wanted:
                return _json(200, {"data": status.to_json()})
        raise _not_found("No query results for model [Status].")

    # -- profiles ---------------------------------------------------------------------------

    def list_profiles(self, request: Request, params: dict[str, str], body: _Body) -> Response:
        query = dict(request.query_params)
        size, number = _page_params(query, self.config.page_style)
        handle = query.get("filter[statuses.handle]") if self.config.status_filter else None
        ids = self._mobile_filter(query, self._email_filter(query))
        profiles = self.tenant.profiles
        if ids is None and handle is None:
            # No filter at all: page through the dict without copying a million profiles.
            total = len(profiles)
            page: Iterable[SandboxProfile] = itertools.islice(
                profiles.values(), (number - 1) * size, number * size
            )
        else:
            if ids is None:
                candidates: Iterable[SandboxProfile] = profiles.values()
            else:
                found = (profiles[pid] for pid in ids if pid in profiles)
                candidates = sorted(found, key=lambda profile: profile.seq)
            matched = [p for p in candidates if handle is None or handle in p.statuses]
            total = len(matched)
            page = _slice(matched, size, number)
        rows = [profile.to_json() for profile in page]
        return _paginated(
            request, rows, total=total, page=(size, number), style=self.config.page_style
        )

    def _email_filter(self, query: dict[str, str]) -> set[str] | None:
        """Profile ids the email filters allow (AND of them), or None when there is none."""
        if self.config.email_match == "ignored":
            return None
        ids: set[str] | None = None
        for key in ("filter[email]", "filter[email][eq]"):
            if key in query:
                found = self._holders_of(query[key])
                ids = found if ids is None else ids & found
        if self.config.email_in_filter and "filter[email][in]" in query:
            parts = query["filter[email][in]"].split(",")
            found = {pid for part in parts for pid in self._holders_of(part)}
            ids = found if ids is None else ids & found
        return ids

    def _mobile_filter(self, query: dict[str, str], ids: set[str] | None) -> set[str] | None:
        """``ids`` narrowed by ``filter[mobile_phone]`` (compared as ``normalise_mobile``
        makes numbers), or unchanged when the query has no such filter."""
        if "filter[mobile_phone]" not in query:
            return ids
        number = normalise_mobile(query["filter[mobile_phone]"])
        found = set(self.tenant.mobile_index.get(number, ()))
        return found if ids is None else ids & found

    def _holders_of(self, email: str) -> set[str]:
        """Ids of the profiles an email filter value matches, as ``email_match`` compares."""
        ids = self.tenant.email_index.get(normalise_email(email), ())
        if self.config.email_match == "case_sensitive":
            wanted = exact_email(email)
            profiles = self.tenant.profiles
            return {pid for pid in ids if exact_email(profiles[pid].email) == wanted}
        return set(ids)

    def _profile_or_404(self, profile_id: str) -> SandboxProfile:
        profile = self.tenant.profile(profile_id)
        if profile is None:
            raise _not_found("No query results for model [Profile].")
        return profile

    def get_profile(self, request: Request, params: dict[str, str], body: _Body) -> Response:
        handle = request.query_params.get("identity[handle]")
        if handle is None:
            return _json(200, {"data": self._profile_or_404(params["id"]).to_json()})
        # The documented identity read: the path holds an identifier of that handle, exactly.
        profile = self.tenant.by_identity(handle, params["id"])
        if profile is None:
            raise _not_found("No query results for model [Profile].")
        return _json(200, {"data": profile.to_json()})

    def put_profile(self, request: Request, params: dict[str, str], body: _Body) -> Response:
        profile = self._profile_or_404(params["id"])
        data: dict[str, Any] = body.value if isinstance(body.value, dict) else {}
        _validate_profile_update(data)
        for key in ("first_name", "last_name"):
            if key in data:
                setattr(profile, key, data[key] or "")
        if "email" in data:
            self.tenant.set_email(profile.id, data["email"].strip())
        if "statuses" in data:
            # PUT replaces the whole set: anything not sent is detached.
            known = self.tenant.handles()
            profile.statuses = [h for h in dict.fromkeys(data["statuses"]) if h in known]
        profile.updated_at = self.config.wall_clock()
        return _json(200, {"data": profile.to_json()})

    # -- status batches ---------------------------------------------------------------------

    def attach_statuses(self, request: Request, params: dict[str, str], body: _Body) -> Response:
        return self._queue("attach", body)

    def detach_statuses(self, request: Request, params: dict[str, str], body: _Body) -> Response:
        return self._queue("detach", body)

    def _queue(self, action: BatchAction, body: _Body) -> Response:
        entries = _batch_entries(body, self.config.max_batch)
        batch_id = str(uuid.uuid4())
        now = self.config.clock()
        self.tenant.queue_batch(
            batch_id,
            action,
            entries,
            due_at=now + self.config.batch_delay,
            created_at=self.config.wall_clock(),
        )
        if self.config.batch_delay <= 0:
            self._process_due()
        answer = {"message": "Queued for processing.", "batch_id": batch_id}
        return _json(202, answer if self.config.batch_answer == "top_level" else {"data": answer})

    def get_batch(self, request: Request, params: dict[str, str], body: _Body) -> Response:
        if not self.config.batches_endpoint:
            raise _not_found()
        self._process_due()
        batch = self.tenant.batches.get(params["id"])
        if batch is None:
            raise _not_found("No query results for model [Batch].")
        shown = batch.to_json(
            string_counts=self.config.string_counts, entity_ids=self.config.item_entity_id
        )
        return _json(200, {"data": shown})


# -- routing fallbacks ----------------------------------------------------------------------


def _route_not_found(request: Request, params: dict[str, str], body: _Body) -> Response:
    raise _not_found()


def _method_not_allowed(method: str, path: str, allowed: list[str]) -> _Handler:
    def answer(request: Request, params: dict[str, str], body: _Body) -> Response:
        message = (
            f"The {method} method is not supported for route {path.lstrip('/')}. "
            f"Supported methods: {', '.join(allowed)}."
        )
        return _json(405, {"message": message}, {"Allow": ", ".join(allowed)})

    return answer


# -- pagination -----------------------------------------------------------------------------


_PAGE_KEYS: dict[str, tuple[str, str]] = {
    "page_array": ("page[size]", "page[number]"),
    "per_page": ("per_page", "page"),
}
"""The (size, number) query keys of each pagination dialect."""


def _page_keys(query: dict[str, str], style: PageStyle) -> tuple[str, str]:
    """The (size, number) keys a request is read with: the honoured dialect's, or with
    ``both``, those of the dialect the request uses (``page[...]`` when it uses neither)."""
    if style == "both":
        plain = ("per_page" in query or "page" in query) and not any(
            key in query for key in _PAGE_KEYS["page_array"]
        )
        style = "per_page" if plain else "page_array"
    return _PAGE_KEYS[style]


def _page_params(query: dict[str, str], style: PageStyle) -> tuple[int, int]:
    """``(size, number)`` from the honoured dialect's keys (the other's are ignored, as a
    server that does not know them would): size clamped to 1..100."""
    size_key, number_key = _page_keys(query, style)
    errors: dict[str, list[str]] = {}
    values = {}
    for key, name, default in (
        (size_key, "size", DEFAULT_PAGE_SIZE),
        (number_key, "number", 1),
    ):
        raw = query.get(key)
        if raw is None:
            values[name] = default
            continue
        try:
            values[name] = int(raw)
        except ValueError:
            errors[f"page.{name}"] = [f"The page.{name} must be an integer."]
    if errors:
        raise _invalid(errors)
    return min(max(values["size"], 1), MAX_PAGE_SIZE), max(values["number"], 1)


def _slice(rows: list[_T], size: int, number: int) -> list[_T]:
    return rows[(number - 1) * size : number * size]


def _paginated(
    request: Request,
    rows: list[dict[str, Any]],
    *,
    total: int,
    page: tuple[int, int],
    style: PageStyle,
) -> Response:
    """The Laravel API-resource paginator envelope around one page of rows; its links use
    the dialect the request was read in."""
    size, number = page
    url = request.url
    path = f"{url.scheme}://{url.netloc}{url.path}"
    size_key, number_key = _page_keys(dict(request.query_params), style)
    paging = {"page", "per_page"}
    kept = [
        (k, v)
        for k, v in request.query_params.multi_items()
        if not k.startswith("page[") and k not in paging
    ]

    # The filters are the same in every link: quoted once, not once per link.
    rest = "".join(f"&{quote(k, safe='[]')}={quote(v, safe='@,')}" for k, v in kept)
    number_q, size_q = quote(number_key, safe="[]"), quote(size_key, safe="[]")

    def link(page: int) -> str:
        return f"{path}?{number_q}={page}&{size_q}={size}{rest}"

    last_page = max(1, math.ceil(total / size))
    first = (number - 1) * size + 1 if rows else None
    payload = {
        "data": rows,
        "links": {
            "first": link(1),
            "last": link(last_page),
            "prev": link(number - 1) if number > 1 else None,
            "next": link(number + 1) if number < last_page else None,
        },
        "meta": {
            "current_page": number,
            "from": first,
            "last_page": last_page,
            "links": [],
            "path": path,
            "per_page": size,
            "to": None if first is None else first + len(rows) - 1,
            "total": total,
        },
    }
    return _json(200, payload)


# -- validation -----------------------------------------------------------------------------


def _validate_profile_update(data: dict[str, Any]) -> None:
    errors: dict[str, list[str]] = {}
    for key in ("first_name", "last_name"):
        if data.get(key) is not None and not isinstance(data[key], str):
            errors[key] = [f"The {key} must be a string."]
    if "email" in data and not (isinstance(data["email"], str) and "@" in data["email"]):
        errors["email"] = ["The email must be a valid email address."]
    if "statuses" in data:
        statuses = data["statuses"]
        if not isinstance(statuses, list):
            errors["statuses"] = ["The statuses must be an array."]
        else:
            for j, handle in enumerate(statuses):
                if not isinstance(handle, str):
                    errors[f"statuses.{j}"] = [f"The statuses.{j} must be a string."]
    if errors:
        raise _invalid(errors)


def _is_blank(value: Any) -> bool:
    """Laravel's ``required`` fails for null, blank strings and empty arrays."""
    return value is None or value == [] or (isinstance(value, str) and not value.strip())


def _batch_entries(body: _Body, max_batch: int) -> list[tuple[str, list[str]]]:
    """The ``(profile_id, handles)`` pairs of a status batch body, or a 422 listing every error."""
    data = body.value if body.is_json and isinstance(body.value, dict) else {}
    profiles = data.get("profiles")
    if _is_blank(profiles):
        raise _invalid({"profiles": ["The profiles field is required."]})
    if not isinstance(profiles, list):
        raise _invalid({"profiles": ["The profiles must be an array."]})
    errors: dict[str, list[str]] = {}
    if len(profiles) > max_batch:
        errors["profiles"] = [f"The profiles may not have more than {max_batch} items."]
    for i, item in enumerate(profiles):
        errors.update(_item_errors(f"profiles.{i}", item))
    if errors:
        raise _invalid(errors)
    return [(item["profile_id"], list(item["statuses"])) for item in profiles]


def _item_errors(prefix: str, item: Any) -> dict[str, list[str]]:
    if not isinstance(item, dict):
        return {prefix: [f"The {prefix} must be an array."]}
    errors: dict[str, list[str]] = {}
    profile_id = item.get("profile_id")
    if _is_blank(profile_id):
        errors[f"{prefix}.profile_id"] = [f"The {prefix}.profile_id field is required."]
    elif not isinstance(profile_id, str):
        errors[f"{prefix}.profile_id"] = [f"The {prefix}.profile_id must be a string."]
    statuses = item.get("statuses")
    if _is_blank(statuses):
        errors[f"{prefix}.statuses"] = [f"The {prefix}.statuses field is required."]
    elif not isinstance(statuses, list):
        errors[f"{prefix}.statuses"] = [f"The {prefix}.statuses must be an array."]
    else:
        for j, handle in enumerate(statuses):
            if not isinstance(handle, str):
                key = f"{prefix}.statuses.{j}"
                errors[key] = [f"The {key} must be a string."]
    return errors
