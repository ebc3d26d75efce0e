"""WnsClient against the TLS fake WNS (devhost/fakewns.py), trusted through SSL_CERT_FILE.

Also checks the fake itself behaves like WNS where the client relies on it, and that it runs as
a separate process for end-to-end use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from devhost.fakewns import Answer, FakeWns, fake_wns_process
from shared.notification import parse_notification
from shared.settings import Settings, StorageSettings
from shared.wns import CHANNEL_GONE, DELIVERED, FAILED, RETRYABLE, THROTTLED, OutcomeKind, WnsClient

TOAST = parse_notification({"type": "toast", "text": ["Sale", "20% off"], "launch": "sale"})


def settings_for(*fakes: FakeWns | str, token_url: str | None = None) -> Settings:
    hosts = tuple(f if isinstance(f, str) else f.host_entry for f in fakes)
    first = next(f for f in fakes if isinstance(f, FakeWns))
    return Settings(
        storage=StorageSettings(connection_string="UseDevelopmentStorage=true"),
        wns_client_id="11111111-2222-3333-4444-555555555555",
        wns_client_secret="integration-secret",
        wns_token_url=token_url or first.token_url,
        wns_channel_hosts=hosts,
    )


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeWns]:
    async with FakeWns() as f:
        monkeypatch.setenv("SSL_CERT_FILE", f.ca_path)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        yield f


@pytest.fixture
async def client(fake: FakeWns) -> AsyncIterator[WnsClient]:
    async def no_sleep(delay: float) -> None:
        return None

    async with WnsClient(settings_for(fake), sleep=no_sleep) as c:
        yield c


@pytest.mark.parametrize(
    ("answer", "kind", "reason", "retry_after"),
    [
        (200, DELIVERED, "", None),
        (400, FAILED, "bad_request", None),
        (403, FAILED, "forbidden", None),
        (404, CHANNEL_GONE, "not_found", None),
        (405, FAILED, "method_not_allowed", None),
        (Answer(406, {"Retry-After": "7"}), THROTTLED, "throttled", 7.0),
        (410, CHANNEL_GONE, "expired", None),
        (413, FAILED, "payload_too_large", None),
        (500, RETRYABLE, "server_error", None),
        (Answer(503, {"Retry-After": "3"}), THROTTLED, "unavailable", 3.0),
        (Answer(200, {"X-WNS-Status": "channelThrottled"}), THROTTLED, "channel_throttled", None),
    ],
)
async def test_each_answer(fake: FakeWns, client: WnsClient, answer: Answer | int, kind: OutcomeKind,
                           reason: str, retry_after: float | None) -> None:
    fake.script("c1", answer)
    outcome = await client.send(fake.channel_uri("c1"), TOAST)
    assert (outcome.kind, outcome.reason, outcome.retry_after) == (kind, reason, retry_after)
    assert outcome.msg_id and outcome.debug_trace == "FAKE-TRACE"
    assert outcome.ms_cv == fake.received[-1].headers["MS-CV"]


async def test_delivered_exactly_as_wns_expects(fake: FakeWns, client: WnsClient) -> None:
    uri = fake.channel_uri("abc")
    outcome = await client.send(uri, TOAST)
    assert outcome.kind is DELIVERED and outcome.wns_status == "received"
    [got] = fake.received
    assert got.status == 200 and got.channel_id == "abc"
    assert got.path_qs == uri.removeprefix(fake.base_url)  # %2B %2F %3D kept as they were
    assert "%2B" in got.path_qs or "%2F" in got.path_qs or "%3D" in got.path_qs
    assert got.body == TOAST.payload


async def test_401_once_refreshes_the_token_once(fake: FakeWns, client: WnsClient) -> None:
    assert (await client.send(fake.channel_uri("warm"), TOAST)).delivered
    fake.script("c1", 401)
    outcome = await client.send(fake.channel_uri("c1"), TOAST)
    assert outcome.kind is DELIVERED
    assert fake.token_requests == 2
    first, second = (r.headers["Authorization"] for r in fake.received_for("c1"))
    assert first != second


async def test_second_401_is_a_failure(fake: FakeWns, client: WnsClient) -> None:
    fake.script("c1", 401, 401)
    outcome = await client.send(fake.channel_uri("c1"), TOAST)
    assert (outcome.kind, outcome.reason) == (FAILED, "unauthorized")
    assert fake.token_requests == 2


async def test_revoked_token_burst_refreshes_once(fake: FakeWns, client: WnsClient) -> None:
    assert (await client.send(fake.channel_uri("warm"), TOAST)).delivered
    fake.revoke_tokens()
    outcomes = await asyncio.gather(*(client.send(fake.channel_uri(f"c{i}"), TOAST) for i in range(100)))
    assert all(o.delivered for o in outcomes)
    assert fake.token_requests == 2


async def test_one_token_for_many_concurrent_sends(fake: FakeWns, client: WnsClient) -> None:
    fake.latency = 0.01
    uris = [fake.channel_uri(f"c{i}") for i in range(500)]
    outcomes = await asyncio.gather(*(client.send(u, TOAST) for u in uris))
    assert [o.kind for o in outcomes] == [DELIVERED] * 500
    assert fake.token_requests == 1
    assert len({r.channel_id for r in fake.received}) == 500
    assert len({r.headers["MS-CV"] for r in fake.received}) == 500
    form = fake.token_forms[0]
    assert form["grant_type"] == "client_credentials" and form["scope"] == "https://wns.windows.com/.default"


async def test_concurrency_hides_latency(fake: FakeWns) -> None:
    fake.latency = 0.05
    async with WnsClient(settings_for(fake), max_in_flight=200) as client:
        await client.send(fake.channel_uri("warm"), TOAST)
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(client.send(fake.channel_uri(f"c{i}"), TOAST) for i in range(400)))
        elapsed = time.perf_counter() - started
    assert all(o.delivered for o in outcomes)
    assert elapsed < 2.0  # sequential would take 20 s


async def test_retries_against_the_fake(fake: FakeWns) -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    fake.script("c1", Answer(503, {"Retry-After": "1"}), Answer(406, {"Retry-After": "2"}), 200)
    async with WnsClient(settings_for(fake), sleep=sleep) as client:
        outcome = await client.send_with_retries(fake.channel_uri("c1"), TOAST)
    assert outcome.delivered and outcome.attempts == 3 and slept == [1.0, 2.0]


async def test_token_expires_in_as_string_and_short_lifetimes(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeWns(token_expires_in=1.0, expires_in_as_string=True) as fake:
        monkeypatch.setenv("SSL_CERT_FILE", fake.ca_path)
        async with WnsClient(settings_for(fake)) as client:
            assert (await client.send(fake.channel_uri("a"), TOAST)).delivered
            assert (await client.send(fake.channel_uri("a"), TOAST)).delivered
            assert fake.token_requests == 1
            await asyncio.sleep(0.6)  # past half the lifetime: refreshed before it lapses
            assert (await client.send(fake.channel_uri("a"), TOAST)).delivered
            assert fake.token_requests == 2


async def test_untrusted_channel_host_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tokens from a trusted fake; the channel on a second fake whose CA nobody trusts.
    async with FakeWns() as trusted, FakeWns() as untrusted:
        monkeypatch.setenv("SSL_CERT_FILE", trusted.ca_path)
        async with WnsClient(settings_for(trusted, untrusted)) as client:
            outcome = await client.send(untrusted.channel_uri("c1"), TOAST)
            assert (outcome.kind, outcome.reason) == (FAILED, "tls_verification_failed")
            assert untrusted.requests == 0
            assert (await client.send(trusted.channel_uri("c1"), TOAST)).delivered


async def test_no_trust_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeWns() as fake:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        async with WnsClient(settings_for(fake)) as client:
            outcome = await client.send(fake.channel_uri("c1"), TOAST)
        assert outcome.kind is FAILED and "TLS verification" in (outcome.error_description or "")
        assert fake.token_requests == 0 and fake.requests == 0


async def test_requests_ca_bundle_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeWns() as fake:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_path)
        async with WnsClient(settings_for(fake)) as client:
            assert (await client.send(fake.channel_uri("c1"), TOAST)).delivered


async def test_ip_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeWns(hostname="127.0.0.1") as fake:
        monkeypatch.setenv("SSL_CERT_FILE", fake.ca_path)
        assert fake.channel_uri("x").startswith(f"https://127.0.0.1:{fake.port}/ch/x?token=")
        async with WnsClient(settings_for(fake)) as client:
            assert (await client.send(fake.channel_uri("x"), TOAST)).delivered


class TestTheFakeBehavesLikeWns:
    """Requests our client would never make, sent by hand, to check the fake refuses them."""

    @pytest.fixture
    async def raw(self, fake: FakeWns) -> AsyncIterator[aiohttp.ClientSession]:
        # aiohttp's default context is built at import, before SSL_CERT_FILE was set: pass one.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fake.client_ssl_context())) as session:
            yield session

    async def token(self, fake: FakeWns, session: aiohttp.ClientSession) -> str:
        async with session.post(fake.token_url, data={
            "grant_type": "client_credentials", "client_id": "a", "client_secret": "b",
            "scope": "notify.windows.com",
        }) as resp:
            assert resp.status == 200
            return str((await resp.json())["access_token"])

    async def post(self, fake: FakeWns, session: aiohttp.ClientSession, headers: dict[str, str],
                   body: bytes | None = b"<toast/>", **kwargs: object) -> int:
        async with session.post(fake.channel_uri("x"), data=body, headers=headers, **kwargs) as resp:  # type: ignore[arg-type]
            return resp.status

    async def test_validation(self, fake: FakeWns, raw: aiohttp.ClientSession) -> None:
        good = {"Authorization": "Bearer " + await self.token(fake, raw), "X-WNS-Type": "wns/toast",
                "Content-Type": "text/xml"}
        assert await self.post(fake, raw, good) == 200
        assert await self.post(fake, raw, {**good, "Authorization": "Bearer forged"}) == 401
        assert await self.post(fake, raw, {k: v for k, v in good.items() if k != "Authorization"}) == 401
        assert await self.post(fake, raw, {**good, "X-WNS-Type": "wns/push"}) == 400
        assert await self.post(fake, raw, {**good, "Content-Type": "application/octet-stream"}) == 400
        assert await self.post(fake, raw, {**good, "X-WNS-SuppressPopup": "true"}) == 400
        assert await self.post(fake, raw, {**good, "X-WNS-Group": "g"}) == 400
        assert await self.post(fake, raw, {**good, "X-WNS-Match": "type:wns/toast"}) == 400
        assert await self.post(fake, raw, {**good, "X-WNS-Cache-Policy": "cache"}) == 400  # not on toast
        assert await self.post(fake, raw, good, body=b"x" * 5001) == 413
        assert await self.post(fake, raw, good, chunked=True) == 400
        assert await self.post(fake, raw, good, expect100=True) == 400
        assert fake.delivered == 1 and len(fake.received) == 12
        async with raw.get(fake.channel_uri("x")) as resp:
            assert resp.status == 405

    async def test_token_endpoint(self, fake: FakeWns, raw: aiohttp.ClientSession) -> None:
        async with raw.post(fake.token_url, data={"grant_type": "password", "scope": "notify.windows.com"}) as r:
            assert r.status == 400
        async with raw.post(fake.token_url, data={"grant_type": "client_credentials", "client_id": "a",
                                                  "client_secret": "b", "scope": "other"}) as r:
            assert r.status == 400 and (await r.json())["error"] == "invalid_scope"
        fake.script_token(503)
        async with raw.post(fake.token_url, data={"grant_type": "client_credentials", "client_id": "a",
                                                  "client_secret": "b", "scope": "notify.windows.com"}) as r:
            assert r.status == 503
        assert fake.token_requests == 3
        assert all(f.get("client_secret") in (None, "***") for f in fake.token_forms)

    async def test_control_endpoints(self, fake: FakeWns, raw: aiohttp.ClientSession) -> None:
        async with raw.post(fake.base_url + "/_fake/script", json={"channel": "z", "answers": [410]}) as r:
            assert r.status == 200
        good = {"Authorization": "Bearer " + await self.token(fake, raw), "X-WNS-Type": "wns/raw",
                "Content-Type": "application/octet-stream"}
        async with raw.post(fake.channel_uri("z"), data=b"\x00\x01", headers=good) as r:
            assert r.status == 410
        async with raw.get(fake.base_url + "/_fake/received?channel=z") as r:
            [item] = (await r.json())["received"]
        assert item["status"] == 410 and item["bodyBase64"] == "AAE="
        async with raw.get(fake.base_url + "/_fake/stats") as r:
            assert (await r.json())["tokenRequests"] == 1


def test_runs_as_a_separate_process(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_wns_process(latency_ms=5) as proc:
        monkeypatch.setenv("SSL_CERT_FILE", proc.ca_path)
        proc.script("gone", 410)
        settings = Settings(
            storage=StorageSettings(connection_string="UseDevelopmentStorage=true"),
            wns_client_id="id", wns_client_secret="secret", wns_token_url=proc.token_url,
            wns_channel_hosts=(proc.host_entry,),
        )

        async def send() -> list[OutcomeKind]:
            async with WnsClient(settings) as client:
                return [(await client.send(proc.channel_uri(c), TOAST)).kind for c in ("ok", "gone")]

        assert asyncio.run(send()) == [DELIVERED, CHANNEL_GONE]
        received = proc.received()
        assert [r["channel"] for r in received] == ["ok", "gone"]
        assert received[0]["pathQs"] == proc.channel_uri("ok").removeprefix(proc.base_url)
        assert received[0]["body"] == TOAST.payload.decode()
        assert proc.stats()["tokenRequests"] == 1
        proc.reset()
        assert proc.received() == []
    assert proc.proc.poll() is not None
