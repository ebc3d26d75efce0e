"""Channel expiry: delete registrations not refreshed for `CHANNEL_TTL_DAYS` (contract section 3).

Every registration version journals itself in `channelindex` under `x:YYYY-MM-DD`, the UTC day
of its `expiresAt`, with the user and tags it indexes (see the data model in shared/channels.py).
The prune reads only the journals of days that are due, with one PartitionKey range query
`("x:", "x:<today>"]`, so its cost grows with what expires (plus leftovers to repair), never
with the number of registrations. Days already pruned are empty, so no watermark is kept.

For each due expiry entry E (day D, install `dev`, version v) the registration P is read:

- P is gone: E is the journal of a half-failed delete or of a create that never committed.
  Retire the user and tag entries E lists that still hold v, then delete E.
- P holds v and expires on D: P is expired from its `expiresAt` instant on (one exactly at the
  boundary is pruned). Then it is removed: user and tag entries, then P conditional on the ETag
  read (a refresh racing with the prune wins), then E. One that expires later today is kept, E too.
- Otherwise P is newer (refreshed to a later day, or rewritten with another version) and E is a
  journal whose cleanup failed. Retire E's entries that P does not index and that still hold v
  (after an account switch, the old user's entry), then delete E, conditional on its ETag.

A due journal is never one a write is making: a write journals at now + TTL, a day in the future.

Resumable: each step is idempotent and ordered as writes are (index entries before the
registration, the journal last), so a run cut short (timeout, crash, a storage fault, the work
bound) leaves nothing a send could trip over, and the next run simply redoes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.channels import ChannelStore, expiry_day, expiry_pk, index_pks, recipient_from, tag_pk, user_pk
from shared.errors import ConcurrencyConflict
from shared.tables import Op, Row

log = logging.getLogger(__name__)

EXPIRY_PREFIX = "x:"
# host.json sets functionTimeout to 10 minutes: stop in time to finish the chunk and log.
DEFAULT_TIME_BUDGET_S = 8 * 60.0
# A chunk's journal deletes of one day then fit in one table transaction (at most 100 operations).
CHUNK_SIZE = 100
# Entries settled at once: enough to hide storage latency, few enough not to get throttled.
CONCURRENCY = 16


# ---- pure core ---------------------------------------------------------------------------------

def is_expired(expires_at: datetime, now: datetime) -> bool:
    """A registration is expired from its `expiresAt` instant on: one exactly there is pruned."""
    return expires_at <= now


def due_until(now: datetime) -> str:
    """The last expiry partition that is due (today's, in UTC), inclusive."""
    return expiry_pk(now.astimezone(UTC).date())


def journal_pks(entry: Row) -> list[str]:
    """The user and tag partitions that the version journaled by an expiry entry indexes."""
    r = recipient_from(entry)
    return ([user_pk(r.user_id)] if r.user_id is not None else []) + [tag_pk(t) for t in r.tags]


@dataclass
class PruneResult:
    pruned: int = 0  # expired registrations removed
    repaired: int = 0  # leftover journals cleaned up (their stale index entries retired)
    kept: int = 0  # due today but expiring later today: left for a later run
    refreshed: int = 0  # refreshed while the prune removed it: kept, the refresh won
    examined: int = 0  # expiry entries read
    reads: int = 0  # storage reads (point reads and query pages) of the run
    duration_ms: int = 0
    complete: bool = True  # False when the work bound stopped the run and more entries remain


# ---- the prune -------------------------------------------------------------------------------

async def prune(
    store: ChannelStore,
    now: datetime,
    *,
    max_entries: int | None = None,
    time_budget_s: float | None = DEFAULT_TIME_BUDGET_S,
    chunk_size: int = CHUNK_SIZE,
    concurrency: int = CONCURRENCY,
    page_size: int = 1000,
) -> PruneResult:
    """Settle every expiry entry due at `now`, within the bounds; log one line and return counts.

    `max_entries` bounds the expiry entries examined, `time_budget_s` the wall time (checked
    between chunks). When either stops the run, `complete` is False and the next run continues.
    Storage faults propagate (after the journals of entries already settled are deleted)."""
    if not 1 <= chunk_size <= 100:
        raise ValueError("chunk_size must be 1 to 100 (one transaction per day and chunk)")
    started = time.monotonic()
    deadline = None if time_budget_s is None else started + time_budget_s
    reads_before = store.channels.reads + store.index.reads
    result = PruneResult()
    gate = asyncio.Semaphore(concurrency)

    def room() -> int:
        if max_entries is None:
            return chunk_size
        return min(chunk_size, max_entries - result.examined)

    def out_of_bounds() -> bool:
        return (max_entries is not None and result.examined >= max_entries) or (
            deadline is not None and time.monotonic() >= deadline
        )

    # One range scan over the due days; entries are settled a chunk at a time while it pages on
    # (deleting rows already returned does not disturb a continuation).
    rows = store.index.query(after=EXPIRY_PREFIX, until=due_until(now), page_size=page_size)
    chunk: list[Row] = []
    try:
        async for entry in rows:
            if not chunk and out_of_bounds():
                result.complete = False  # an entry is left: say so, the next run continues
                break
            chunk.append(entry)
            if len(chunk) >= room():
                await _settle_chunk(store, chunk, now, result, gate)
                chunk = []
        if chunk:
            await _settle_chunk(store, chunk, now, result, gate)
    except Exception as exc:
        # The host logs the traceback; this says how far the run got (the next run continues).
        log.warning("expire_channels: stopped by %s after %d due entries (pruned %d, repaired %d)",
                    type(exc).__name__, result.examined, result.pruned, result.repaired)
        raise
    finally:
        await _close(rows)
        result.reads = store.channels.reads + store.index.reads - reads_before
        result.duration_ms = round((time.monotonic() - started) * 1000)

    log.log(
        logging.INFO if result.complete else logging.WARNING,
        "expire_channels: pruned %d, repaired %d, kept %d (%d refreshed meanwhile) of %d due entries "
        "in %d ms, %d reads%s",
        result.pruned, result.repaired, result.kept, result.refreshed, result.examined,
        result.duration_ms, result.reads,
        "" if result.complete else "; stopped at the work bound, more remain for the next run",
    )
    return result


async def _settle_chunk(store: ChannelStore, chunk: list[Row], now: datetime, result: PruneResult,
                        gate: asyncio.Semaphore) -> None:
    async def guarded(entry: Row) -> bool:
        async with gate:
            return await _settle(store, entry, now, result)

    result.examined += len(chunk)
    outcomes = await asyncio.gather(*(guarded(e) for e in chunk), return_exceptions=True)
    # Delete the journals of the entries that were settled even if another one failed, so the
    # next run does not redo them; then let the fault through.
    await _delete_journals(store, [e for e, done in zip(chunk, outcomes, strict=True) if done is True])
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def _settle(store: ChannelStore, entry: Row, now: datetime, result: PruneResult) -> bool:
    """Bring one due expiry entry to its end state; True when the entry itself is to be deleted."""
    device = entry.rk
    version = str(entry.entity.get("version", ""))
    found = await store.get_row(device)
    if found is None:
        await _gather(store.retire(pk, device, version) for pk in journal_pks(entry))
        result.repaired += 1
        return True
    reg, row = found
    if reg.version == version and expiry_pk(expiry_day(reg.expires_at)) == entry.pk:
        if not is_expired(reg.expires_at, now):
            result.kept += 1
            return False
        try:
            await store.remove_keeping_journal(reg, row)
        except ConcurrencyConflict:
            # Refreshed since we read it: the refresh wins and moves (retires) this journal
            # itself; the removal has already written back the entries it had retired.
            result.refreshed += 1
            return False
        result.pruned += 1
        return True
    live = set(index_pks(reg))
    await _gather(store.retire(pk, device, version) for pk in journal_pks(entry) if pk not in live)
    result.repaired += 1
    return True


async def _delete_journals(store: ChannelStore, entries: list[Row]) -> None:
    """Delete settled expiry entries, one transaction per day, each only if unchanged since read."""
    by_day: dict[str, list[Row]] = {}
    for e in entries:
        by_day.setdefault(e.pk, []).append(e)
    for day_entries in by_day.values():
        ops = [Op("delete", {"PartitionKey": e.pk, "RowKey": e.rk}, etag=e.etag) for e in day_entries]
        try:
            await store.index.transact(ops)
        except ConcurrencyConflict:
            # Some entry changed since it was read: delete the others one by one and leave that
            # one to the next run, which reads it again.
            for e in day_entries:
                with contextlib.suppress(ConcurrencyConflict):
                    await store.index.delete(e.pk, e.rk, etag=e.etag)


async def _gather(coros: Iterable[Awaitable[object]]) -> None:
    await asyncio.gather(*coros)


async def _close(rows: AsyncIterator[Row]) -> None:
    # A scan left early holds a pager (and, on Azure, a connection): close it now, not at GC.
    aclose = getattr(rows, "aclose", None)
    if aclose is not None:
        await aclose()


__all__ = ["PruneResult", "due_until", "is_expired", "journal_pks", "prune"]
