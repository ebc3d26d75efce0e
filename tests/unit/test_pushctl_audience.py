"""`Dispatcher.audience` (what `pushctl send --dry-run` and `pushctl channels` read) reaches exactly
the recipients a real run of the job sends to, page continuations included."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter

import pytest

from shared import dispatch
from shared.clock import FixedClock
from shared.dispatch import Dispatcher, SendResult
from shared.jobs import parse_job
from shared.jobstore import JobStore
from shared.notification import Notification
from shared.tables import MemoryTable
from tests.support.stores import memory_store

TAGS = ["news", "sport", "lang:en", "lang:fr", "muted"]
USERS = ["alice", "bob", "carol", None]


class World:
    def __init__(self) -> None:
        clock = FixedClock()
        self.store = memory_store(clock)
        self.jobs = JobStore(MemoryTable("pushjobs"), MemoryTable("pushoutcomes"), clock)
        self.queue: list[str] = []
        self.sent: Counter[str] = Counter()
        self.devices: list[str] = []

    async def populate(self, n: int) -> None:
        rnd = random.Random(7)
        for i in range(n):
            device = str(uuid.UUID(int=rnd.getrandbits(128)))
            tags = [t for t in TAGS if rnd.random() < 0.4]
            await self.store.put(device, f"https://db5p.notify.windows.com/?token=t{i}", USERS[i % 4], tags)
            self.devices.append(device)

    async def send(self, channel_uri: str, notification: Notification) -> SendResult:
        self.sent[channel_uri] += 1
        return SendResult("delivered", 200)

    async def enqueue(self, messages: list[str]) -> None:
        self.queue.extend(messages)

    def dispatcher(self) -> Dispatcher:
        return Dispatcher(self.store, self.jobs, self.send, self.enqueue)

    async def run(self, body: str) -> None:
        self.queue.append(body)
        while self.queue:
            await self.dispatcher().handle(self.queue.pop(0).encode(), f"m{len(self.sent)}", 1)


@pytest.mark.parametrize(
    "target",
    [
        {"all": True},
        {"users": ["alice", "carol"]},
        {"devices": "some"},
        {"tags": "news"},
        {"tags": "news && (lang:en || lang:fr) && !muted"},
        {"tags": "!muted"},
        {"tags": "sport || lang:fr", "users": ["bob"]},
    ],
)
async def test_audience_is_exactly_whom_the_job_sends_to(monkeypatch: pytest.MonkeyPatch,
                                                          target: dict[str, object]) -> None:
    monkeypatch.setattr(dispatch, "PAGE", 7)  # many pages and continuations from a small population
    world = World()
    await world.populate(120)
    if target.get("devices") == "some":
        target = {"devices": [*world.devices[::3], "ffffffff-0000-0000-0000-00000000dead"]}
    doc = {"jobId": "j", "target": target, "notification": {"type": "raw", "payload": "x"}}
    job = parse_job(json.dumps(doc))

    seen = [r.channel_uri async for r in world.dispatcher().audience(job)]
    assert world.sent == Counter() and world.queue == []  # reading an audience sends and enqueues nothing
    assert len(seen) == len(set(seen))  # each recipient once, as a send reaches it once

    await world.run(json.dumps(doc))
    assert set(seen) == set(world.sent) and all(n == 1 for n in world.sent.values())
    status = await world.jobs.status("j")
    assert status is not None and status["targeted"] == len(seen) > 0
