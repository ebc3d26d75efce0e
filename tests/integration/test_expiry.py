"""The prune (`shared.expiry` and the `expire_channels` timer) on the in-memory tables and on Azurite.

Registrations are written with the store's clock set in the past, then pruned at `NOW`. After
every prune the whole index is checked against the registrations that remain: each entry belongs
to a live registration's current version, and each live registration has all of its entries.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

import expire_channels
from shared import runtime
from shared.channels import ChannelStore, Owner, index_pks
from shared.clock import FixedClock, SystemClock
from shared.errors import StorageUnavailable
from shared.expiry import prune
from shared.models import Registration
from shared.tables import EntityTable
from tests.support.stores import azurite_store, memory_store

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
URI = "https://cloud.notify.windows.com/?token={}"


def dev(name: str) -> str:
    return f"device-{name:0>12}"


async def make_store(kind: str, request: pytest.FixtureRequest, suffix: str) -> ChannelStore:
    clock = FixedClock(NOW)
    if kind == "memory":
        return memory_store(clock)
    return azurite_store(request.getfixturevalue("azurite_conn"), suffix, clock)


@pytest.fixture(params=["memory", "azurite"])
async def store(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[ChannelStore]:
    s = await make_store(request.param, request, unique)
    yield s
    await s.close()


# ---- helpers ---------------------------------------------------------------------------------

class Faulty:
    """Wraps a table. Before each write, `before(op, pk, rk)` runs (to slip in a concurrent
    write); a write for which `fail(op, pk, rk)` is true raises StorageUnavailable instead."""

    WRITES = ("upsert", "insert", "delete", "merge", "transact")

    def __init__(self, inner: EntityTable,
                 fail: Callable[[str, str, str | None], bool] | None = None,
                 before: Callable[[str, str, str | None], Awaitable[None]] | None = None) -> None:
        self._inner = inner
        self.fail = fail
        self.before = before

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self.WRITES:
            return attr

        async def write(*args: Any, **kwargs: Any) -> Any:
            if name == "delete":
                pk, rk = str(args[0]), str(args[1])
            elif name == "transact":
                pk, rk = str(args[0][0].entity["PartitionKey"]), None
            else:
                pk, rk = str(args[0]["PartitionKey"]), str(args[0]["RowKey"])
            if self.before is not None:
                await self.before(name, pk, rk)
            if self.fail is not None and self.fail(name, pk, rk):
                raise StorageUnavailable("injected fault")
            return await attr(*args, **kwargs)

        return write


def faulty(store: ChannelStore, fail: Callable[[str, str, str | None], bool]) -> ChannelStore:
    return ChannelStore(Faulty(store.channels, fail), Faulty(store.index, fail),  # type: ignore[arg-type]
                        store.clock, store.ttl.days)


async def put_at(store: ChannelStore, when: datetime, device: str, user: str | None, tags: list[str],
                 uri: int = 1) -> None:
    store.clock.set(when)  # type: ignore[attr-defined]
    await store.put(device, URI.format(uri), user, tags)


async def put_failing(store: ChannelStore, fail: Callable[[str, str, str | None], bool], when: datetime,
                      device: str, user: str | None, tags: list[str], uri: int = 1) -> None:
    """A write that fails half-way and that the app never retries."""
    with pytest.raises(StorageUnavailable):
        await put_at(faulty(store, fail), when, device, user, tags, uri)


async def devices(it: AsyncIterator[Any]) -> list[str]:
    return sorted([r.device_id async for r in it])


async def registrations(store: ChannelStore) -> dict[str, Registration]:
    out = {}
    async for r in store.all():
        reg = await store.get(r.device_id)
        assert reg is not None
        out[r.device_id] = reg
    return out


async def assert_consistent(store: ChannelStore) -> dict[str, Registration]:
    """The index holds exactly the entries of the live registrations' current versions."""
    regs = await registrations(store)
    expected = {(pk, d): reg.version for d, reg in regs.items() for pk in index_pks(reg)}
    actual = {(row.pk, row.rk): row.entity["version"] async for row in store.index.query()}
    assert actual == expected
    return regs


async def dangling(store: ChannelStore) -> set[tuple[str, str]]:
    """User and tag entries whose registration is gone (a send could follow them)."""
    regs = await registrations(store)
    return {(row.pk, row.rk) async for row in store.index.query() if not row.pk.startswith("x:")
            and row.rk not in regs}


async def dump(store: ChannelStore) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for label, table in (("channels", store.channels), ("index", store.index)):
        async for row in table.query():
            out[(label, row.pk, row.rk)] = dict(row.entity)
    return out


async def clone(src: ChannelStore, dst: ChannelStore) -> None:
    for s, d in ((src.channels, dst.channels), (src.index, dst.index)):
        async for row in s.query():
            await d.upsert(dict(row.entity))


def deletes_in(prefix: str) -> Callable[[str, str, str | None], bool]:
    return lambda op, pk, rk: op == "delete" and pk.startswith(prefix)


def every(op: str) -> Callable[[str, str, str | None], bool]:
    return lambda o, pk, rk: o == op


# ---- registrations of many ages ----------------------------------------------------------------

AGES = [  # (name, age at NOW, user, tags, kept)
    ("fresh", timedelta(0), "alice", ["news"], True),
    ("ten-days", 10 * DAY, "alice", ["news", "lang:fr"], True),
    ("29-days", 29 * DAY, None, ["sport"], True),
    ("later-today", 30 * DAY - timedelta(hours=1), "bob", ["news"], True),  # expires 13:00 today
    ("one-ms-left", 30 * DAY - timedelta(milliseconds=1), "bob", [], True),
    ("boundary", 30 * DAY, "carol", ["news"], False),  # expiresAt == NOW: pruned
    ("earlier-today", 30 * DAY + timedelta(hours=1), None, ["news"], False),
    ("31-days", 31 * DAY, "alice", ["sport", "news"], False),
    ("45-days", 45 * DAY, "dave", [], False),
    ("90-days", 90 * DAY, None, [], False),
]


async def test_exactly_the_registrations_past_the_ttl_go(store: ChannelStore) -> None:
    for name, age, user, tags, _ in AGES:
        await put_at(store, NOW - age, dev(name), user, tags)
    # Registered 40 days ago, refreshed a moment ago (unchanged, or as another user).
    await put_at(store, NOW - 40 * DAY, dev("refreshed"), "erin", ["news"])
    await put_at(store, NOW - timedelta(minutes=1), dev("refreshed"), "erin", ["news"])
    await put_at(store, NOW - 40 * DAY, dev("switched"), "alice", ["news", "old"])
    await put_at(store, NOW - 5 * DAY, dev("switched"), "frank", ["news"], uri=2)

    result = await prune(store, NOW)

    kept = {dev(a[0]) for a in AGES if a[4]} | {dev("refreshed"), dev("switched")}
    assert (result.pruned, result.repaired, result.kept, result.refreshed) == (5, 0, 2, 0)
    assert result.complete and result.examined == 7
    regs = await assert_consistent(store)
    assert set(regs) == kept
    assert await devices(store.all()) == sorted(kept)
    for name, *_ in AGES:
        assert (await store.get(dev(name)) is not None) == (dev(name) in kept)
    assert await devices(store.by_user("alice")) == [dev("fresh"), dev("ten-days")]
    assert await devices(store.by_user("carol")) == []
    assert await devices(store.by_user("frank")) == [dev("switched")]
    assert await devices(store.by_tag("news")) == sorted(
        dev(n) for n in ("fresh", "ten-days", "later-today", "refreshed", "switched"))
    assert await devices(store.by_tag("old")) == []

    # Again at once: nothing more to do, only today's not yet expired entries are read again.
    again = await prune(store, NOW)
    assert (again.pruned, again.repaired, again.kept, again.examined) == (0, 0, 2, 2)
    # Later today those two expire as well.
    later = await prune(store, NOW + timedelta(hours=1))
    assert (later.pruned, later.kept) == (2, 0)
    assert set(await assert_consistent(store)) == kept - {dev("later-today"), dev("one-ms-left")}


# ---- a refresh racing with the prune ---------------------------------------------------------------

@pytest.mark.parametrize("refresh", ["unchanged", "account-switch"])
async def test_a_refresh_racing_with_the_prune_keeps_the_registration(
        store: ChannelStore, refresh: str) -> None:
    d = dev("racer")
    await put_at(store, NOW - 31 * DAY, d, "alice", ["news", "sport"])
    refresher = ChannelStore(store.channels, store.index, FixedClock(NOW), 30)
    done: list[bool] = []

    async def refresh_first(op: str, pk: str, rk: str | None) -> None:
        # The app starts and registers right before the prune deletes the registration it read
        # (the prune has already retired the index entries at this point).
        if op == "delete" and pk == d and not done:
            done.append(True)
            if refresh == "unchanged":
                await refresher.put(d, URI.format(1), "alice", ["news", "sport"])
            else:
                await refresher.put(d, URI.format(2), "bob", ["news"])

    racing = ChannelStore(Faulty(store.channels, before=refresh_first), store.index,  # type: ignore[arg-type]
                          store.clock, 30)
    result = await prune(racing, NOW)

    assert done and (result.pruned, result.refreshed) == (0, 1)
    regs = await assert_consistent(store)  # the refreshed registration has all of its entries
    assert list(regs) == [d] and regs[d].expires_at == NOW + 30 * DAY
    user = "alice" if refresh == "unchanged" else "bob"
    assert await devices(store.by_user(user)) == [d]
    assert await devices(store.by_tag("news")) == [d]
    if refresh == "account-switch":
        assert await devices(store.by_user("alice")) == []
        assert await devices(store.by_tag("sport")) == []


# ---- leftovers of half-failed writes ---------------------------------------------------------------

async def test_leftovers_of_half_failed_writes_are_repaired(store: ChannelStore) -> None:
    # A sign-out whose last step (the expiry journal) failed: only the journal is left.
    await put_at(store, NOW - 40 * DAY, dev("signed-out"), "gina", ["news"])
    with pytest.raises(StorageUnavailable):
        await faulty(store, deletes_in("x:")).delete(dev("signed-out"), Owner("gina"))
    # A first registration that never committed: its journal and its user and tag entries.
    await put_failing(store, every("insert"), NOW - 40 * DAY, dev("never-made"), "hal", ["news"])
    # An account switch whose cleanup failed: the old user's entries are still there.
    await put_at(store, NOW - 40 * DAY, dev("switched"), "alice", ["news", "old"])
    await put_failing(store, every("delete"), NOW - 5 * DAY, dev("switched"), "bob", ["news", "new"], uri=2)
    # A refresh (same version) whose move of the expiry journal failed: the old journal is left.
    await put_at(store, NOW - 40 * DAY, dev("moved"), "ivy", ["news"])
    await put_failing(store, every("delete"), NOW - 5 * DAY, dev("moved"), "ivy", ["news"])

    # The harm the prune repairs: the old user still reaches the install, and so do the others.
    assert await devices(store.by_user("alice")) == [dev("switched")]
    assert await devices(store.by_user("hal")) == [dev("never-made")]

    result = await prune(store, NOW)

    assert (result.pruned, result.repaired, result.kept) == (0, 4, 0)
    regs = await assert_consistent(store)
    assert set(regs) == {dev("switched"), dev("moved")}
    assert await devices(store.by_user("alice")) == []
    assert await devices(store.by_tag("old")) == []
    assert await devices(store.by_user("bob")) == [dev("switched")]
    assert await devices(store.by_user("hal")) == []
    assert await devices(store.by_user("ivy")) == [dev("moved")]
    assert await devices(store.by_tag("news")) == [dev("moved"), dev("switched")]


# ---- cost ----------------------------------------------------------------------------------------

async def seed_for_cost(store: ChannelStore, live: int, expired: int) -> None:
    for i in range(expired):  # each with a user and two tags, expired 1 to 30 days ago
        await put_at(store, NOW - (31 + i % 30) * DAY, dev(f"old-{i}"), f"user-{i % 50}", ["news", f"t{i % 7}"])
    for i in range(live):  # 0 to 28 days old: none expires today
        await put_at(store, NOW - timedelta(hours=i % (29 * 24)), dev(f"live-{i}"), f"user-{i % 50}",
                     ["news", f"t{i % 7}"][: i % 3])


async def test_cost_grows_with_what_expires_not_with_the_total() -> None:
    reads = []
    for live in (2_700, 27_000):
        s = memory_store(FixedClock(NOW))
        await seed_for_cost(s, live, 300)
        result = await prune(s, NOW)
        assert result.pruned == 300
        assert len(await registrations(s)) == live
        reads.append(result.reads)
    # 300 x (the registration + its user and two tag entries) + one page of due journals,
    # whether 2,700 or 27,000 registrations live on.
    assert reads == [1_201, 1_201]


async def test_cost_on_azurite(azurite_conn: str, unique: str) -> None:
    reads = []
    for n, live in enumerate((30, 300)):
        s = azurite_store(azurite_conn, f"{unique}{n}", FixedClock(NOW))
        await seed_for_cost(s, live, 30)
        result = await prune(s, NOW)
        await s.close()
        assert result.pruned == 30
        reads.append(result.reads)
    assert reads == [121, 121]


# ---- interrupted runs ----------------------------------------------------------------------------

async def seed_mixed(store: ChannelStore) -> None:
    for i in range(24):
        await put_at(store, NOW - (i * 3) * DAY, dev(f"m-{i}"), [None, "alice", "bob"][i % 3],
                     ["news", "sport", f"t{i}"][: i % 4])
    await put_at(store, NOW - 30 * DAY + timedelta(hours=1), dev("later-today"), "bob", ["news"])
    await put_at(store, NOW - 40 * DAY, dev("switched"), "alice", ["news", "old"])
    await put_failing(store, every("delete"), NOW - 5 * DAY, dev("switched"), "bob", ["news"], uri=2)
    await put_failing(store, every("insert"), NOW - 35 * DAY, dev("never-made"), "hal", ["news"])


@pytest.mark.parametrize("kind", ["memory", "azurite"])
async def test_a_run_stopped_by_the_work_bound_is_finished_by_the_next(
        kind: str, request: pytest.FixtureRequest, unique: str) -> None:
    seed = memory_store(FixedClock(NOW))
    await seed_mixed(seed)
    whole, bounded = await make_store(kind, request, unique + "w"), await make_store(kind, request, unique + "b")
    await clone(seed, whole)
    await clone(seed, bounded)

    full = await prune(whole, NOW, chunk_size=3)
    runs = []
    while not runs or not runs[-1].complete:
        runs.append(await prune(bounded, NOW, max_entries=4, chunk_size=3))
        assert len(runs) < 20

    assert len(runs) > 2 and all(r.examined <= 4 for r in runs)
    assert sum(r.pruned for r in runs) == full.pruned > 0
    assert sum(r.repaired for r in runs) == full.repaired == 2
    assert await dump(bounded) == await dump(whole)
    await assert_consistent(bounded)
    await whole.close()
    await bounded.close()


@pytest.mark.parametrize("fail_at", range(1, 60, 3))
async def test_a_run_cut_by_a_fault_is_finished_by_the_next(fail_at: int) -> None:
    seed = memory_store(FixedClock(NOW))
    await seed_mixed(seed)
    whole, cut = memory_store(FixedClock(NOW)), memory_store(FixedClock(NOW))
    await clone(seed, whole)
    await clone(seed, cut)
    await prune(whole, NOW)

    writes = [0]

    def nth_write(op: str, pk: str, rk: str | None) -> bool:
        writes[0] += 1
        return writes[0] == fail_at

    before = await dangling(cut)
    with contextlib.suppress(StorageUnavailable):
        await prune(faulty(cut, nth_write), NOW, chunk_size=5)
    # Until the next run, no index entry points at a registration that is gone, but for the
    # leftovers that were there before (which the next run repairs).
    assert await dangling(cut) <= before
    await prune(cut, NOW)
    assert await dump(cut) == await dump(whole)


# ---- the timer function ------------------------------------------------------------------------

async def test_the_timer_function_prunes(azurite_conn: str, clean_env: pytest.MonkeyPatch, unique: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    clean_env.setenv("AzureWebJobsStorage", azurite_conn)
    # The function uses the default tables, which other tests share: a user of our own, and
    # nothing of ours left behind.
    old, young, user = dev(f"fn-old-{unique}"), dev(f"fn-young-{unique}"), f"fn-user-{unique}"
    await runtime.reset()
    try:
        clock = FixedClock(NOW - 31 * DAY)
        runtime.set_clock(clock)
        store = runtime.channel_store()
        await store.put(old, URI.format(1), user, [])
        clock.set(NOW - DAY)
        await store.put(young, URI.format(2), user, [])
        clock.set(NOW)
        with caplog.at_level(logging.INFO):
            await expire_channels.main(TimerRequest(past_due=True))
        assert await store.get(old) is None
        assert await store.get(young) is not None
        assert [r.device_id async for r in store.by_user(user)] == [young]
        messages = [r.getMessage() for r in caplog.records]
        assert any("past due" in m for m in messages)
        assert any(m.startswith("expire_channels: pruned ") for m in messages)
        assert not any("notify.windows.com" in m for m in messages)  # never a channel URI
        await store.delete(young, Owner(user))
    finally:
        runtime.set_clock(SystemClock())
        await runtime.reset()
