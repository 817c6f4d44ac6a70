"""The in-memory Omneo tenant: status definitions, profiles, queued batches and a request log.

Everything here is plain data plus the few operations the HTTP layer needs. The email index
keeps lookups O(1) even for a generated tenant of a million profiles, so change a profile's
email through :meth:`Tenant.set_email` (the PUT handler does) rather than by assignment.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import dropwhile
from typing import Any, Literal

#: Created/updated timestamp of everything that comes from a seed rather than from a request.
SEED_TIMESTAMP = "2026-01-01T00:00:00.000000Z"

BatchAction = Literal["attach", "detach"]
ItemStatus = Literal["pending", "success", "failed"]

PROFILE_NOT_FOUND = "Profile not found."
INJECTED_FAILURE = "Injected failure"


def iso_timestamp(epoch: float | None) -> str:
    """Format a unix time as Omneo does (``2026-11-28T18:00:00.000000Z``); None is the seed time."""
    if epoch is None:
        return SEED_TIMESTAMP
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def uuid4_from_int(bits: int) -> str:
    """Return ``str(uuid.UUID(int=bits, version=4))`` without building a UUID object (faster)."""
    bits &= ~(0xF000 << 64)
    bits |= 0x4000 << 64
    bits &= ~(0xC000 << 48)
    bits |= 0x8000 << 48
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _blank(char: str) -> bool:
    """Whitespace (NBSP included) or an invisible format character (zero-width space, BOM)."""
    return char.isspace() or unicodedata.category(char) == "Cf"


def exact_email(email: str) -> str:
    """An address as a case-sensitive server compares it: trimmed of whitespace and invisible
    characters (zero-width spaces, BOMs) and in Unicode NFC, its case kept."""
    trimmed = "".join(dropwhile(_blank, reversed("".join(dropwhile(_blank, email)))))
    return unicodedata.normalize("NFC", trimmed[::-1])


def normalise_email(email: str) -> str:
    """The email index key: :func:`exact_email`, lower-cased with ``str.lower()`` (then NFC).

    This is the documented rule of ``omneo_status.inputs.email_key`` (trim incl. zero-width,
    NFC, case-insensitive by ``lower()``, not ``casefold()``), written again here because the
    sandbox imports nothing from the tool; both must call two addresses the same exactly when
    the other does.
    """
    return unicodedata.normalize("NFC", exact_email(email).lower())


_PHONE_PUNCTUATION = re.compile(r"[\s\-()\[\]]")


def normalise_mobile(number: str) -> str:
    """The mobile index key: the number trimmed (as :func:`exact_email` trims) without spaces,
    dashes and brackets, a leading ``+`` kept.

    This is the documented rule of ``omneo_status.keys.normalize_mobile``, written again here
    because the sandbox imports nothing from the tool.
    """
    return _PHONE_PUNCTUATION.sub("", exact_email(number))


@dataclass(slots=True)
class StatusDefinition:
    """A status the tenant knows; only handles with a definition can be attached to profiles.

    ``group_handle`` puts it in a group (with the group rule on, a profile keeps one status
    per group); ``period``/``period_type`` or ``absolute_expiry`` make it time-limited (the
    sandbox shows them but never expires a status on its own).
    """

    id: int
    handle: str
    name: str
    sort_order: int = 0
    description: str | None = None
    group_handle: str | None = None
    group_name: str | None = None
    period: int | None = None
    period_type: str | None = None
    absolute_expiry: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The API shape of a status."""
        return {**asdict(self), "created_at": SEED_TIMESTAMP, "updated_at": SEED_TIMESTAMP}

    def to_seed(self) -> dict[str, Any]:
        """The status as a seed entry (the optional fields only when set)."""
        entry: dict[str, Any] = {
            "id": self.id,
            "handle": self.handle,
            "name": self.name,
            "sort_order": self.sort_order,
            "description": self.description,
        }
        for key in ("group_handle", "group_name", "period", "period_type", "absolute_expiry"):
            if getattr(self, key) is not None:
                entry[key] = getattr(self, key)
        return entry


@dataclass(slots=True)
class SandboxProfile:
    """A customer profile; ``statuses`` holds handles in attach order, without duplicates."""

    id: str
    email: str
    first_name: str = ""
    last_name: str = ""
    statuses: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    updated_at: float | None = field(default=None, compare=False)
    seq: int = field(default=0, repr=False, compare=False)
    mobile_phone: str | None = None
    identities: list[tuple[str, str]] = field(default_factory=list)
    """``(handle, identifier)`` pairs; each pair is unique across the tenant's profiles."""

    def to_json(self) -> dict[str, Any]:
        """The API shape of a profile."""
        return {
            "id": self.id,
            "email": self.email,
            "mobile_phone": self.mobile_phone,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "identities": [
                {"handle": handle, "identifier": identifier}
                for handle, identifier in self.identities
            ],
            "statuses": list(self.statuses),
            "tags": list(self.tags),
            "profile_type": "active",
            "created_at": SEED_TIMESTAMP,
            "updated_at": iso_timestamp(self.updated_at),
        }


@dataclass(slots=True)
class RecordedRequest:
    """One request as the sandbox received it, and the status code it answered with."""

    method: str
    path: str
    query: list[tuple[str, str]]
    body: Any
    status: int
    at: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of the request log)."""
        return {
            "method": self.method,
            "path": self.path,
            "query": [list(pair) for pair in self.query],
            "body": self.body,
            "status": self.status,
            "at": self.at,
        }


@dataclass(slots=True)
class SandboxBatchItem:
    """One ``{profile_id, statuses}`` entry of a queued status batch."""

    id: int
    profile_id: str
    handles: list[str]
    created_at: float
    status: ItemStatus = "pending"
    error: str | None = None
    updated_at: float | None = None

    def to_json(self, *, entity_id: bool = True) -> dict[str, Any]:
        """The API shape of a batch item (``entity_id`` null when the tenant leaves it out)."""
        return {
            "id": self.id,
            "entity_id": self.profile_id if entity_id else None,
            "external_id": self.profile_id,
            "status": self.status,
            "error": self.error,
            "created_at": iso_timestamp(self.created_at),
            "updated_at": iso_timestamp(self.updated_at or self.created_at),
        }


@dataclass(slots=True)
class SandboxBatch:
    """A status batch queued by POST (attach) or DELETE (detach) ``/profile/status/batch.json``."""

    id: str
    action: BatchAction
    items: list[SandboxBatchItem]
    due_at: float
    created_at: float
    status: ItemStatus = "pending"
    updated_at: float | None = None

    def to_json(self, *, string_counts: bool = False, entity_ids: bool = True) -> dict[str, Any]:
        """The API shape of a batch (``GET /batches/{id}``): with ``string_counts`` the
        success, failed and processed counts are digit strings, as the docs' schema types
        them; without ``entity_ids`` the items' ``entity_id`` is null."""
        success = sum(1 for item in self.items if item.status == "success")
        failed = sum(1 for item in self.items if item.status == "failed")
        count: Any = str if string_counts else int
        return {
            "id": self.id,
            "import_job_id": None,
            "entity_type": "profile_status",
            "status": self.status,
            "total_count": len(self.items),
            "success_count": count(success),
            "failed_count": count(failed),
            "processed_count": count(success + failed),
            "items": [item.to_json(entity_id=entity_ids) for item in self.items],
            "created_at": iso_timestamp(self.created_at),
            "updated_at": iso_timestamp(self.updated_at or self.created_at),
        }


class Tenant:
    """An Omneo tenant in memory, shared by the app and whoever inspects it (tests, the CLI).

    Attributes:
        statuses: status definitions, in browse order.
        profiles: profiles by id, in insertion order (the order ``GET /profiles`` lists them).
        batches: queued and processed status batches by batch id.
        requests: every request the app received, in arrival order.
        fail_profile_ids: profile ids whose batch items fail with ``"Injected failure"``.
    """

    def __init__(self) -> None:
        self.statuses: list[StatusDefinition] = []
        self.profiles: dict[str, SandboxProfile] = {}
        self.batches: dict[str, SandboxBatch] = {}
        self.requests: list[RecordedRequest] = []
        self.fail_profile_ids: set[str] = set()
        self.email_index: dict[str, list[str]] = {}
        self.mobile_index: dict[str, list[str]] = {}
        self.identity_index: dict[tuple[str, str], str] = {}
        self._pending: list[SandboxBatch] = []
        self._next_seq = 1
        self._next_item_id = 1
        self._id_rng = random.Random(0)

    # -- statuses ---------------------------------------------------------------------------

    def add_status(
        self,
        handle: str,
        name: str,
        *,
        id: int | None = None,
        sort_order: int | None = None,
        description: str | None = None,
        group_handle: str | None = None,
        group_name: str | None = None,
        period: int | None = None,
        period_type: str | None = None,
        absolute_expiry: str | None = None,
    ) -> StatusDefinition:
        """Define a status; raises ValueError if the handle or id is already taken."""
        if self.status_by_handle(handle) is not None:
            raise ValueError(f"status handle {handle!r} is already defined")
        taken = {status.id for status in self.statuses}
        if id is None:
            id = max(taken, default=0) + 1
        elif id in taken:
            raise ValueError(f"status id {id} is already defined")
        status = StatusDefinition(
            id=id,
            handle=handle,
            name=name,
            sort_order=len(self.statuses) if sort_order is None else sort_order,
            description=description,
            group_handle=group_handle,
            group_name=group_name,
            period=period,
            period_type=period_type,
            absolute_expiry=absolute_expiry,
        )
        self.statuses.append(status)
        return status

    def status_by_handle(self, handle: str) -> StatusDefinition | None:
        """The definition with exactly this handle, if any."""
        return next((status for status in self.statuses if status.handle == handle), None)

    def handles(self) -> set[str]:
        """Every defined status handle."""
        return {status.handle for status in self.statuses}

    # -- profiles ---------------------------------------------------------------------------

    def add_profile(
        self,
        email: str,
        statuses: Iterable[str] = (),
        id: str | None = None,
        first_name: str = "",
        last_name: str = "",
        tags: Iterable[str] = (),
        mobile_phone: str | None = None,
        identities: Iterable[tuple[str, str]] = (),
    ) -> SandboxProfile:
        """Add a profile (a deterministic UUID4 id when none is given) and return it.

        Raises ValueError for a duplicate id, an identity another profile has, or a status
        handle with no definition.
        """
        if id is None:
            id = self._new_profile_id()
        elif id in self.profiles:
            raise ValueError(f"profile id {id!r} already exists")
        handles = list(dict.fromkeys(statuses))
        known = self.handles()
        unknown = [handle for handle in handles if handle not in known]
        if unknown:
            raise ValueError(f"status handle {unknown[0]!r} is not defined")
        pairs = list(dict.fromkeys(identities))
        taken = [pair for pair in pairs if pair in self.identity_index]
        if taken:
            raise ValueError(f"identity {taken[0][0]}:{taken[0][1]} belongs to another profile")
        profile = SandboxProfile(id, email, first_name, last_name, handles, list(tags))
        self._insert(profile)
        if mobile_phone is not None:
            self.set_mobile(profile.id, mobile_phone)
        for handle, identifier in pairs:
            self.add_identity(profile.id, handle, identifier)
        return profile

    def _new_profile_id(self) -> str:
        while True:
            candidate = uuid4_from_int(self._id_rng.getrandbits(128))
            if candidate not in self.profiles:
                return candidate

    def _insert(self, profile: SandboxProfile) -> None:
        profile.seq = self._next_seq
        self._next_seq += 1
        self.profiles[profile.id] = profile
        self.email_index.setdefault(normalise_email(profile.email), []).append(profile.id)

    def reserve_seq(self, next_seq: int) -> None:
        """After inserting profiles directly (a bulk generator), continue numbering from here."""
        self._next_seq = max(self._next_seq, next_seq)

    def profile(self, id: str) -> SandboxProfile | None:
        """The profile with this id, if any."""
        return self.profiles.get(id)

    def statuses_of(self, profile_id: str) -> list[str]:
        """A copy of the handles a profile holds; raises KeyError for an unknown id."""
        return list(self.profiles[profile_id].statuses)

    def by_email(self, email: str) -> list[SandboxProfile]:
        """Profiles whose email matches (trimmed, case-insensitive), in insertion order."""
        ids = self.email_index.get(normalise_email(email), [])
        found = [self.profiles[pid] for pid in ids if pid in self.profiles]
        return sorted(found, key=lambda profile: profile.seq)

    def set_email(self, profile_id: str, email: str) -> None:
        """Change a profile's email and keep the email index in step."""
        profile = self.profiles[profile_id]
        _unindex(self.email_index, normalise_email(profile.email), profile_id)
        profile.email = email
        self.email_index.setdefault(normalise_email(email), []).append(profile_id)

    def set_mobile(self, profile_id: str, mobile_phone: str | None) -> None:
        """Change a profile's mobile number and keep the mobile index in step."""
        profile = self.profiles[profile_id]
        if profile.mobile_phone is not None:
            _unindex(self.mobile_index, normalise_mobile(profile.mobile_phone), profile_id)
        profile.mobile_phone = mobile_phone
        if mobile_phone is not None:
            self.mobile_index.setdefault(normalise_mobile(mobile_phone), []).append(profile_id)

    def add_identity(self, profile_id: str, handle: str, identifier: str) -> None:
        """Give a profile an identity; raises ValueError if another profile has it."""
        owner = self.identity_index.get((handle, identifier))
        if owner is not None and owner != profile_id:
            raise ValueError(f"identity {handle}:{identifier} belongs to another profile")
        profile = self.profiles[profile_id]
        if (handle, identifier) not in profile.identities:
            profile.identities.append((handle, identifier))
        self.identity_index[(handle, identifier)] = profile_id

    def by_mobile(self, number: str) -> list[SandboxProfile]:
        """Profiles whose mobile matches (spaces, dashes and brackets ignored), in insertion
        order."""
        ids = self.mobile_index.get(normalise_mobile(number), [])
        return sorted((self.profiles[pid] for pid in ids), key=lambda profile: profile.seq)

    def by_identity(self, handle: str, identifier: str) -> SandboxProfile | None:
        """The profile with exactly this identity (identifiers compared exactly), if any."""
        profile_id = self.identity_index.get((handle, identifier))
        return None if profile_id is None else self.profiles.get(profile_id)

    # -- requests ---------------------------------------------------------------------------

    def writes(self) -> list[RecordedRequest]:
        """The recorded requests that were not GETs, in arrival order."""
        return [request for request in self.requests if request.method != "GET"]

    # -- batches ----------------------------------------------------------------------------

    def queue_batch(
        self,
        batch_id: str,
        action: BatchAction,
        entries: list[tuple[str, list[str]]],
        *,
        due_at: float,
        created_at: float,
    ) -> SandboxBatch:
        """Queue ``(profile_id, handles)`` entries; nothing changes until the batch is processed."""
        items = []
        for profile_id, handles in entries:
            items.append(SandboxBatchItem(self._next_item_id, profile_id, handles, created_at))
            self._next_item_id += 1
        batch = SandboxBatch(batch_id, action, items, due_at=due_at, created_at=created_at)
        self.batches[batch_id] = batch
        self._pending.append(batch)
        return batch

    def forget_batches(self) -> int:
        """Forget every batch, pending or processed, as a tenant that restarted without its
        queue does: a pending batch is never applied and ``GET /batches/{id}`` answers 404
        for each of them. Returns how many were forgotten."""
        forgotten = len(self.batches)
        self.batches.clear()
        self._pending.clear()
        return forgotten

    def process_due_batches(
        self, now: float, wall_now: float | None = None, *, group_rule: bool = False
    ) -> int:
        """Apply every pending batch whose ``due_at`` (a ``clock()`` time) is ``<= now``.

        Batches are applied in the order they were queued. ``wall_now`` stamps ``updated_at``
        (None keeps the creation time). With ``group_rule``, attaching a status of a group
        detaches the profile's other statuses of that group. Returns how many batches were
        processed.
        """
        due = [batch for batch in self._pending if batch.due_at <= now]
        if not due:
            return 0
        self._pending = [batch for batch in self._pending if batch.due_at > now]
        for batch in due:
            self._apply(batch, wall_now, group_rule)
        return len(due)

    def _apply(self, batch: SandboxBatch, wall_now: float | None, group_rule: bool) -> None:
        groups = {status.handle: status.group_handle for status in self.statuses}
        for item in batch.items:
            profile = self.profiles.get(item.profile_id)
            if profile is None:
                item.status, item.error = "failed", PROFILE_NOT_FOUND
            elif item.profile_id in self.fail_profile_ids:
                item.status, item.error = "failed", INJECTED_FAILURE
            else:
                if batch.action == "attach":
                    # Unknown handles are dropped without a word: the documented trap.
                    for handle in dict.fromkeys(h for h in item.handles if h in groups):
                        group = groups[handle] if group_rule else None
                        if group is not None:
                            profile.statuses[:] = [
                                h for h in profile.statuses if h == handle or groups.get(h) != group
                            ]
                        if handle not in profile.statuses:
                            profile.statuses.append(handle)
                else:
                    sent = set(item.handles)
                    profile.statuses[:] = [h for h in profile.statuses if h not in sent]
                profile.updated_at = wall_now
                item.status = "success"
            item.updated_at = wall_now
        every_item_failed = all(item.status == "failed" for item in batch.items)
        batch.status = "failed" if every_item_failed else "success"
        batch.updated_at = wall_now

    # -- seed -------------------------------------------------------------------------------

    def to_seed(self) -> dict[str, Any]:
        """The tenant as a seed document, in the shape ``load_seed`` reads."""
        return {
            "statuses": [status.to_seed() for status in self.statuses],
            "profiles": [_profile_seed(profile) for profile in self.profiles.values()],
        }


def _profile_seed(profile: SandboxProfile) -> dict[str, Any]:
    """A profile as a seed entry (its mobile and identities only when it has them)."""
    entry: dict[str, Any] = {"id": profile.id, "email": profile.email}
    if profile.mobile_phone is not None:
        entry["mobile_phone"] = profile.mobile_phone
    entry.update(
        first_name=profile.first_name,
        last_name=profile.last_name,
        statuses=list(profile.statuses),
        tags=list(profile.tags),
    )
    if profile.identities:
        entry["identities"] = [
            {"handle": handle, "identifier": identifier}
            for handle, identifier in profile.identities
        ]
    return entry


def _unindex(index: dict[str, list[str]], key: str, profile_id: str) -> None:
    """Take a profile out of one of the tenant's indexes (dropping a key left empty)."""
    ids = index[key]
    ids.remove(profile_id)
    if not ids:
        del index[key]
