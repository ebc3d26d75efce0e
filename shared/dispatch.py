"""Push jobs: accept a job, split its audience into batches, and send each batch (contract section 2).

Two kinds of message share the `push-jobs` queue:
- a **job**, as operators enqueue it: validated, recorded, then planned into batches;
- a **batch** (`{"kind": "batch", ...}`), enqueued by the service itself: one bounded slice of
  the audience. A batch that reads a full page enqueues its continuation *before* sending, so
  slices run on as many instances as the platform scales out to, and no invocation does
  unbounded work. Batch messages name a key range, never the recipients, so they stay tiny.

Audience sources, the most selective first (every given selector still filters, AND):
devices (point reads) > users (one index partition each) > tags (the partitions of the tags the
expression requires, `tagexpr.index_plan`) > all (a scan of `channels` in deviceId shards).

Delivery at most once per recipient under redelivery: a batch delivered again (a crash, a
timeout) first reads the outcomes already recorded for its slice and skips those recipients, so
only sends whose outcome was not yet recorded (in flight, or in the unflushed buffer) repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from shared import tagexpr
from shared.channels import ChannelStore, Recipient
from shared.errors import ValidationError
from shared.jobs import Job, Target, parse_job, peek_job_id
from shared.jobstore import JobStore, OutcomeRecord
from shared.notification import Notification

log = logging.getLogger(__name__)

PAGE = 500            # recipients read per batch invocation
USERS_PER_BATCH = 50
DEVICES_PER_BATCH = 100
FLUSH_EVERY = 100     # outcomes recorded per group entity; bounds resends after a crash
# WNS may throttle for longer than a send should wait in place (shared/wns.py waits up to 60 s):
# such recipients go into a retry batch that the queue delivers after Retry-After, at most
# DEFER_ROUNDS times, each delay capped (the queue accepts up to 7 days; an hour is plenty).
DEFER_ROUNDS = 3
MAX_DEFER_S = 3600.0
# deviceIds are 16-64 of [-0-9A-Z_a-z]; these bounds cut the key space into shards that run in
# parallel, finer where GUIDs (hex) put most ids.
SHARD_BOUNDS: tuple[str | None, ...] = (
    None, "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "C", "E", "G", "N", "U",
    "_", "a", "b", "c", "d", "e", "f", "g", "n", "u", "~",
)


@dataclass(frozen=True)
class SendResult:
    """What one send came to, in the terms the job records use."""

    outcome: str  # delivered | removed (channel gone) | failed | deferred (throttled: try later)
    status: int | None = None
    wns_status: str | None = None
    msg_id: str | None = None
    error: str | None = None
    retry_after: float | None = None  # for `deferred`: seconds WNS asked us to wait


class Sender(Protocol):
    async def __call__(self, channel_uri: str, notification: Notification) -> SendResult: ...


class Enqueue(Protocol):
    """Put messages on the jobs queue, visible after `delay_s` seconds."""

    async def __call__(self, messages: list[str], delay_s: float = 0) -> None: ...


def _batch_id(job_id: str, source: dict[str, Any], after: str | None) -> str:
    raw = json.dumps([job_id, source, after], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def batch_message(job_id: str, source: dict[str, Any], after: str | None = None, round_: int = 0
                  ) -> dict[str, Any]:
    msg: dict[str, Any] = {"kind": "batch", "jobId": job_id, "batchId": _batch_id(job_id, source, after),
                           "source": source, "after": after}
    if round_:
        msg["round"] = round_  # a retry of throttled recipients (the id covers it via source)
    return msg


def plan(job: Job) -> list[dict[str, Any]]:
    """The first batches of a job (pure)."""
    t, jid = job.target, job.job_id
    if t.devices is not None:
        devs = sorted(t.devices)
        return [batch_message(jid, {"devices": devs[i:i + DEVICES_PER_BATCH]})
                for i in range(0, len(devs), DEVICES_PER_BATCH)]
    if t.users is not None:
        users = sorted(t.users)
        return [batch_message(jid, {"users": users[i:i + USERS_PER_BATCH]})
                for i in range(0, len(users), USERS_PER_BATCH)]
    if t.expression is not None:
        tags = tagexpr.index_plan(t.expression)
        if tags is not None:
            return [batch_message(jid, {"tag": tag}) for tag in tags]
    return [batch_message(jid, {"scan": [lo, hi]}) for lo, hi in itertools.pairwise(SHARD_BOUNDS)]


def selects(target: Target, r: Recipient, plan_tags: list[str] | None, source_tag: str | None) -> bool:
    """Whether a recipient read from a source belongs to the audience (every selector, AND)."""
    if target.users is not None and r.user_id not in target.users:
        return False
    if target.devices is not None and r.device_id not in target.devices:
        return False
    if target.expression is not None and not target.expression.matches(frozenset(r.tags)):
        return False
    # Read from several tag partitions, a recipient is owned by the first plan tag it has,
    # so it is sent once without remembering who was seen.
    return not (source_tag is not None and plan_tags is not None
                and tagexpr.first_partition_owner(plan_tags, r.tags) != source_tag)


class Dispatcher:
    def __init__(self, store: ChannelStore, jobs: JobStore, send: Sender, enqueue: Enqueue,
                 max_in_flight: int = 200) -> None:
        self.store = store
        self.jobs = jobs
        self.send = send
        self.enqueue = enqueue
        self.max_in_flight = max_in_flight

    async def handle(self, body: bytes, message_id: str, dequeue_count: int) -> None:
        """One queue message. Raises only for faults worth a retry (storage); a malformed job
        is recorded as failed and the message is consumed."""
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
        if isinstance(data, dict) and data.get("kind") == "batch":
            await self.run_batch(data, message_id, dequeue_count)
            return
        await self.accept(body, message_id)

    async def accept(self, body: bytes, message_id: str) -> None:
        try:
            job = parse_job(body)
        except ValidationError as exc:
            job_id = peek_job_id(body) or f"invalid-{message_id}"
            recorded = await self.jobs.record_failed(job_id, f"{exc.code}: {exc.message}")
            log.warning("send_push: job %s rejected (%s)%s", job_id, exc.code,
                        "" if recorded else "; that id names an accepted job, left as it was")
            return
        batches = plan(job)
        fields = {
            "target": json.dumps(job.target.to_json()),
            "notification": json.dumps(job.notification.to_json()),
            "type": job.notification.type,
        }
        if not await self.jobs.create(job.job_id, fields, [b["batchId"] for b in batches], message_id):
            log.info("send_push: job %s was already accepted; not sent again", job.job_id)
            return
        await self.enqueue([json.dumps(b, separators=(",", ":")) for b in batches])
        log.info("send_push: job %s accepted, %d batches", job.job_id, len(batches))

    async def run_batch(self, msg: dict[str, Any], message_id: str, dequeue_count: int) -> None:
        job_id, batch_id = str(msg.get("jobId")), str(msg.get("batchId"))
        job_row = await self.jobs.get(job_id)
        if job_row is None or job_row.entity.get("state") not in ("queued", "running"):
            return  # cancelled, failed, or unknown: nothing to send
        if not await self.jobs.claim_batch(job_id, batch_id, message_id):
            return  # finished already, or another copy of this batch's message owns it
        # The job was validated when accepted; parsing it again rebuilds the typed target and
        # notification (one XML check per batch, not per recipient).
        job = parse_job(json.dumps({"jobId": job_id, "target": json.loads(job_row.entity["target"]),
                                    "notification": json.loads(job_row.entity["notification"])}))
        target, notification = job.target, job.notification
        source: dict[str, Any] = msg["source"]
        plan_tags = tagexpr.index_plan(target.expression) if target.expression is not None else None

        recipients, next_after = await self._read(source, msg.get("after"), target, plan_tags)
        if next_after is not None:
            cont = batch_message(job_id, source, next_after)
            await self.jobs.add_batch(job_id, cont["batchId"])
            await self.enqueue([json.dumps(cont, separators=(",", ":"))])

        round_ = int(msg.get("round") or 0)
        counts = {"targeted": len(recipients), "delivered": 0, "removed": 0, "failed": 0}
        todo = recipients
        if dequeue_count > 1:
            # Redelivered: skip whoever already has an outcome (sent before the crash).
            known = await self.jobs.batch_outcomes(job_id, batch_id)
            todo = []
            for r in recipients:
                rec = known.get(r.device_id)
                if rec is None:
                    todo.append(r)
                else:
                    counts[rec.outcome] += 1
        records, deferred = await self._send_all(job_id, batch_id, todo, notification, final=round_ >= DEFER_ROUNDS)
        for rec in records:
            counts[rec.outcome] += 1
        if deferred:
            # Throttled for longer than a send waits: the retry batch counts them when it runs.
            counts["targeted"] -= len(deferred)
            await self._defer(job_id, [r for r, _ in deferred], max(d for _, d in deferred), round_ + 1)
        await self.jobs.finish_batch(job_id, batch_id, counts)

    async def _defer(self, job_id: str, recipients: list[Recipient], delay_s: float, round_: int) -> None:
        """A retry batch of throttled recipients, delivered by the queue after `delay_s`."""
        devices = sorted(r.device_id for r in recipients)
        retries = [batch_message(job_id, {"devices": devices[i:i + DEVICES_PER_BATCH], "round": round_},
                                 round_=round_)
                   for i in range(0, len(devices), DEVICES_PER_BATCH)]
        for b in retries:
            await self.jobs.add_batch(job_id, b["batchId"])
        delay = min(max(delay_s, 1.0), MAX_DEFER_S)
        await self.enqueue([json.dumps(b, separators=(",", ":")) for b in retries], delay)
        log.info("send_push: job %s: %d throttled recipients retried in %.0f s (round %d)",
                 job_id, len(devices), delay, round_)

    async def audience(self, job: Job) -> AsyncIterator[Recipient]:
        """Every recipient `job` reaches, read batch by batch and page by page exactly as
        `run_batch` reads them, sending, recording and enqueueing nothing (`pushctl send --dry-run`)."""
        target = job.target
        plan_tags = tagexpr.index_plan(target.expression) if target.expression is not None else None
        for batch in plan(job):
            after: str | None = batch["after"]
            while True:
                recipients, after = await self._read(batch["source"], after, target, plan_tags)
                for r in recipients:
                    yield r
                if after is None:
                    break

    async def _read(self, source: dict[str, Any], after: str | None, target: Target,
                    plan_tags: list[str] | None) -> tuple[list[Recipient], str | None]:
        """The batch's recipients and, if the page was full, where the next batch starts."""
        if "devices" in source:
            found = await asyncio.gather(*(self.store.get(d) for d in source["devices"]))
            regs = [r for r in found if r is not None]
            rs = [Recipient(r.device_id, r.channel_uri, r.user_id, r.tags, r.version) for r in regs]
            return [r for r in rs if selects(target, r, None, None)], None
        if "users" in source:
            out: list[Recipient] = []
            for user in source["users"]:
                async for r in self.store.by_user(user):
                    if selects(target, r, None, None):
                        out.append(r)
            return out, None
        it: AsyncIterator[Recipient]
        source_tag: str | None = None
        if "tag" in source:
            source_tag = str(source["tag"])
            it = self.store.by_tag(source_tag, after=after, page_size=PAGE)
        else:
            lo, hi = source["scan"]
            it = self.store.all(after=after if after is not None else lo, until=hi, page_size=PAGE)
        out, read, last = [], 0, None
        async for r in it:
            read += 1
            last = r.device_id
            if selects(target, r, plan_tags, source_tag):
                out.append(r)
            if read >= PAGE:
                break
        return out, (last if read >= PAGE else None)

    async def _send_all(self, job_id: str, batch_id: str, todo: list[Recipient], notification: Notification,
                        final: bool = False) -> tuple[list[OutcomeRecord], list[tuple[Recipient, float]]]:
        """Send to `todo`; return the outcomes recorded and the recipients deferred (throttled,
        with the wait WNS asked for). With `final`, a throttled recipient is recorded failed."""
        sem = asyncio.Semaphore(self.max_in_flight)
        done: list[OutcomeRecord] = []
        deferred: list[tuple[Recipient, float]] = []
        buffer: list[OutcomeRecord] = []
        flush_lock = asyncio.Lock()

        async def flush(force: bool = False) -> None:
            async with flush_lock:
                if buffer and (force or len(buffer) >= FLUSH_EVERY):
                    chunk = buffer[:]
                    buffer.clear()
                    await self.jobs.record_outcomes(job_id, batch_id, chunk)

        async def one(r: Recipient) -> None:
            async with sem:
                result = await self.send(r.channel_uri, notification)
            if result.outcome == "deferred":
                if not final:
                    deferred.append((r, result.retry_after or 60.0))
                    return
                result = SendResult("failed", result.status, result.wns_status, result.msg_id,
                                    f"{result.error or 'throttled'}: still throttled after {DEFER_ROUNDS} later tries")
            if result.outcome == "removed":
                # WNS says the channel is gone: drop the registration now, unless the app has
                # re-registered since (a new version holds a new channel).
                await self.store.remove_version(r.device_id, r.version)
            rec = OutcomeRecord(r.device_id, result.outcome, result.status, result.wns_status,
                                result.msg_id, result.error, r.user_id)
            done.append(rec)
            buffer.append(rec)
            await flush()

        await asyncio.gather(*(one(r) for r in todo))
        await flush(force=True)
        return done, deferred
