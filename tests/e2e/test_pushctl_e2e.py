"""End to end with the operator CLI: apps register through devhost, `python -m pushctl` (a real
process) enqueues and follows jobs that `send_push` delivers over TLS to the fake WNS. Storage is a
private Azurite, so `--all` reaches only this module's registrations."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableServiceClient
from azure.storage.queue.aio import QueueClient

from devhost import DevHost
from shared import runtime, wns
from shared.settings import reset_settings
from tests.support.azurite import AZURITE_BIN
from tests.support.fakewns import FakeWns

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TABLES = ("channels", "channelindex", "pushjobs", "pushoutcomes")


@pytest.fixture(scope="module")
def private_azurite() -> Iterator[str]:
    from tests.support.azurite import running_azurite

    saved = os.environ.pop("AZURITE_CONNECTION", None)
    try:
        assert AZURITE_BIN.exists()
        with running_azurite() as conn:
            yield conn
    finally:
        if saved is not None:
            os.environ["AZURITE_CONNECTION"] = saved


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


@dataclass
class Stack:
    host: DevHost
    fake: FakeWns
    conn: str
    http: aiohttp.ClientSession

    async def put(self, device: str, channel: str, tags: list[str], user: str | None = None) -> None:
        headers = {"X-MS-CLIENT-PRINCIPAL-ID": user} if user else {}
        body = {"channelUri": self.fake.channel_uri(channel), "tags": tags}
        async with self.http.put(f"{self.host.url}/api/channels/{device}", json=body, headers=headers) as r:
            assert r.status == 201

    async def pushctl(self, *args: str, env: dict[str, str] | None = None) -> Run:
        """`python -m pushctl ...` as an operator runs it, without blocking the loop devhost serves on."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pushctl", *args, "--connection", self.conn, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            raise AssertionError(f"pushctl {args} did not finish: {err.decode()}") from None
        assert proc.returncode is not None
        return Run(proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def stack(clean_env: pytest.MonkeyPatch, private_azurite: str) -> AsyncIterator[Stack]:
    async with TableServiceClient.from_connection_string(private_azurite) as svc:
        for t in TABLES:
            await svc.delete_table(t)
    fake = FakeWns()
    await fake.start()
    for name, value in {
        "AzureWebJobsStorage": private_azurite, "WNS_TOKEN_URL": fake.token_url,
        "WNS_CHANNEL_HOSTS": fake.host_entry, "WNS_TENANT_ID": "local", "WNS_CLIENT_ID": "client",
        "WNS_CLIENT_SECRET": "secret", "PUSH_JOBS_QUEUE": "push-jobs", "EXPIRE_SCHEDULE": "0 30 3 * * *",
        "PUSH_AUTH": "platform", "SSL_CERT_FILE": fake.ca_path, "REQUESTS_CA_BUNDLE": fake.ca_path,
    }.items():
        clean_env.setenv(name, value)
    reset_settings()
    await runtime.reset()
    await wns.close_client()
    host = DevHost(ROOT, port=0)
    await host.start()
    async with aiohttp.ClientSession() as http:
        yield Stack(host, fake, private_azurite, http)
    await host.stop()
    await wns.close_client()
    await runtime.reset()
    await fake.stop()


def dev(n: int) -> str:
    return f"cli0000{n:02d}-0000-0000-0000-000000000000"


async def population(s: Stack) -> None:
    await s.put(dev(1), "c1", ["news", "lang:en"], "alice")
    await s.put(dev(2), "c2", ["news", "lang:fr"], "alice")
    await s.put(dev(3), "c3", ["news", "muted"], "bob")
    await s.put(dev(4), "c4", ["sport"])


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
