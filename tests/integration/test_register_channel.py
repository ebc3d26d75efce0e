"""`register_channel.main()` called as the Functions host calls it, against a real Azurite."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import azure.functions as func
import pytest

import register_channel
from shared import runtime

DEV = "0f8fad5b-d9cb-469f-a165-70867728950e"
URI = "https://cloud.notify.windows.com/?token=AwYAAAB%2bXyz"


@pytest.fixture
async def app(clean_env: pytest.MonkeyPatch, azurite_conn: str) -> AsyncIterator[pytest.MonkeyPatch]:
    clean_env.setenv("AzureWebJobsStorage", azurite_conn)
    await runtime.reset()
    yield clean_env
    await runtime.reset()


def request(method: str, device: str = DEV, body: object = None, headers: dict[str, str] | None = None,
            raw: bytes | None = None) -> func.HttpRequest:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return func.HttpRequest(method=method, url=f"http://localhost/api/channels/{device}", headers=headers or {},
                            route_params={"deviceId": device}, body=data)


async def call(req: func.HttpRequest) -> tuple[int, dict[str, object] | None, func.HttpResponse]:
    resp = await register_channel.main(req)
    body = resp.get_body()
    return resp.status_code, (json.loads(body) if body else None), resp


def device(n: int) -> str:
    return f"{n:08d}-d9cb-469f-a165-70867728950e"


async def test_put_get_delete_cycle(app: pytest.MonkeyPatch) -> None:
    status, body, resp = await call(request("PUT", body={"channelUri": URI, "tags": ["news", "lang:fr"]}))
    assert status == 201, body
    assert resp.mimetype == "application/json"
    assert body is not None and set(body) == {"deviceId", "userId", "channelUri", "tags", "registeredAt", "expiresAt"}
    assert body["userId"] is None and body["channelUri"] == URI and body["tags"] == ["lang:fr", "news"]
    assert str(body["registeredAt"]).endswith("Z")
    status, _, _ = await call(request("PUT", body={"channelUri": URI}))
    assert status == 200
    status, body, _ = await call(request("GET"))
    assert status == 200 and body is not None and body["tags"] == []
    assert (await call(request("DELETE")))[0] == 204
    assert (await call(request("DELETE")))[0] == 204
    status, body, _ = await call(request("GET"))
    assert status == 404 and body == {"error": {"code": "not_found", "message": "no registration for this deviceId"}}


@pytest.mark.parametrize(
    ("raw", "code", "status"),
    [
        (b"", "invalid_json", 400),
        (b"{", "invalid_json", 400),
        (b"\xff\xfe", "invalid_json", 400),
        (b"[]", "invalid_json", 400),
        (b"null", "invalid_json", 400),
        (b'{"tags": []}', "missing_channel_uri", 400),
        (b'{"channelUri": 5}', "invalid_channel_uri", 400),
        (b'{"channelUri": "http://x.notify.windows.com/"}', "invalid_channel_uri", 400),
        (b'{"channelUri": "https://evil.com/"}', "channel_host_not_allowed", 400),
        (json.dumps({"channelUri": URI, "tags": "news"}).encode(), "invalid_tags", 400),
        (json.dumps({"channelUri": URI, "tags": [None]}).encode(), "invalid_tags", 400),
        (json.dumps({"channelUri": URI, "userId": "mallory"}).encode(), "user_in_body", 400),
        (json.dumps({"channelUri": URI, "tags": ["x" * 100] * 200}).encode(), "body_too_large", 413),
        (b"{" + b'"a":' * 50000 + b"1" + b"}" * 50000, "body_too_large", 413),
        (b"[" * 5000 + b"]" * 5000, "invalid_json", 400),
    ],
)
async def test_malformed_puts_are_clear_4xx(app: pytest.MonkeyPatch, raw: bytes, code: str, status: int) -> None:
    got, body, _ = await call(request("PUT", raw=raw))
    assert got == status and body is not None
    err = body["error"]
    assert isinstance(err, dict) and err["code"] == code and err["message"]


@pytest.mark.parametrize("bad", ["short", "x" * 65, "has space0000000000", "..%2F..%2F0000000000", ""])
async def test_bad_device_ids(app: pytest.MonkeyPatch, bad: str) -> None:
    for method in ("PUT", "GET", "DELETE"):
        status, body, _ = await call(request(method, device=bad, body={"channelUri": URI}))
        assert status == 400 and body is not None and body["error"]["code"] == "invalid_device_id"  # type: ignore[index]


async def test_spoofed_principal_is_ignored_without_platform_auth(app: pytest.MonkeyPatch, unique: str) -> None:
    user = f"mallory-{unique}"
    spoof = {"X-MS-CLIENT-PRINCIPAL-ID": user, "X-MS-CLIENT-PRINCIPAL-NAME": "m@example.com"}
    status, body, _ = await call(request("PUT", device(int(unique[:6], 16)), {"channelUri": URI}, spoof))
    assert status == 201 and body is not None and body["userId"] is None
    store = runtime.channel_store()
    assert [r async for r in store.by_user(user)] == []


async def test_platform_identity_isolates_users(app: pytest.MonkeyPatch, unique: str) -> None:
    app.setenv("PUSH_AUTH", "platform")
    from shared.settings import reset_settings
    reset_settings()
    alice, bob = {"X-MS-CLIENT-PRINCIPAL-ID": f"alice-{unique}"}, {"X-MS-CLIENT-PRINCIPAL-ID": f"bob-{unique}"}
    d = device(int(unique[:6], 16) + 1)
    status, body, _ = await call(request("PUT", d, {"channelUri": URI}, alice))
    assert status == 201 and body is not None and body["userId"] == f"alice-{unique}"
    assert (await call(request("GET", d, headers=bob)))[0] == 404
    assert (await call(request("GET", d)))[0] == 404  # anonymous cannot read a user's install
    assert (await call(request("DELETE", d, headers=bob)))[0] == 204
    assert (await call(request("GET", d, headers=alice)))[0] == 200  # bob's delete did nothing
    # Account switch: bob signs in on the same install; alice no longer reaches it.
    status, body, _ = await call(request("PUT", d, {"channelUri": URI}, bob))
    assert status == 200 and body is not None and body["userId"] == f"bob-{unique}"
    store = runtime.channel_store()
    assert [r.device_id async for r in store.by_user(f"alice-{unique}")] == []
    assert [r.device_id async for r in store.by_user(f"bob-{unique}")] == [d]
    assert (await call(request("GET", d, headers=alice)))[0] == 404


async def test_require_user(app: pytest.MonkeyPatch) -> None:
    app.setenv("PUSH_AUTH", "platform")
    app.setenv("PUSH_REQUIRE_USER", "true")
    from shared.settings import reset_settings
    reset_settings()
    status, body, _ = await call(request("PUT", device(2), {"channelUri": URI}))
    assert status == 401 and body is not None and body["error"]["code"] == "authentication_required"  # type: ignore[index]
    status, _, _ = await call(request("PUT", device(2), {"channelUri": URI}, {"X-MS-CLIENT-PRINCIPAL-ID": "carol"}))
    assert status == 201


async def test_storage_down_is_503_with_retry_after(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(
        "AzureWebJobsStorage",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + "A" * 88
        + ";TableEndpoint=http://127.0.0.1:1/devstoreaccount1;QueueEndpoint=http://127.0.0.1:1/devstoreaccount1;",
    )
    await runtime.reset()
    for method in ("PUT", "GET", "DELETE"):
        status, body, resp = await call(request(method, body={"channelUri": URI}))
        assert status == 503 and resp.headers["Retry-After"].isdigit()
        assert body is not None and body["error"]["code"] == "storage_unavailable"  # type: ignore[index]
    await runtime.reset()
