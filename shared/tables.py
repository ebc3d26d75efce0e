"""The storage port: the few Azure Table operations the product uses, and an in-memory twin.

Everything above this module (the channel store, jobs, the prune) is written against
`EntityTable`, so the same logic and the same contract tests run on the in-memory table and on
Azure Table Storage (Azurite locally). Entities are plain dicts with `PartitionKey`/`RowKey`;
values are str, int, bool or float (lists are stored as JSON strings by the callers).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from shared.errors import ConcurrencyConflict

Entity = dict[str, Any]


@dataclass(frozen=True)
class Row:
    """An entity as read, with the ETag needed for a conditional write."""

    entity: Entity
    etag: str

    @property
    def pk(self) -> str:
        return str(self.entity["PartitionKey"])

    @property
    def rk(self) -> str:
        return str(self.entity["RowKey"])


@dataclass(frozen=True)
class Op:
    """One operation of a single-partition transaction."""

    kind: Literal["upsert", "delete"]
    entity: Entity
    etag: str | None = None


class EntityTable(Protocol):
    name: str
    # Storage requests made, so tests can show what an operation costs.
    reads: int

    async def get(self, pk: str, rk: str) -> Row | None: ...

    async def insert(self, entity: Entity) -> str:
        """Create; `ConcurrencyConflict` if it exists. Returns the new ETag."""
        ...

    async def upsert(self, entity: Entity, *, etag: str | None = None) -> str:
        """Replace or create; with `etag`, only if unchanged (`ConcurrencyConflict` otherwise)."""
        ...

    async def merge(self, entity: Entity, *, etag: str | None = None) -> str:
        """Update the given properties of an existing entity (`ConcurrencyConflict` if gone or changed)."""
        ...

    async def delete(self, pk: str, rk: str, *, etag: str | None = None) -> None:
        """Delete if present (a missing entity is not an error: deletes are repeated safely);
        with `etag`, `ConcurrencyConflict` if the entity changed since it was read."""
        ...

    async def transact(self, ops: Sequence[Op]) -> None:
        """All-or-nothing within one partition, at most 100 operations."""
        ...

    def query(
        self,
        *,
        partition: str | None = None,
        after: str | None = None,
        until: str | None = None,
        page_size: int = 1000,
        select: Sequence[str] | None = None,
    ) -> AsyncIterator[Row]:
        """Rows in key order. With `partition`: that partition, RowKey in (after, until].
        Without: the whole table, PartitionKey in (after, until] (a paged scan)."""
        ...

    async def close(self) -> None: ...


class MemoryTable:
    """An in-memory `EntityTable` with the same semantics, for unit tests and fault injection."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.reads = 0
        self._rows: dict[tuple[str, str], tuple[Entity, str]] = {}
        self._etags = itertools.count(1)

    def _etag(self) -> str:
        return f'W/"{next(self._etags)}"'

    async def get(self, pk: str, rk: str) -> Row | None:
        self.reads += 1
        found = self._rows.get((pk, rk))
        return Row(copy.deepcopy(found[0]), found[1]) if found else None

    async def insert(self, entity: Entity) -> str:
        key = (entity["PartitionKey"], entity["RowKey"])
        if key in self._rows:
            raise ConcurrencyConflict(f"{self.name}: entity exists")
        etag = self._etag()
        self._rows[key] = (copy.deepcopy(entity), etag)
        return etag

    async def upsert(self, entity: Entity, *, etag: str | None = None) -> str:
        key = (entity["PartitionKey"], entity["RowKey"])
        if etag is not None:
            current = self._rows.get(key)
            if current is None or current[1] != etag:
                raise ConcurrencyConflict(f"{self.name}: entity changed")
        new = self._etag()
        self._rows[key] = (copy.deepcopy(entity), new)
        return new

    async def merge(self, entity: Entity, *, etag: str | None = None) -> str:
        key = (entity["PartitionKey"], entity["RowKey"])
        current = self._rows.get(key)
        if current is None or (etag is not None and current[1] != etag):
            raise ConcurrencyConflict(f"{self.name}: entity gone or changed")
        merged = {**current[0], **copy.deepcopy(entity)}
        new = self._etag()
        self._rows[key] = (merged, new)
        return new

    async def delete(self, pk: str, rk: str, *, etag: str | None = None) -> None:
        current = self._rows.get((pk, rk))
        if current is None:
            return
        if etag is not None and current[1] != etag:
            raise ConcurrencyConflict(f"{self.name}: entity changed")
        del self._rows[(pk, rk)]

    async def transact(self, ops: Sequence[Op]) -> None:
        if not ops:
            return
        if len(ops) > 100 or len({op.entity["PartitionKey"] for op in ops}) != 1:
            raise ValueError("a transaction holds 1 to 100 operations on one partition")
        snapshot = dict(self._rows)
        try:
            for op in ops:
                if op.kind == "upsert":
                    await self.upsert(op.entity, etag=op.etag)
                else:
                    await self.delete(op.entity["PartitionKey"], op.entity["RowKey"], etag=op.etag)
        except BaseException:
            self._rows = snapshot
            raise

    async def query(
        self,
        *,
        partition: str | None = None,
        after: str | None = None,
        until: str | None = None,
        page_size: int = 1000,
        select: Sequence[str] | None = None,
    ) -> AsyncIterator[Row]:
        keys = sorted(self._rows)
        if partition is not None:
            keys = [k for k in keys if k[0] == partition]
            pos = 1
        else:
            pos = 0
        keys = [k for k in keys if (after is None or k[pos] > after) and (until is None or k[pos] <= until)]
        for i, key in enumerate(keys):
            if i % page_size == 0:
                self.reads += 1
            if key not in self._rows:  # deleted while we iterate, as a live query could see
                continue
            entity, etag = self._rows[key]
            if select is not None:
                entity = {k: v for k, v in entity.items() if k in select or k in ("PartitionKey", "RowKey")}
            yield Row(copy.deepcopy(entity), etag)

    async def close(self) -> None:
        return None

    def dump(self) -> dict[tuple[str, str], Entity]:
        """Everything stored, for assertions."""
        return {k: copy.deepcopy(v[0]) for k, v in self._rows.items()}
