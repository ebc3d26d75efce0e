"""The channel store's contract, on the in-memory tables and on a real Azurite alike.

Covers every read the product makes (by install, by user, by tag, all, expiring on a day), the
one-install-one-registration rule, and writes that fail half-way leaving only repairable
leftovers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from shared.channels import ChannelStore, Owner, expiry_pk, tag_pk, user_pk
from shared.clock import FixedClock
from shared.errors import StorageUnavailable
from shared.tables import EntityTable, MemoryTable
from tests.support.stores import azurite_store, memory_store

URI = "https://cloud.notify.windows.com/?token={}"
D1, D2, D3 = "device-0000000001", "device-0000000002", "device-0000000003"


@pytest.fixture(params=["memory", "azurite"])
async def store(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[ChannelStore]:
    clock = FixedClock()
    if request.param == "memory":
        s = memory_store(clock)
    else:
        s = azurite_store(request.getfixturevalue("azurite_conn"), unique, clock)
    yield s
    await s.close()


async def devices(it: AsyncIterator[object]) -> list[str]:
    return sorted([r.device_id async for r in it])  # type: ignore[attr-defined]


async def index_rows(store: ChannelStore) -> set[tuple[str, str]]:
    return {(r.pk, r.rk) async for r in store.index.query()}


async def test_put_creates_then_replaces(store: ChannelStore) -> None:
    first = await store.put(D1, URI.format(1), "alice", ["news"])
    assert first.created
    again = await store.put(D1, URI.format(2), "alice", ["news", "sport"])
    assert not again.created
    reg = await store.get(D1)
    assert reg is not None and reg.channel_uri == URI.format(2) and reg.tags == ("news", "sport")
    assert reg.expires_at - reg.registered_at == timedelta(days=30)


async def test_channel_uri_is_stored_byte_for_byte(store: ChannelStore) -> None:
    uri = "https://wns2-by3p.notify.windows.com/?token=AwYAAAB%2bXy%2Fz%3d%3d&x=%41"
    await store.put(D1, uri, None, [])
    reg = await store.get(D1)
    assert reg is not None and reg.channel_uri == uri
    assert [r.channel_uri async for r in store.all()] == [uri]


async def test_reads_by_user_tag_and_all(store: ChannelStore) -> None:
    await store.put(D1, URI.format(1), "alice", ["news", "lang:fr"])
    await store.put(D2, URI.format(2), "alice", ["sport"])
    await store.put(D3, URI.format(3), "bob/../#?x", ["news"])
    assert await devices(store.by_user("alice")) == [D1, D2]
    assert await devices(store.by_user("bob/../#?x")) == [D3]
    assert await devices(store.by_user("bob")) == []
    assert await devices(store.by_tag("news")) == [D1, D3]
    assert await devices(store.by_tag("lang:fr")) == [D1]
    assert await devices(store.all()) == [D1, D2, D3]
    assert await devices(store.all(after=D1, until=D2)) == [D2]
    day = (store.clock.now() + timedelta(days=30)).date()
    assert sorted([r.rk async for r in store.expiring_on(day)]) == [D1, D2, D3]


async def test_account_switch_moves_the_install(store: ChannelStore) -> None:
    await store.put(D1, URI.format(1), "alice", ["news"])
    await store.put(D1, URI.format(2), "bob", ["news"])
    assert await devices(store.by_user("alice")) == []
    assert await devices(store.by_user("bob")) == [D1]
    [entry] = [r async for r in store.by_tag("news")]
    assert entry.user_id == "bob" and entry.channel_uri == URI.format(2)
    await store.put(D1, URI.format(2), None, [])
    assert await devices(store.by_user("bob")) == []
    assert await devices(store.by_tag("news")) == []


async def test_refresh_moves_only_the_expiry_entry(store: ChannelStore) -> None:
    await store.put(D1, URI.format(1), "alice", ["news"])
    first = await store.get(D1)
    store.clock.advance(days=3)  # type: ignore[attr-defined]
    await store.put(D1, URI.format(1), "alice", ["news"])
    second = await store.get(D1)
    assert first is not None and second is not None
    assert second.version == first.version and second.expires_at == first.expires_at + timedelta(days=3)
    assert await index_rows(store) == {
        (expiry_pk(second.expires_at.date()), D1), (user_pk("alice"), D1), (tag_pk("news"), D1),
    }


async def test_delete_removes_everything_and_is_repeatable(store: ChannelStore) -> None:
    await store.put(D1, URI.format(1), "alice", ["news", "a", "b"])
    assert await store.delete(D1, Owner("alice"))
    assert await store.get(D1) is None
    assert await index_rows(store) == set()
    assert not await store.delete(D1, Owner("alice"))


async def test_delete_respects_the_owner(store: ChannelStore) -> None:
    await store.put(D1, URI.format(1), "alice", [])
    assert not await store.delete(D1, Owner("bob"))
    assert not await store.delete(D1, Owner(None))
    assert await store.get(D1) is not None
    await store.put(D2, URI.format(2), None, [])
    assert await store.delete(D2, Owner("bob"))  # anonymous: reachable by deviceId alone


async def test_remove_version_keeps_a_refreshed_registration(store: ChannelStore) -> None:
    await store.put(D1, URI.format(1), "alice", ["news"])
    old = await store.get(D1)
    await store.put(D1, URI.format(2), "alice", ["news"])
    assert old is not None and not await store.remove_version(D1, old.version)
    assert await store.get(D1) is not None
    current = await store.get(D1)
    assert current is not None and await store.remove_version(D1, current.version)
    assert await index_rows(store) == set()


class Flaky:
    """Wraps a table; fails the n-th write (upsert, insert or delete) with StorageUnavailable."""

    def __init__(self, inner: EntityTable, fail_at: int) -> None:
        self._inner = inner
        self.writes = 0
        self.fail_at = fail_at

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._inner, name)
        if name in ("upsert", "insert", "delete", "merge"):
            async def write(*args: object, **kwargs: object) -> object:
                self.writes += 1
                if self.writes == self.fail_at:
                    raise StorageUnavailable("injected fault")
                return await attr(*args, **kwargs)
            return write
        return attr


@pytest.mark.parametrize("fail_at", range(1, 12))
async def test_half_failed_account_switch_is_repaired_by_a_retry(fail_at: int) -> None:
    """Whatever write fails, retrying the same PUT leaves exactly the new registration's entries."""
    clock = FixedClock()
    channels, index = MemoryTable("channels"), MemoryTable("channelindex")
    good = ChannelStore(channels, index, clock, 30)
    await good.put(D1, URI.format(1), "alice", ["news", "old"])
    clock.advance(days=2)
    flaky_index, flaky_channels = Flaky(index, fail_at), Flaky(channels, fail_at - 6)
    flaky = ChannelStore(flaky_channels, flaky_index, clock, 30)  # type: ignore[arg-type]
    with contextlib.suppress(StorageUnavailable):
        await flaky.put(D1, URI.format(2), "bob", ["news", "new"])
    await good.put(D1, URI.format(2), "bob", ["news", "new"])  # the app retries
    reg = await good.get(D1)
    assert reg is not None and reg.user_id == "bob"
    expected = {(pk, D1) for pk in (user_pk("bob"), tag_pk("news"), tag_pk("new"),
                                     expiry_pk(reg.expires_at.date()))}
    assert {k for k in index.dump()} == expected
    assert await devices(good.by_user("alice")) == []


@pytest.mark.parametrize("fail_at", range(1, 6))
async def test_half_failed_delete_is_repaired_by_a_retry(fail_at: int) -> None:
    clock = FixedClock()
    channels, index = MemoryTable("channels"), MemoryTable("channelindex")
    good = ChannelStore(channels, index, clock, 30)
    await good.put(D1, URI.format(1), "alice", ["news", "x"])
    flaky = ChannelStore(Flaky(channels, 99), Flaky(index, fail_at), clock, 30)  # type: ignore[arg-type]
    try:
        await flaky.delete(D1, Owner("alice"))
    except StorageUnavailable:
        # Until the retry, the install must not be reachable through an entry whose
        # registration is gone: index entries go before the registration.
        if await good.get(D1) is None:
            assert {k for k in index.dump() if not k[0].startswith("x:")} == set()
    await good.delete(D1, Owner("alice"))
    assert channels.dump() == {}
    # If the registration went but its expiry journal did not, the retry has nothing to find:
    # the journal stays for the prune of that day to remove (the only leftover allowed).
    assert {k[0][:2] for k in index.dump()} <= {"x:"}


async def test_storage_down_raises_storage_unavailable() -> None:
    from tests.support.stores import azurite_store

    clock = FixedClock()
    # Nothing listens on port 1: the adapter maps the connection failure once, here.
    conn = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + "A" * 88 + \
        ";TableEndpoint=http://127.0.0.1:1/devstoreaccount1;"
    s = azurite_store(conn, "down", clock)
    with pytest.raises(StorageUnavailable):
        await s.get(D1)
    with pytest.raises(StorageUnavailable):
        await s.put(D1, URI.format(1), None, [])
    await s.close()
