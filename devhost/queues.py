"""Storage queue trigger and output binding, with the Storage extension's polling, batching and
poison-queue behaviour.

The extension fetches up to `batchSize` messages, fetches again once no more than
`newBatchThreshold` are still running, backs off up to `maxPollingInterval` while the queue is
empty, deletes a message when the function succeeds, and otherwise makes it visible again after
`visibilityTimeout`, or moves it to `<queue>-poison` once it was dequeued `maxDequeueCount` times.

https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#concurrency
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as TriggerMessage
from azure.identity.aio import DefaultAzureCredential
from azure.storage.queue import QueueMessage as StorageMessage
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devhost.config import QueueOptions
from devhost.invoke import Invoker, LoadedFunction
from shared.errors import ConfigError
from shared.settings import normalize_connection_string

log = logging.getLogger("devhost")

Encoding = Literal["base64", "none"]

# How long a received message stays hidden while its function runs; renewed at half of it. Short, so a
# devhost killed mid-invocation hands its messages back within a minute (crash tests shorten it further).
LEASE_SECONDS = max(2, int(os.environ.get("DEVHOST_LEASE_SECONDS", "60")))
MIN_POLLING_SECONDS = 0.1
POISON_SUFFIX = "-poison"


class MessageEncodingError(ValueError):
    """A message body the configured `messageEncoding` cannot decode or encode."""


def decode_body(content: str, encoding: Encoding) -> bytes:
    if encoding == "none":
        return content.encode("utf-8")
    try:
        return base64.b64decode(content.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MessageEncodingError(
            "the message is not valid base64; send base64 or set messageEncoding to \"none\" in host.json"
        ) from None


def encode_body(body: str | bytes, encoding: Encoding) -> str:
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if encoding == "base64":
        return base64.b64encode(raw).decode("ascii")
    if isinstance(body, str):
        return body
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MessageEncodingError(
            "a bytes queue output must be UTF-8 when messageEncoding is \"none\""
        ) from None


def output_messages(value: Any) -> list[str | bytes]:
    """The messages an output binding value stands for: one str/bytes/QueueMessage, or a list of them."""
    if isinstance(value, str | bytes):
        return [value]
    if isinstance(value, func.QueueMessage):
        return [value.get_body()]
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        items: list[str | bytes] = []
        for item in value:
            if isinstance(item, Iterable) and not isinstance(item, str | bytes):
                raise TypeError("a queue output list must hold str, bytes or QueueMessage items")
            items.extend(output_messages(item))
        return items
    raise TypeError(f"a queue output must be str, bytes, QueueMessage or a list of them, not {type(value).__name__}"
                    " (serialize objects with json.dumps)")


@dataclass(frozen=True)
class QueueEndpoint:
    connection_string: str | None = None
    account_url: str | None = None
    client_id: str | None = None


def resolve_connection(setting: str, env: Mapping[str, str]) -> QueueEndpoint:
    """The queue service a binding's `connection` names, looked up the way the host does."""
    for name in (setting, f"AzureWebJobs{setting}"):
        conn = env.get(name, "").strip()
        if conn:
            if "=" not in conn:
                raise ConfigError(name, "is not a storage connection string")
            return QueueEndpoint(connection_string=normalize_connection_string(conn))
    prefix = f"{setting}__"
    uri = env.get(prefix + "queueServiceUri", "").strip() or env.get(prefix + "serviceUri", "").strip()
    account = env.get(prefix + "accountName", "").strip()
    if not uri and account:
        uri = f"https://{account}.queue.core.windows.net"
    if uri:
        return QueueEndpoint(account_url=uri, client_id=env.get(prefix + "clientId", "").strip() or None)
    raise ConfigError(setting, f"is not set: a connection string, or {prefix}accountName / {prefix}queueServiceUri")


class QueueClients:
    """One service client per connection setting, created on first use and closed with the host."""

    def __init__(self, env: Mapping[str, str], encoding: Encoding) -> None:
        self._env = env
        self.encoding = encoding
        self._services: dict[str, QueueServiceClient] = {}
        self._created: set[tuple[str, str]] = set()
        self._credential: DefaultAzureCredential | None = None

    def _service(self, setting: str) -> QueueServiceClient:
        service = self._services.get(setting)
        if service is None:
            endpoint = resolve_connection(setting, self._env)
            if endpoint.connection_string is not None:
                service = QueueServiceClient.from_connection_string(endpoint.connection_string)
            else:
                assert endpoint.account_url is not None
                if self._credential is None:
                    self._credential = DefaultAzureCredential(managed_identity_client_id=endpoint.client_id)
                service = QueueServiceClient(endpoint.account_url, credential=self._credential)
            self._services[setting] = service
        return service

    async def queue(self, setting: str, name: str) -> QueueClient:
        """The queue, created if missing (as the host creates trigger, poison and output queues)."""
        client = self._service(setting).get_queue_client(name)
        if (setting, name) not in self._created:
            with contextlib.suppress(ResourceExistsError):
                await client.create_queue()
            self._created.add((setting, name))
        return client

    def forget(self, setting: str, name: str) -> None:
        """Someone deleted the queue: create it again on next use."""
        self._created.discard((setting, name))

    async def send_output(self, connection: str, queue_name: str, value: Any) -> None:
        bodies = [encode_body(m, self.encoding) for m in output_messages(value)]
        client = await self.queue(connection, queue_name)
        for body in bodies:
            await client.send_message(body)

    async def close(self) -> None:
        for service in self._services.values():
            await service.close()
        self._services.clear()
        if self._credential is not None:
            await self._credential.close()
            self._credential = None


def to_function_message(msg: StorageMessage, body: bytes) -> TriggerMessage:
    return TriggerMessage(  # type: ignore[no-untyped-call]  # its constructor is unannotated
        id=msg.id,
        body=body,
        dequeue_count=msg.dequeue_count,
        expiration_time=msg.expires_on,
        insertion_time=msg.inserted_on,
        time_next_visible=msg.next_visible_on,
        pop_receipt=msg.pop_receipt,
    )


def admin_message(text: str) -> TriggerMessage:
    """The message an admin invocation passes: the given input, dequeued once, never stored."""
    now = datetime.now(UTC)
    return TriggerMessage(  # type: ignore[no-untyped-call]  # its constructor is unannotated
        id=str(uuid.uuid4()), body=text.encode("utf-8"), dequeue_count=1, expiration_time=now + timedelta(days=7),
        insertion_time=now, time_next_visible=now, pop_receipt=None,
    )


class _Lease:
    """Keeps a message hidden while its function runs; tracks the pop receipt each renewal changes."""

    def __init__(self, client: QueueClient, msg: StorageMessage) -> None:
        self._client = client
        self.msg_id: str = msg.id
        self.pop_receipt: str | None = msg.pop_receipt
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), LEASE_SECONDS / 2)
                return
            except TimeoutError:
                pass
            try:
                updated = await self._client.update_message(
                    self.msg_id, self.pop_receipt, visibility_timeout=LEASE_SECONDS
                )
                self.pop_receipt = updated.pop_receipt
            except AzureError as exc:
                log.warning("could not extend the lease of message %s: %s", self.msg_id, type(exc).__name__)

    async def release(self) -> None:
        # Let a renewal already on the wire finish, so the pop receipt we use next is the current one.
        self._stop.set()
        await self._task


class QueueListener:
    """Polls one queue for one function until stopped."""

    def __init__(self, fn: LoadedFunction, clients: QueueClients, invoker: Invoker, options: QueueOptions) -> None:
        self.fn = fn
        trigger = fn.spec.trigger
        self.connection = trigger.get_str("connection") or "AzureWebJobsStorage"
        self.queue_name = trigger.get_str("queueName")
        self._clients = clients
        self._invoker = invoker
        self._options = options
        self._in_flight: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._unreachable = False

    def start(self) -> None:
        self._poller = asyncio.create_task(self._poll(), name=f"queue-poller-{self.fn.name}")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop fetching, give running invocations `grace` seconds, then cancel them (their messages
        are handed back)."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._in_flight:
            _done, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _poll(self) -> None:
        opts = self._options
        max_delay = opts.max_polling_interval.total_seconds()
        delay = min(MIN_POLLING_SECONDS, max_delay)
        while True:
            while len(self._in_flight) > opts.new_batch_threshold:
                await asyncio.wait(set(self._in_flight), return_when=asyncio.FIRST_COMPLETED)
            try:
                client = await self._clients.queue(self.connection, self.queue_name)
                messages = [
                    m async for m in client.receive_messages(
                        messages_per_page=opts.batch_size, max_messages=opts.batch_size,
                        visibility_timeout=LEASE_SECONDS,
                    )
                ]
            except ResourceNotFoundError:
                self._clients.forget(self.connection, self.queue_name)
                messages = []
            except AzureError as exc:
                # Once per outage, not once per poll: Azurite being down should not flood the console.
                if not self._unreachable:
                    log.warning("function %s: cannot read queue %s (%s); retrying", self.fn.name, self.queue_name, exc)
                self._unreachable = True
                messages = []
            else:
                if self._unreachable:
                    log.info("function %s: queue %s reachable again", self.fn.name, self.queue_name)
                self._unreachable = False
            if not messages:
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)
                continue
            delay = min(MIN_POLLING_SECONDS, max_delay)
            for msg in messages:
                task = asyncio.create_task(self._process(client, msg))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def _process(self, client: QueueClient, msg: StorageMessage) -> None:
        lease = _Lease(client, msg)
        try:
            succeeded = await self._invoke(msg)
        except asyncio.CancelledError:
            await lease.release()
            # Shutting down: hand the message back now rather than when the lease runs out.
            await asyncio.shield(self._settle(client, msg, lease, visible_in=0))
            raise
        await lease.release()
        if succeeded:
            await self._settle(client, msg, lease, visible_in=None)
        elif (msg.dequeue_count or 0) >= self._options.max_dequeue_count:
            await self._poison(client, msg, lease)
        else:
            await self._settle(client, msg, lease, visible_in=int(self._options.visibility_timeout.total_seconds()))

    async def _invoke(self, msg: StorageMessage) -> bool:
        detail = f"queue={self.queue_name} dequeueCount={msg.dequeue_count}"
        try:
            body = decode_body(str(msg.content or ""), self._options.message_encoding)
        except MessageEncodingError as exc:
            log.error("function %s: message %s not delivered: %s", self.fn.name, msg.id, exc)
            return False
        result = await self._invoker.invoke(self.fn, to_function_message(msg, body), detail=detail)
        return result.succeeded

    async def _settle(self, client: QueueClient, msg: StorageMessage, lease: _Lease, *, visible_in: int | None) -> None:
        """Delete the message (`visible_in` None) or make it visible again after `visible_in` seconds."""
        try:
            if visible_in is None:
                await client.delete_message(lease.msg_id, lease.pop_receipt)
            else:
                await client.update_message(lease.msg_id, lease.pop_receipt, visibility_timeout=visible_in)
        except AzureError as exc:
            # Lost the lease (it expired, or another reader has the message): it will come back on its own.
            log.warning("function %s: could not settle message %s: %s", self.fn.name, msg.id, type(exc).__name__)

    async def _poison(self, client: QueueClient, msg: StorageMessage, lease: _Lease) -> None:
        poison_name = self.queue_name + POISON_SUFFIX
        try:
            poison = await self._clients.queue(self.connection, poison_name)
            # The stored text as is, so the encoding is preserved for whoever replays it.
            await poison.send_message(msg.content)
        except AzureError as exc:
            log.error("function %s: could not move message %s to %s: %s", self.fn.name, msg.id, poison_name, exc)
            await self._settle(client, msg, lease, visible_in=int(self._options.visibility_timeout.total_seconds()))
            return
        log.warning("function %s: message %s moved to %s after %s attempts", self.fn.name, msg.id, poison_name,
                    msg.dequeue_count)
        await self._settle(client, msg, lease, visible_in=None)


__all__ = [
    "LEASE_SECONDS",
    "MessageEncodingError",
    "QueueClients",
    "QueueEndpoint",
    "QueueListener",
    "admin_message",
    "decode_body",
    "encode_body",
    "output_messages",
    "resolve_connection",
]
