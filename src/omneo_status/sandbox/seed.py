"""Ways to fill a sandbox tenant: a seed file, a generated crowd, or the packaged demo.

A seed file is JSON::

    {"statuses": [{"handle": "vip", "name": "VIP", "id"?: 1, "sort_order"?: 0,
                   "description"?: null, "group_handle"?: null, "group_name"?: null,
                   "period"?: null, "period_type"?: null, "absolute_expiry"?: null}],
     "profiles": [{"email": "ava@example.com", "id"?: "<uuid4>", "first_name"?: "",
                   "last_name"?: "", "statuses"?: ["vip"], "tags"?: [],
                   "mobile_phone"?: "+61412000001",
                   "identities"?: [{"handle": "shopify", "identifier": "7210000000001"}]}]}

Profile ids left out are generated deterministically (the same file always gives the same
ids); a profile may only hold handles the file defines, and an identity (handle and identifier)
belongs to one profile at most.
"""

from __future__ import annotations

import gc
import json
import random
from importlib import resources
from pathlib import Path
from typing import Any

from omneo_status.sandbox.state import SandboxProfile, Tenant, uuid4_from_int

#: The statuses every generated tenant defines, as ``(handle, name)``.
GENERATED_STATUSES = (
    ("vip", "VIP"),
    ("staff", "Staff"),
    ("influencer", "Influencer"),
    ("media", "Media"),
    ("gold", "Gold"),
)
_OTHER_HANDLES = ("staff", "influencer", "media", "gold")
_FIRST_NAMES = ("Ava", "Ben", "Chloe", "Dan", "Ella", "Finn", "Grace", "Henry", "Isla", "Jack")
_LAST_NAMES = ("Nguyen", "Carter", "Martin", "Lee", "Brown", "Wilson", "Hall", "King", "Wright")


class SeedError(Exception):
    """A seed that cannot be read or does not describe a tenant; ``str()`` is one line."""


def load_seed(path: Path) -> Tenant:
    """Read a seed file into a new tenant, or raise :class:`SeedError` saying what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SeedError(f"seed file not found: {path}") from None
    except UnicodeDecodeError:
        raise SeedError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise SeedError(f"cannot read seed file {path}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise SeedError(f"{path}: not valid JSON ({where}: {error.msg})") from None
    try:
        return tenant_from_seed(data)
    except SeedError as error:
        raise SeedError(f"{path}: {error}") from None


def tenant_from_seed(data: dict[str, Any]) -> Tenant:
    """Build a tenant from a parsed seed document, or raise :class:`SeedError`."""
    if not isinstance(data, dict):
        raise SeedError("a seed must be a JSON object with 'statuses' and 'profiles' lists")
    tenant = Tenant()
    for i, entry in enumerate(_list_field(data, "statuses")):
        _add_status(tenant, f"statuses[{i}]", entry)
    for i, entry in enumerate(_list_field(data, "profiles")):
        _add_profile(tenant, f"profiles[{i}]", entry)
    return tenant


def _list_field(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise SeedError(f"'{key}' must be a list")
    return value


def _object(where: str, entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise SeedError(f"{where} must be an object")
    return entry


def _string(where: str, entry: dict[str, Any], key: str, *, default: str | None = None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        kind = "a string" if default is not None else "a non-empty string"
        raise SeedError(f"{where}.{key} must be {kind}")
    return value


def _optional_int(where: str, entry: dict[str, Any], key: str) -> int | None:
    value = entry.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise SeedError(f"{where}.{key} must be an integer")
    return value


def _strings(where: str, entry: dict[str, Any], key: str) -> list[str]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SeedError(f"{where}.{key} must be a list of strings")
    return value


def _optional_string(where: str, entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise SeedError(f"{where}.{key} must be a string or null")
    return value


def _add_status(tenant: Tenant, where: str, raw: Any) -> None:
    entry = _object(where, raw)
    handle = _string(where, entry, "handle")
    try:
        tenant.add_status(
            handle,
            _string(where, entry, "name", default=handle),
            id=_optional_int(where, entry, "id"),
            sort_order=_optional_int(where, entry, "sort_order"),
            description=_optional_string(where, entry, "description"),
            group_handle=_optional_string(where, entry, "group_handle"),
            group_name=_optional_string(where, entry, "group_name"),
            period=_optional_int(where, entry, "period"),
            period_type=_optional_string(where, entry, "period_type"),
            absolute_expiry=_optional_string(where, entry, "absolute_expiry"),
        )
    except ValueError as error:
        raise SeedError(f"{where}: {error}") from None


def _add_profile(tenant: Tenant, where: str, raw: Any) -> None:
    entry = _object(where, raw)
    profile_id = entry.get("id")
    if profile_id is not None:
        profile_id = _string(where, entry, "id")
    try:
        tenant.add_profile(
            _string(where, entry, "email"),
            statuses=_strings(where, entry, "statuses"),
            id=profile_id,
            first_name=_string(where, entry, "first_name", default=""),
            last_name=_string(where, entry, "last_name", default=""),
            tags=_strings(where, entry, "tags"),
            mobile_phone=_optional_string(where, entry, "mobile_phone"),
            identities=_identities(where, entry),
        )
    except ValueError as error:
        raise SeedError(f"{where}: {error}") from None


def _identities(where: str, entry: dict[str, Any]) -> list[tuple[str, str]]:
    value = entry.get("identities", [])
    if not isinstance(value, list):
        raise SeedError(f"{where}.identities must be a list")
    pairs = []
    for i, raw in enumerate(value):
        item = _object(f"{where}.identities[{i}]", raw)
        pairs.append(
            (
                _string(f"{where}.identities[{i}]", item, "handle"),
                _string(f"{where}.identities[{i}]", item, "identifier"),
            )
        )
    return pairs


def generate_tenant(n: int, seed: int = 0) -> Tenant:
    """A tenant of ``n`` profiles ``customer{i}@example.com``, the same for the same ``seed``.

    It defines vip, staff, influencer, media and gold. Ids come from ``random.Random(seed)``
    (``uuid.UUID(int=rng.getrandbits(128), version=4)``); about 10% of profiles hold ``vip``
    and about 20% hold one of the other statuses.
    """
    if n < 0:
        raise ValueError("n must not be negative")
    tenant = Tenant()
    for handle, name in GENERATED_STATUSES:
        tenant.add_status(handle, name)
    # Millions of new containers would otherwise set off many collections that free nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _generate_profiles(tenant, n, random.Random(seed))
    finally:
        if gc_was_enabled:
            gc.enable()
    tenant.reserve_seq(n + 1)
    return tenant


def _generate_profiles(tenant: Tenant, n: int, rng: random.Random) -> None:
    getrandbits, draw = rng.getrandbits, rng.random
    profiles, index = tenant.profiles, tenant.email_index
    first_names, last_names = _FIRST_NAMES, _LAST_NAMES
    for i in range(1, n + 1):
        profile_id = uuid4_from_int(getrandbits(128))
        roll = draw()
        if roll < 0.1:
            statuses = ["vip"]
        elif roll < 0.3:
            statuses = [_OTHER_HANDLES[min(int((roll - 0.1) * 20), 3)]]
        else:
            statuses = []
        email = f"customer{i}@example.com"
        # Inserted directly, not through add_profile: a million profiles must take seconds.
        profiles[profile_id] = SandboxProfile(
            profile_id,
            email,
            first_names[i % len(first_names)],
            last_names[i % len(last_names)],
            statuses,
            [],
            None,
            i,
        )
        index[email] = [profile_id]


def add_case_twins(tenant: Tenant, pairs: int) -> list[tuple[SandboxProfile, SandboxProfile]]:
    """Add ``pairs`` case twins to ``tenant``: two profiles holding one address in two cases,
    ``Twin{i}@Example.com`` and ``twin{i}@example.com`` for i from 0. A tenant that compares
    emails ignoring case lists both for either; a case-sensitive one lists only the one asked
    for. Returns the pairs added."""
    if pairs < 0:
        raise ValueError("pairs must not be negative")
    return [
        (tenant.add_profile(f"Twin{i}@Example.com"), tenant.add_profile(f"twin{i}@example.com"))
        for i in range(pairs)
    ]


def demo_tenant() -> Tenant:
    """The packaged demo tenant (``demo_tenant.json``) the ``--sandbox`` quick start uses."""
    text = resources.files("omneo_status.sandbox").joinpath("demo_tenant.json").read_text("utf-8")
    return tenant_from_seed(json.loads(text))
