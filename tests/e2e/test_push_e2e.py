"""End to end: apps register over HTTP through devhost, operators enqueue jobs on the real queue,
`send_push` sends over TLS to a fake WNS. Storage is a private Azurite (so `{"all": true}` sees
only this module's registrations), WNS a real HTTPS server with a throw-away CA that the app
trusts through `SSL_CERT_FILE`, as the contract says."""

from __future__ import annotations

import pytest

from devhost.fakewns import Answer
from shared import runtime
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


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
    stack.fake.script("c4", Answer(406, {"Retry-After": "1"}), Answer(503, {"Retry-After": "1"}), 200)
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
    # Throttled (406), then unavailable (503): each retried after its Retry-After, then delivered.
    c4 = [r for r in stack.fake.received if r.channel_id == "c4"]
    assert [r.status for r in c4] == [406, 503, 200]
    assert c4[1].time - c4[0].time >= 0.9 and c4[2].time - c4[1].time >= 0.9


async def test_malformed_job_is_recorded_and_next_job_runs(stack: Stack) -> None:
    assert await stack.put(dev(1), "c1", []) == 201
    await stack.enqueue({"jobId": "broken", "target": {}, "notification": TOAST})
    await stack.enqueue({"jobId": "fine", "target": {"devices": [dev(1)]}, "notification": TOAST})
    assert (await stack.status("fine"))["delivered"] == 1
    broken = await stack.status("broken")
    assert broken["state"] == "failed" and "invalid_target" in str(broken["error"])
    assert stack.got() == {"c1": 1}
