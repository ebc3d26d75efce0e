"""The whole send path of one worker process: a job fanned out into batches, audiences read from
Azure Table Storage (Azurite), every outcome recorded, sends over TLS to the fake WNS.

Baseline in the same run, on the same channels and server: the bare `WnsClient` with nothing
stored or read, so the ratio is what storage and bookkeeping cost on top of sending.

    .venv/bin/python -m bench.bench_dispatch            # N=3000, 3 rounds, 50 ms WNS latency
    .venv/bin/python -m bench.bench_dispatch -n 1000 --rounds 1

Azurite and the fake WNS run as separate processes; CPU is this process's only
(`time.process_time()`). Azurite is a single-threaded Node.js emulator and much slower than the
real service, so the storage share here is an upper bound. Messages go through an in-process
list, not a queue (the queue's latency is the platform's, not ours), processed 12 at a time as
the Functions host does with host.json's batchSize 8 + newBatchThreshold 4.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devhost.fakewns import fake_wns_process  # noqa: E402
from shared import runtime  # noqa: E402
from shared.channels import ChannelStore  # noqa: E402
from shared.clock import SystemClock  # noqa: E402
from shared.dispatch import Dispatcher  # noqa: E402
from shared.jobstore import JobStore  # noqa: E402
from shared.notification import parse_notification  # noqa: E402
from shared.settings import Settings, StorageSettings  # noqa: E402
from shared.wns import WnsClient  # noqa: E402
from tests.support.azurite import running_azurite  # noqa: E402
from tests.support.stores import azurite_tables  # noqa: E402

CONCURRENT_MESSAGES = 12


async def seed(store: ChannelStore, uris: list[str]) -> None:
    sem = asyncio.Semaphore(64)
    rng = random.Random(7)

    async def one(i: int, uri: str) -> None:
        async with sem:
            # Random GUIDs, as apps make them: they spread over the key-space shards of the fan-out.
            await store.put(str(uuid.UUID(int=rng.getrandbits(128), version=4)), uri, None, ["bench"])

    await asyncio.gather(*(one(i, u) for i, u in enumerate(uris)))


async def run_job(dispatcher: Dispatcher, queue: list[str], job_id: str) -> None:
    queue.append(json.dumps({"jobId": job_id, "target": {"all": True},
                             "notification": {"type": "raw", "payload": "sync"}}))
    running: set[asyncio.Task[None]] = set()
    n = 0
    while queue or running:
        while queue and len(running) < CONCURRENT_MESSAGES:
            n += 1
            running.add(asyncio.create_task(dispatcher.handle(queue.pop(0).encode(), f"{job_id}-{n}", 1)))
        done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            t.result()


async def main_async(n: int, rounds: int, latency_ms: float) -> None:
    with running_azurite() as conn, fake_wns_process(latency_ms=latency_ms, record=False) as fake:
        settings = Settings(
            storage=StorageSettings(connection_string=conn), wns_client_id="bench", wns_client_secret="bench",
            wns_token_url=fake.token_url, wns_channel_hosts=(fake.host_entry,),
        )
        import os
        os.environ["SSL_CERT_FILE"] = fake.ca_path
        channels, index, jobs_t, outcomes_t = azurite_tables(conn, "", "channels", "channelindex", "pushjobs",
                                                            "pushoutcomes")
        store = ChannelStore(channels, index, SystemClock(), 30)
        uris = [fake.channel_uri(f"b{i}") for i in range(n)]
        t0 = time.perf_counter()
        await seed(store, uris)
        print(f"seeded {n} registrations in {time.perf_counter() - t0:.1f}s "
              f"(Azurite at {conn.split('TableEndpoint=')[1].split(';')[0]}, WNS latency {latency_ms:g} ms)")
        notification = parse_notification({"type": "raw", "payload": "sync"})
        async with WnsClient(settings, max_in_flight=200) as client:
            await asyncio.gather(*(client.send(u, notification) for u in uris[:400]))  # warm the pool
            bare, full = [], []
            for r in range(rounds):
                w, c = time.perf_counter(), time.process_time()
                outcomes = await asyncio.gather(*(client.send(u, notification) for u in uris))
                bare.append((sum(o.delivered for o in outcomes) / (time.perf_counter() - w),
                             (time.process_time() - c) * 1000 / n))
                queue: list[str] = []

                async def enqueue(msgs: list[str], delay_s: float = 0, queue: list[str] = queue) -> None:
                    queue.extend(msgs)

                dispatcher = Dispatcher(store, JobStore(jobs_t, outcomes_t, SystemClock()),
                                        runtime.wns_sender(client), enqueue)
                w, c = time.perf_counter(), time.process_time()
                await run_job(dispatcher, queue, f"bench-{r}-{int(time.time())}")
                full.append((n / (time.perf_counter() - w), (time.process_time() - c) * 1000 / n))
        for name, runs in (("bare WnsClient (baseline)", bare), ("send_push path (dispatch + storage)", full)):
            rate = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            each = ", ".join(f"{a:,.0f}/s {b:.3f}ms" for a, b in runs)
            print(f"{name:38s} {rate:8,.0f}/s  {cpu:.3f} ms CPU/delivery   [{each}]")
        rate_ratio = statistics.median(r[0] for r in full) / statistics.median(r[0] for r in bare)
        cpu_ratio = statistics.median(r[1] for r in full) / statistics.median(r[1] for r in bare)
        print(f"ratio send_push / bare: {rate_ratio:.2f}x deliveries/s, {cpu_ratio:.2f}x CPU per delivery")
        for t in (channels, index, jobs_t, outcomes_t):
            await t.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--latency-ms", type=float, default=50)
    a = p.parse_args()
    asyncio.run(main_async(a.n, a.rounds, a.latency_ms))


if __name__ == "__main__":
    main()
