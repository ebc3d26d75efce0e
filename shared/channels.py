"""The channel store: registrations and the indexes every audience is read from.

Data model (two tables, both behind the `EntityTable` port):

`channels`      PK = deviceId, RK = "r"                 the registration (the source of truth)
`channelindex`  PK = "u:" + key(userId), RK = deviceId  all installs of a user: one partition query
                PK = "t:" + key(tag),    RK = deviceId  all installs with a tag
                PK = "x:" + YYYY-MM-DD,  RK = deviceId  registrations expiring that day (UTC)

Index entries carry what a send needs (channel URI, user, tags, version), so an audience is read
from one index partition without a point read per recipient. `all` is a paged scan of `channels`.

Writes span partitions and so cannot be atomic. They are ordered so a failure at any step leaves
only leftovers that a retry or the daily prune repairs, and never an entry a send must not follow:

PUT     1. the expiry entry of the new version: it journals which user and tags that version
           indexes, so the prune on that day can find and repair anything left behind;
        2. the user and tag entries;
        3. the registration, conditional on the ETag read (the commit point); it also records
           in `stale` the entries it retires, so the next write retries their removal;
        4. removal of the retired entries (each only if it still holds the retired version).
DELETE  index entries first, then the registration, then its expiry entry (the journal, last).

A refresh that changes nothing but the time (the common case: an app start with an unchanged
channel) keeps the version and moves only the expiry entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from shared.clock import Clock, iso, parse_iso
from shared.errors import ConcurrencyConflict, StorageUnavailable
from shared.keys import encode_key
from shared.models import Registration
from shared.tables import Entity, EntityTable, Row

REG_RK = "r"
_WRITE_ATTEMPTS = 4


def user_pk(user_id: str) -> str:
    return "u:" + encode_key(user_id)


def tag_pk(tag: str) -> str:
    return "t:" + encode_key(tag)


def expiry_pk(day: date) -> str:
    return "x:" + day.isoformat()


def expiry_day(expires_at: datetime) -> date:
    return expires_at.date()


def index_pks(reg: Registration) -> list[str]:
    """Every index partition that holds an entry for this registration; the expiry one first."""
    pks = [expiry_pk(expiry_day(reg.expires_at))]
    if reg.user_id is not None:
        pks.append(user_pk(reg.user_id))
    pks.extend(tag_pk(t) for t in reg.tags)
    return pks


@dataclass(frozen=True)
class Recipient:
    """What a send needs of a registration, as read from the registration or an index entry."""

    device_id: str
    channel_uri: str
    user_id: str | None
    tags: tuple[str, ...]
    version: str


@dataclass(frozen=True)
class Owner:
    """Who is asking: a user id from the platform, or anonymous (None)."""

    user_id: str | None

    def may_access(self, reg: Registration) -> bool:
        # Anonymous registrations are reachable by deviceId alone; a user's only by that user.
        return reg.user_id is None or reg.user_id == self.user_id


def _reg_entity(reg: Registration, stale: list[list[str]]) -> Entity:
    return {
        "PartitionKey": reg.device_id,
        "RowKey": REG_RK,
        "channelUri": reg.channel_uri,
        "userId": reg.user_id or "",
        "hasUser": reg.user_id is not None,
        "tags": json.dumps(list(reg.tags)),
        "registeredAt": iso(reg.registered_at),
        "expiresAt": iso(reg.expires_at),
        "version": reg.version,
        "stale": json.dumps(stale),
    }


def _reg_from(row: Row) -> Registration:
    e = row.entity
    return Registration(
        device_id=str(e["PartitionKey"]),
        channel_uri=str(e["channelUri"]),
        user_id=str(e["userId"]) if e.get("hasUser") else None,
        tags=tuple(json.loads(e.get("tags") or "[]")),
        registered_at=parse_iso(str(e["registeredAt"])),
        expires_at=parse_iso(str(e["expiresAt"])),
        version=str(e["version"]),
    )


def _index_entity(pk: str, reg: Registration) -> Entity:
    return {
        "PartitionKey": pk,
        "RowKey": reg.device_id,
        "channelUri": reg.channel_uri,
        "userId": reg.user_id or "",
        "hasUser": reg.user_id is not None,
        "tags": json.dumps(list(reg.tags)),
        "version": reg.version,
        "expiresAt": iso(reg.expires_at),
    }


def recipient_from(row: Row) -> Recipient:
    """A recipient from a registration row or an index row (they share these properties)."""
    e = row.entity
    device = str(e["PartitionKey"]) if e.get("RowKey") == REG_RK else str(e["RowKey"])
    return Recipient(
        device_id=device,
        channel_uri=str(e["channelUri"]),
        user_id=str(e["userId"]) if e.get("hasUser") else None,
        tags=tuple(json.loads(e.get("tags") or "[]")),
        version=str(e["version"]),
    )


@dataclass(frozen=True)
class PutResult:
    registration: Registration
    created: bool


class ChannelStore:
    """Registrations and their indexes, over two `EntityTable`s."""

    def __init__(self, channels: EntityTable, index: EntityTable, clock: Clock, ttl_days: int) -> None:
        self.channels = channels
        self.index = index
        self.clock = clock
        self.ttl = timedelta(days=ttl_days)

    # ---- reads -------------------------------------------------------------------------------

    async def get_row(self, device_id: str) -> tuple[Registration, Row] | None:
        row = await self.channels.get(device_id, REG_RK)
        return (_reg_from(row), row) if row else None

    async def get(self, device_id: str) -> Registration | None:
        found = await self.get_row(device_id)
        return found[0] if found else None

    async def by_user(self, user_id: str, *, after: str | None = None, page_size: int = 1000
                      ) -> AsyncIterator[Recipient]:
        async for row in self.index.query(partition=user_pk(user_id), after=after, page_size=page_size):
            yield recipient_from(row)

    async def by_tag(self, tag: str, *, after: str | None = None, until: str | None = None,
                     page_size: int = 1000) -> AsyncIterator[Recipient]:
        async for row in self.index.query(partition=tag_pk(tag), after=after, until=until,
                                          page_size=page_size):
            yield recipient_from(row)

    async def all(self, *, after: str | None = None, until: str | None = None, page_size: int = 1000
                  ) -> AsyncIterator[Recipient]:
        """Every registration in deviceId order; `after`/`until` bound a slice for fan-out."""
        async for row in self.channels.query(after=after, until=until, page_size=page_size):
            if row.rk == REG_RK:
                yield recipient_from(row)

    async def expiring_on(self, day: date, *, page_size: int = 1000) -> AsyncIterator[Row]:
        """The expiry entries of one day (rows, so the prune can delete them by ETag)."""
        async for row in self.index.query(partition=expiry_pk(day), page_size=page_size):
            yield row

    # ---- writes ------------------------------------------------------------------------------

    async def put(self, device_id: str, channel_uri: str, user_id: str | None,
                  tags: Iterable[str]) -> PutResult:
        """Create or replace the install's registration (one install, one registration)."""
        tags = tuple(sorted(set(tags)))
        for _ in range(_WRITE_ATTEMPTS):
            try:
                return await self._put_once(device_id, channel_uri, user_id, tags)
            except ConcurrencyConflict:
                continue  # another write of the same install won; read again and redo
        raise StorageUnavailable(f"registration {device_id} kept changing under concurrent writes")

    async def _put_once(self, device_id: str, channel_uri: str, user_id: str | None,
                        tags: tuple[str, ...]) -> PutResult:
        found = await self.get_row(device_id)
        now = self.clock.now()
        old, old_row = found if found else (None, None)
        same_content = (
            old is not None and old.channel_uri == channel_uri and old.user_id == user_id
            and old.tags == tags
        )
        new = Registration(
            device_id=device_id,
            channel_uri=channel_uri,
            user_id=user_id,
            tags=tags,
            registered_at=now,
            expires_at=now + self.ttl,
            version=old.version if (old is not None and same_content) else uuid.uuid4().hex,
        )
        new_pks = index_pks(new)
        # (pk, version) of every index entry to retire: the old version's that the new one lacks,
        # plus what the previous write meant to retire (retried here in case it failed).
        retire: list[list[str]] = []
        if old is not None and old_row is not None:
            retire = [[pk, old.version] for pk in index_pks(old) if pk not in new_pks]
            retire += [s for s in json.loads(old_row.entity.get("stale") or "[]")
                       if s[0] not in new_pks and s not in retire]

        # 1 + 2: the expiry journal first, then user and tag entries (a refresh keeps those).
        await self.index.upsert(_index_entity(new_pks[0], new))
        if not same_content:
            await _gather(self.index.upsert(_index_entity(pk, new)) for pk in new_pks[1:])
        # 3: the commit point.
        entity = _reg_entity(new, retire)
        if old_row is None:
            await self.channels.insert(entity)
        else:
            await self.channels.upsert(entity, etag=old_row.etag)
        # 4: retire what the old version indexed and the new one does not.
        await _gather(self._retire(pk, device_id, version) for pk, version in retire)
        return PutResult(new, created=old is None)

    async def _retire(self, pk: str, device_id: str, version: str) -> None:
        """Delete an index entry only if it still belongs to `version` (a newer write keeps it)."""
        row = await self.index.get(pk, device_id)
        if row is None or row.entity.get("version") != version:
            return
        # A conflict means it was rewritten since we read it: it belongs to a newer write now.
        with contextlib.suppress(ConcurrencyConflict):
            await self.index.delete(pk, device_id, etag=row.etag)

    async def delete(self, device_id: str, owner: Owner) -> bool:
        """Remove the install's registration if `owner` may; True if one was removed."""
        for _ in range(_WRITE_ATTEMPTS):
            found = await self.get_row(device_id)
            if found is None or not owner.may_access(found[0]):
                return False
            try:
                await self.remove(found[0], found[1])
                return True
            except ConcurrencyConflict:
                continue
        raise StorageUnavailable(f"registration {device_id} kept changing under concurrent writes")

    async def remove(self, reg: Registration, row: Row) -> None:
        """Delete a registration read as `row` and everything pointing at it.

        `ConcurrencyConflict` if it changed since it was read (a refresh wins over a removal)."""
        await self.remove_keeping_journal(reg, row)
        await self._retire(index_pks(reg)[0], reg.device_id, reg.version)

    async def remove_version(self, device_id: str, version: str) -> bool:
        """Remove the registration if it still holds `version` (WNS said 404/410 for that channel).

        A registration refreshed since the send read it has a new channel and is kept."""
        found = await self.get_row(device_id)
        if found is None or found[0].version != version:
            return False
        try:
            await self.remove(*found)
        except ConcurrencyConflict:
            return False
        return True

    # ---- for the prune (shared/expiry.py) ----------------------------------------------------

    async def retire(self, pk: str, device_id: str, version: str) -> None:
        """Delete an index entry only if it still holds `version` (the prune repairs leftovers)."""
        await self._retire(pk, device_id, version)

    async def remove_keeping_journal(self, reg: Registration, row: Row) -> None:
        """`remove` without its last step: the caller deletes the expiry entry afterwards (the
        prune deletes a day's journals in one transaction). Same order, same `ConcurrencyConflict`."""
        stale = json.loads(row.entity.get("stale") or "[]")
        await _gather(
            [self._retire(pk, reg.device_id, reg.version) for pk in index_pks(reg)[1:]]
            + [self._retire(pk, reg.device_id, v) for pk, v in stale]
        )
        try:
            await self.channels.delete(reg.device_id, REG_RK, etag=row.etag)
        except ConcurrencyConflict:
            # A refresh won the race after we retired its entries: put them back, then lose.
            await self.restore_index(reg.device_id, reg.version)
            raise

    async def restore_index(self, device_id: str, version: str) -> None:
        """Write back the user and tag entries of the registration if it still holds `version`.

        For a removal that lost its race: a removal retires the index entries before its
        conditional delete of the registration, and a refresh that changes nothing but the time
        keeps the version and rewrites only the expiry entry. If such a refresh commits in
        between, the delete fails and, without this, the live registration would stay
        unreachable by user and tag."""
        found = await self.get_row(device_id)
        if found is None or found[0].version != version:
            return  # gone, or rewritten by a write that wrote its own entries
        reg = found[0]
        pks = index_pks(reg)[1:]
        await _gather(self._insert_missing(_index_entity(pk, reg)) for pk in pks)
        # A write that committed meanwhile may have run its cleanup before we wrote these back:
        # if the registration moved on, take ours out again (each only if it still holds ours).
        again = await self.get(device_id)
        if again is None or again.version != version:
            await _gather(self._retire(pk, device_id, version) for pk in pks)

    async def _insert_missing(self, entity: Entity) -> None:
        # Insert, never replace: an entry that exists holds this version or a newer write's.
        with contextlib.suppress(ConcurrencyConflict):
            await self.index.insert(entity)

    async def close(self) -> None:
        await self.channels.close()
        await self.index.close()


async def _gather(coros: Iterable[Awaitable[object]]) -> None:
    # Index writes of one registration go out together (at most 62: 60 tags, a user, a day).
    await asyncio.gather(*coros)


__all__ = [
    "REG_RK",
    "ChannelStore",
    "Owner",
    "PutResult",
    "Recipient",
    "expiry_pk",
    "index_pks",
    "recipient_from",
    "tag_pk",
    "user_pk",
]
