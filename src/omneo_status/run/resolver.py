"""Turning input keys into profiles.

A ``Resolver`` answers a group of keys with one ``Match`` per key. It never touches the journal
and never decides what to send. Emails resolve one by one (``filter[email]``) or in groups
(``filter[email][in]``); an undo run's rows resolve by profile id. The other match keys
(``--match``) are one class each: mobile numbers (``filter[mobile_phone]``), profile ids,
and identities (``GET /v3/profiles/{identifier}?identity[handle]=H``).

Matching is exact under the key's policy (``inputs.email_key``, ``keys.normalize_mobile``, an
identity's exact identifier): a profile the API returns whose key differs never counts. An answer
that lists such strangers shows that the tenant ignored the filter; nothing is guessed from it.

An email filter that compares case-sensitively lists only the profiles holding an address in the
case asked for, so a profile holding it in another case goes unseen. The email resolvers learn
how the tenant compares from their answers (``EmailCase``) and mark a match found through a
change of case (``Match.case_changed``); the planner decides what that costs the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Protocol
from urllib.parse import quote

from omneo_status.api.client import OmneoClient
from omneo_status.errors import BadResponse, NotFoundError, ValidationFailed
from omneo_status.inputs import email_key, lookup_forms, normalize_email
from omneo_status.keys import KeyKind, MatchKey, normalize_mobile
from omneo_status.models import Profile
from omneo_status.options import MAX_PAGE_SIZE
from omneo_status.run.decide import Match

ROW_LEVEL_ERRORS = (ValidationFailed, NotFoundError, BadResponse)
"""API errors that fail the rows being looked up rather than the whole run."""

BULK_GROUP = MAX_PAGE_SIZE
"""Addresses per bulk lookup: as many as a page holds, URL length permitting (``URL_MAX``)."""

URL_MAX = 4000
"""The longest lookup URL sent: under the 4 KB that some servers and proxies accept."""

_IN_FILTER = "filter[email][in]"

SINGLE_MAX_PROFILES = 50
"""More profiles than this for one address means the filter was ignored: stop reading."""


class Resolver(Protocol):
    """Resolves keys of one kind to profiles."""

    key_name: str
    """What the key is, for explanations ("no profile has this email")."""
    group_size: int
    """How many keys one ``resolve`` call is best given."""

    async def resolve(self, keys: Sequence[str]) -> list[Match]:
        """One ``Match`` per key, in order. Fatal API errors propagate."""
        ...


class FilterIgnored(Exception):
    """The tenant's answer lists profiles the filter should have excluded."""


class EmailCase:
    """How the tenant's ``filter[email]`` compares case, as far as the run knows: shared by the
    planner and the email resolvers, which learn it from their answers."""

    def __init__(self, sensitive: bool | None = None, shown_by: str = "") -> None:
        self.sensitive = sensitive
        """True: case-sensitively; False: ignoring case; None: not known yet."""
        self.shown_by = shown_by
        """What showed it, as a warning names it ("doctor, 2026-01-31")."""

    def learn(self, sensitive: bool, shown_by: str) -> None:
        """Keep what an answer proved (the first proof stands)."""
        if self.sensitive is None:
            self.sensitive, self.shown_by = sensitive, shown_by


class SingleEmailResolver:
    """One ``GET /v3/profiles?filter[email]=...`` per address (and per form of it).

    The address is looked up as written, then in lower case if nothing was found; on a tenant
    known to compare case-sensitively, in both forms always (a profile may hold each).
    """

    key_name = "email"
    group_size = 1

    def __init__(self, client: OmneoClient, case: EmailCase | None = None) -> None:
        self.client = client
        self.case = case or EmailCase()

    async def resolve(self, keys: Sequence[str]) -> list[Match]:
        """Each address's exact matches; a lookup the tenant answered wrongly is an error."""
        return [await self._one(address) for address in keys]

    async def _one(self, address: str) -> Match:
        key = email_key(address)
        forms = lookup_forms(address)
        found: dict[str, Profile] = {}
        try:
            for form in forms:
                listed = await self.client.find_profiles(
                    {"filter[email]": form}, max_profiles=SINGLE_MAX_PROFILES
                )
                profiles = _exact(listed.profiles, {key}).get(key, [])
                self._learn(form, forms[0], profiles, found_before=bool(found))
                found.update((p.id, p) for p in profiles if p.id not in found)
                if found and self.case.sensitive is not True:
                    break
        except FilterIgnored:
            return Match(
                error="the API answered filter[email] with profiles of other addresses,"
                " so this address could not be looked up safely"
            )
        except ROW_LEVEL_ERRORS as exc:
            return Match(error=exc.message)
        return _match(found.values(), forms[0])

    def _learn(
        self, form: str, written: str, profiles: Sequence[Profile], *, found_before: bool
    ) -> None:
        """What an answer for ``form`` proves about the tenant's case rule, if anything."""
        other = next((p for p in profiles if _exact_form(p) != form), None)
        if other is not None:
            self.case.learn(False, f"filter[email]={form} listed {other.email}")
        elif profiles and form != written and not found_before:
            self.case.learn(True, f"{written} was found only as {form}")

    async def learn_case(self, address: str) -> None:
        """After a lookup found the profile of ``address`` only in another case: one lookup of
        the address exactly as written tells how the tenant compares (found again: ignoring
        case; not found: case-sensitively). An answer that tells nothing leaves it unknown."""
        written = normalize_email(address)
        key = email_key(address)
        try:
            listed = await self.client.find_profiles(
                {"filter[email]": written}, max_profiles=SINGLE_MAX_PROFILES
            )
            profiles = _exact(listed.profiles, {key}).get(key, [])
        except (FilterIgnored, *ROW_LEVEL_ERRORS):
            return
        if profiles:
            self._learn(written, written, profiles, found_before=True)
        else:
            self.case.learn(True, f"{written} was found only in another case")


class BulkEmailResolver:
    """One ``GET /v3/profiles?filter[email][in]=...`` per group of addresses.

    A group is as large as ``group_size`` (a page) and as its URL allows (``URL_MAX``); a
    group whose answer spans pages is read page by page. A group whose answer shows the filter
    ignored is looked up one by one instead.
    """

    key_name = "email"

    def __init__(
        self, client: OmneoClient, group_size: int = BULK_GROUP, case: EmailCase | None = None
    ) -> None:
        self.client = client
        self.group_size = max(1, group_size)
        self.single = SingleEmailResolver(client, case)
        self.case = self.single.case

    async def resolve(self, keys: Sequence[str]) -> list[Match]:
        """Each address's exact matches, from one request per group when the tenant honours
        the filter."""
        matches: list[Match] = []
        for group in self.fit(keys):
            found = await self.try_group(group)
            matches.extend(found if found is not None else await self.single.resolve(group))
        return matches

    def fit(self, keys: Sequence[str]) -> list[list[str]]:
        """``keys`` cut, in order, into groups of at most ``group_size`` addresses whose
        lookup URL stays within ``URL_MAX`` (an address too long to share a URL goes alone)."""
        fixed = len(
            self.client.url("/profiles", {_IN_FILTER: "", **self.client.page_style.params(99999)})
        )
        groups: list[list[str]] = []
        group: list[str] = []
        length = fixed
        for address in keys:
            # quote() is an upper bound of the query encoding; 3 more for the %2C separator.
            cost = sum(len(quote(form, safe="")) + 3 for form in lookup_forms(address))
            if group and (len(group) >= self.group_size or length + cost > URL_MAX):
                groups.append(group)
                group, length = [], fixed
            group.append(address)
            length += cost
        if group:
            groups.append(group)
        return groups

    async def try_group(self, keys: Sequence[str]) -> list[Match] | None:
        """The group's matches, or None when the answer shows the filter was not honoured
        (seen on its first page, so a tenant ignoring it costs one request)."""
        wanted = {email_key(address) for address in keys}
        forms = list(dict.fromkeys(form for address in keys for form in lookup_forms(address)))
        filters = {_IN_FILTER: ",".join(forms)}
        limit = 3 * len(wanted)
        try:
            first = await self.client.profiles_page(filters)
            matches = _exact(first.profiles, wanted)
            if first.has_next:
                listed = await self.client.find_profiles(filters, max_profiles=limit)
                if not listed.complete or (listed.total is not None and listed.total > limit):
                    return None
                matches = _exact(listed.profiles, wanted)
        except (FilterIgnored, *ROW_LEVEL_ERRORS):
            return None
        sent = set(forms)
        other = next(
            (p for found in matches.values() for p in found if _exact_form(p) not in sent), None
        )
        if other is not None:  # listed though no form asked for it as written: case was ignored
            self.case.learn(False, f"filter[email][in] listed {other.email}")
        return [
            _match(matches.get(email_key(address), ()), normalize_email(address))
            for address in keys
        ]


class ProfileIdResolver:
    """Profiles by id (``GET /v3/profiles/{id}``): the rows of an undo run."""

    key_name = "profile id"
    group_size = 1

    def __init__(self, client: OmneoClient) -> None:
        self.client = client

    async def resolve(self, keys: Sequence[str]) -> list[Match]:
        """The profile with each id (none when the tenant no longer has it)."""
        matches: list[Match] = []
        for profile_id in keys:
            try:
                profile = await self.client.get_profile(profile_id)
            except ROW_LEVEL_ERRORS as exc:
                matches.append(Match(error=exc.message))
                continue
            matches.append(Match((profile,) if profile is not None else ()))
        return matches


class MobileResolver:
    """One ``GET /v3/profiles?filter[mobile_phone]=...`` per number (normalised by
    ``keys.normalize_mobile``); every profile listed must have that number, or none counts."""

    key_name = "mobile number"
    group_size = 1

    def __init__(self, client: OmneoClient) -> None:
        self.client = client

    async def resolve(self, keys: Sequence[str]) -> list[Match]:
        """Each number's exact matches; a lookup the tenant answered wrongly is an error."""
        return [await self._one(number) for number in keys]

    async def _one(self, number: str) -> Match:
        wanted = normalize_mobile(number)
        try:
            listed = await self.client.find_profiles(
                {"filter[mobile_phone]": wanted}, max_profiles=SINGLE_MAX_PROFILES
            )
        except ROW_LEVEL_ERRORS as exc:
            return Match(error=exc.message)
        strangers = [p for p in listed.profiles if normalize_mobile(p.mobile_phone or "") != wanted]
        if strangers or not listed.complete:
            return Match(
                error="the API answered filter[mobile_phone] with profiles of other numbers,"
                " so this number could not be looked up safely"
            )
        return Match(tuple(listed.profiles))


class IdentityResolver:
    """One ``GET /v3/profiles/{identifier}?identity[handle]=HANDLE`` per identifier; 404 is
    no profile. A profile whose identities do not list this one exactly never counts."""

    group_size = 1

    def __init__(self, client: OmneoClient, handle: str) -> None:
        self.client = client
        self.handle = handle
        self.key_name = f"{handle} identity"

    async def resolve(self, keys: Sequence[str]) -> list[Match]:
        """The profile with each identifier (none when the tenant has none)."""
        return [await self._one(identifier) for identifier in keys]

    async def _one(self, identifier: str) -> Match:
        try:
            profile = await self.client.get_profile(
                identifier, params={"identity[handle]": self.handle}
            )
        except ROW_LEVEL_ERRORS as exc:
            return Match(error=exc.message)
        if profile is None:
            return Match()
        if profile.identities is not None and not profile.has_identity(self.handle, identifier):
            return Match(
                error=f"the API answered with profile {profile.id}, which does not list this"
                f" {self.handle} identity, so it was not trusted"
            )
        return Match((profile,))


def key_resolver(match: MatchKey, client: OmneoClient) -> Resolver | None:
    """The resolver of a match key other than email (None for email: the engine picks single
    or bulk lookups by what the tenant honours)."""
    if match.kind is KeyKind.MOBILE:
        return MobileResolver(client)
    if match.kind is KeyKind.ID:
        return ProfileIdResolver(client)
    if match.kind is KeyKind.IDENTITY:
        return IdentityResolver(client, match.handle or "")
    return None


async def read_profiles(client: OmneoClient, ids: Sequence[str]) -> list[Profile | None]:
    """Each profile as it is now (None when gone), read concurrently (the governor paces)."""
    return list(await asyncio.gather(*(client.get_profile(i) for i in ids)))


def _exact_form(profile: Profile) -> str:
    """The profile's address as a case-sensitive filter compares it (normalised, case kept)."""
    return normalize_email(profile.email or "")


def _match(profiles: Iterable[Profile], written: str) -> Match:
    """The match of the profiles found for an address written as ``written``."""
    found = tuple(profiles)
    return Match(found, case_changed=any(_exact_form(p) != written for p in found))


def _exact(profiles: Sequence[Profile], wanted: set[str]) -> dict[str, list[Profile]]:
    """The listed profiles by key; raises ``FilterIgnored`` if one has a key not asked for."""
    by_key: dict[str, list[Profile]] = {}
    for profile in profiles:
        key = email_key(profile.email or "")
        if key not in wanted:
            raise FilterIgnored(key)
        by_key.setdefault(key, []).append(profile)
    return by_key
