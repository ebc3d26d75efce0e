"""Fan-out and job records on the in-memory tables, with a fake sender (the WNS transport is
tested on its own, against a TLS fake, in tests/integration/test_wns_client.py)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from shared import dispatch
from shared.clock import FixedClock
from shared.dispatch import Dispatcher, SendResult
from shared.jobstore import JobStore
from shared.notification import Notification
from shared.tables import MemoryTable
from tests.support.stores import memory_store

URI = "https://cloud.notify.windows.com/?token={}"


class Crash(Exception):
    pass


class Harness:
    def __init__(self) -> None:
        self.clock = FixedClock()
        self.store = memory_store(self.clock)
        self.jobs = JobStore(MemoryTable("pushjobs"), MemoryTable("pushoutcomes"), self.clock)
        self.queue: list[tuple[str, int, str]] = []  # body, dequeue count, message id
        self.sent: Counter[str] = Counter()
        self.answers: dict[str, str] = {}
        self.crash_after: int | None = None
        self.delays: list[float] = []  # the delay asked for each enqueue
        self.throttle: Counter[str] = Counter()  # uri -> how many more sends are throttled

    async def send(self, uri: str, notification: Notification) -> SendResult:
        if self.crash_after is not None and sum(self.sent.values()) >= self.crash_after:
            raise Crash
        await asyncio.sleep(0)  # let concurrent batches interleave, as real sends would
        if self.throttle[uri] > 0:
            self.throttle[uri] -= 1
            return SendResult("deferred", 406, None, None, "throttled", retry_after=120)
        self.sent[uri] += 1
        outcome = self.answers.get(uri, "delivered")
        return SendResult(outcome, {"delivered": 200, "removed": 410, "failed": 403}[outcome])

    async def enqueue(self, messages: list[str], delay_s: float = 0) -> None:
        self.delays.append(delay_s)
        self.queue.extend((m, 1, f"m{len(self.queue)}-{i}-{m[-12:]}") for i, m in enumerate(messages))

    def dispatcher(self) -> Dispatcher:
        return Dispatcher(self.store, self.jobs, self.send, self.enqueue, max_in_flight=20)

    async def submit(self, job: dict[str, object] | bytes) -> None:
        body = job if isinstance(job, bytes) else json.dumps(job).encode()
        self.queue.append((body.decode(), 1, f"op{len(self.queue)}"))

    async def drain(self) -> None:
        """Run every message like the host would: a failure makes the message visible again."""
        while self.queue:
            body, count, msg_id = self.queue.pop(0)
            try:
                await self.dispatcher().handle(body.encode(), msg_id, count)
            except Crash:
                self.crash_after = None
                self.queue.append((body, count + 1, msg_id))

    def uri(self, n: int) -> str:
        return URI.format(n)


def dev(n: int) -> str:
    return f"{n:08d}-0000-0000-0000-000000000000"


TOAST = {"type": "toast", "text": ["Hello", "World"]}


@pytest.fixture
async def h() -> Harness:
    h = Harness()
    await h.store.put(dev(1), h.uri(1), "alice", ["news", "lang:en"])
    await h.store.put(dev(2), h.uri(2), "alice", ["news", "lang:fr", "muted"])
    await h.store.put(dev(3), h.uri(3), "bob", ["news", "lang:fr"])
    await h.store.put(dev(4), h.uri(4), None, ["sport"])
    await h.store.put(dev(5), h.uri(5), "carol", [])
    return h


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({"all": True}, {1, 2, 3, 4, 5}),
        ({"users": ["alice"]}, {1, 2}),
        ({"users": ["alice", "carol", "nobody"]}, {1, 2, 5}),
        ({"devices": [dev(4)]}, {4}),
        ({"devices": [dev(1)], "users": ["bob"]}, set()),
        ({"devices": [dev(1), dev(3)], "users": ["bob"]}, {3}),
        ({"tags": "news && (lang:en || lang:fr) && !muted"}, {1, 3}),
        ({"tags": "lang:en || lang:fr"}, {1, 2, 3}),
        ({"tags": "!news"}, {4, 5}),
        ({"tags": "news", "users": ["alice"]}, {1, 2}),
    ],
)
async def test_each_target_reaches_exactly_its_audience(h: Harness, target: dict[str, object],
                                                        expected: set[int]) -> None:
    await h.submit({"jobId": "j1", "target": target, "notification": TOAST})
    await h.drain()
    assert set(h.sent) == {h.uri(n) for n in expected}
    assert all(c == 1 for c in h.sent.values())
    status = await h.jobs.status("j1")
    assert status is not None and status["state"] == "completed"
    assert status["targeted"] == status["delivered"] == len(expected)


async def test_a_batch_enqueued_twice_runs_once(h: Harness) -> None:
    """A redelivered job or batch enqueues its batches again: only one copy may send."""
    await h.submit({"jobId": "twice", "target": {"all": True}, "notification": TOAST})
    body, _, _ = h.queue.pop(0)
    await h.dispatcher().handle(body.encode(), "job-msg", 1)
    await h.dispatcher().handle(body.encode(), "job-msg", 2)  # the same job message, redelivered
    assert len(h.queue) == 2 * len(dispatch.SHARD_BOUNDS[1:])
    copies, h.queue = h.queue, []
    await asyncio.gather(*(h.dispatcher().handle(b.encode(), mid, n) for b, n, mid in copies))
    assert h.sent == Counter({h.uri(n): 1 for n in range(1, 6)})
    status = await h.jobs.status("twice")
    assert status is not None and status["state"] == "completed" and status["delivered"] == 5


async def test_same_job_id_is_sent_once(h: Harness) -> None:
    for _ in range(2):
        await h.submit({"jobId": "once", "target": {"all": True}, "notification": TOAST})
    await h.drain()
    assert sum(h.sent.values()) == 5


@pytest.mark.parametrize(
    "body",
    [
        b"not json", b"{}", b'{"target": {}, "notification": {"type": "toast", "text": ["x"]}}',
        json.dumps({"jobId": "bad-xml", "target": {"all": True},
                    "notification": {"type": "toast", "payload": "<toast><visual>"}}).encode(),
        json.dumps({"jobId": "big", "target": {"all": True},
                    "notification": {"type": "raw", "payload": "x" * 5001}}).encode(),
        json.dumps({"jobId": "bad-tags", "target": {"tags": "news && (x"}, "notification": TOAST}).encode(),
    ],
)
async def test_malformed_jobs_send_nothing_and_are_recorded(h: Harness, body: bytes) -> None:
    await h.submit(body)
    await h.submit({"jobId": "next", "target": {"users": ["bob"]}, "notification": TOAST})
    await h.drain()
    assert set(h.sent) == {h.uri(3)}  # only the next, valid job sent anything
    failed = [r.entity for r in [r async for r in h.jobs.jobs.query()] if r.entity.get("state") == "failed"]
    assert len(failed) == 1 and failed[0]["error"]


async def test_a_rejected_job_id_can_be_reused_by_the_corrected_job(h: Harness) -> None:
    await h.submit({"jobId": "fixme", "target": {}, "notification": TOAST})
    await h.drain()
    rejected = await h.jobs.status("fixme")
    assert rejected is not None and rejected["state"] == "failed" and not h.sent
    await h.submit({"jobId": "fixme", "target": {"users": ["bob"]}, "notification": TOAST})
    await h.drain()
    status = await h.jobs.status("fixme")
    assert status is not None and status["state"] == "completed" and status["error"] is None
    assert set(h.sent) == {h.uri(3)}
    # An accepted id stays taken: a rejected duplicate does not overwrite the real record.
    await h.submit({"jobId": "fixme", "target": {}, "notification": TOAST})
    await h.drain()
    status = await h.jobs.status("fixme")
    assert status is not None and status["state"] == "completed"


async def test_outcomes_remove_gone_channels_and_count(h: Harness) -> None:
    h.answers = {h.uri(1): "removed", h.uri(2): "failed"}
    await h.submit({"jobId": "j", "target": {"users": ["alice", "bob"]}, "notification": TOAST})
    await h.drain()
    assert await h.store.get(dev(1)) is None
    assert [r.device_id async for r in h.store.by_tag("news")] == [dev(2), dev(3)]
    status = await h.jobs.status("j")
    assert status is not None
    assert (status["delivered"], status["removed"], status["failed"], status["targeted"]) == (1, 1, 1, 3)
    failed = [r async for r in h.jobs.report("j", "failed")]
    assert [f["deviceId"] for f in failed] == [dev(2)] and failed[0]["status"] == 403


async def test_large_audience_fans_out_in_bounded_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "PAGE", 7)
    h = Harness()
    for n in range(100):
        await h.store.put(f"{n:02d}aaaaaaaaaaaaaaaaaaaa", h.uri(n), None, ["news"] if n % 2 else [])
    await h.submit({"jobId": "wide", "target": {"all": True}, "notification": TOAST})
    await h.submit({"jobId": "tagged", "target": {"tags": "news"}, "notification": TOAST})
    await h.drain()
    assert h.sent == Counter({h.uri(n): 1 + (n % 2) for n in range(100)})
    for job, n in (("wide", 100), ("tagged", 50)):
        status = await h.jobs.status(job)
        assert status is not None and status["state"] == "completed" and status["delivered"] == n
    batches = [r for r in [r async for r in h.jobs.jobs.query()] if r.rk.startswith("b:")]
    assert all(r.entity["done"] for r in batches)
    assert max(r.entity["targeted"] for r in batches) <= 7


async def test_a_cancelled_job_sends_no_further_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "PAGE", 5)
    h = Harness()
    for n in range(30):
        await h.store.put(f"{n:02d}cccccccccccccccccccc", h.uri(n), None, [])
    await h.submit({"jobId": "stop", "target": {"all": True}, "notification": TOAST})
    body, count, mid = h.queue.pop(0)
    await h.dispatcher().handle(body.encode(), mid, count)  # accepted: its batches are queued
    body, count, mid = h.queue.pop(0)
    await h.dispatcher().handle(body.encode(), mid, count)  # one batch runs
    sent_before = sum(h.sent.values())
    status = await h.jobs.cancel("stop")
    assert status is not None and status["state"] == "cancelled"
    await h.drain()
    assert sum(h.sent.values()) == sent_before
    status = await h.jobs.status("stop")
    assert status is not None and status["state"] == "cancelled" and status["pendingBatches"] > 0
    assert await h.jobs.cancel("nope") is None


async def test_recipients_throttled_for_long_are_retried_later_in_their_own_batch(h: Harness) -> None:
    h.throttle[h.uri(1)] = 1  # WNS: 406, Retry-After 120 s (longer than a send waits in place)
    h.throttle[h.uri(2)] = 2
    await h.submit({"jobId": "slow", "target": {"users": ["alice", "bob"]}, "notification": TOAST})
    await h.drain()
    assert h.sent == Counter({h.uri(1): 1, h.uri(2): 1, h.uri(3): 1})
    assert [d for d in h.delays if d] == [120, 120]  # two retry rounds, each after Retry-After
    status = await h.jobs.status("slow")
    assert status is not None and status["state"] == "completed"
    assert (status["targeted"], status["delivered"], status["failed"]) == (3, 3, 0)


async def test_a_recipient_throttled_every_round_ends_failed(h: Harness) -> None:
    h.throttle[h.uri(4)] = 99
    await h.submit({"jobId": "never", "target": {"devices": [dev(4), dev(5)]}, "notification": TOAST})
    await h.drain()
    assert h.sent == Counter({h.uri(5): 1})
    assert len([d for d in h.delays if d]) == dispatch.DEFER_ROUNDS
    status = await h.jobs.status("never")
    assert status is not None and status["state"] == "completed"
    assert (status["targeted"], status["delivered"], status["failed"]) == (2, 1, 1)
    [failed] = [r async for r in h.jobs.report("never", "failed")]
    assert failed["deviceId"] == dev(4) and "throttled" in failed["error"] and failed["status"] == 406


@pytest.mark.parametrize("crash_after", [0, 3, 10, 19])
async def test_a_crash_mid_batch_resends_at_most_what_was_in_flight(
    monkeypatch: pytest.MonkeyPatch, crash_after: int
) -> None:
    monkeypatch.setattr(dispatch, "FLUSH_EVERY", 5)
    h = Harness()
    for n in range(40):
        await h.store.put(f"{n:02d}bbbbbbbbbbbbbbbbbbbb", h.uri(n), None, [])
    await h.submit({"jobId": "crashy", "target": {"all": True}, "notification": TOAST})
    h.crash_after = crash_after
    await h.drain()
    assert set(h.sent) == {h.uri(n) for n in range(40)}  # nobody missed
    duplicates = sum(c - 1 for c in h.sent.values())
    assert duplicates <= 20 + 5  # in flight (max_in_flight) + unflushed outcomes
    status = await h.jobs.status("crashy")
    assert status is not None and status["state"] == "completed" and status["targeted"] == 40
    assert status["delivered"] == 40
