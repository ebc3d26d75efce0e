"""devhost serving the fixture app (tests/fixtures/devhost_app) over real HTTP, against a real Azurite."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from azure.storage.queue.aio import QueueClient

from devhost import DevHost, HostStartupError

FIXTURE_APP = Path(__file__).resolve().parents[1] / "fixtures" / "devhost_app"


@pytest.fixture
def dh_env(clean_env: pytest.MonkeyPatch, azurite_conn: str, unique: str) -> dict[str, str]:
    env = {
        "AzureWebJobsStorage": azurite_conn,
        "DH_ECHO_QUEUE": f"echo-{unique}",
        "DH_OUT_QUEUE": f"out-{unique}",
        "DH_FAIL_QUEUE": f"fail-{unique}",
        "DH_TIMER_SCHEDULE": "0 0 0 1 1 *",  # once a year: only admin calls run it
    }
    for name, value in env.items():
        clean_env.setenv(name, value)
    return env


@pytest.fixture
async def host(dh_env: dict[str, str]) -> AsyncIterator[DevHost]:
    async with DevHost(FIXTURE_APP, port=0) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def send(conn: str, queue: str, *bodies: str) -> None:
    async with QueueClient.from_connection_string(conn, queue) as client:
        try:
            await client.create_queue()
        except Exception:  # already there
            pass
        for body in bodies:
            await client.send_message(body)


async def take(conn: str, queue: str, count: int, wait: float = 5.0) -> list[str]:
    """Receive and delete `count` messages, waiting up to `wait` seconds for them."""
    got: list[str] = []
    deadline = time.monotonic() + wait
    async with QueueClient.from_connection_string(conn, queue) as client:
        while len(got) < count and time.monotonic() < deadline:
            try:
                async for msg in client.receive_messages(max_messages=32):
                    got.append(msg.content)
                    await client.delete_message(msg)
            except Exception:  # the queue does not exist yet
                pass
            if len(got) < count:
                await asyncio.sleep(0.1)
    assert len(got) >= count, f"only {got} arrived on {queue} within {wait}s"
    return got


async def message_count(conn: str, queue: str) -> int:
    async with QueueClient.from_connection_string(conn, queue) as client:
        props = await client.get_queue_properties()
        return int(props.approximate_message_count or 0)


def fixture_module(name: str) -> object:
    return sys.modules[name]


# HTTP


async def test_http_round_trip(host: DevHost, http: aiohttp.ClientSession) -> None:
    device = str(uuid.uuid4())
    async with http.post(f"{host.url}/api/items/{device}/body?q=1&q=2&r=x", data=b"0123456789",
                         headers={"X-Test": "yes"}) as resp:
        assert resp.status == 201
        assert resp.headers["X-Echo"] == "yes"
        assert resp.headers["Content-Type"] == "application/json"
        seen = await resp.json()
    assert seen["method"] == "POST"
    assert seen["route"] == {"id": device, "part": "body"}
    assert seen["params"] == {"q": "1", "r": "x"}
    assert seen["header"] == "yes"
    assert seen["bodyLength"] == 10
    assert seen["url"].startswith(f"{host.url}/api/items/{device}/body?")
    # The optional segment may be left out; routes match case-insensitively.
    async with http.get(f"{host.url}/API/Items/{device}") as resp:
        assert resp.status == 201
        assert (await resp.json())["route"] == {"id": device}


async def test_http_sync_function_named_output_and_context(host: DevHost, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{host.url}/api/greet/ann%20b") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        text = await resp.text()
    # A plain `def` runs on the host's thread pool, not on the event loop.
    assert text.startswith("hello ann b from dh_http_sync on devhost-sync")


async def test_http_errors_are_json_and_the_host_survives(host: DevHost, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{host.url}/api/nowhere") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"
    async with http.get(f"{host.url}/greet/x") as resp:  # outside the route prefix
        assert resp.status == 404
    async with http.delete(f"{host.url}/api/items/{uuid.uuid4()}") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET, POST"
        assert (await resp.json())["error"]["code"] == "method_not_allowed"
    async with http.post(f"{host.url}/api/items/{uuid.uuid4()}", data=b"x" * (1024 * 1024 + 1)) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "payload_too_large"
    async with http.get(f"{host.url}/api/boom") as resp:
        assert resp.status == 500
        body = await resp.json()
        assert body["error"]["code"] == "internal_error"
        assert "boom on purpose" not in json.dumps(body)  # details stay in the log
    async with http.get(f"{host.url}/api/greet/again") as resp:
        assert resp.status == 200


async def test_host_status(host: DevHost, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{host.url}/admin/host/status") as resp:
        assert resp.status == 200
        status = await resp.json()
    assert status["state"] == "Running"
    assert status["functions"] == ["dh_http", "dh_http_boom", "dh_http_sync", "dh_queue_echo", "dh_queue_fail",
                                   "dh_timer"]


# Queues


async def test_queue_message_processed_deleted_and_output_sent(host: DevHost, dh_env: dict[str, str],
                                                               unique: str) -> None:
    conn = dh_env["AzureWebJobsStorage"]
    await send(conn, dh_env["DH_ECHO_QUEUE"], f"hello-{unique}")
    assert await take(conn, dh_env["DH_OUT_QUEUE"], 1) == [f"echo:hello-{unique}"]
    assert (f"hello-{unique}", 1) in fixture_module("dh_queue_echo").CALLS  # type: ignore[attr-defined]
    assert await message_count(conn, dh_env["DH_ECHO_QUEUE"]) == 0


async def test_queue_output_list_sends_several_messages(host: DevHost, dh_env: dict[str, str], unique: str) -> None:
    conn = dh_env["AzureWebJobsStorage"]
    await send(conn, dh_env["DH_ECHO_QUEUE"], f"many:3:{unique}")
    got = await take(conn, dh_env["DH_OUT_QUEUE"], 3)
    assert sorted(got) == [f"echo:{unique}:0", f"echo:{unique}:1", f"echo:{unique}:2"]


async def test_failing_message_is_retried_then_poisoned(host: DevHost, dh_env: dict[str, str], unique: str) -> None:
    conn = dh_env["AzureWebJobsStorage"]
    body = f"bad-{unique}"
    await send(conn, dh_env["DH_FAIL_QUEUE"], body)
    assert await take(conn, dh_env["DH_FAIL_QUEUE"] + "-poison", 1) == [body]
    attempts = [a for a in fixture_module("dh_queue_fail").ATTEMPTS if a[0] == body]  # type: ignore[attr-defined]
    assert attempts == [(body, 1), (body, 2)]  # maxDequeueCount is 2 in the fixture's host.json
    assert await message_count(conn, dh_env["DH_FAIL_QUEUE"]) == 0


async def test_many_messages_all_processed(host: DevHost, dh_env: dict[str, str], unique: str) -> None:
    conn = dh_env["AzureWebJobsStorage"]
    bodies = [f"m{i}-{unique}" for i in range(20)]  # several batches of batchSize 4
    await send(conn, dh_env["DH_ECHO_QUEUE"], *bodies)
    got = await take(conn, dh_env["DH_OUT_QUEUE"], 20, wait=10)
    assert sorted(got) == sorted(f"echo:{b}" for b in bodies)


# Timer and admin


async def test_admin_runs_timer_now(host: DevHost, http: aiohttp.ClientSession, dh_env: dict[str, str]) -> None:
    async with http.post(f"{host.url}/admin/functions/dh_timer", json={}) as resp:
        assert resp.status == 202
    assert await take(dh_env["AzureWebJobsStorage"], dh_env["DH_OUT_QUEUE"], 1) == ["timer:past_due=False"]


async def test_admin_runs_queue_function_with_input(host: DevHost, http: aiohttp.ClientSession,
                                                    dh_env: dict[str, str], unique: str) -> None:
    async with http.post(f"{host.url}/admin/functions/DH_QUEUE_ECHO", json={"input": f"adm-{unique}"}) as resp:
        assert resp.status == 202
    assert await take(dh_env["AzureWebJobsStorage"], dh_env["DH_OUT_QUEUE"], 1) == [f"echo:adm-{unique}"]
    assert (f"adm-{unique}", 1) in fixture_module("dh_queue_echo").CALLS  # type: ignore[attr-defined]


async def test_admin_errors(host: DevHost, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{host.url}/admin/functions/nope") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "function_not_found"
    async with http.post(f"{host.url}/admin/functions/dh_http") as resp:
        assert resp.status == 400
    async with http.post(f"{host.url}/admin/functions/dh_timer", data=b"{not json") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_json"
    async with http.post(f"{host.url}/admin/functions/dh_queue_echo", json={"input": 5}) as resp:
        assert resp.status == 400


async def test_timer_fires_on_its_schedule(dh_env: dict[str, str], clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DH_TIMER_SCHEDULE", "* * * * * *")
    async with DevHost(FIXTURE_APP, port=0):
        got = await take(dh_env["AzureWebJobsStorage"], dh_env["DH_OUT_QUEUE"], 2, wait=4)
    assert got[:2] == ["timer:past_due=False", "timer:past_due=False"]


# Startup


async def test_a_missing_setting_stops_startup_and_is_named(dh_env: dict[str, str],
                                                            clean_env: pytest.MonkeyPatch) -> None:
    clean_env.delenv("DH_FAIL_QUEUE")
    host = DevHost(FIXTURE_APP, port=0)
    with pytest.raises(HostStartupError, match="DH_FAIL_QUEUE") as info:
        await host.start()
    assert "dh_queue_fail" in str(info.value)
    assert str(FIXTURE_APP) not in sys.path  # start() cleaned up after itself


async def test_an_invalid_schedule_stops_startup(dh_env: dict[str, str], clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DH_TIMER_SCHEDULE", "0 30 3 * *")
    with pytest.raises(HostStartupError, match=r"dh_timer.*six"):
        await DevHost(FIXTURE_APP, port=0).start()


async def test_base64_encoding_app(tmp_path: Path, clean_env: pytest.MonkeyPatch, azurite_conn: str,
                                   unique: str) -> None:
    """host.json's default encoding: base64 in, base64 out; undecodable messages end up poisoned."""
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"queues": {
        "maxDequeueCount": 1, "maxPollingInterval": "00:00:00.2"}}}))
    folder = tmp_path / f"dh_b64_{unique}"
    folder.mkdir()
    (folder / "function.json").write_text(json.dumps({"bindings": [
        {"type": "queueTrigger", "direction": "in", "name": "msg", "queueName": "%B64_IN%"},
        {"type": "queue", "direction": "out", "name": "$return", "queueName": "%B64_OUT%"},
    ]}))
    (folder / "__init__.py").write_text("def main(msg):\n    return msg.get_body()[::-1]\n")
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"B64_OUT": f"b64out-{unique}"}}))
    clean_env.setenv("AzureWebJobsStorage", azurite_conn)
    clean_env.setenv("B64_IN", f"b64in-{unique}")
    clean_env.setenv("B64_OUT", "placeholder")  # so monkeypatch removes what local.settings.json sets
    clean_env.delenv("B64_OUT")
    async with DevHost(tmp_path, port=0):
        await send(azurite_conn, f"b64in-{unique}", base64.b64encode(b"\x01\x02\xff").decode(), "{not base64}")
        (out,) = await take(azurite_conn, f"b64out-{unique}", 1)
        assert base64.b64decode(out) == b"\xff\x02\x01"
        assert await take(azurite_conn, f"b64in-{unique}-poison", 1) == ["{not base64}"]


async def test_stop_hands_back_messages_still_running(tmp_path: Path, clean_env: pytest.MonkeyPatch,
                                                      azurite_conn: str, unique: str) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"queues": {
        "messageEncoding": "none", "maxPollingInterval": "00:00:00.1"}}}))
    folder = tmp_path / f"dh_slow_{unique}"
    folder.mkdir()
    (folder / "function.json").write_text(json.dumps({"bindings": [
        {"type": "queueTrigger", "direction": "in", "name": "msg", "queueName": f"slow-{unique}"},
    ]}))
    (folder / "__init__.py").write_text(
        "import asyncio\nSTARTED = []\n\nasync def main(msg):\n    STARTED.append(1)\n    await asyncio.sleep(60)\n"
    )
    clean_env.setenv("AzureWebJobsStorage", azurite_conn)
    host = DevHost(tmp_path, port=0, shutdown_grace=0.2)
    await host.start()
    try:
        await send(azurite_conn, f"slow-{unique}", "slow")
        for _ in range(100):
            if getattr(sys.modules.get(folder.name), "STARTED", None):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the slow function never started")
    finally:
        await host.stop()
    # Visible again at once, not after the 60 s lease.
    async with QueueClient.from_connection_string(azurite_conn, f"slow-{unique}") as client:
        msgs = [m async for m in client.receive_messages(max_messages=1)]
    assert [(m.content, m.dequeue_count) for m in msgs] == [("slow", 2)]  # devhost had it once


async def test_a_function_that_fails_to_import_stops_startup(tmp_path: Path, clean_env: pytest.MonkeyPatch,
                                                             unique: str) -> None:
    (tmp_path / "host.json").write_text("{}")
    folder = tmp_path / f"dh_broken_{unique}"
    folder.mkdir()
    (folder / "function.json").write_text(json.dumps({"bindings": [
        {"type": "httpTrigger", "direction": "in", "name": "req"},
        {"type": "http", "direction": "out", "name": "$return"},
    ]}))
    (folder / "__init__.py").write_text("raise ImportError('missing dependency xyz')\n")
    with pytest.raises(HostStartupError, match=f"dh_broken_{unique}: ImportError: missing dependency xyz"):
        await DevHost(tmp_path, port=0).start()
