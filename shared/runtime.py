"""Process-wide clients, created lazily on the event loop that uses them and then reused.

Azure Functions keeps a worker process warm across invocations, so table clients (and their
connection pools) are built once per process, not per call. Async clients belong to the loop
they were created on; a new loop (a test, a local tool) gets new clients.
"""

from __future__ import annotations

import asyncio
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from shared.azure_tables import CLIENT_OPTIONS, AzureTable, async_credential, table_service
from shared.channels import ChannelStore
from shared.clock import Clock, SystemClock
from shared.dispatch import Dispatcher, SendResult
from shared.errors import StorageUnavailable
from shared.jobstore import JobStore
from shared.notification import Notification
from shared.settings import Settings, StorageSettings, get_settings
from shared.wns import CHANNEL_GONE, DELIVERED, THROTTLED, WnsClient, get_client

_clock: Clock = SystemClock()
_loop: asyncio.AbstractEventLoop | None = None
_service: Any = None
_credential: Any = None  # one managed-identity credential per loop, shared by every client
_tables: dict[str, AzureTable] = {}
_queues: dict[str, QueueClient] = {}


def clock() -> Clock:
    return _clock


def set_clock(new: Clock) -> None:
    """Tests and local tools move time (e.g. 30 days on) without waiting."""
    global _clock
    _clock = new


def _bind_loop() -> None:
    global _loop, _service, _credential
    loop = asyncio.get_running_loop()
    if _loop is not loop:
        _loop, _service, _credential = loop, None, None
        _tables.clear()
        _queues.clear()


def _credential_for(storage: StorageSettings) -> Any:
    global _credential
    if _credential is None and storage.uses_identity:
        _credential = async_credential(storage)
    return _credential


def table(name: str, settings: Settings | None = None) -> AzureTable:
    """The process's client for one table, on the running loop."""
    global _service
    _bind_loop()
    if name not in _tables:
        if _service is None:
            storage = (settings or get_settings()).storage
            _service = table_service(storage, _credential_for(storage))
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


def job_store(settings: Settings | None = None) -> JobStore:
    settings = settings or get_settings()
    return JobStore(table(settings.jobs_table, settings), table(settings.outcomes_table, settings), _clock)


def queue(name: str, settings: Settings | None = None) -> QueueClient:
    """The process's client for one queue; messages are plain UTF-8 text (messageEncoding none)."""
    settings = settings or get_settings()
    _bind_loop()
    if name not in _queues:
        st = settings.storage
        if st.connection_string:
            _queues[name] = QueueClient.from_connection_string(st.connection_string, name, **CLIENT_OPTIONS)
        else:
            assert st.queue_service_uri
            _queues[name] = QueueClient(st.queue_service_uri, name, credential=_credential_for(st), **CLIENT_OPTIONS)
    return _queues[name]


async def enqueue(name: str, messages: list[str], settings: Settings | None = None, delay_s: float = 0) -> None:
    """Plain-text messages on a queue, visible after `delay_s` seconds (the queue allows 7 days)."""
    client = queue(name, settings)
    visibility = int(delay_s) if delay_s >= 1 else None

    async def send_all() -> None:
        await asyncio.gather(*(client.send_message(m, visibility_timeout=visibility) for m in messages))

    try:
        await send_all()
    except ResourceNotFoundError:
        try:
            await client.create_queue()
        except ResourceExistsError:
            pass
        await send_all()
    except AzureError as exc:
        raise StorageUnavailable(f"enqueue on {name}: {type(exc).__name__}") from exc


def wns_sender(client: WnsClient) -> Any:
    async def send(channel_uri: str, notification: Notification) -> SendResult:
        o = await client.send_with_retries(channel_uri, notification)
        outcome = ("delivered" if o.kind is DELIVERED else "removed" if o.kind is CHANNEL_GONE
                   else "deferred" if o.kind is THROTTLED else "failed")
        error = None if outcome == "delivered" else (o.reason or o.kind.value)
        if error and o.error_description:
            error = f"{error}: {o.error_description}"
        return SendResult(outcome, o.status, o.wns_status, o.msg_id, error, o.retry_after)

    return send


async def dispatcher(settings: Settings | None = None) -> Dispatcher:
    settings = settings or get_settings()
    client = await get_client(settings)
    name = settings.push_jobs_queue

    async def enqueue_jobs(messages: list[str], delay_s: float = 0) -> None:
        await enqueue(name, messages, settings, delay_s)

    return Dispatcher(channel_store(settings), job_store(settings), wns_sender(client), enqueue_jobs)


async def reset() -> None:
    """Close and forget every client (tests between Azurite instances)."""
    global _loop, _service, _credential
    for t in _tables.values():
        await t.close()
    _tables.clear()
    for q in _queues.values():
        await q.close()
    _queues.clear()
    if _service is not None:
        await _service.close()
    if _credential is not None:
        await _credential.close()
    _loop, _service, _credential = None, None, None
