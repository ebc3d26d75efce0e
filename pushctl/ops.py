"""What the commands do against storage, through the process-wide clients of `shared.runtime`.

Audiences (a dry run, `channels`) are read by `Dispatcher.audience`: the same batches, pages and
filters `send_push` uses, with a sender and an enqueuer that refuse to run, so a dry run cannot
send or enqueue anything even by mistake.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from shared import runtime
from shared.channels import Recipient
from shared.dispatch import Dispatcher, SendResult
from shared.errors import StorageError, StorageUnavailable
from shared.jobs import Job, Target
from shared.models import Registration
from shared.notification import Notification
from shared.settings import Settings

TERMINAL_STATES = ("completed", "failed", "cancelled")
SAMPLE_SIZE = 10
_POINT_READS = 32  # registrations read at once when `channels` completes index entries
# A storage blip while waiting should not end the wait: give up after this many failed polls in a row.
_POLL_FAILURES = 10


async def _never_send(channel_uri: str, notification: Notification) -> SendResult:
    raise RuntimeError("pushctl resolves audiences without sending")


async def _never_enqueue(messages: list[str], delay_s: float = 0) -> None:
    raise RuntimeError("pushctl resolves audiences without enqueueing")


def resolver(settings: Settings) -> Dispatcher:
    """A dispatcher that can read audiences and nothing else."""
    return Dispatcher(runtime.channel_store(settings), runtime.job_store(settings), _never_send, _never_enqueue)


@dataclass
class DryRun:
    job: Job
    targeted: int = 0
    sample: list[Recipient] = field(default_factory=list)
    existing: dict[str, Any] | None = None  # the record of a job with the same id, if any


async def dry_run(settings: Settings, job: Job, on_progress: Callable[[int], None] | None = None) -> DryRun:
    """Count the job's audience and keep a sample; reads only."""
    store = runtime.job_store(settings)
    result = DryRun(job, existing=await store.status(job.job_id) if await store.id_taken(job.job_id) else None)
    async for r in resolver(settings).audience(job):
        result.targeted += 1
        if len(result.sample) < SAMPLE_SIZE:
            result.sample.append(r)
        if on_progress is not None and result.targeted % 500 == 0:
            on_progress(result.targeted)
    return result


async def job_status(settings: Settings, job_id: str) -> dict[str, Any] | None:
    return await runtime.job_store(settings).status(job_id)


async def cancel(settings: Settings, job_id: str) -> dict[str, Any] | None:
    return await runtime.job_store(settings).cancel(job_id)


async def enqueue(settings: Settings, job: Job) -> None:
    """The job as plain UTF-8 JSON on `PUSH_JOBS_QUEUE` (the app reads `messageEncoding: none`)."""
    await runtime.enqueue(settings.push_jobs_queue, [job.to_message()], settings)


@dataclass(frozen=True)
class Submitted:
    enqueued: bool
    # The record already under this job id: the accepted job that holds it (not enqueued), or a
    # rejected job that left it free and that this one replaces (enqueued).
    previous: dict[str, Any] | None = None


async def submit(settings: Settings, job: Job) -> Submitted:
    """Enqueue the job unless its id is taken (the service would drop it as a duplicate)."""
    store = runtime.job_store(settings)
    try:
        previous = await store.status(job.job_id)
        taken = previous is not None and await store.id_taken(job.job_id)
    except StorageUnavailable:
        raise
    except StorageError:
        # No read access to the job table (an operator with only the queue sender role): the
        # service still drops a duplicate id, it just cannot be said beforehand.
        previous, taken = None, False
    if taken:
        return Submitted(False, previous)
    await enqueue(settings, job)
    return Submitted(True, previous)


async def report(settings: Settings, job_id: str, outcome: str | None) -> AsyncIterator[dict[str, Any]]:
    async for row in runtime.job_store(settings).report(job_id, outcome):
        yield row


async def registrations(settings: Settings, target: Target) -> AsyncIterator[Registration]:
    """The registrations a send to `target` would reach, in full (the index entries an audience is
    read from lack the dates, so each is completed by a point read, a few at a time)."""
    store = runtime.channel_store(settings)
    # A job only because audiences are planned per job; nothing is ever sent with it.
    listing = Job("pushctl-channels", target, Notification("raw", b"-"))
    pending: list[str] = []

    async def flush() -> list[Registration]:
        found = await asyncio.gather(*(store.get(d) for d in pending))
        pending.clear()
        return [r for r in found if r is not None]  # removed since the index was read

    async for r in resolver(settings).audience(listing):
        pending.append(r.device_id)
        if len(pending) >= _POINT_READS:
            for reg in await flush():
                yield reg
    for reg in await flush():
        yield reg


async def wait(settings: Settings, job_id: str, on_update: Callable[[dict[str, Any] | None], None],
               interval: float = 0.5, stale: str | None = None) -> dict[str, Any]:
    """Poll the job's record until it is completed, failed or cancelled; return its status.

    `stale`: the `createdAt` of a rejected record the job replaces; it is not this job's and is
    waited past (the service writes a new record when it accepts the job)."""
    store = runtime.job_store(settings)
    failures = 0
    while True:
        try:
            status = await store.status(job_id)
            if status is not None and stale is not None and status["createdAt"] == stale:
                status = None
        except StorageUnavailable:
            failures += 1
            if failures >= _POLL_FAILURES:
                raise
        else:
            failures = 0
            on_update(status)
            if status is not None and status["state"] in TERMINAL_STATES:
                return status
        await asyncio.sleep(interval)


__all__ = [
    "SAMPLE_SIZE",
    "TERMINAL_STATES",
    "DryRun",
    "Submitted",
    "dry_run",
    "enqueue",
    "job_status",
    "registrations",
    "report",
    "resolver",
    "submit",
    "wait",
]
