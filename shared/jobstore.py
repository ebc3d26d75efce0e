"""Job records, their batches and per-recipient outcomes (table `pushjobs` and `pushoutcomes`).

`pushjobs`, one partition per job (PK = jobId):
    RK "job"        the job itself (target, notification), when it was accepted, and `failed`
                    with the reason when it was rejected
    RK "b:<id>"     one row per batch: which message owns it (`claim`), then `done` and the
                    batch's counts (targeted/delivered/removed/failed)
Each batch writes only its own row, so any number of instances finish batches at once without
contending for a shared counter (a shared job row measured 5x slower under 27 parallel batches).
A job's status is read by summing its batch rows (one partition query): it is `completed` when
every batch is done, and a batch registers its continuation before it marks itself done, so a
job never looks complete while work remains.

`pushoutcomes`: PK = jobId, RK = "<batchId>:<random>": what happened to each recipient
(deviceId, outcome, HTTP status, X-WNS-Status, X-WNS-Msg-ID, error, userId), up to 100 records
to an entity, written as sends complete. One entity per group rather than per recipient: the
Azure SDK's per-entity serialisation and multipart parsing of transactions cost more CPU than the
sends themselves (bench/README.md). A redelivered batch reads its groups back with one range
query and skips recipients that already have an outcome.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
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

    def to_row(self) -> list[Any]:
        return [self.device_id, self.outcome, self.status, self.wns_status, self.msg_id, self.error, self.user_id]

    @classmethod
    def from_row(cls, row: list[Any]) -> OutcomeRecord:
        return cls(*row[:7])

    def to_json(self, at: object) -> dict[str, Any]:
        return {
            "deviceId": self.device_id,
            "userId": self.user_id,
            "outcome": self.outcome,
            "status": self.status,
            "wnsStatus": self.wns_status,
            "msgId": self.msg_id,
            "error": self.error,
            "at": at,
        }


# A string property holds at most 64 KiB (32K UTF-16 characters): a group's JSON is split over
# numbered properties of this many characters.
_CHUNK_CHARS = 30_000


def outcome_group_entity(job_id: str, batch_id: str, records: Sequence[OutcomeRecord], at: str) -> Entity:
    text = json.dumps([r.to_row() for r in records], separators=(",", ":"), ensure_ascii=False)
    parts = {f"o{i}": text[j:j + _CHUNK_CHARS] for i, j in enumerate(range(0, len(text), _CHUNK_CHARS))}
    return {"PartitionKey": job_id, "RowKey": f"{batch_id}:{uuid.uuid4().hex[:12]}", "batch": batch_id,
            "count": len(records), "at": at, "parts": len(parts), **parts}


def outcome_group(row: Row) -> list[OutcomeRecord]:
    e = row.entity
    text = "".join(str(e.get(f"o{i}", "")) for i in range(int(e.get("parts") or 0)))
    return [OutcomeRecord.from_row(r) for r in json.loads(text or "[]")]


def status_json(job: Row, batches: Sequence[Row] = ()) -> dict[str, Any]:
    """The status shape of contract section 4 (`pushctl status --json`), from the job's rows."""
    e = job.entity
    out: dict[str, Any] = {"jobId": job.pk}
    for name in COUNTS:
        out[name] = sum(int(b.entity.get(name) or 0) for b in batches)
    done = sum(1 for b in batches if b.entity.get("done"))
    started = done or any(b.entity.get("claim") for b in batches)
    state = str(e.get("state") or "queued")
    # The first batches' rows are written just after the job's: until all are there, not done.
    planned = int(e.get("planned") or 0)
    if state not in ("failed", "cancelled"):
        complete = done == len(batches) and len(batches) >= planned
        state = "completed" if complete else "running" if started else "queued"
    out["state"] = state
    out["pendingBatches"] = max(planned, len(batches)) - done
    out["createdAt"] = e.get("createdAt")
    finished = [str(b.entity["finishedAt"]) for b in batches if b.entity.get("finishedAt")]
    out["updatedAt"] = max([str(e.get("updatedAt") or ""), *finished])
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

    async def _rows(self, job_id: str) -> tuple[Row | None, list[Row]]:
        """The job's row and its batch rows: one partition query."""
        job, batches = None, []
        async for row in self.jobs.query(partition=job_id):
            if row.rk == JOB_RK:
                job = row
            elif row.rk.startswith("b:"):
                batches.append(row)
        return job, batches

    async def status(self, job_id: str) -> dict[str, Any] | None:
        job, batches = await self._rows(job_id)
        return status_json(job, batches) if job else None

    async def create(self, job_id: str, fields: dict[str, Any], batch_ids: Sequence[str], plan_key: str) -> bool:
        """Accept a job and its first batches. False if this job id was already accepted by
        another message (a duplicate); a redelivery of the same message (`plan_key`) continues."""
        now = iso(self.clock.now())
        job: Entity = {
            "PartitionKey": job_id, "RowKey": JOB_RK, "state": "queued", "planKey": plan_key,
            "createdAt": now, "updatedAt": now, "planned": len(batch_ids), **fields,
        }
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

    async def id_taken(self, job_id: str) -> bool:
        """Whether a new job message with this id would be dropped as a duplicate: an accepted job
        holds it, while a rejected one leaves it free for the corrected job (see `create`)."""
        row = await self.get(job_id)
        return row is not None and not row.entity.get("rejected")

    async def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Stop a job: batches not yet started are skipped (one already sending finishes its page).
        A job that already ended keeps its state. None if there is no such job."""
        for _ in range(_CONTENDED_ATTEMPTS):
            job, batches = await self._rows(job_id)
            if job is None:
                return None
            status = status_json(job, batches)
            if status["state"] in ("completed", "failed", "cancelled"):
                return status
            try:
                await self.jobs.merge({"PartitionKey": job_id, "RowKey": JOB_RK, "state": "cancelled",
                                       "updatedAt": iso(self.clock.now())}, etag=job.etag)
            except ConcurrencyConflict:
                continue
            return await self.status(job_id)
        raise StorageUnavailable(f"job {job_id}: too much contention cancelling")

    async def record_failed(self, job_id: str, reason: str, fields: dict[str, Any] | None = None) -> bool:
        """Record a job that was rejected; False if that id already names an accepted job."""
        now = iso(self.clock.now())
        entity: Entity = {
            "PartitionKey": job_id, "RowKey": JOB_RK, "state": "failed", "error": reason[:1000], "rejected": True,
            "createdAt": now, "updatedAt": now, **(fields or {}),
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
        try:
            await self.jobs.insert({"PartitionKey": job_id, "RowKey": batch_rk(batch_id), "done": False})
        except ConcurrencyConflict:
            pass  # added by an earlier attempt of the same batch: keep its claim and state

    async def finish_batch(self, job_id: str, batch_id: str, counts: dict[str, int]) -> None:
        """Record a batch as done with its counts (only the batch's owner calls this)."""
        await self.jobs.merge({
            "PartitionKey": job_id, "RowKey": batch_rk(batch_id), "done": True,
            "finishedAt": iso(self.clock.now()), **{name: counts.get(name, 0) for name in COUNTS},
        })

    async def record_outcomes(self, job_id: str, batch_id: str, records: Sequence[OutcomeRecord]) -> None:
        """One entity for a group of outcomes (the dispatcher flushes every 100): one write
        instead of a hundred, and a redelivered batch reads back its own with one query."""
        if records:
            await self.outcomes.insert(outcome_group_entity(job_id, batch_id, records, iso(self.clock.now())))

    async def batch_outcomes(self, job_id: str, batch_id: str) -> dict[str, OutcomeRecord]:
        """The outcomes a batch already recorded, by deviceId (for a redelivered batch)."""
        out: dict[str, OutcomeRecord] = {}
        async for row in self.outcomes.query(partition=job_id, after=batch_id + ":", until=batch_id + ";"):
            for rec in outcome_group(row):
                out[rec.device_id] = rec
        return out

    async def report(self, job_id: str, outcome: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every recipient's outcome (or only those with `outcome`), a group at a time."""
        async for row in self.outcomes.query(partition=job_id):
            for rec in outcome_group(row):
                if outcome is None or rec.outcome == outcome:
                    yield rec.to_json(row.entity.get("at"))
