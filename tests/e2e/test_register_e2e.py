"""The registration API over real HTTP through devhost, against a real Azurite: the cycle the
README promises, identity rules, and no malformed request ever getting a 5xx."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from devhost import DevHost
from shared import runtime
from shared.settings import reset_settings

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
URI = "https://wns2-by3p.notify.windows.com/?token=AwYAAAB%2bXyz%3d"


@pytest.fixture
async def base(clean_env: pytest.MonkeyPatch, azurite_conn: str) -> AsyncIterator[str]:
    for k, v in {"AzureWebJobsStorage": azurite_conn, "PUSH_JOBS_QUEUE": "reg-e2e-jobs",
                 "EXPIRE_SCHEDULE": "0 30 3 * * *", "PUSH_AUTH": "platform"}.items():
        clean_env.setenv(k, v)
    reset_settings()
    await runtime.reset()
    async with DevHost(ROOT, port=0) as host:
        yield f"{host.url}/api/channels"
    await runtime.reset()


async def test_register_refresh_read_delete(base: str, unique: str) -> None:
    dev = f"{unique}-d9cb-469f-a165"
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{base}/{dev}", json={"channelUri": URI, "tags": ["news"]}) as r:
            assert r.status == 201 and r.content_type == "application/json"
            created = await r.json()
        async with http.put(f"{base}/{dev}", json={"channelUri": URI, "tags": ["news"]}) as r:
            assert r.status == 200
        async with http.get(f"{base}/{dev}") as r:
            got = await r.json()
            assert r.status == 200 and got["channelUri"] == URI and got["registeredAt"] >= created["registeredAt"]
        async with http.delete(f"{base}/{dev}") as r:
            assert r.status == 204
        async with http.get(f"{base}/{dev}") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"


async def test_users_cannot_reach_each_others_installs(base: str, unique: str) -> None:
    dev = f"{unique}-0000-user-isolation"
    alice = {"X-MS-CLIENT-PRINCIPAL-ID": f"alice-{unique}"}
    bob = {"X-MS-CLIENT-PRINCIPAL-ID": f"bob-{unique}"}
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{base}/{dev}", json={"channelUri": URI}, headers=alice) as r:
            assert r.status == 201 and (await r.json())["userId"] == alice["X-MS-CLIENT-PRINCIPAL-ID"]
        async with http.get(f"{base}/{dev}", headers=bob) as r:
            assert r.status == 404
        async with http.delete(f"{base}/{dev}", headers=bob) as r:
            assert r.status == 204
        async with http.get(f"{base}/{dev}", headers=alice) as r:
            assert r.status == 200


def hostile_requests(unique: str) -> list[tuple[str, str, bytes, dict[str, str]]]:
    rng = random.Random(unique)
    dev = f"{unique}-hostile-000000"
    bodies: list[bytes] = [
        b"", b"{", b"null", b"[]", b'"x"', b"1e999", b"\x00\x01\x02", b"\xff" * 100, b"{}" * 10,
        b"[" * 100_000, b'{"channelUri": {"$ne": null}}', b'{"channelUri": "' + b"a" * 20_000 + b'"}',
        json.dumps({"channelUri": URI, "tags": [{"a": 1}]}).encode(),
        json.dumps({"channelUri": URI, "tags": ["x"] * 61}).encode(),
        json.dumps({"channelUri": "https://notify.windows.com.evil.com/"}).encode(),
        json.dumps({"channelUri": URI, "userId": "root"}).encode(),
        b"x" * (2 * 1024 * 1024),
    ]
    bodies += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(20)]
    reqs = [("PUT", dev, b, {"Content-Type": "application/json"}) for b in bodies]
    for bad in ["a", "a" * 65, "%2e%2e%2f%2e%2e%2f" + "a" * 16, "abc%00def0123456789", "ü" * 20]:
        reqs += [(m, bad, b'{"channelUri": "' + URI.encode() + b'"}', {}) for m in ("PUT", "GET", "DELETE")]
    reqs += [("PUT", dev, b"{}", {"X-MS-CLIENT-PRINCIPAL-ID": "x" * 5000})]
    reqs += [("PATCH", dev, b"{}", {}), ("POST", dev, b"{}", {})]
    return reqs


async def test_no_malformed_request_gets_a_5xx(base: str, unique: str) -> None:
    async with aiohttp.ClientSession() as http:
        for method, dev, body, headers in hostile_requests(unique):
            async with http.request(method, f"{base}/{dev}", data=body, headers=headers) as r:
                text = await r.text()
                assert 400 <= r.status < 500, (method, dev[:30], body[:40], r.status, text[:200])
                if r.status != 404 or text:
                    err = json.loads(text)["error"]
                    assert err["code"] and err["message"]
