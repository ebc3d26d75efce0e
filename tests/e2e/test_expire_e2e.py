"""Expiry through devhost: `POST /admin/functions/expire_channels` runs the timer function now,
against a real Azurite, and the HTTP API and the indexes agree with what it pruned."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import pytest

from shared import runtime
from shared.clock import FixedClock, SystemClock
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


async def test_admin_run_prunes_only_the_expired(stack: Stack) -> None:
    now = SystemClock().now()
    fresh = runtime.channel_store()
    old = runtime.channel_store()
    old.clock = FixedClock(now - timedelta(days=31))  # written a month ago, never refreshed since
    await old.put("expired-000000000001", stack.fake.channel_uri("e1"), "dora", ["news"])
    await old.put("refreshed-0000000002", stack.fake.channel_uri("r2"), "dora", ["news"])
    await fresh.put("refreshed-0000000002", stack.fake.channel_uri("r2"), "dora", ["news"])  # the app started today
    await fresh.put("young-00000000000003", stack.fake.channel_uri("y3"), None, ["news"])

    async with stack.http.post(f"{stack.host.url}/admin/functions/expire_channels", json={}) as r:
        assert r.status == 202
    for _ in range(100):
        if await fresh.get("expired-000000000001") is None:
            break
        await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.host.url}/api/channels/expired-000000000001",
                            headers={"X-MS-CLIENT-PRINCIPAL-ID": "dora"}) as r:
            assert r.status == 404
        async with http.get(f"{stack.host.url}/api/channels/refreshed-0000000002",
                            headers={"X-MS-CLIENT-PRINCIPAL-ID": "dora"}) as r:
            assert r.status == 200
    assert sorted([x.device_id async for x in fresh.by_user("dora")]) == ["refreshed-0000000002"]
    assert sorted([x.device_id async for x in fresh.by_tag("news")]) == ["refreshed-0000000002",
                                                                          "young-00000000000003"]
