"""Job records, their batches and per-recipient outcomes (table `pushjobs` and `pushoutcomes`).

`pushjobs`, one partition per job (PK = jobId), so a job's record and its batch records can be
updated together in one entity-group transaction:
    RK "job"        state, the job itself, counts (targeted/delivered/removed/failed), `pending`
                    (batches not yet finished)
    RK "b:<id>"     one row per batch: `done` and the batch's counts once finished
Finishing a batch adds its counts to the job and marks the batch done in one transaction guarded
by both ETags, so counts are added exactly once however many instances finish batches at once.

`pushoutcomes`: PK = jobId, RK = deviceId: what happened to each recipient (outcome, HTTP status,
X-WNS-Status, X-WNS-Msg-ID, error). Written in transactions of up to 100 as sends complete; a
redelivered batch skips recipients that already have one.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from shared.clock import Clock, iso
from shared.errors import ConcurrencyConflict, StorageUnavailable
from shared.tables import Entity, EntityTable, Op, Row

JOB_RK = "job"
STATES = ("queued", "running", "completed", "failed", "cancelled")
COUNTS = ("targeted", "delivered", "removed", "failed")
OUTCOMES = ("delivered", "removed", "failed")
_MAX_TXN = 100
_CONTENDED_ATTEMPTS = 30


def batch_rk(batch_id: str) -> str:
    return "b:" + batch_id


@dataclass(frozen=True)
class OutcomeRecord:
    device_id: str
    outcome: str  # delivered | removed | failed
    status: int | None = None
    wns_status: str | None = None
    msg_id: str | None = None
    error: str | None = None
    user_id: str | None = None

    def entity(self, job_id: str, at: str) -> Entity:
        return {
            "PartitionKey": job_id,
            "RowKey": self.device_id,
            "outcome": self.outcome,
            "status": self.status or 0,
            "wnsStatus": self.wns_status or "",
            "msgId": self.msg_id or "",
            "error": self.error or "",
            "userId": self.user_id or "",
            "at": at,
        }


def outcome_json(row: Row) -> dict[str, Any]:
    e = row.entity
    return {
        "deviceId": row.rk,
        "userId": e.get("userId") or None,
        "outcome": e.get("outcome"),
        "status": e.get("status") or None,
        "wnsStatus": e.get("wnsStatus") or None,
        "msgId": e.get("msgId") or None,
        "error": e.get("error") or None,
        "at": e.get("at"),
    }


def status_json(row: Row) -> dict[str, Any]:
    """The status shape of contract section 4 (`pushctl status --json`)."""
    e = row.entity
    out: dict[str, Any] = {"jobId": row.pk, "state": e.get("state")}
    for name in COUNTS:
        out[name] = int(e.get(name) or 0)
    out["pendingBatches"] = int(e.get("pending") or 0)
    out["createdAt"] = e.get("createdAt")
    out["updatedAt"] = e.get("updatedAt")
    out["error"] = e.get("error") or None
    out["target"] = json.loads(e["target"]) if e.get("target") else None
    out["type"] = e.get("type") or None
    return out


async def _backoff(attempt: int) -> None:
    # Contention between batches finishing together: spread the retries out.
    await asyncio.sleep(random.uniform(0, min(0.05 * (2 ** attempt), 1.0)))  # noqa: S311


class JobStore:
    def __init__(self, jobs: EntityTable, outcomes: EntityTable, clock: Clock) -> None:
        self.jobs = jobs
        self.outcomes = outcomes
        self.clock = clock

    async def get(self, job_id: str) -> Row | None:
        return await self.jobs.get(job_id, JOB_RK)

    async def status(self, job_id: str) -> dict[str, Any] | None:
        row = await self.get(job_id)
        return status_json(row) if row else None

    async def create(self, job_id: str, fields: dict[str, Any], batch_ids: Sequence[str], plan_key: str) -> bool:
        """Accept a job and its first batches. False if this job id was already accepted by
        another message (a duplicate); a redelivery of the same message (`plan_key`) continues."""
        now = iso(self.clock.now())
        job: Entity = {
            "PartitionKey": job_id, "RowKey": JOB_RK, "state": "queued", "planKey": plan_key,
            "createdAt": now, "updatedAt": now, "pending": len(batch_ids),
            **{name: 0 for name in COUNTS}, **fields,
        }
        if not batch_ids:
            job["state"] = "completed"
        try:
            await self.jobs.insert(job)
        except ConcurrencyConflict:
            existing = await self.get(job_id)
            if existing is not None and existing.entity.get("rejected"):
                # A rejected job sent nothing: its id is free for the corrected job.
                await self.jobs.upsert(job, etag=existing.etag)
            elif existing is None or existing.entity.get("planKey") != plan_key:
                return False
        batches = [Op("upsert", {"PartitionKey": job_id, "RowKey": batch_rk(b), "done": False}) for b in batch_ids]
        for i in range(0, len(batches), _MAX_TXN):
            await self.jobs.transact(batches[i:i + _MAX_TXN])
        return True

    async def record_failed(self, job_id: str, reason: str, fields: dict[str, Any] | None = None) -> bool:
        """Record a job that was rejected; False if that id already names an accepted job."""
        now = iso(self.clock.now())
        entity: Entity = {
            "PartitionKey": job_id, "RowKey": JOB_RK, "state": "failed", "error": reason[:1000], "rejected": True,
            "createdAt": now, "updatedAt": now, "pending": 0, **{name: 0 for name in COUNTS},
            **(fields or {}),
        }
        try:
            await self.jobs.insert(entity)
        except ConcurrencyConflict:
            return False
        return True

    async def batch(self, job_id: str, batch_id: str) -> Row | None:
        return await self.jobs.get(job_id, batch_rk(batch_id))

    async def claim_batch(self, job_id: str, batch_id: str, message_id: str) -> bool:
        """Make `message_id` the one message that runs this batch; False if another owns it.

        The same batch can be enqueued twice (a job or batch message redelivered after a crash
        enqueues its batches again). The first message to claim it runs it; later copies are
        dropped, since the owner's own redelivery finishes the batch if its worker dies."""
        for attempt in range(_CONTENDED_ATTEMPTS):
            row = await self.batch(job_id, batch_id)
            if row is None or row.entity.get("done"):
                return False
            owner = row.entity.get("claim")
            if owner:
                return bool(owner == message_id)
            try:
                await self.jobs.merge({"PartitionKey": job_id, "RowKey": batch_rk(batch_id), "claim": message_id},
                                      etag=row.etag)
                return True
            except ConcurrencyConflict:
                await _backoff(attempt)
        raise StorageUnavailable(f"job {job_id}: too much contention claiming a batch")

    async def add_batch(self, job_id: str, batch_id: str) -> None:
        """Register a continuation batch before its message is enqueued (the job stays open)."""
        for attempt in range(_CONTENDED_ATTEMPTS):
            if await self.batch(job_id, batch_id) is not None:
                return  # added by an earlier attempt of the same batch
            job = await self.get(job_id)
            if job is None:
                raise StorageUnavailable(f"job {job_id} vanished")
            ops = [
                Op("upsert", {**job.entity, "pending": int(job.entity.get("pending") or 0) + 1,
                              "updatedAt": iso(self.clock.now())}, etag=job.etag),
                Op("upsert", {"PartitionKey": job_id, "RowKey": batch_rk(batch_id), "done": False}),
            ]
            try:
                await self.jobs.transact(ops)
                return
            except ConcurrencyConflict:
                await _backoff(attempt)
        raise StorageUnavailable(f"job {job_id}: too much contention adding a batch")

    async def finish_batch(self, job_id: str, batch_id: str, counts: dict[str, int]) -> dict[str, Any] | None:
        """Add a finished batch's counts to its job, exactly once. Returns the job's new status."""
        for attempt in range(_CONTENDED_ATTEMPTS):
            job, batch = await asyncio.gather(self.get(job_id), self.batch(job_id, batch_id))
            if job is None:
                return None
            if batch is not None and batch.entity.get("done"):
                return status_json(job)
            e = dict(job.entity)
            for name in COUNTS:
                e[name] = int(e.get(name) or 0) + counts.get(name, 0)
            e["pending"] = max(0, int(e.get("pending") or 0) - 1)
            if e.get("state") in ("queued", "running"):
                e["state"] = "completed" if e["pending"] == 0 else "running"
            e["updatedAt"] = iso(self.clock.now())
            done: Entity = {"PartitionKey": job_id, "RowKey": batch_rk(batch_id), "done": True,
                            **{name: counts.get(name, 0) for name in COUNTS}}
            ops = [Op("upsert", e, etag=job.etag),
                   Op("upsert", done, etag=batch.etag if batch is not None else None)]
            try:
                await self.jobs.transact(ops)
                return status_json(Row(e, ""))
            except ConcurrencyConflict:
                await _backoff(attempt)
        raise StorageUnavailable(f"job {job_id}: too much contention finishing a batch")

    async def mark_running(self, job: Row) -> None:
        if job.entity.get("state") == "queued":
            try:
                await self.jobs.merge({"PartitionKey": job.pk, "RowKey": JOB_RK, "state": "running"}, etag=job.etag)
            except ConcurrencyConflict:
                pass  # someone else moved it on; its state is at least as new

    async def record_outcomes(self, job_id: str, records: Sequence[OutcomeRecord]) -> None:
        at = iso(self.clock.now())
        ops = [Op("upsert", r.entity(job_id, at)) for r in records]
        await asyncio.gather(*(self.outcomes.transact(ops[i:i + _MAX_TXN]) for i in range(0, len(ops), _MAX_TXN)))

    async def outcome_of(self, job_id: str, device_id: str) -> Row | None:
        return await self.outcomes.get(job_id, device_id)

    async def report(self, job_id: str, outcome: str | None = None) -> AsyncIterator[dict[str, Any]]:
        async for row in self.outcomes.query(partition=job_id):
            if outcome is None or row.entity.get("outcome") == outcome:
                yield outcome_json(row)
