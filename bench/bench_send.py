"""Throughput and CPU cost of sending to WNS: our aiohttp `WnsClient` against `requests` baselines.

The fake WNS (devhost/fakewns.py) runs as a separate process, over real TLS, answering
every notification after an added latency (50 ms by default, about what WNS takes), so only the
sender's CPU is measured here (`time.process_time()`, all threads of this process).

    .venv/bin/python -m bench.bench_send                # N=3000, 3 rounds per variant
    .venv/bin/python -m bench.bench_send -n 1000 --rounds 1 --latency-ms 20

Every variant reuses its connections across rounds and gets an unmeasured warm-up round first,
as a long-lived Functions worker would: TLS handshakes are not what is being compared.
See bench/README.md for results.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from devhost.fakewns import FakeWnsProcess, fake_wns_process  # noqa: E402
from shared.notification import Notification, parse_notification, wns_headers  # noqa: E402
from shared.settings import Settings, StorageSettings  # noqa: E402
from shared.wns import WnsClient  # noqa: E402


@dataclass
class Run:
    sent: int
    delivered: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.delivered / self.wall

    @property
    def cpu_ms(self) -> float:
        return self.cpu * 1000 / max(1, self.sent)


def measure(fn: Callable[[], int], sent: int) -> Run:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    delivered = fn()
    return Run(sent, delivered, time.perf_counter() - wall0, time.process_time() - cpu0)


def fetch_token(fake: FakeWnsProcess) -> str:
    resp = requests.post(fake.token_url, data={
        "grant_type": "client_credentials", "client_id": "bench", "client_secret": "bench",
        "scope": "https://wns.windows.com/.default",
    }, timeout=30)
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def requests_headers(notification: Notification, token: str) -> dict[str, str]:
    headers = wns_headers(notification)
    headers["Authorization"] = "Bearer " + token
    return headers


def bench_sequential(uris: list[str], notification: Notification, token: str, rounds: int) -> list[Run]:
    session = requests.Session()
    headers = requests_headers(notification, token)

    def once(batch: list[str]) -> int:
        ok = 0
        for uri in batch:
            ok += session.post(uri, data=notification.payload, headers=headers, timeout=30).status_code == 200
        return ok

    once(uris[:2])
    return [measure(lambda: once(uris), len(uris)) for _ in range(rounds)]


def bench_threads(uris: list[str], notification: Notification, token: str, rounds: int, threads: int) -> list[Run]:
    local = threading.local()
    headers = requests_headers(notification, token)

    def post(uri: str) -> bool:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        return session.post(uri, data=notification.payload, headers=headers, timeout=30).status_code == 200

    with ThreadPoolExecutor(threads) as pool:
        def once(batch: list[str]) -> int:
            return sum(pool.map(post, batch))

        once(uris[: threads * 2])
        return [measure(lambda: once(uris), len(uris)) for _ in range(rounds)]


def bench_ours(uris: list[str], notification: Notification, fake: FakeWnsProcess, rounds: int,
               max_in_flight: int) -> list[Run]:
    settings = Settings(
        storage=StorageSettings(connection_string="UseDevelopmentStorage=true"),
        wns_client_id="bench", wns_client_secret="bench", wns_token_url=fake.token_url,
        wns_channel_hosts=(fake.host_entry,),
    )

    async def main() -> list[Run]:
        async with WnsClient(settings, max_in_flight=max_in_flight) as client:
            async def once(batch: list[str]) -> int:
                outcomes = await asyncio.gather(*(client.send(u, notification) for u in batch))
                return sum(o.delivered for o in outcomes)

            await once(uris[: max_in_flight * 2])
            runs = []
            for _ in range(rounds):
                wall0, cpu0 = time.perf_counter(), time.process_time()
                delivered = await once(uris)
                runs.append(Run(len(uris), delivered, time.perf_counter() - wall0, time.process_time() - cpu0))
            return runs

    return asyncio.run(main())


def report(name: str, runs: list[Run]) -> tuple[float, float]:
    rate = statistics.median(r.rate for r in runs)
    cpu = statistics.median(r.cpu_ms for r in runs)
    lost = sum(r.sent - r.delivered for r in runs)
    each = ", ".join(f"{r.rate:,.0f}/s {r.cpu_ms:.3f}ms" for r in runs)
    print(f"{name:<28} {rate:>9,.0f}/s {cpu:>8.3f} ms CPU/delivery   [{each}]"
          + (f"  NOT DELIVERED: {lost}" if lost else ""), flush=True)
    return rate, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="channels per round (concurrent variants)")
    parser.add_argument("--sequential-n", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[200, 400])
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--skip-requests", action="store_true", help="only our client")
    args = parser.parse_args()

    payload = {"type": "toast", "text": ["Spring sale", "Everything 20% off until Sunday"], "launch": "sale=2027"}
    notification = parse_notification(payload)
    with fake_wns_process(latency_ms=args.latency_ms, record=False) as fake:
        # The standard trust variables, as the service itself would be configured.
        os.environ["SSL_CERT_FILE"] = fake.ca_path
        os.environ["REQUESTS_CA_BUNDLE"] = fake.ca_path
        uris = [fake.channel_uri(f"bench{i:05d}") for i in range(args.n)]
        print(f"fake WNS at {fake.base_url}, {args.latency_ms:g} ms latency, {args.n} channels, "
              f"{args.rounds} rounds, {os.cpu_count()} CPUs; medians [each round]", flush=True)
        results: dict[str, tuple[float, float]] = {}
        if not args.skip_requests:
            token = fetch_token(fake)
            results["seq"] = report(f"requests, sequential (n={args.sequential_n})",
                                    bench_sequential(uris[: args.sequential_n], notification, token, args.rounds))
            results["threads"] = report(f"requests, {args.threads} threads",
                                        bench_threads(uris, notification, token, args.rounds, args.threads))
        for k in args.in_flight:
            results[f"ours{k}"] = report(f"WnsClient, max_in_flight={k}",
                                         bench_ours(uris, notification, fake, args.rounds, k))
        if "threads" in results:
            base_rate, base_cpu = results["threads"]
            for k in args.in_flight:
                rate, cpu = results[f"ours{k}"]
                print(f"ratio WnsClient({k}) / thread pool: {rate / base_rate:.2f}x deliveries/s, "
                      f"{base_cpu / cpu:.2f}x less CPU per delivery")


if __name__ == "__main__":
    main()
