"""Process-wide clients, created lazily on the event loop that uses them and then reused.

Azure Functions keeps a worker process warm across invocations, so table clients (and their
connection pools) are built once per process, not per call. Async clients belong to the loop
they were created on; a new loop (a test, a local tool) gets new clients.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared.azure_tables import AzureTable, table_service
from shared.channels import ChannelStore
from shared.clock import Clock, SystemClock
from shared.settings import Settings, get_settings

_clock: Clock = SystemClock()
_loop: asyncio.AbstractEventLoop | None = None
_service: Any = None
_tables: dict[str, AzureTable] = {}


def clock() -> Clock:
    return _clock


def set_clock(new: Clock) -> None:
    """Tests and local tools move time (e.g. 30 days on) without waiting."""
    global _clock
    _clock = new


def table(name: str, settings: Settings | None = None) -> AzureTable:
    """The process's client for one table, on the running loop."""
    global _loop, _service
    loop = asyncio.get_running_loop()
    if _loop is not loop:
        _loop, _service = loop, None
        _tables.clear()
    if name not in _tables:
        if _service is None:
            _service = table_service((settings or get_settings()).storage)
        _tables[name] = AzureTable(_service.get_table_client(name))
    return _tables[name]


def channel_store(settings: Settings | None = None) -> ChannelStore:
    settings = settings or get_settings()
    return ChannelStore(
        table(settings.channels_table, settings),
        table(settings.index_table, settings),
        _clock,
        settings.channel_ttl_days,
    )


async def reset() -> None:
    """Close and forget every client (tests between Azurite instances)."""
    global _loop, _service
    for t in _tables.values():
        await t.close()
    _tables.clear()
    if _service is not None:
        await _service.close()
    _loop, _service = None, None
