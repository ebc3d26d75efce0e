"""End to end: apps register over HTTP through devhost, operators enqueue jobs on the real queue,
`send_push` sends over TLS to a fake WNS. Storage is a private Azurite (so `{"all": true}` sees
only this module's registrations), WNS a real HTTPS server with a throw-away CA that the app
trusts through `SSL_CERT_FILE`, as the contract says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from azure.data.tables.aio import TableServiceClient
from azure.storage.queue.aio import QueueClient

from devhost import DevHost
from shared import runtime, wns
from shared.settings import reset_settings
from tests.support.fakewns import Answer, FakeWns

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TABLES = ("channels", "channelindex", "pushjobs", "pushoutcomes")


@dataclass
class Stack:
    host: DevHost
    fake: FakeWns
    conn: str
    http: aiohttp.ClientSession

    async def put(self, device: str, channel: str, tags: list[str], user: str | None = None) -> int:
        headers = {"X-MS-CLIENT-PRINCIPAL-ID": user} if user else {}
        body = {"channelUri": self.fake.channel_uri(channel), "tags": tags}
        async with self.http.put(f"{self.host.url}/api/channels/{device}", json=body, headers=headers) as r:
            return r.status

    async def enqueue(self, job: dict[str, object]) -> None:
        q = QueueClient.from_connection_string(self.conn, "push-jobs")
        async with q:
            await q.send_message(json.dumps(job))

    async def status(self, job_id: str, wait_s: float = 30) -> dict[str, object]:
        store = runtime.job_store()
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            st = await store.status(job_id)
            if st is not None and st["state"] in ("completed", "failed"):
                return st
            assert asyncio.get_running_loop().time() < deadline, f"job {job_id} not done: {st}"
            await asyncio.sleep(0.1)

    def got(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.fake.received:
            if r.status == 200:
                out[r.channel_id] = out.get(r.channel_id, 0) + 1
        return out


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
    return f"e2e0000{n:02d}-0000-0000-0000-000000000000"


async def population(s: Stack) -> None:
    assert await s.put(dev(1), "c1", ["news", "lang:en"], "alice") == 201
    assert await s.put(dev(2), "c2", ["news", "lang:fr", "muted"], "alice") == 201
    assert await s.put(dev(3), "c3", ["news", "lang:fr"], "bob") == 201
    assert await s.put(dev(4), "c4", ["sport"]) == 201
    assert await s.put(dev(5), "c5", [], "carol") == 201


TOAST = {"type": "toast", "text": ["Hi <you> & co", "body"]}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({"all": True}, {"c1", "c2", "c3", "c4", "c5"}),
        ({"users": ["alice"]}, {"c1", "c2"}),
        ({"users": ["bob", "carol"]}, {"c3", "c5"}),
        ({"devices": [dev(4)]}, {"c4"}),
        ({"devices": [dev(1), dev(3)], "users": ["bob"]}, {"c3"}),
        ({"tags": "news && (lang:en || lang:fr) && !muted"}, {"c1", "c3"}),
    ],
)
async def test_each_target_form_reaches_exactly_its_registrations(
    stack: Stack, target: dict[str, object], expected: set[str]
) -> None:
    await population(stack)
    await stack.enqueue({"jobId": "job-1", "target": target, "notification": TOAST})
    st = await stack.status("job-1")
    assert st["state"] == "completed" and st["targeted"] == st["delivered"] == len(expected)
    assert stack.got() == dict.fromkeys(expected, 1)
    body = stack.fake.received[0].body.decode()
    assert "Hi &lt;you&gt; &amp; co" in body and stack.fake.received[0].headers["X-WNS-Type"] == "wns/toast"


@pytest.mark.parametrize(
    ("notification", "wns_type", "content_type"),
    [
        ({"type": "toast", "payload": "<toast><visual><binding template='ToastGeneric'><text>x</text>"
                                      "</binding></visual></toast>"}, "wns/toast", "text/xml"),
        ({"type": "tile", "payload": "<tile><visual/></tile>", "tag": "score", "ttl": 60}, "wns/tile", "text/xml"),
        ({"type": "badge", "payload": "<badge value='3'/>", "cache": False}, "wns/badge", "text/xml"),
        ({"type": "raw", "payload": "sync-now", "priority": 1}, "wns/raw", "application/octet-stream"),
    ],
)
async def test_all_notification_types_arrive_with_their_headers(
    stack: Stack, notification: dict[str, object], wns_type: str, content_type: str
) -> None:
    assert await stack.put(dev(1), "c1", []) == 201
    await stack.enqueue({"jobId": f"type-{wns_type[4:]}", "target": {"devices": [dev(1)]},
                         "notification": notification})
    st = await stack.status(f"type-{wns_type[4:]}")
    assert st["delivered"] == 1
    [r] = stack.fake.received
    assert r.headers["X-WNS-Type"] == wns_type and r.headers["Content-Type"].startswith(content_type)
    assert r.headers["Authorization"].startswith("Bearer ")
    if "ttl" in notification:
        assert r.headers["X-WNS-TTL"] == "60" and r.headers["X-WNS-Tag"] == "score"
    if notification.get("priority"):
        assert r.headers["X-WNS-PRIORITY"] == "1"


async def test_wns_answers_gone_throttled_and_token_refresh(stack: Stack) -> None:
    await population(stack)
    stack.fake.script("c1", 404)
    stack.fake.script("c2", 410)
    stack.fake.script("c3", 401, 200)
    stack.fake.script("c4", Answer(406, {"Retry-After": "1"}), 200)
    stack.fake.script("c5", 403)
    await stack.enqueue({"jobId": "mixed", "target": {"all": True}, "notification": TOAST})
    st = await stack.status("mixed", wait_s=60)
    assert (st["targeted"], st["delivered"], st["removed"], st["failed"]) == (5, 2, 2, 1)
    async with stack.http.get(f"{stack.host.url}/api/channels/{dev(1)}") as r:
        assert r.status == 404  # gone at once after 404
    async with stack.http.get(f"{stack.host.url}/api/channels/{dev(5)}",
                              headers={"X-MS-CLIENT-PRINCIPAL-ID": "carol"}) as r:
        assert r.status == 200  # 403 keeps the channel
    assert stack.fake.token_requests == 2  # the first token, and one refresh after the 401
    report = [x async for x in runtime.job_store().report("mixed", "removed")]
    assert sorted(x["status"] for x in report) == [404, 410]


async def test_malformed_job_is_recorded_and_next_job_runs(stack: Stack) -> None:
    assert await stack.put(dev(1), "c1", []) == 201
    await stack.enqueue({"jobId": "broken", "target": {}, "notification": TOAST})
    await stack.enqueue({"jobId": "fine", "target": {"devices": [dev(1)]}, "notification": TOAST})
    assert (await stack.status("fine"))["delivered"] == 1
    broken = await stack.status("broken")
    assert broken["state"] == "failed" and "invalid_target" in str(broken["error"])
    assert stack.got() == {"c1": 1}
