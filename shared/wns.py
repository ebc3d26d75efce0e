"""The WNS sender: access tokens, one POST per channel, and a typed outcome for every send.

Implements Microsoft's "Push notification service request and response headers" and "WNS
overview" pages (learn.microsoft.com/windows/apps/develop/notifications/push-notifications/):

- `TokenProvider` obtains the OAuth 2.0 client-credentials token (Entra ID or the legacy Live
  endpoint), caches it per process until shortly before it expires, fetches it once however many
  sends need it at the same moment, and refreshes it once for a burst of 401s.
- `WnsClient.send` posts a notification to a channel URI exactly as stored and returns an
  `Outcome`: delivered, channel gone (404/410), throttled (406/503, with `Retry-After`), retryable
  (5xx, connection faults, timeouts) or failed (400/403/413/...). It never raises for what WNS or
  the network does; what each outcome means for the registration is decided by the caller.
- `retry_decision` is the pure policy for waiting and trying again, `send_with_retries` applies it.

WNS has no batch endpoint, so throughput comes from many concurrent requests over pooled
keep-alive TLS connections: one aiohttp session per process, created lazily on the event loop it
serves, with a bound on requests in flight.

Never logged: the access token, the client secret, and full channel URIs (they are bearer
addresses: anyone holding one can push to that device); `redact_channel` gives a loggable form.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
import json
import logging
import os
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from yarl import URL

from shared.errors import PushError
from shared.notification import Notification, wns_headers
from shared.settings import Settings, get_settings, token_url
from shared.validation import host_allowed

logger = logging.getLogger(__name__)

USER_AGENT = "winpush/0.1 (+aiohttp)"

# Retry policy (contract section 2: "retried after Retry-After with back-off, within a bound").
MAX_ATTEMPTS = 4
MAX_WAIT = 60.0
RETRY_BASE = 1.0
THROTTLE_BASE = 2.0

# Refresh this long before the token expires, so no send goes out with a token about to lapse.
REFRESH_MARGIN = 300.0
# After a failed token fetch, sends fail fast for this long instead of each asking again.
TOKEN_FAILURE_COOLDOWN = 5.0
# Without `expires_in` the token's life is unknown; assume a short one.
DEFAULT_TOKEN_LIFETIME = 3600.0

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10, sock_read=20)

Sleeper = Callable[[float], Awaitable[object]]


class OutcomeKind(enum.Enum):
    DELIVERED = "delivered"
    CHANNEL_GONE = "channel_gone"
    THROTTLED = "throttled"
    RETRYABLE = "retryable"
    FAILED = "failed"


DELIVERED = OutcomeKind.DELIVERED
CHANNEL_GONE = OutcomeKind.CHANNEL_GONE
THROTTLED = OutcomeKind.THROTTLED
RETRYABLE = OutcomeKind.RETRYABLE
FAILED = OutcomeKind.FAILED


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one send.

    `status` is the HTTP status (None when no answer came); `reason` a stable snake_case word
    (`bad_request`, `forbidden`, `unauthorized`, `payload_too_large`, `timeout`,
    `connection_error`, `tls_verification_failed`, `token_rejected`, ...); `retry_after` the wait
    WNS asked for, in seconds. The `X-WNS-*` fields and `ms_cv` are what Microsoft support asks for.
    """

    kind: OutcomeKind
    status: int | None = None
    reason: str = ""
    retry_after: float | None = None
    wns_status: str | None = None
    msg_id: str | None = None
    error_description: str | None = None
    debug_trace: str | None = None
    ms_cv: str | None = None
    attempts: int = 1

    @property
    def delivered(self) -> bool:
        return self.kind is DELIVERED


# --- pure policy --------------------------------------------------------------------------------

_FAILED_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3).

    None when absent or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def classify(
    status: int, headers: Mapping[str, str], *, ms_cv: str | None = None, now: datetime | None = None
) -> Outcome:
    """Map a WNS answer to an `Outcome` (the table of WNS.md / the headers page).

    `headers` should be case-insensitive, as aiohttp's are.
    """
    wns_status = headers.get("X-WNS-Status") or headers.get("X-WNS-NotificationStatus")
    lowered = (wns_status or "").lower()
    retry_after = None
    if status in (406, 429, 503) or lowered == "channelthrottled":
        kind = THROTTLED
        reason = "channel_throttled" if status < 300 else ("unavailable" if status == 503 else "throttled")
        retry_after = parse_retry_after(headers.get("Retry-After"), now)
    elif 200 <= status < 300:
        kind, reason = DELIVERED, ("dropped" if lowered == "dropped" else "")
    elif status in (404, 410):
        kind, reason = CHANNEL_GONE, ("not_found" if status == 404 else "expired")
    elif status >= 500 or status == 408:
        kind, reason = RETRYABLE, ("server_error" if status >= 500 else "timeout")
    else:
        kind, reason = FAILED, _FAILED_REASONS.get(status, f"http_{status}")
    return Outcome(
        kind,
        status=status,
        reason=reason,
        retry_after=retry_after,
        wns_status=wns_status,
        msg_id=headers.get("X-WNS-Msg-ID"),
        error_description=headers.get("X-WNS-Error-Description"),
        debug_trace=headers.get("X-WNS-Debug-Trace"),
        ms_cv=headers.get("MS-CV") or ms_cv,
    )


def backoff(attempt: int, base: float, rng: Callable[[], float] = random.random) -> float:
    """Exponential back-off with "equal jitter": half fixed, half random, so a burst spreads out."""
    ceiling: float = min(MAX_WAIT, base * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + rng() * ceiling / 2


def retry_decision(
    outcome: Outcome,
    attempt: int,
    *,
    rng: Callable[[], float] = random.random,
    max_attempts: int = MAX_ATTEMPTS,
    max_wait: float = MAX_WAIT,
) -> float | None:
    """Seconds to wait before trying again after `attempt` attempts (1 = the first), or None to stop.

    Throttling honours `Retry-After`; when WNS asks for more than `max_wait`, sending sooner would
    only be refused again, so the outcome is returned for the caller to reschedule instead.
    """
    if attempt >= max_attempts:
        return None
    if outcome.kind is THROTTLED:
        if outcome.retry_after is not None:
            return outcome.retry_after if outcome.retry_after <= max_wait else None
        return min(max_wait, backoff(attempt, THROTTLE_BASE, rng))
    if outcome.kind is RETRYABLE:
        return min(max_wait, backoff(attempt, RETRY_BASE, rng))
    return None


_AUTHORITY = re.compile(r"https://([^/?#]*)", re.IGNORECASE)
# Plain DNS names only: no user-info, escapes or IP literals that a URL parser might read differently.
_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")


def redact_channel(uri: str) -> str:
    """A loggable stand-in for a channel URI: its host and a short hash (`host#1a2b3c4d`)."""
    digest = hashlib.sha256(uri.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    match = _AUTHORITY.match(uri)
    host = match.group(1).rpartition("@")[2].lower() if match else "?"
    return f"{host}#{digest}"


def new_ms_cv() -> str:
    """A fresh correlation vector: a 16-character base64 base and the first increment."""
    return base64.b64encode(os.urandom(12)).decode("ascii") + ".0"


def default_ssl_context() -> ssl.SSLContext:
    """A verifying context on the standard trust variables.

    `create_default_context` loads OpenSSL's default paths at call time, which honour
    `SSL_CERT_FILE` / `SSL_CERT_DIR`; `REQUESTS_CA_BUNDLE` is honoured too when it is the only one
    set, as the contract promises both.
    """
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    if bundle and not os.environ.get("SSL_CERT_FILE") and not os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(cafile=bundle)
    return ssl.create_default_context()


# --- tokens -------------------------------------------------------------------------------------


class TokenError(PushError):
    """The token endpoint did not give a token; `retryable` tells a fault from a refusal."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = ""
    expires_at: float = 0.0
    refresh_at: float = 0.0

    def __repr__(self) -> str:  # never show the token, even in a debugger or a traceback
        return f"_Token(expires_at={self.expires_at:.0f})"


class TokenProvider:
    """The WNS access token for one app, cached per process; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        refresh_margin: float = REFRESH_MARGIN,
        failure_cooldown: float = TOKEN_FAILURE_COOLDOWN,
    ) -> None:
        self._url = token_url(settings)
        self._auth = settings.wns_auth
        self._client_id = settings.wns_client_id
        self._secret = settings.wns_client_secret
        self._clock = clock
        self._margin = refresh_margin
        self._cooldown = failure_cooldown
        self._token: _Token | None = None
        self._refreshing: asyncio.Task[_Token] | None = None
        self._failure: TokenError | None = None
        self._failure_until = 0.0
        self.fetches = 0

    @property
    def url(self) -> str:
        return self._url

    @property
    def scope(self) -> str:
        return "notify.windows.com" if self._auth == "live" else "https://wns.windows.com/.default"

    async def get(self, session: aiohttp.ClientSession) -> str:
        """A valid token, fetching one (once, for all concurrent callers) when needed."""
        token = self._token
        now = self._clock()
        if token is not None and now < token.refresh_at:
            return token.value
        task = self._refreshing
        loop = asyncio.get_running_loop()
        if task is not None and task.get_loop() is not loop:
            task = None  # left over from a loop that ended mid-fetch (tests, local tools)
        if task is None:
            if self._failure is not None and now < self._failure_until:
                if token is not None and now < token.expires_at:
                    return token.value
                # A fresh exception each time: re-raising one instance would keep growing its traceback.
                raise TokenError(str(self._failure), retryable=self._failure.retryable)
            task = loop.create_task(self._fetch(session))
            task.add_done_callback(self._fetched)
            self._refreshing = task
        try:
            # Shielded: a caller that is cancelled must not cancel the fetch the others wait for.
            return (await asyncio.shield(task)).value
        except TokenError:
            # A refresh ahead of expiry failed; the current token still works until it expires.
            if token is not None and self._clock() < token.expires_at and self._token is token:
                return token.value
            raise

    def invalidate(self, token: str) -> None:
        """Forget `token` after WNS refused it (401); a no-op if a newer one is already cached.

        Comparing with the cached token is what limits a burst of 401s to a single refresh.
        """
        if self._token is not None and self._token.value == token:
            self._token = None

    def _fetched(self, task: asyncio.Task[_Token]) -> None:
        if self._refreshing is task:
            self._refreshing = None
        if task.cancelled():
            return
        exc = task.exception()  # also marks it retrieved when every waiter was cancelled
        if isinstance(exc, TokenError):
            self._failure = exc
            self._failure_until = self._clock() + self._cooldown
        elif exc is None:
            self._failure = None

    async def _fetch(self, session: aiohttp.ClientSession) -> _Token:
        if not self._client_id or not self._secret:
            raise TokenError("WNS_CLIENT_ID and WNS_CLIENT_SECRET must be set to send", retryable=False)
        self.fetches += 1
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._secret,
            "scope": self.scope,
        }
        started = self._clock()
        try:
            async with session.post(
                self._url, data=form, allow_redirects=False, timeout=DEFAULT_TIMEOUT
            ) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            raise TokenError("the WNS token endpoint timed out", retryable=True) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TokenError(f"TLS verification of the token endpoint failed: {exc}", retryable=False) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TokenError(f"the WNS token endpoint is unreachable: {type(exc).__name__}", retryable=True) from None
        doc = _json_object(body)
        if status != 200:
            # Entra/Live error documents carry `error` and `error_description`, never the secret.
            detail = str(doc.get("error") or "") + (
                f": {str(doc.get('error_description'))[:300]}" if doc.get("error_description") else ""
            )
            logger.warning("WNS token request refused: HTTP %s %s", status, detail)
            raise TokenError(
                f"the WNS token endpoint answered {status} {detail}".strip(),
                retryable=status >= 500 or status in (408, 429),
            )
        value = doc.get("access_token")
        if not isinstance(value, str) or not value:
            raise TokenError("the WNS token endpoint answered without an access_token", retryable=True)
        lifetime = _seconds(doc.get("expires_in"))
        # With short-lived tokens a fixed margin would mean refreshing on every send.
        margin = min(self._margin, lifetime / 2)
        token = _Token(value=value, expires_at=started + lifetime, refresh_at=started + lifetime - margin)
        self._token = token
        logger.info("WNS access token obtained (valid %.0f s)", lifetime)
        return token


def _json_object(body: bytes) -> dict[str, object]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _seconds(value: object) -> float:
    # The Entra sample answers `"expires_in": "3599"`; Live answers a number.
    try:
        seconds = float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else -1
    except ValueError:
        seconds = -1
    return seconds if 0 < seconds < 10**7 else DEFAULT_TOKEN_LIFETIME


# --- the client ---------------------------------------------------------------------------------


class WnsClient:
    """Sends notifications to WNS channels; create once per process and reuse (see `get_client`).

    `max_in_flight` bounds concurrent requests (and pooled connections). The aiohttp session is
    created on first use, on the running loop, unless one is given (the client then does not
    close it). `sleep` and `rng` are injectable so retry tests do not wait.
    """

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession | None = None,
        max_in_flight: int = 200,
        *,
        tokens: TokenProvider | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        sleep: Sleeper = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.settings = settings
        self.tokens = tokens or TokenProvider(settings)
        self.max_in_flight = max_in_flight
        self._session = session
        self._owns_session = session is None
        self._ssl_context = ssl_context
        self._timeout = timeout
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._allowed_hosts = settings.wns_channel_hosts
        self._authority_ok: dict[str, bool] = {}
        # The headers of the notification being fanned out, built once per job, not per send.
        self._prepared: tuple[Notification, dict[str, str]] | None = None

    # -- lifecycle --

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the client's session lives on (None before first use)."""
        return self._loop

    @property
    def closed(self) -> bool:
        return self._session is not None and self._session.closed

    def _open(self) -> aiohttp.ClientSession:
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self.max_in_flight)
        if self._session is None:
            connector = aiohttp.TCPConnector(
                # The semaphore bounds requests; the pool is as large so none waits for a socket.
                limit=self.max_in_flight,
                # Channels of one region share a few WNS hosts, so one host may use the whole pool.
                limit_per_host=self.max_in_flight,
                ssl=self._ssl_context or default_ssl_context(),
                keepalive_timeout=60,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                # Everything below avoids per-request work WNS has no use for.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("Accept", "Accept-Encoding"),
                headers={"User-Agent": USER_AGENT},
                # Never pick up proxies or .netrc credentials from the environment.
                trust_env=False,
            )
        return self._session

    async def start(self) -> None:
        """Create the session now, on the running loop (otherwise the first send does)."""
        if self._session is None or self._slots is None:
            self._open()

    async def close(self) -> None:
        """Close the session (if the client created it); the client cannot be used afterwards."""
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()

    async def __aenter__(self) -> WnsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- sending --

    def _channel_allowed(self, channel_uri: str) -> bool:
        # Defence in depth: URIs are checked when registered, but the bearer token must never
        # reach another host even if a bad URI got into storage (or the setting changed since).
        match = _AUTHORITY.match(channel_uri)
        if match is None:
            return False
        authority = match.group(1)
        ok = self._authority_ok.get(authority)
        if ok is None:
            host, _, port = authority.lower().partition(":")
            ok = (
                _HOST.fullmatch(host) is not None
                and (not port or (port.isdigit() and port.isascii()))
                and host_allowed(host, int(port) if port else None, self._allowed_hosts)
            )
            if len(self._authority_ok) < 4096:
                self._authority_ok[authority] = ok
        return ok

    def _headers_for(self, notification: Notification) -> dict[str, str]:
        prepared = self._prepared
        if prepared is not None and prepared[0] is notification:
            return prepared[1]
        headers = wns_headers(notification)
        headers["Content-Length"] = str(len(notification.payload))
        self._prepared = (notification, headers)
        return headers

    async def send(self, channel_uri: str, notification: Notification) -> Outcome:
        """Send once (plus one resend after a 401) and return what happened; never raises for
        anything WNS or the network does."""
        if not self._channel_allowed(channel_uri):
            outcome = Outcome(FAILED, reason="channel_host_not_allowed")
            self._log(outcome, channel_uri)
            return outcome
        session = self._session
        if session is None or self._slots is None:
            session = self._open()
        assert self._slots is not None
        try:
            url = URL(channel_uri, encoded=True)  # as stored: re-encoding a channel URI breaks it
        except ValueError:
            outcome = Outcome(FAILED, reason="invalid_channel_uri")
            self._log(outcome, channel_uri)
            return outcome
        base = self._headers_for(notification)
        body = notification.payload
        async with self._slots:
            try:
                token = await self.tokens.get(session)
                outcome = await self._post(session, url, body, base, token)
                if outcome.status == 401:
                    # Expired or revoked: drop it (once for a whole burst) and resend once.
                    self.tokens.invalidate(token)
                    token = await self.tokens.get(session)
                    outcome = await self._post(session, url, body, base, token)
            except TokenError as exc:
                outcome = Outcome(
                    RETRYABLE if exc.retryable else FAILED,
                    reason="token_unavailable" if exc.retryable else "token_rejected",
                    error_description=str(exc),
                )
        self._log(outcome, channel_uri)
        return outcome

    async def _post(
        self, session: aiohttp.ClientSession, url: URL, body: bytes, base: dict[str, str], token: str
    ) -> Outcome:
        headers = base.copy()
        headers["Authorization"] = "Bearer " + token
        ms_cv = headers["MS-CV"] = new_ms_cv()
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                # WNS answers carry no useful body; reading it returns the connection to the pool.
                await resp.read()
                return classify(resp.status, resp.headers, ms_cv=ms_cv)
        except TimeoutError:
            return Outcome(RETRYABLE, reason="timeout", ms_cv=ms_cv)
        except aiohttp.ClientConnectorCertificateError as exc:
            # Retrying cannot fix a certificate the trust store rejects.
            return Outcome(FAILED, reason="tls_verification_failed", error_description=str(exc)[:300],
                           ms_cv=ms_cv)
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(RETRYABLE, reason="connection_error", error_description=type(exc).__name__,
                           ms_cv=ms_cv)

    async def send_with_retries(
        self,
        channel_uri: str,
        notification: Notification,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        deadline: float | None = None,
    ) -> Outcome:
        """`send`, retried per `retry_decision`; gives up early rather than wait past `deadline`
        (a `clock()` time, monotonic by default), so an invocation keeps within its time budget."""
        attempt = 1
        while True:
            outcome = await self.send(channel_uri, notification)
            delay = retry_decision(outcome, attempt, rng=self._rng, max_attempts=max_attempts)
            if delay is not None and deadline is not None and self._clock() + delay > deadline:
                delay = None
            if delay is None:
                if attempt > 1:
                    outcome = replace(outcome, attempts=attempt)
                    if outcome.kind in (THROTTLED, RETRYABLE):
                        logger.warning(
                            "WNS send to %s gave up after %d attempts: %s %s",
                            redact_channel(channel_uri), attempt, outcome.kind.value, outcome.reason,
                        )
                return outcome
            await self._sleep(delay)
            attempt += 1

    def _log(self, outcome: Outcome, channel_uri: str) -> None:
        kind = outcome.kind
        if kind is DELIVERED:
            if not logger.isEnabledFor(logging.DEBUG):
                return
            level = logging.DEBUG
        elif kind is FAILED:
            level = logging.WARNING
        else:
            level = logging.INFO
        logger.log(
            level,
            "WNS send to %s: %s %s status=%s wns_status=%s msg_id=%s error=%s ms_cv=%s debug_trace=%s",
            redact_channel(channel_uri), kind.value, outcome.reason, outcome.status, outcome.wns_status,
            outcome.msg_id, outcome.error_description, outcome.ms_cv, outcome.debug_trace,
        )


# --- the process-wide client --------------------------------------------------------------------

_shared: WnsClient | None = None


async def get_client(settings: Settings | None = None) -> WnsClient:
    """The process's client, created on first use on the running loop and reused afterwards.

    `settings` (default: `get_settings()`) only matter when the client is created. A new loop (a
    test, a local tool) gets a new client but keeps the cached token.
    """
    global _shared
    loop = asyncio.get_running_loop()
    client = _shared
    if client is None or client.closed or (client.loop is not None and client.loop is not loop):
        settings = settings or get_settings()
        tokens = client.tokens if client is not None else None
        if client is not None and client.loop is not None and client.loop.is_closed():
            # Its connections died with their loop; closing just releases what is left.
            with contextlib.suppress(Exception):
                await client.close()
        client = _shared = WnsClient(settings, tokens=tokens)
        await client.start()
    return client


async def close_client() -> None:
    """Close the process's client (tests, shutdown hooks)."""
    global _shared
    client, _shared = _shared, None
    if client is not None and client.loop is asyncio.get_running_loop():
        await client.close()


__all__ = [
    "CHANNEL_GONE",
    "DELIVERED",
    "FAILED",
    "MAX_ATTEMPTS",
    "MAX_WAIT",
    "RETRYABLE",
    "THROTTLED",
    "Outcome",
    "OutcomeKind",
    "TokenError",
    "TokenProvider",
    "WnsClient",
    "backoff",
    "classify",
    "close_client",
    "default_ssl_context",
    "get_client",
    "new_ms_cv",
    "parse_retry_after",
    "redact_channel",
    "retry_decision",
]
