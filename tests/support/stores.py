"""Channel stores for tests: in memory, or on a real Azurite with tables unique to the test."""

from __future__ import annotations

from azure.data.tables.aio import TableClient

from shared.azure_tables import CLIENT_OPTIONS, AzureTable
from shared.channels import ChannelStore
from shared.clock import FixedClock
from shared.settings import normalize_connection_string
from shared.tables import EntityTable, MemoryTable


def memory_store(clock: FixedClock, ttl_days: int = 30) -> ChannelStore:
    return ChannelStore(MemoryTable("channels"), MemoryTable("channelindex"), clock, ttl_days)


def azurite_tables(conn: str, suffix: str, *names: str) -> list[EntityTable]:
    # A client per table, each owning its connection pool, so closing the table closes it all.
    conn = normalize_connection_string(conn)
    return [AzureTable(TableClient.from_connection_string(conn, f"{n}{suffix}", **CLIENT_OPTIONS)) for n in names]


def azurite_store(conn: str, suffix: str, clock: FixedClock, ttl_days: int = 30) -> ChannelStore:
    channels, index = azurite_tables(conn, suffix, "channels", "channelindex")
    return ChannelStore(channels, index, clock, ttl_days)
