"""Reading back the profiles of rows a run already resolved, in as few requests as the tenant
allows: to settle a chunk whose request may or may not have landed, a batch the tenant no longer
knows, or a tenant without the batches endpoint.

Each row knows its profile's id and the address it was found by. A run matched by email reads
its rows back in bulk (``filter[email][in]``, a page of addresses per request) while the tenant
honours that filter; where the tenant's pages are fewer than the profiles left to read, it reads
every page instead (matched by id, so any match key gains); and whatever profile those reads did
not show (its address changed, a page boundary moved) is read by id, one ``GET`` each, as every
profile is when nothing cheaper applies. Only a read by id decides that a profile is gone.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from omneo_status.api.client import OmneoClient
from omneo_status.models import Profile
from omneo_status.options import MAX_PAGE_SIZE
from omneo_status.run.resolver import BulkEmailResolver, read_profiles
from omneo_status.store.records import RowRecord

SCAN_FROM = 3
"""Fewer profiles than this are read by id without asking the tenant's size (one request
would cost as much as it could save)."""


class ProfileReader:
    """Reads a run's resolved rows back from the tenant; learns, once per run, whether the
    ``in`` filter is honoured and how many pages the tenant has."""

    def __init__(
        self, client: OmneoClient, *, by_email: bool = False, in_filter: bool | None = None
    ) -> None:
        self.client = client
        self.by_email = by_email
        """Whether the rows' addresses are emails (the run matches by email)."""
        self.in_filter = in_filter
        """Whether the tenant honours ``filter[email][in]`` (None: not known yet)."""
        self.pages: int | None = None
        """How many pages the tenant's profiles fill, once page 1 said so."""
        self.scannable = True
        """False once page 1 did not say how many profiles the tenant has."""

    async def read(self, rows: Sequence[RowRecord]) -> list[Profile | None]:
        """Each row's profile as it is now (None when the tenant no longer has it), in order."""
        ids = [row.profile_id or "" for row in rows]
        found: dict[str, Profile] = {}
        if self.by_email and self.in_filter is not False and len(set(ids)) > 1:
            found = await self._in_bulk(rows)
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        if (
            self.scannable
            and len(missing) >= SCAN_FROM
            and (self.pages is None or self.pages < len(missing))
        ):
            found.update(await self._scan(set(missing)))
            missing = [i for i in missing if i not in found]
        by_id = dict(zip(missing, await read_profiles(self.client, missing), strict=True))
        return [found.get(i) or by_id.get(i) for i in ids]

    async def _in_bulk(self, rows: Sequence[RowRecord]) -> dict[str, Profile]:
        """The rows' profiles listed by ``filter[email][in]`` lookups of their addresses;
        the first group tells whether the tenant honours the filter (then the rest go out
        together)."""
        wanted = {row.profile_id for row in rows}
        bulk = BulkEmailResolver(self.client)
        groups = bulk.fit(
            [address for address in dict.fromkeys(r.address for r in rows) if address]
        )
        if not groups:
            return {}
        first = await bulk.try_group(groups[0])
        self.in_filter = first is not None
        if first is None:
            return {}
        answers = [first, *await asyncio.gather(*(bulk.try_group(g) for g in groups[1:]))]
        return {
            profile.id: profile
            for matches in answers
            for match in matches or ()
            for profile in match.profiles
            if profile.id in wanted
        }

    async def _scan(self, wanted: set[str]) -> dict[str, Profile]:
        """The wanted profiles found on the tenant's pages, when its pages are fewer than the
        profiles to read (page 1 tells); none past page 1 when page 2 is not the one asked
        for."""
        first = await self.client.tenant_page(1, MAX_PAGE_SIZE)
        found = {p.id: p for p in first.profiles if p.id in wanted}
        size = first.size or len(first.profiles) or MAX_PAGE_SIZE
        if first.total is None:
            self.scannable = False
            return found
        self.pages = max(1, math.ceil(first.total / size))
        if self.pages - 1 >= len(wanted) - len(found):
            return found  # the rest read by id cost no more than the other pages
        second = await self.client.tenant_page(2, size)
        if second.number is not None and second.number != 2:
            return found  # the tenant ignores this pagination dialect: the rest are read by id
        rest = await asyncio.gather(
            *(self.client.tenant_page(n, size) for n in range(3, self.pages + 1))
        )
        for page in (second, *rest):
            found.update((p.id, p) for p in page.profiles if p.id in wanted)
        return found
