"""API answers (lenient: unknown fields are ignored) and the tool's own records (strict)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Action(StrEnum):
    """What a run does to the statuses it is given."""

    ASSIGN = "assign"
    REMOVE = "remove"


class Outcome(StrEnum):
    """What happened to one input row. Every report row carries exactly one."""

    ASSIGNED = "assigned"
    ALREADY_HAD = "already_had"
    WOULD_ASSIGN = "would_assign"
    REMOVED = "removed"
    DID_NOT_HAVE = "did_not_have"
    WOULD_REMOVE = "would_remove"
    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"
    INVALID_EMAIL = "invalid_email"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    SENT = "sent"


class ApiModel(BaseModel):
    """Base of every API answer: unknown fields are ignored, numbers may come as strings."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, frozen=True)


class StatusDefinition(ApiModel):
    """One status definition of the tenant (``GET /v3/statuses``)."""

    handle: str
    name: str = ""


class Profile(ApiModel):
    """The parts of a profile the tool reads."""

    id: str
    email: str | None = None
    statuses: tuple[str, ...] = ()

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


class Batch(ApiModel):
    """A queued batch (``GET /v3/batches/{id}``); counts may be missing or strings."""

    id: str
    status: str | None = None
    total_count: int | None = None
    success_count: int | None = None
    failed_count: int | None = None
    processed_count: int | None = None
    items: tuple[BatchItem, ...] = Field(default=())

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
