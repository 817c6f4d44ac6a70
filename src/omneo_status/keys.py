"""Match keys: what names a profile in the input, and THE policy of each key.

A run matches rows to profiles by one key (``--match``): the email address (the default, whose
policy is :func:`omneo_status.inputs.email_key`), the mobile number, the Omneo profile id, or
an identity (a handle such as ``shopify`` and the identifier the customer has there). Each key
has one :class:`~omneo_status.inputs.KeyRule` here: how its column is recognised by its header,
how a cell is normalised (what is sent to the API), how two cells are compared (duplicates, and
the verification of every profile the API returns), and what is too malformed to look up. The
reader, duplicate detection and the resolvers all use these rules; the sandbox follows the same
documented rules in its own code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from omneo_status.errors import UsageError
from omneo_status.inputs import EMAIL_RULE, KeyRule, header_words, trim_blank
from omneo_status.models import Outcome

MAX_IDENTIFIER = 255
"""Longer identity identifiers are refused as malformed (no store gives ids that long)."""

_MOBILE_HEADERS = frozenset({"mobile", "phone", "mobilephone", "mobilenumber", "phonenumber"})
_PROFILE_ID_HEADERS = frozenset({"profileid", "id", "omneoid", "omneoprofileid"})
# Spaces, dashes and brackets are how people write numbers, never part of them.
_PHONE_PUNCTUATION = re.compile(r"[\s\-()\[\]]")
_PHONE = re.compile(r"\+?[0-9]{6,15}", re.ASCII)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
_HANDLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class KeyKind(StrEnum):
    """The kinds of match key (``--match``)."""

    EMAIL = "email"
    MOBILE = "mobile"
    ID = "id"
    IDENTITY = "identity"


def normalize_mobile(raw: str) -> str:
    """THE mobile policy: the number as it is sent and compared, with surrounding blanks,
    spaces, dashes and brackets removed (a leading ``+`` is kept). ``+61 (0)412-000 001``
    keeps its ``0``: nothing is reinterpreted, so numbers must be written in the form the
    tenant stores (usually E.164, ``+61412000001``)."""
    return _PHONE_PUNCTUATION.sub("", trim_blank(raw))


def is_valid_mobile(number: str) -> bool:
    """Whether a normalised number can be a phone number: 6 to 15 digits, an optional ``+``."""
    return _PHONE.fullmatch(number) is not None


def normalize_profile_id(raw: str) -> str:
    """A profile id as sent and compared: trimmed and lower-cased (UUIDs ignore case)."""
    return trim_blank(raw).lower()


def is_profile_id(text: str) -> bool:
    """Whether a normalised cell is shaped like an Omneo profile id (a UUID, with hyphens)."""
    return _UUID.fullmatch(text) is not None


_DOT_SEGMENTS = frozenset({".", ".."})
"""Path segments a URL resolves away (``/profiles/..`` is ``/``), even percent-encoded."""


def is_valid_identifier(identifier: str) -> bool:
    """Whether a trimmed identity identifier can be looked up: 1 to ``MAX_IDENTIFIER``
    characters, no control characters, no ``/``, and not ``.`` or ``..`` (it travels as a URL
    path segment, which must name the identifier and nothing else)."""
    return (
        0 < len(identifier) <= MAX_IDENTIFIER
        and "/" not in identifier
        and identifier not in _DOT_SEGMENTS
        and _CONTROL.search(identifier) is None
    )


class MobileRule:
    """Mobile numbers (``--match mobile``): headers ``mobile``, ``phone``, ``mobile_phone``."""

    name = "mobile"
    headerless = True

    def normalize(self, raw: str) -> str:
        """See :func:`normalize_mobile`."""
        return normalize_mobile(raw)

    def key(self, normalized: str) -> str:
        """The normalised number itself: numbers are compared digit for digit."""
        return normalized

    def is_valid(self, normalized: str) -> bool:
        """See :func:`is_valid_mobile`."""
        return is_valid_mobile(normalized)

    def is_header(self, cell: str) -> bool:
        """``Mobile``, ``Phone``, ``mobile_phone``, ``Mobile Number``, ``Phone Number``."""
        return header_words(cell) in _MOBILE_HEADERS


class ProfileIdRule:
    """Omneo profile ids (``--match id``): headers ``profile_id``, ``id``, ``Omneo ID``."""

    name = "profile_id"
    headerless = True

    def normalize(self, raw: str) -> str:
        """See :func:`normalize_profile_id`."""
        return normalize_profile_id(raw)

    def key(self, normalized: str) -> str:
        """The normalised id itself."""
        return normalized

    def is_valid(self, normalized: str) -> bool:
        """See :func:`is_profile_id`."""
        return is_profile_id(normalized)

    def is_header(self, cell: str) -> bool:
        """``profile_id``, ``id``, ``Omneo ID``, ``Omneo Profile ID``."""
        return header_words(cell) in _PROFILE_ID_HEADERS


class IdentityRule:
    """Identity identifiers of one handle (``--match identity:HANDLE``), compared exactly.

    A header names the column when it is the handle, optionally followed by ``id``,
    ``identifier`` or ``customer id`` (``shopify``, ``Shopify ID``, ``Shopify Customer ID``);
    anything else needs ``--column``. Any identifier is possible, so a file without a header
    cannot be recognised.
    """

    headerless = False

    def __init__(self, handle: str) -> None:
        self.handle = handle
        self.name = f"{handle} identifier"
        base = header_words(handle)
        self._headers = frozenset(
            base + suffix for suffix in ("", "id", "identifier", "customerid")
        )

    def normalize(self, raw: str) -> str:
        """The cell trimmed of surrounding blanks (see :func:`~omneo_status.inputs.trim_blank`)."""
        return trim_blank(raw)

    def key(self, normalized: str) -> str:
        """The identifier itself: identifiers are compared exactly, case included."""
        return normalized

    def is_valid(self, normalized: str) -> bool:
        """See :func:`is_valid_identifier`."""
        return is_valid_identifier(normalized)

    def is_header(self, cell: str) -> bool:
        """The handle, alone or followed by ``id``, ``identifier`` or ``customer id``."""
        return header_words(cell) in self._headers


_MOBILE_RULE = MobileRule()
_PROFILE_ID_RULE = ProfileIdRule()


@dataclass(frozen=True)
class MatchKey:
    """The key a run matches rows to profiles by: a kind, and the handle of an identity."""

    kind: KeyKind = KeyKind.EMAIL
    handle: str | None = None

    @classmethod
    def parse(cls, text: str) -> MatchKey:
        """``email``, ``mobile``, ``id`` or ``identity:HANDLE``; raises ``UsageError`` else."""
        word, colon, handle = text.strip().partition(":")
        kind = word.strip().lower()
        if kind == KeyKind.IDENTITY:
            handle = handle.strip()
            if not handle or _HANDLE.fullmatch(handle) is None:
                raise UsageError(
                    f"--match {text!r}: an identity needs its handle, as identity:HANDLE",
                    hint="For example: --match identity:shopify",
                )
            return cls(KeyKind.IDENTITY, handle)
        if colon or kind not in {k.value for k in KeyKind}:
            raise UsageError(
                f"--match {text!r} is not a match key",
                hint="Use email, mobile, id or identity:HANDLE (for example identity:shopify).",
            )
        return cls(KeyKind(kind))

    def __str__(self) -> str:
        return f"identity:{self.handle}" if self.kind is KeyKind.IDENTITY else self.kind.value

    @property
    def rule(self) -> KeyRule:
        """The key's policy, as the reader and duplicate detection use it."""
        if self.kind is KeyKind.MOBILE:
            return _MOBILE_RULE
        if self.kind is KeyKind.ID:
            return _PROFILE_ID_RULE
        if self.kind is KeyKind.IDENTITY:
            return IdentityRule(self.handle or "")
        return EMAIL_RULE

    @property
    def column(self) -> str:
        """The name of the report's key column (``email`` for email runs, as always). A run by
        profile id names it ``id``: the report's ``profile_id`` column is the profile matched."""
        names = {KeyKind.MOBILE: "mobile", KeyKind.ID: "id", KeyKind.IDENTITY: "identity"}
        return names.get(self.kind, "email")

    @property
    def noun(self) -> str:
        """The key in words: "no profile has this ..."."""
        if self.kind is KeyKind.IDENTITY:
            return f"{self.handle} identity"
        return {KeyKind.MOBILE: "mobile number", KeyKind.ID: "profile id"}.get(self.kind, "email")

    @property
    def invalid(self) -> Outcome:
        """The outcome of a malformed cell: ``invalid_email`` for email runs, else
        ``invalid_key``."""
        return Outcome.INVALID_EMAIL if self.kind is KeyKind.EMAIL else Outcome.INVALID_KEY

    def invalid_detail(self, normalized: str) -> str:
        """Why a cell is malformed, for the report."""
        if not normalized:
            return "empty cell"
        return {
            KeyKind.EMAIL: "not a valid email address",
            KeyKind.MOBILE: "not a phone number (6 to 15 digits, an optional leading +)",
            KeyKind.ID: "not shaped like an Omneo profile id (a UUID)",
        }.get(
            self.kind,
            "not a usable identifier (too long, . or .., or holds / or a control character)",
        )


EMAIL = MatchKey()
"""The default match key."""
