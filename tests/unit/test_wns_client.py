"""WnsClient and TokenProvider against a scripted HTTPS server on loopback (the transport boundary).

Each test scripts the server's answers with a plain handler function, so odd behaviour (redirects,
hangs, refused tokens) is easy to produce; nothing inside the client is patched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
import trustme
from aiohttp import web

from shared import wns
from shared.errors import PushError
from shared.notification import parse_notification
from shared.settings import Settings, StorageSettings
from shared.wns import CHANNEL_GONE, DELIVERED, FAILED, RETRYABLE, THROTTLED, TokenError, TokenProvider, WnsClient

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOAST = parse_notification({"type": "toast", "text": ["Hello", "World"]})


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """A TLS server answering channel posts with `handler` and token posts with `token_handler`."""

    handler: Handler | None = None
    token_handler: Handler | None = None
    seen: list[Seen] = field(default_factory=list)
    token_forms: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    issued: int = 0
    ca: trustme.CA = field(default_factory=trustme.CA)
    runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "storage": StorageSettings(connection_string="UseDevelopmentStorage=true"),
            "wns_client_id": "client-id",
            "wns_client_secret": "s3cret-value",
            "wns_token_url": f"{self.base}/token",
            "wns_channel_hosts": (f"localhost:{self.port}",),
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def client(self, **kwargs: object) -> WnsClient:
        settings = kwargs.pop("settings", None) or self.settings()
        return WnsClient(settings, ssl_context=self.client_context(), **kwargs)  # type: ignore[arg-type]

    async def _channel(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.raw_path, dict(request.headers), body))
        if self.handler is None:
            return web.Response(status=200, headers={"X-WNS-Status": "received"})
        return await self.handler(request)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.token_forms.append(form)
        if self.token_handler is not None:
            return await self.token_handler(request)
        self.issued += 1
        return web.json_response({"access_token": f"token-{self.issued}", "token_type": "bearer",
                                  "expires_in": 86400})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_route("*", "/ch/{id}", self._channel)
        app.router.add_route("*", "/elsewhere", self._channel)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost").configure_cert(ctx)
        await web.SockSite(self.runner, sock, ssl_context=ctx).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    await srv.start()
    yield srv
    await srv.stop()


def answer(status: int, **headers: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers=headers)

    return handle


def sequence(*statuses: int) -> Handler:
    remaining = list(statuses)

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(status=remaining.pop(0) if remaining else 200)

    return handle


class TestRequest:
    async def test_what_goes_on_the_wire(self, server: Server) -> None:
        uri = f"{server.base}/ch/a?token=AwYAAAB%2bq%2Fx%3D%3d&x=%7E"
        async with server.client() as client:
            outcome = await client.send(uri, TOAST)
        assert outcome.kind is DELIVERED and outcome.status == 200 and outcome.wns_status == "received"
        [seen] = server.seen
        assert seen.method == "POST"
        assert seen.path_qs == uri.removeprefix(server.base)  # byte for byte: never re-encoded
        h = seen.headers
        assert h["Authorization"] == "Bearer token-1"
        assert h["X-WNS-Type"] == "wns/toast" and h["Content-Type"] == "text/xml"
        assert h["Content-Length"] == str(len(TOAST.payload)) and seen.body == TOAST.payload
        assert "Transfer-Encoding" not in h and "Expect" not in h
        assert "Accept-Encoding" not in h and "Cookie" not in h
        assert h["User-Agent"].startswith("winpush/")
        assert h["MS-CV"] == outcome.ms_cv
        assert not {"X-WNS-SuppressPopup", "X-WNS-Group", "X-WNS-Match"} & set(h)

    async def test_each_request_its_own_ms_cv_and_right_headers(self, server: Server) -> None:
        tile = parse_notification({"type": "tile", "payload": "<tile/>", "tag": "score", "ttl": 60})
        raw = parse_notification({"type": "raw", "payload": "data", "cache": True})
        async with server.client() as client:
            for n in (tile, raw, tile, raw):
                assert (await client.send(f"{server.base}/ch/x", n)).delivered
        cvs = {s.headers["MS-CV"] for s in server.seen}
        assert len(cvs) == 4
        assert [s.headers["X-WNS-Type"] for s in server.seen] == ["wns/tile", "wns/raw"] * 2
        assert server.seen[0].headers["X-WNS-Tag"] == "score" and server.seen[0].headers["X-WNS-TTL"] == "60"
        assert "X-WNS-Tag" not in server.seen[1].headers
        assert server.seen[1].headers["X-WNS-Cache-Policy"] == "cache"
        assert server.seen[1].headers["Content-Type"] == "application/octet-stream"

    @pytest.mark.parametrize(
        "uri",
        [
            "http://localhost:{port}/ch/a",
            "https://elsewhere.example:{port}/ch/a",
            "https://localhost/ch/a",
            "https://localhost:1{port}/ch/a",
            "https://user@localhost:{port}/ch/a",
            "https://evillocalhost:{port}/ch/a",
            "https://evil.example%2f.localhost:{port}/ch/a",
            "https://localhost:{port}\\@evil.example/ch/a",
            "https://[::1]:{port}/ch/a",
            "ftp://localhost:{port}/",
            "",
        ],
    )
    async def test_never_sends_the_token_to_another_host(self, server: Server, uri: str) -> None:
        async with server.client() as client:
            outcome = await client.send(uri.format(port=server.port), TOAST)
        assert (outcome.kind, outcome.reason) == (FAILED, "channel_host_not_allowed")
        assert server.seen == [] and server.token_forms == []

    async def test_redirects_are_not_followed(self, server: Server) -> None:
        server.handler = answer(302, Location=f"{server.base}/elsewhere")
        async with server.client() as client:
            outcome = await client.send(f"{server.base}/ch/a", TOAST)
        assert (outcome.kind, outcome.reason) == (FAILED, "http_302")
        assert [s.path_qs for s in server.seen] == ["/ch/a"]

    async def test_timeout_is_retryable(self, server: Server) -> None:
        async def slow(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(0.4)
            return web.Response()

        server.handler = slow
        async with server.client(timeout=aiohttp.ClientTimeout(total=0.1)) as client:
            outcome = await client.send(f"{server.base}/ch/a", TOAST)
        assert (outcome.kind, outcome.reason) == (RETRYABLE, "timeout")
        assert outcome.ms_cv

    async def test_connection_refused_is_retryable(self, server: Server) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        settings = server.settings(wns_channel_hosts=(f"localhost:{server.port}", f"localhost:{closed_port}"))
        async with server.client(settings=settings) as client:
            outcome = await client.send(f"https://localhost:{closed_port}/ch/a", TOAST)
        assert (outcome.kind, outcome.reason) == (RETRYABLE, "connection_error")

    async def test_untrusted_certificate_fails_without_retry(self, server: Server) -> None:
        # The token is fetched from the same untrusted server, so that is where verification fails.
        client = WnsClient(server.settings(), ssl_context=ssl.create_default_context())
        async with client:
            outcome = await client.send(f"{server.base}/ch/a", TOAST)
        assert outcome.kind is FAILED and outcome.reason == "token_rejected"
        assert "TLS verification" in (outcome.error_description or "")
        assert server.seen == [] and server.token_forms == []

    @pytest.mark.parametrize(("status", "kind"), [(200, DELIVERED), (410, CHANNEL_GONE), (406, THROTTLED),
                                                  (500, RETRYABLE), (403, FAILED)])
    async def test_status_to_outcome(self, server: Server, status: int, kind: wns.OutcomeKind) -> None:
        server.handler = answer(status, **{"X-WNS-Msg-ID": "M1", "X-WNS-Error-Description": "d"})
        async with server.client() as client:
            outcome = await client.send(f"{server.base}/ch/a", TOAST)
        assert (outcome.kind, outcome.status, outcome.msg_id, outcome.error_description) == (kind, status, "M1", "d")


class TestUnauthorized:
    async def test_refreshed_once_then_resent(self, server: Server) -> None:
        server.handler = sequence(401, 200)
        async with server.client() as client:
            outcome = await client.send(f"{server.base}/ch/a", TOAST)
        assert outcome.kind is DELIVERED
        assert [s.headers["Authorization"] for s in server.seen] == ["Bearer token-1", "Bearer token-2"]
        assert len(server.token_forms) == 2

    async def test_second_401_fails(self, server: Server) -> None:
        server.handler = answer(401)
        async with server.client() as client:
            outcome = await client.send(f"{server.base}/ch/a", TOAST)
        assert (outcome.kind, outcome.reason, outcome.status) == (FAILED, "unauthorized", 401)
        assert len(server.seen) == 2 and len(server.token_forms) == 2

    async def test_refresh_failing_after_401_is_retryable(self, server: Server) -> None:
        async with server.client() as client:
            assert (await client.send(f"{server.base}/ch/a", TOAST)).delivered
            server.handler = answer(401)
            server.token_handler = answer(503)
            outcome = await client.send(f"{server.base}/ch/a", TOAST)
        assert (outcome.kind, outcome.reason) == (RETRYABLE, "token_unavailable")
        assert len(server.seen) == 2

    async def test_burst_of_401s_refreshes_once(self, server: Server) -> None:
        async def reject_old(request: web.Request) -> web.StreamResponse:
            return web.Response(status=401 if request.headers["Authorization"] == "Bearer token-1" else 200)

        server.handler = reject_old
        async with server.client() as client:
            outcomes = await asyncio.gather(*(client.send(f"{server.base}/ch/{i}", TOAST) for i in range(40)))
        assert all(o.delivered for o in outcomes)
        assert len(server.token_forms) == 2


def form_token(value: str, expires_in: object) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response({"access_token": value, "token_type": "bearer", "expires_in": expires_in})

    return handle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestTokenProvider:
    @pytest.fixture
    async def session(self, server: Server) -> AsyncIterator[aiohttp.ClientSession]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=server.client_context())) as s:
            yield s

    async def test_form_and_scopes(self, server: Server, session: aiohttp.ClientSession) -> None:
        await TokenProvider(server.settings()).get(session)
        await TokenProvider(server.settings(wns_auth="live")).get(session)
        entra, live = server.token_forms
        assert entra == {"grant_type": "client_credentials", "client_id": "client-id",
                         "client_secret": "s3cret-value", "scope": "https://wns.windows.com/.default"}
        assert live["scope"] == "notify.windows.com"

    def test_default_endpoints(self, server: Server) -> None:
        entra = TokenProvider(server.settings(wns_token_url="", wns_tenant_id="tenant-1"))
        assert entra.url == "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        live = TokenProvider(server.settings(wns_token_url="", wns_auth="live"))
        assert live.url == "https://login.live.com/accesstoken.srf"

    async def test_cached_until_near_expiry(self, server: Server, session: aiohttp.ClientSession) -> None:
        clock = Clock()
        tokens = TokenProvider(server.settings(), clock=clock)
        assert await tokens.get(session) == "token-1"
        clock.now += 86400 - 301
        assert await tokens.get(session) == "token-1"
        clock.now += 2  # now within five minutes of expiry
        assert await tokens.get(session) == "token-2"
        assert tokens.fetches == 2

    @pytest.mark.parametrize(("expires_in", "lifetime"), [("3599", 3599), (3599, 3599), (60.5, 60.5),
                                                         (None, 3600), ("soon", 3600), (True, 3600), (-1, 3600)])
    async def test_expires_in_number_or_string(self, server: Server, session: aiohttp.ClientSession,
                                               expires_in: object, lifetime: float) -> None:
        server.token_handler = form_token("tok", expires_in)
        clock = Clock()
        tokens = TokenProvider(server.settings(), clock=clock)
        await tokens.get(session)
        # Short lifetimes get a proportionally short margin instead of refreshing on every call.
        clock.now += lifetime - min(300, lifetime / 2) - 0.01
        await tokens.get(session)
        assert tokens.fetches == 1
        clock.now += 0.02
        await tokens.get(session)
        assert tokens.fetches == 2

    async def test_single_flight(self, server: Server, session: aiohttp.ClientSession) -> None:
        async def slow_token(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(0.05)
            return web.json_response({"access_token": "only", "expires_in": 3600})

        server.token_handler = slow_token
        tokens = TokenProvider(server.settings())
        values = await asyncio.gather(*(tokens.get(session) for _ in range(100)))
        assert set(values) == {"only"} and len(server.token_forms) == 1

    async def test_cancelled_waiter_does_not_cancel_the_fetch(self, server: Server,
                                                              session: aiohttp.ClientSession) -> None:
        async def slow_token(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(0.05)
            return web.json_response({"access_token": "t", "expires_in": 3600})

        server.token_handler = slow_token
        tokens = TokenProvider(server.settings())
        first = asyncio.create_task(tokens.get(session))
        second = asyncio.create_task(tokens.get(session))
        await asyncio.sleep(0.01)
        first.cancel()
        assert await second == "t"
        assert tokens.fetches == 1

    async def test_invalidate_only_the_refused_token(self, server: Server, session: aiohttp.ClientSession) -> None:
        tokens = TokenProvider(server.settings())
        assert await tokens.get(session) == "token-1"
        tokens.invalidate("some-older-token")
        assert await tokens.get(session) == "token-1"
        tokens.invalidate("token-1")
        tokens.invalidate("token-1")
        assert await tokens.get(session) == "token-2"
        assert tokens.fetches == 2

    async def test_refused_credentials(self, server: Server, session: aiohttp.ClientSession,
                                       caplog: pytest.LogCaptureFixture) -> None:
        async def refuse(request: web.Request) -> web.StreamResponse:
            return web.json_response({"error": "invalid_client", "error_description": "AADSTS7000215"}, status=401)

        server.token_handler = refuse
        clock = Clock()
        tokens = TokenProvider(server.settings(), clock=clock)
        with pytest.raises(TokenError) as info:
            await tokens.get(session)
        assert not info.value.retryable and "invalid_client" in str(info.value)
        assert isinstance(info.value, PushError)
        # Within the cool-down the failure is repeated without asking again.
        with pytest.raises(TokenError):
            await tokens.get(session)
        assert tokens.fetches == 1
        clock.now += wns.TOKEN_FAILURE_COOLDOWN + 1
        with pytest.raises(TokenError):
            await tokens.get(session)
        assert tokens.fetches == 2
        assert "s3cret-value" not in caplog.text

    @pytest.mark.parametrize(("status", "body", "retryable"), [
        (500, "{}", True), (503, "oops", True), (429, "{}", True), (400, '{"error": "invalid_scope"}', False),
        (200, '{"token_type": "bearer"}', True), (200, "not json", True), (200, '["x"]', True),
    ])
    async def test_bad_answers(self, server: Server, session: aiohttp.ClientSession, status: int, body: str,
                               retryable: bool) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, text=body)

        server.token_handler = handle
        with pytest.raises(TokenError) as info:
            await TokenProvider(server.settings()).get(session)
        assert info.value.retryable is retryable

    async def test_missing_credentials_never_ask(self, server: Server, session: aiohttp.ClientSession) -> None:
        with pytest.raises(TokenError) as info:
            await TokenProvider(server.settings(wns_client_secret="")).get(session)
        assert "WNS_CLIENT_SECRET" in str(info.value) and not info.value.retryable
        assert server.token_forms == []

    async def test_early_refresh_failure_keeps_the_valid_token(self, server: Server,
                                                                session: aiohttp.ClientSession) -> None:
        clock = Clock()
        tokens = TokenProvider(server.settings(), clock=clock)
        assert await tokens.get(session) == "token-1"
        server.token_handler = answer(503)
        clock.now += 86400 - 100  # inside the refresh margin, not yet expired
        assert await tokens.get(session) == "token-1"
        clock.now += 200  # expired now
        with pytest.raises(TokenError):
            await tokens.get(session)

    def test_token_never_in_repr(self) -> None:
        assert "abc" not in repr(wns._Token("abc", 1.0, 1.0))


class TestClientErrorsFromTokens:
    async def test_refused_token_fails_the_send(self, server: Server) -> None:
        server.token_handler = answer(400)
        async with server.client() as client:
            outcome = await client.send(f"{server.base}/ch/a", TOAST)
        assert (outcome.kind, outcome.reason) == (FAILED, "token_rejected") and server.seen == []

    async def test_unavailable_token_is_retryable(self, server: Server) -> None:
        server.token_handler = answer(503)
        async with server.client() as client:
            outcome = await client.send(f"{server.base}/ch/a", TOAST)
        assert (outcome.kind, outcome.reason) == (RETRYABLE, "token_unavailable")


class TestRetries:
    async def test_waits_as_told_then_delivers(self, server: Server) -> None:
        statuses = [(503, {"Retry-After": "2"}), (500, {}), (406, {}), (200, {})]

        async def handle(request: web.Request) -> web.StreamResponse:
            status, headers = statuses.pop(0)
            return web.Response(status=status, headers=headers)

        server.handler = handle
        slept: list[float] = []

        async def sleep(delay: float) -> None:
            slept.append(delay)

        async with server.client(sleep=sleep, rng=lambda: 1.0) as client:
            outcome = await client.send_with_retries(f"{server.base}/ch/a", TOAST)
        assert outcome.delivered and outcome.attempts == 4
        assert slept == [2.0, 2.0, 8.0]  # Retry-After; 5xx back-off (attempt 2); throttle back-off (attempt 3)

    async def test_gives_up_after_the_bound(self, server: Server, caplog: pytest.LogCaptureFixture) -> None:
        server.handler = answer(500)
        slept: list[float] = []

        async def sleep(delay: float) -> None:
            slept.append(delay)

        async with server.client(sleep=sleep) as client:
            outcome = await client.send_with_retries(f"{server.base}/ch/a", TOAST)
        assert (outcome.kind, outcome.attempts) == (RETRYABLE, 4) and len(slept) == 3
        assert len(server.seen) == 4
        assert "gave up after 4 attempts" in caplog.text

    async def test_final_outcomes_are_not_retried(self, server: Server) -> None:
        server.handler = answer(410)
        async with server.client(sleep=_no_sleep) as client:
            outcome = await client.send_with_retries(f"{server.base}/ch/a", TOAST)
        assert outcome.kind is CHANNEL_GONE and outcome.attempts == 1 and len(server.seen) == 1

    async def test_deadline(self, server: Server) -> None:
        server.handler = answer(503, **{"Retry-After": "30"})
        clock = Clock()
        async with server.client(sleep=_no_sleep, clock=clock) as client:
            outcome = await client.send_with_retries(f"{server.base}/ch/a", TOAST, deadline=clock.now + 10)
        assert outcome.kind is THROTTLED and outcome.retry_after == 30 and len(server.seen) == 1


async def _no_sleep(delay: float) -> None:
    return None


class TestLogging:
    async def test_no_token_no_secret_no_channel_uri(self, server: Server, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="shared.wns")
        server.handler = sequence(401, 200, 400, 404, 503)
        uri = f"{server.base}/ch/a?token=VERYSECRETCHANNEL"
        async with server.client(sleep=_no_sleep) as client:
            for _ in range(4):
                await client.send(uri, TOAST)
        text = caplog.text
        assert "WNS send to localhost:" in text and "ms_cv=" in text and "status=400" in text
        for secret in ("token-1", "token-2", "s3cret-value", "VERYSECRETCHANNEL", "/ch/a"):
            assert secret not in text
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "bad_request" in warnings[0].getMessage()


class TestLifecycle:
    def test_created_outside_a_loop_and_used_later(self) -> None:
        client = WnsClient(Settings(storage=StorageSettings(connection_string="x")))
        assert client.loop is None and not client.closed

        async def use() -> bool:
            await client.start()
            assert client.loop is asyncio.get_running_loop()
            await client.close()
            return client.closed

        assert asyncio.run(use())

    def test_shared_client_per_loop_keeps_the_token_cache(self) -> None:
        settings = Settings(storage=StorageSettings(connection_string="x"))

        async def get_twice(close: bool) -> tuple[WnsClient, WnsClient]:
            a, b = await wns.get_client(settings), await wns.get_client()
            if close:
                await wns.close_client()
            return a, b

        first, again = asyncio.run(get_twice(close=False))
        assert first is again and first.loop is not None
        # Another loop (a test, a local tool): the first client's session is unusable there.
        second, _ = asyncio.run(get_twice(close=True))
        assert second is not first and second.tokens is first.tokens
        assert first.closed and second.closed

    def test_max_in_flight_validated(self) -> None:
        with pytest.raises(ValueError):
            WnsClient(Settings(storage=StorageSettings(connection_string="x")), max_in_flight=0)


async def test_max_in_flight_bounds_concurrency(server: Server) -> None:
    active = 0
    peak = 0

    async def handle(request: web.Request) -> web.StreamResponse:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return web.Response()

    server.handler = handle
    async with server.client(max_in_flight=5) as client:
        outcomes = await asyncio.gather(*(client.send(f"{server.base}/ch/{i}", TOAST) for i in range(40)))
    assert all(o.delivered for o in outcomes)
    assert peak == 5


def test_outcome_is_small_and_frozen() -> None:
    outcome = wns.Outcome(DELIVERED, 200)
    with pytest.raises(AttributeError):
        outcome.status = 500  # type: ignore[misc]
    assert json.dumps(outcome.kind.value) == '"delivered"'
