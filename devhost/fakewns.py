"""A local stand-in for WNS (and its token endpoint) over real TLS on loopback: what `bin/run`
uses for demos (`GET /` lists what each "device" received) and what the integration and e2e
tests send to.

It checks requests the way WNS does (learn.microsoft.com, push-request-response-headers): the
bearer token must be one it issued and not expired (401), `X-WNS-Type` with the matching
`Content-Type`, a `Content-Length` and no chunked body or `Expect` (400), at most 5,000 bytes
(413), and none of the Windows Phone headers (`X-WNS-SuppressPopup`, `X-WNS-Group`,
`X-WNS-Match`: 400). Valid requests get the next scripted answer for their channel, 200 when
none is left.

In-process (the tests' loop):

    async with FakeWns(latency=0.05) as fake:     # fake.ca_path: the throw-away CA's PEM
        uri = fake.channel_uri("abc")              # https://localhost:PORT/ch/abc?token=...
        fake.script("abc", 401, Answer(406, {"Retry-After": "2"}), 200)
        ... fake.received, fake.token_requests

As a process (so its CPU is not counted, or for end-to-end runs):

    python -m devhost.fakewns --port 0 --ca-out /tmp/ca.pem [--latency-ms 50] [--no-record]

prints one JSON line `{"baseUrl", "port", "tokenUrl", "ca"}` when ready; `fake_wns_process()` wraps
that, and the control endpoints (`GET /_fake/received`, `GET /_fake/stats`, `POST /_fake/script`,
`POST /_fake/reset`, `POST /_fake/revoke`) reach it over HTTPS. Clients trust it through
`SSL_CERT_FILE` / `REQUESTS_CA_BUNDLE` pointing at the CA file, like any other private CA.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]

MAX_PAYLOAD = 5000
_TYPES = {
    "wns/toast": "text/xml",
    "wns/tile": "text/xml",
    "wns/badge": "text/xml",
    "wns/raw": "application/octet-stream",
}
_PHONE_ONLY = ("X-WNS-SuppressPopup", "X-WNS-Group", "X-WNS-Match")
_SCOPES = ("https://wns.windows.com/.default", "notify.windows.com")


@dataclass
class Answer:
    """A scripted answer: status, extra headers (e.g. `Retry-After`), extra delay in seconds."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def of(cls, value: Answer | int | dict[str, Any]) -> Answer:
        if isinstance(value, Answer):
            return value
        if isinstance(value, int):
            return cls(value)
        return cls(int(value["status"]), dict(value.get("headers", {})), float(value.get("delay", 0.0)))


@dataclass
class Received:
    """One notification request as the fake saw it (valid or not) and what it answered."""

    channel_id: str
    path_qs: str
    headers: dict[str, str]
    body: bytes
    time: float
    status: int

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel_id,
            "pathQs": self.path_qs,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
            "bodyBase64": base64.b64encode(self.body).decode("ascii"),
            "time": self.time,
            "status": self.status,
        }


class FakeWns:
    def __init__(
        self,
        *,
        bind: str = "127.0.0.1",
        port: int = 0,
        hostname: str = "localhost",
        latency: float = 0.0,
        token_expires_in: float = 86400,
        expires_in_as_string: bool = False,
        client_id: str | None = None,
        client_secret: str | None = None,
        record: bool = True,
        ca_out: str | None = None,
    ) -> None:
        self.bind = bind
        self.port = port
        self.hostname = hostname
        self.latency = latency
        self.token_expires_in = token_expires_in
        self.expires_in_as_string = expires_in_as_string
        self.client_id = client_id
        self.client_secret = client_secret
        self.record = record
        self._ca_out = ca_out
        self.ca_path = ""
        self._ca = trustme.CA()
        self._runner: web.AppRunner | None = None
        self._scripts: dict[str, deque[Answer]] = {}
        self._token_script: deque[Answer] = deque()
        self._tokens: dict[str, float] = {}
        self.received: list[Received] = []
        self.token_requests = 0
        self.token_forms: list[dict[str, str]] = []
        self.requests = 0
        self.delivered = 0
        self._msg = 0

    # -- lifecycle --

    @property
    def base_url(self) -> str:
        return f"https://{self.hostname}:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def host_entry(self) -> str:
        """The `WNS_CHANNEL_HOSTS` entry that admits this fake's channel URIs."""
        return f"{self.hostname}:{self.port}"

    def server_ssl_context(self) -> ssl.SSLContext:
        names = dict.fromkeys([self.hostname, "localhost", "127.0.0.1", self.bind])
        cert = self._ca.issue_cert(*names)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        """A context trusting only this fake's CA (for clients that take one explicitly)."""
        return ssl.create_default_context(cafile=self.ca_path)

    async def start(self) -> str:
        if self._ca_out:
            self.ca_path = self._ca_out
        else:
            fd, self.ca_path = tempfile.mkstemp(prefix="fakewns-ca-", suffix=".pem")
            os.close(fd)
        self._ca.cert_pem.write_to_path(self.ca_path)
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_get("/_fake/received", self._get_received)
        app.router.add_get("/", self._get_devices)
        app.router.add_get("/_fake/stats", self._get_stats)
        app.router.add_post("/_fake/script", self._post_script)
        app.router.add_post("/_fake/reset", self._post_reset)
        app.router.add_post("/_fake/revoke", self._post_revoke)
        app.router.add_route("*", "/ch/{id}", self._channel)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.bind, self.port))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=self.server_ssl_context())
        await site.start()
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.ca_path and not self._ca_out:
            with contextlib.suppress(OSError):
                os.unlink(self.ca_path)

    async def __aenter__(self) -> FakeWns:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting and inspection --

    def channel_uri(self, channel_id: str, token: str | None = None) -> str:
        """A channel URI in WNS's shape; the default token holds `%2B`, `%2F`, `%3D` escapes on
        purpose, so a client that re-encodes the URI is caught."""
        if token is None:
            raw = base64.b64encode(secrets.token_bytes(24) + b"\xfb\xff").decode("ascii")
            token = urllib.parse.quote(raw, safe="")
        return f"{self.base_url}/ch/{channel_id}?token={token}"

    def script(self, channel_id: str, *answers: Answer | int | dict[str, Any]) -> None:
        """Queue answers for a channel's next valid requests (after them: 200)."""
        self._scripts.setdefault(channel_id, deque()).extend(Answer.of(a) for a in answers)

    def script_token(self, *answers: Answer | int | dict[str, Any]) -> None:
        """Queue answers for the next token requests (non-200: an OAuth error document)."""
        self._token_script.extend(Answer.of(a) for a in answers)

    def revoke_tokens(self) -> None:
        """Every token issued so far becomes invalid (sends with it get 401)."""
        self._tokens.clear()

    def received_for(self, channel_id: str) -> list[Received]:
        return [r for r in self.received if r.channel_id == channel_id]

    def reset(self) -> None:
        self._scripts.clear()
        self._token_script.clear()
        self.received.clear()
        self.token_forms.clear()
        self.token_requests = self.requests = self.delivered = 0

    def stats(self) -> dict[str, int]:
        return {
            "tokenRequests": self.token_requests,
            "requests": self.requests,
            "delivered": self.delivered,
            "received": len(self.received),
        }

    # -- handlers --

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.token_forms.append({k: ("***" if k == "client_secret" else v) for k, v in form.items()})
        if self._token_script:
            answer = self._token_script.popleft()
            if answer.status != 200:
                await asyncio.sleep(answer.delay)
                return web.json_response(
                    {"error": "scripted_failure", "error_description": "scripted by the test"},
                    status=answer.status,
                    headers=answer.headers,
                )
        error = None
        if form.get("grant_type") != "client_credentials":
            error = "unsupported_grant_type"
        elif form.get("scope") not in _SCOPES:
            error = "invalid_scope"
        elif not form.get("client_id") or not form.get("client_secret"):
            error = "invalid_request"
        elif (self.client_id is not None and form["client_id"] != self.client_id) or (
            self.client_secret is not None and form["client_secret"] != self.client_secret
        ):
            error = "invalid_client"
        if error:
            return web.json_response({"error": error, "error_description": f"fake: {error}"}, status=400)
        token = "fake-" + secrets.token_urlsafe(24)
        self._tokens[token] = time.monotonic() + self.token_expires_in
        expires: Any = str(int(self.token_expires_in)) if self.expires_in_as_string else self.token_expires_in
        return web.json_response({"access_token": token, "token_type": "bearer", "expires_in": expires})

    def _check(self, request: web.Request, body: bytes) -> tuple[int, str]:
        """(status, error description) of what WNS would say about the request itself."""
        h = request.headers
        auth = h.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        expiry = self._tokens.get(token)
        if expiry is None or expiry < time.monotonic():
            return 401, "invalid or expired token"
        for name in _PHONE_ONLY:
            if name in h:
                return 400, f"{name} is not supported on Windows channels"
        wns_type = h.get("X-WNS-Type", "")
        if wns_type not in _TYPES:
            return 400, "missing or invalid X-WNS-Type"
        if h.get("Content-Type", "").split(";")[0].strip() != _TYPES[wns_type]:
            return 400, f"Content-Type must be {_TYPES[wns_type]} for {wns_type}"
        if "chunked" in h.get("Transfer-Encoding", "").lower():
            return 400, "chunked bodies are not supported"
        if "Expect" in h:
            return 400, "Expect is not supported"
        length = h.get("Content-Length")
        if length is None or not length.isdigit() or int(length) != len(body):
            return 400, "Content-Length is required"
        if not body:
            return 400, "empty payload"
        if len(body) > MAX_PAYLOAD:
            return 413, "payload exceeds 5000 bytes"
        policy = h.get("X-WNS-Cache-Policy")
        if policy is not None and (policy not in ("cache", "no-cache") or wns_type == "wns/toast"):
            return 400, "invalid X-WNS-Cache-Policy"
        ttl = h.get("X-WNS-TTL")
        if ttl is not None and not ttl.isdigit():
            return 400, "invalid X-WNS-TTL"
        tag = h.get("X-WNS-Tag")
        if tag is not None and (wns_type != "wns/tile" or not 0 < len(tag) <= 16):
            return 400, "invalid X-WNS-Tag"
        priority = h.get("X-WNS-PRIORITY")
        if priority is not None and priority not in ("1", "2", "3", "4"):
            return 400, "invalid X-WNS-PRIORITY"
        return 200, ""

    async def _channel(self, request: web.Request) -> web.Response:
        self.requests += 1
        channel_id = request.match_info["id"]
        if request.method != "POST":
            return web.Response(status=405)
        body = await request.read()
        status, error = self._check(request, body)
        answer = None
        if status == 200:
            queue = self._scripts.get(channel_id)
            if queue:
                answer = queue.popleft()
                status = answer.status
        delay = self.latency + (answer.delay if answer else 0.0)
        if delay:
            await asyncio.sleep(delay)
        self._msg += 1
        headers = {
            "X-WNS-Msg-ID": f"{self._msg:016X}",
            "X-WNS-Debug-Trace": "FAKE-TRACE",
            "MS-CV": request.headers.get("MS-CV", ""),
        }
        if status == 200:
            self.delivered += 1
            headers["X-WNS-Status"] = "received"
        elif error:
            headers["X-WNS-Error-Description"] = error
        if answer:
            headers.update(answer.headers)
        if self.record:
            self.received.append(
                Received(channel_id, request.raw_path, dict(request.headers), body, time.time(), status)
            )
        return web.Response(status=status, headers=headers)

    async def _get_received(self, request: web.Request) -> web.Response:
        channel = request.query.get("channel")
        items = self.received if channel is None else self.received_for(channel)
        return web.json_response({"received": [r.to_json() for r in items]})

    async def _get_devices(self, request: web.Request) -> web.Response:
        """What each "device" (channel) received, as text a person reads in a terminal or browser."""
        lines = [f"WNS stand-in at {self.base_url}: {len(self.received)} notification requests", ""]
        by_channel: dict[str, list[Received]] = {}
        for r in self.received:
            by_channel.setdefault(r.channel_id, []).append(r)
        for channel, items in sorted(by_channel.items()):
            lines.append(f"device channel {channel}:")
            for r in items:
                when = time.strftime("%H:%M:%S", time.localtime(r.time))
                kind = r.headers.get("X-WNS-Type", "?")
                body = r.body.decode("utf-8", "replace")
                lines.append(f"  {when}  {r.status}  {kind:10s} {body[:160]}")
            lines.append("")
        if not by_channel:
            lines.append("nothing yet: register a channel URI on this host and send a job")
        return web.Response(text="\n".join(lines) + "\n")

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _post_script(self, request: web.Request) -> web.Response:
        doc = await request.json()
        if "channel" in doc:
            self.script(str(doc["channel"]), *doc.get("answers", []))
        if "token" in doc:
            self.script_token(*doc["token"])
        if "latencyMs" in doc:
            self.latency = float(doc["latencyMs"]) / 1000
        return web.json_response({"ok": True})

    async def _post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _post_revoke(self, request: web.Request) -> web.Response:
        self.revoke_tokens()
        return web.json_response({"ok": True})


# --- as a separate process ----------------------------------------------------------------------


@dataclass
class FakeWnsProcess:
    """A running `python -m devhost.fakewns`, driven over its HTTPS control endpoints."""

    proc: subprocess.Popen[str]
    base_url: str
    port: int
    ca_path: str

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def host_entry(self) -> str:
        return self.base_url.removeprefix("https://")

    def channel_uri(self, channel_id: str, token: str = "AwYAAABq%2Bfake%2Ftoken%3D") -> str:
        return f"{self.base_url}/ch/{channel_id}?token={token}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import requests

        resp = requests.request(method, self.base_url + path, json=body, verify=self.ca_path, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def script(self, channel_id: str, *answers: int | dict[str, Any]) -> None:
        self._call("POST", "/_fake/script", {"channel": channel_id, "answers": list(answers)})

    def received(self, channel_id: str | None = None) -> list[dict[str, Any]]:
        path = "/_fake/received" + (f"?channel={urllib.parse.quote(channel_id)}" if channel_id else "")
        return list(self._call("GET", path)["received"])

    def stats(self) -> dict[str, int]:
        return dict(self._call("GET", "/_fake/stats"))

    def reset(self) -> None:
        self._call("POST", "/_fake/reset")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def fake_wns_process(
    *, latency_ms: float = 0, hostname: str = "localhost", record: bool = True,
    token_expires_in: float = 86400, ca_out: str | None = None, port: int = 0,
) -> Iterator[FakeWnsProcess]:
    """Start the fake as a child process and stop it on exit."""
    ca_file = ca_out or tempfile.mkstemp(prefix="fakewns-ca-", suffix=".pem")[1]
    args = [
        sys.executable, "-m", "devhost.fakewns", "--port", str(port), "--ca-out", ca_file,
        "--latency-ms", str(latency_ms), "--hostname", hostname, "--token-expires-in", str(token_expires_in),
    ]
    if not record:
        args.append("--no-record")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    handle = None
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fake WNS exited before it was ready (code {proc.wait()})")
        ready = json.loads(line)
        handle = FakeWnsProcess(proc, ready["baseUrl"], ready["port"], ready["ca"])
        yield handle
    finally:
        if handle is not None:
            handle.stop()
        elif proc.poll() is None:
            proc.kill()
            proc.wait()
        if ca_out is None:
            with contextlib.suppress(OSError):
                os.unlink(ca_file)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeWns(
        bind=args.bind, port=args.port, hostname=args.hostname, latency=args.latency_ms / 1000,
        token_expires_in=args.token_expires_in, record=not args.no_record, ca_out=args.ca_out,
        client_id=args.client_id, client_secret=args.client_secret,
    )
    await fake.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready = {"baseUrl": fake.base_url, "port": fake.port, "tokenUrl": fake.token_url, "ca": fake.ca_path}
    print(json.dumps(ready), flush=True)
    await stop.wait()
    await fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devhost.fakewns", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed when ready)")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--hostname", default="localhost", help="host name in URIs and the certificate")
    parser.add_argument("--ca-out", required=True, help="where to write the CA certificate (PEM)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every WNS answer")
    parser.add_argument("--token-expires-in", type=float, default=86400)
    parser.add_argument("--client-id", default=None, help="accept only this client_id")
    parser.add_argument("--client-secret", default=None, help="accept only this client_secret")
    parser.add_argument("--no-record", action="store_true", help="count requests without keeping them")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
