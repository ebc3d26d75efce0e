"""The Azure Table Storage adapter of `EntityTable` (azure-data-tables, async).

Service errors are mapped here, once, to the package's exceptions: a lost ETag race or an
existing entity to `ConcurrencyConflict`, an unreachable or failing service to
`StorageUnavailable`. Clients are built from a connection string (Azurite, or keys) or from
endpoints and a managed identity (`DefaultAzureCredential`), as the app settings say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.errors import ConcurrencyConflict, StorageError, StorageUnavailable
from shared.settings import StorageSettings
from shared.tables import Entity, Op, Row

T = TypeVar("T")

# Fail fast: an HTTP caller gets 503 + Retry-After in seconds, not after a minute of retries.
CLIENT_OPTIONS: dict[str, Any] = {
    "connection_timeout": 5,
    "read_timeout": 20,
    "retry_total": 2,
    "retry_backoff_factor": 0.2,
}

# The SDK logs every request at INFO; that floods the Functions log and adds nothing ours lacks.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)


def async_credential(storage: StorageSettings) -> Any:
    """The managed identity (user-assigned when `__clientId` is set) or developer sign-in."""
    from azure.identity.aio import DefaultAzureCredential

    if storage.client_id:
        return DefaultAzureCredential(managed_identity_client_id=storage.client_id)
    return DefaultAzureCredential()


def table_service(storage: StorageSettings, credential: Any = None) -> TableServiceClient:
    """A service client from a connection string, or from the endpoint and `credential` (by
    default a new `async_credential`; share one between clients and close it with them)."""
    if storage.connection_string:
        return TableServiceClient.from_connection_string(storage.connection_string, **CLIENT_OPTIONS)
    assert storage.table_service_uri
    return TableServiceClient(
        endpoint=storage.table_service_uri, credential=credential or async_credential(storage), **CLIENT_OPTIONS
    )


def _mapped(exc: Exception, what: str) -> Exception:
    if isinstance(exc, (ResourceModifiedError, ResourceExistsError)):
        return ConcurrencyConflict(what)
    if isinstance(exc, HttpResponseError) and exc.status_code in (409, 412):
        return ConcurrencyConflict(what)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return StorageUnavailable(f"{what}: storage unreachable ({type(exc).__name__})")
    if isinstance(exc, HttpResponseError) and (exc.status_code or 500) >= 500:
        return StorageUnavailable(f"{what}: storage answered {exc.status_code}")
    if isinstance(exc, HttpResponseError) and exc.status_code in (408, 429):
        return StorageUnavailable(f"{what}: storage throttled ({exc.status_code})")
    if isinstance(exc, (AzureError, OSError)):
        return StorageError(f"{what}: {type(exc).__name__}: {exc}")
    return exc


class AzureTable:
    """`EntityTable` over one Azure table; creates the table on first use."""

    def __init__(self, client: TableClient) -> None:
        self._client = client
        self.name = client.table_name
        self.reads = 0
        self._ready = False
        self._ensuring = asyncio.Lock()

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            if not self._ready:
                await self._ensure()
            return await fn()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "TableNotFound":
                # Deleted under us (tests reset Azurite); create it again and retry once.
                self._ready = False
                return await self._call(what, fn)
            raise _mapped(exc, what) from exc
        except (AzureError, OSError) as exc:
            raise _mapped(exc, what) from exc

    async def _ensure(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            await self._client.create_table()
        self._ready = True

    async def get(self, pk: str, rk: str) -> Row | None:
        self.reads += 1

        async def op() -> Row | None:
            try:
                entity = await self._client.get_entity(pk, rk)
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) == "TableNotFound":
                    raise
                return None
            return Row(dict(entity), str(entity.metadata["etag"]))

        return await self._call(f"read {self.name}", op)

    async def insert(self, entity: Entity) -> str:
        result = await self._call(f"insert into {self.name}", lambda: self._client.create_entity(entity))
        return str(result["etag"])

    async def upsert(self, entity: Entity, *, etag: str | None = None) -> str:
        if etag is None:
            result = await self._call(
                f"write {self.name}", lambda: self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)
            )
        else:
            result = await self._call(
                f"replace in {self.name}",
                lambda: self._client.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                ),
            )
        return str(result["etag"])

    async def merge(self, entity: Entity, *, etag: str | None = None) -> str:
        kwargs: dict[str, Any] = {"mode": UpdateMode.MERGE}
        if etag is not None:
            kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
        try:
            result = await self._call(f"update {self.name}", lambda: self._client.update_entity(entity, **kwargs))
        except ResourceNotFoundError as exc:  # update of a missing entity
            raise ConcurrencyConflict(f"update {self.name}: entity gone") from exc
        return str(result["etag"])

    async def delete(self, pk: str, rk: str, *, etag: str | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if etag is not None:
            kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
        await self._call(f"delete from {self.name}", lambda: self._client.delete_entity(pk, rk, **kwargs))

    async def transact(self, ops: Sequence[Op]) -> None:
        if not ops:
            return
        batch: list[Any] = []
        for op in ops:
            opts: dict[str, Any] = {}
            if op.etag is not None:
                opts = {"etag": op.etag, "match_condition": MatchConditions.IfNotModified}
            if op.kind == "upsert":
                kind = "update" if op.etag is not None else "upsert"
                batch.append((kind, op.entity, {"mode": UpdateMode.REPLACE, **opts}))
            else:
                batch.append(("delete", op.entity, opts))
        try:
            await self._call(f"transaction on {self.name}", lambda: self._client.submit_transaction(batch))
        except TableTransactionError as exc:
            if exc.status_code == 404 and all(op.kind == "delete" and op.etag is None for op in ops):
                # A delete-only batch in which some entity is already gone: delete one by one,
                # since deletes are meant to be safely repeatable.
                for op in ops:
                    await self.delete(op.entity["PartitionKey"], op.entity["RowKey"])
                return
            raise ConcurrencyConflict(f"transaction on {self.name}: {exc.message}") from exc

    async def query(
        self,
        *,
        partition: str | None = None,
        after: str | None = None,
        until: str | None = None,
        page_size: int = 1000,
        select: Sequence[str] | None = None,
    ) -> AsyncIterator[Row]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        key = "RowKey" if partition is not None else "PartitionKey"
        if partition is not None:
            clauses.append("PartitionKey eq @pk")
            params["pk"] = partition
        if after is not None:
            clauses.append(f"{key} gt @after")
            params["after"] = after
        if until is not None:
            clauses.append(f"{key} le @until")
            params["until"] = until
        if not self._ready:
            await self._call(f"query {self.name}", self._noop)
        sel = [*list(select), "PartitionKey", "RowKey"] if select is not None else None
        try:
            if clauses:
                pager = self._client.query_entities(
                    " and ".join(clauses), parameters=params, results_per_page=page_size, select=sel
                ).by_page()
            else:
                pager = self._client.list_entities(results_per_page=page_size, select=sel).by_page()
            async for page in pager:
                self.reads += 1
                async for entity in page:
                    yield Row(dict(entity), str(entity.metadata["etag"]))
        except (AzureError, OSError) as exc:
            raise _mapped(exc, f"query {self.name}") from exc

    @staticmethod
    async def _noop() -> None:
        return None

    async def close(self) -> None:
        await self._client.close()
