"""API answers (lenient: unknown fields are ignored) and the tool's own records (strict)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Action(StrEnum):
    """What a run does to the statuses it is given. Its polarity lives here, nowhere else."""

    ASSIGN = "assign"
    REMOVE = "remove"

    @property
    def method(self) -> str:
        """The HTTP method of the batch endpoint that does it."""
        return "POST" if self is Action.ASSIGN else "DELETE"

    @property
    def inverse(self) -> Action:
        """The action that undoes this one."""
        return Action.REMOVE if self is Action.ASSIGN else Action.ASSIGN

    @property
    def done(self) -> Outcome:
        """The outcome of a row whose change was applied."""
        return Outcome.ASSIGNED if self is Action.ASSIGN else Outcome.REMOVED

    @property
    def would(self) -> Outcome:
        """The outcome of a row a dry run would change."""
        return Outcome.WOULD_ASSIGN if self is Action.ASSIGN else Outcome.WOULD_REMOVE

    @property
    def unneeded(self) -> Outcome:
        """The outcome of a row whose profile is already as wanted."""
        return Outcome.ALREADY_HAD if self is Action.ASSIGN else Outcome.DID_NOT_HAVE

    def to_send(self, held: Iterable[str], handles: Iterable[str]) -> tuple[str, ...]:
        """The handles that must be sent for a profile holding ``held`` (in ``handles`` order)."""
        current = set(held)
        if self is Action.ASSIGN:
            return tuple(h for h in handles if h not in current)
        return tuple(h for h in handles if h in current)

    def applied(self, held: Iterable[str], handles: Iterable[str]) -> bool:
        """Whether a profile holding ``held`` already shows the change for ``handles``."""
        return not self.to_send(held, handles)


class Outcome(StrEnum):
    """What happened to one input row. Every report row carries exactly one."""

    ASSIGNED = "assigned"
    ALREADY_HAD = "already_had"
    WOULD_ASSIGN = "would_assign"
    MOVED = "moved"
    """The row's status was added and its siblings in the status's group removed (a tier move:
    ``--status-column``)."""
    WOULD_MOVE = "would_move"
    REMOVED = "removed"
    DID_NOT_HAVE = "did_not_have"
    WOULD_REMOVE = "would_remove"
    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"
    INVALID_EMAIL = "invalid_email"
    INVALID_KEY = "invalid_key"
    DUPLICATE = "duplicate"
    NO_STATUS = "no_status"
    """The row's status cell is empty (``--status-column``): nothing to do for it."""
    FAILED = "failed"
    SENT = "sent"


SKIPPED = frozenset(
    {
        Outcome.NOT_FOUND,
        Outcome.AMBIGUOUS,
        Outcome.INVALID_EMAIL,
        Outcome.INVALID_KEY,
        Outcome.NO_STATUS,
    }
)
"""Outcomes of rows left alone because they match no single profile (or have no valid key, or
no status): what the unmatched limit counts and strict mode turns into failures."""


LANDED = frozenset({Outcome.ASSIGNED, Outcome.ALREADY_HAD, Outcome.REMOVED, Outcome.DID_NOT_HAVE})
"""Outcomes of a row whose profile shows its change (written, or not needed): what the second
write of a tier move waits for."""


class ApiModel(BaseModel):
    """Base of every API answer: unknown fields are ignored, numbers may come as strings."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, frozen=True)

    def to_json(self) -> dict[str, Any]:
        """The answer as the tool understood it, as a ``--json`` document."""
        return self.model_dump(mode="json")


class StatusDefinition(ApiModel):
    """One status definition of the tenant (``GET /v3/statuses``)."""

    handle: str
    name: str = ""
    group_handle: str | None = None
    group_name: str | None = None
    period: str | None = None
    period_type: str | None = None
    absolute_expiry: str | None = None

    @property
    def time_limited(self) -> bool:
        """Whether profiles lose this status on their own after a time (it expires)."""
        return bool(self.period or self.absolute_expiry)

    @property
    def grouped(self) -> bool:
        """Whether the status belongs to a group (the tenant may keep one status per group)."""
        return bool(self.group_handle)


class Identity(ApiModel):
    """One identity of a profile: a handle (``shopify``) and the identifier there."""

    handle: str = ""
    identifier: str = ""


class Profile(ApiModel):
    """The parts of a profile the tool reads."""

    id: str
    email: str | None = None
    mobile_phone: str | None = None
    identities: tuple[Identity, ...] | None = None
    """None when the answer does not list them (not the same as listing none)."""
    statuses: tuple[str, ...] = ()

    @field_validator("identities", mode="before")
    @classmethod
    def _identities(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict)]
        return None

    def has_identity(self, handle: str, identifier: str) -> bool:
        """Whether the profile lists exactly this identity (identifiers compared exactly)."""
        return any(i.handle == handle and i.identifier == identifier for i in self.identities or ())

    @field_validator("statuses", mode="before")
    @classmethod
    def _handles(cls, value: Any) -> Any:
        # Older tenants list handles; newer SDK types show status objects: accept both.
        if value is None:
            return ()
        if isinstance(value, list):
            return [item.get("handle") if isinstance(item, dict) else item for item in value]
        return value


class BatchItem(ApiModel):
    """One item of a batch: one profile's share of the work."""

    entity_id: str | None = None
    external_id: str | None = None
    status: str | None = None
    error: str | None = None

    @property
    def state(self) -> BatchState:
        """What the item's ``status`` means (see ``BatchState``)."""
        return BatchState.of(self.status)


class BatchState(StrEnum):
    """What a batch's ``status`` means, read leniently: the one place that decides it."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @classmethod
    def of(cls, status: str | None) -> BatchState:
        """The state a batch (or batch item) status string stands for."""
        text = (status or "").strip().lower()
        if text in _RUNNING_STATUSES:
            return cls.RUNNING
        if text in _DONE_STATUSES:
            return cls.DONE
        if text in _FAILED_STATUSES:
            return cls.FAILED
        return cls.UNKNOWN


_RUNNING_STATUSES = frozenset(
    {"pending", "queued", "processing", "running", "in_progress", "started"}
)
_DONE_STATUSES = frozenset({"success", "completed", "complete", "done", "succeeded", "finished"})
_FAILED_STATUSES = frozenset({"failed", "error", "errored"})


class Batch(ApiModel):
    """A queued batch (``GET /v3/batches/{id}``); counts may be missing or strings."""

    id: str
    status: str | None = None
    total_count: int | None = None
    success_count: int | None = None
    failed_count: int | None = None
    processed_count: int | None = None
    items: tuple[BatchItem, ...] = Field(default=())

    @property
    def state(self) -> BatchState:
        """What the batch's ``status`` means (see ``BatchState``)."""
        return BatchState.of(self.status)

    @field_validator(
        "total_count", "success_count", "failed_count", "processed_count", mode="before"
    )
    @classmethod
    def _lenient_count(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
            return None
        return value

    @field_validator("items", mode="before")
    @classmethod
    def _items(cls, value: Any) -> Any:
        return () if value is None else value
