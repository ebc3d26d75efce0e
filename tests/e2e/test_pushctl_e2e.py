"""End to end with the operator CLI: apps register through devhost, `python -m pushctl` (a real
process) enqueues and follows jobs that `send_push` delivers over TLS to the fake WNS. Storage is a
private Azurite, so `--all` reaches only this module's registrations."""

from __future__ import annotations

import asyncio
import json

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from shared import runtime
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def dev(n: int) -> str:
    return f"cli0000{n:02d}-0000-0000-0000-000000000000"


async def population(s: Stack) -> None:
    assert await s.put(dev(1), "c1", ["news", "lang:en"], "alice") == 201
    assert await s.put(dev(2), "c2", ["news", "lang:fr"], "alice") == 201
    assert await s.put(dev(3), "c3", ["news", "muted"], "bob") == 201
    assert await s.put(dev(4), "c4", ["sport"]) == 201


async def test_send_wait_json_matches_the_job_record_and_report_shows_the_removed(stack: Stack) -> None:
    await population(stack)
    stack.fake.script("c2", 410)
    run = await stack.pushctl("send", "--all", "--toast", "Spring sale", "40% off <today>", "--job-id", "cli-1",
                              "--wait", "--json")
    assert run.code == 0, run.stderr
    final = json.loads(run.stdout)
    record = await runtime.job_store().status("cli-1")
    assert final == record
    assert (final["state"], final["targeted"], final["delivered"], final["removed"], final["failed"]) == (
        "completed", 4, 3, 1, 0)
    assert sorted(r.channel_id for r in stack.fake.received) == ["c1", "c2", "c3", "c4"]
    assert b"40% off &lt;today&gt;" in stack.fake.received[0].body

    report = await stack.pushctl("report", "cli-1", "--outcome", "removed", "--json")
    assert report.code == 0, report.stderr
    [row] = json.loads(report.stdout)
    assert (row["deviceId"], row["userId"], row["outcome"], row["status"]) == (dev(2), "alice", "removed", 410)
    table = await stack.pushctl("report", "cli-1", "--outcome", "removed")
    assert dev(2) in table.stdout and "410" in table.stdout and dev(1) not in table.stdout

    # The 410 removed the registration at once: the listing no longer has it.
    listing = await stack.pushctl("channels", "--user", "alice", "--json")
    assert [r["deviceId"] for r in json.loads(listing.stdout)] == [dev(1)]


async def test_dry_run_sends_nothing_and_enqueues_nothing(stack: Stack) -> None:
    await population(stack)
    probe = "pushctl-dry-probe"  # a queue nobody drains: anything enqueued would still be there
    run = await stack.pushctl("send", "--tags", "news && !muted", "--toast", "hi", "--dry-run", "--job-id", "dry-1",
                              "--json", env={"PUSH_JOBS_QUEUE": probe})
    assert run.code == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["targeted"] == 2 and {s["deviceId"] for s in doc["sample"]} == {dev(1), dev(2)}
    assert "token=" not in run.stdout and "/ch/" not in run.stdout

    same_queue = await stack.pushctl("send", "--all", "--toast", "hi", "--dry-run", "--job-id", "dry-2")
    assert same_queue.code == 0 and "would reach 4 registrations" in same_queue.stdout

    await asyncio.sleep(3)  # longer than the host's queue polling interval (2 s)
    assert stack.fake.received == [] and stack.fake.token_requests == 0
    async with QueueClient.from_connection_string(stack.conn, probe) as q:
        try:
            assert await q.peek_messages(max_messages=32) == []
        except ResourceNotFoundError:
            pass  # never even created
    store = runtime.job_store()
    assert await store.status("dry-1") is None and await store.status("dry-2") is None


async def test_a_corrected_job_reuses_the_id_of_a_rejected_one(stack: Stack) -> None:
    await population(stack)
    async with QueueClient.from_connection_string(stack.conn, "push-jobs") as q:
        await q.send_message(json.dumps({"jobId": "fixme", "target": {},
                                         "notification": {"type": "toast", "text": ["hi"]}}))
    store = runtime.job_store()
    for _ in range(100):
        rejected = await store.status("fixme")
        if rejected is not None:
            break
        await asyncio.sleep(0.1)
    assert rejected is not None and rejected["state"] == "failed"

    run = await stack.pushctl("send", "--user", "alice", "--toast", "hi", "--job-id", "fixme", "--wait", "--json")
    assert run.code == 0, run.stderr
    assert "was rejected before" in run.stderr
    final = json.loads(run.stdout)  # this job's record, not the stale rejection it replaced
    assert (final["state"], final["targeted"], final["delivered"]) == ("completed", 2, 2)
    assert sorted(r.channel_id for r in stack.fake.received) == ["c1", "c2"]
