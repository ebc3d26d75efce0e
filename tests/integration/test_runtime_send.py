"""The runtime's glue to real services: the WNS client's outcomes as the dispatcher sees them
(against the TLS fake), and delayed messages on a real Azurite queue."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from azure.storage.queue.aio import QueueClient

from devhost.fakewns import Answer, FakeWns
from shared import runtime
from shared.notification import parse_notification
from shared.settings import Settings, StorageSettings
from shared.wns import WnsClient

RAW = parse_notification({"type": "raw", "payload": "sync"})


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeWns]:
    async with FakeWns() as fake:
        monkeypatch.setenv("SSL_CERT_FILE", fake.ca_path)
        yield fake


async def test_wns_answers_map_to_job_outcomes(fake: FakeWns) -> None:
    settings = Settings(storage=StorageSettings(connection_string="UseDevelopmentStorage=true"),
                        wns_client_id="c", wns_client_secret="s", wns_token_url=fake.token_url,
                        wns_channel_hosts=(fake.host_entry,))
    fake.script("ok", 200)
    fake.script("gone", 410)
    fake.script("bad", 403)
    fake.script("slow", Answer(406, {"Retry-After": "120"}))  # longer than a send waits in place
    async with WnsClient(settings) as client:
        send = runtime.wns_sender(client)
        results = {ch: await send(fake.channel_uri(ch), RAW) for ch in ("ok", "gone", "bad", "slow")}
    assert results["ok"].outcome == "delivered" and results["ok"].msg_id
    assert results["gone"].outcome == "removed" and results["gone"].status == 410
    assert results["bad"].outcome == "failed" and results["bad"].error == "forbidden"
    assert results["slow"].outcome == "deferred" and results["slow"].retry_after == 120
    assert len(fake.received_for("slow")) == 1  # not retried in place


async def test_delayed_messages_stay_invisible(clean_env: pytest.MonkeyPatch, azurite_conn: str, unique: str) -> None:
    clean_env.setenv("AzureWebJobsStorage", azurite_conn)
    await runtime.reset()
    name = f"delay-{unique}"
    try:
        await runtime.enqueue(name, ["now"])
        await runtime.enqueue(name, ["later"], delay_s=30)
        async with QueueClient.from_connection_string(azurite_conn, name) as q:
            visible = [m.content async for m in q.receive_messages(max_messages=10, visibility_timeout=1)]
        assert visible == ["now"]
    finally:
        await runtime.reset()
