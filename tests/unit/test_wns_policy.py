"""The pure parts of the WNS sender: answer classification, Retry-After, retry policy, redaction."""

from __future__ import annotations

import hashlib
import re
import ssl
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import trustme
from multidict import CIMultiDict

from shared import wns
from shared.wns import (
    CHANNEL_GONE,
    DELIVERED,
    FAILED,
    RETRYABLE,
    THROTTLED,
    Outcome,
    classify,
    parse_retry_after,
    redact_channel,
    retry_decision,
)

NOW = datetime(2027, 4, 1, 12, 0, 0, tzinfo=UTC)


def headers(**items: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in items.items()})


class TestClassify:
    @pytest.mark.parametrize(
        ("status", "kind", "reason"),
        [
            (200, DELIVERED, ""),
            (400, FAILED, "bad_request"),
            (401, FAILED, "unauthorized"),
            (403, FAILED, "forbidden"),
            (404, CHANNEL_GONE, "not_found"),
            (405, FAILED, "method_not_allowed"),
            (406, THROTTLED, "throttled"),
            (408, RETRYABLE, "timeout"),
            (410, CHANNEL_GONE, "expired"),
            (413, FAILED, "payload_too_large"),
            (429, THROTTLED, "throttled"),
            (422, FAILED, "http_422"),
            (302, FAILED, "http_302"),
            (500, RETRYABLE, "server_error"),
            (502, RETRYABLE, "server_error"),
            (503, THROTTLED, "unavailable"),
        ],
    )
    def test_status_table(self, status: int, kind: wns.OutcomeKind, reason: str) -> None:
        outcome = classify(status, headers())
        assert (outcome.kind, outcome.reason, outcome.status) == (kind, reason, status)

    def test_diagnostic_headers_read_case_insensitively(self) -> None:
        outcome = classify(400, headers(**{
            "x-wns-status": "dropped", "X-WNS-MSG-ID": "ABC", "x-wns-error-description": "bad xml",
            "X-WNS-Debug-Trace": "trace", "ms-cv": "cv.1",
        }), ms_cv="mine.0")
        assert (outcome.wns_status, outcome.msg_id, outcome.error_description, outcome.debug_trace, outcome.ms_cv) \
            == ("dropped", "ABC", "bad xml", "trace", "cv.1")

    def test_ms_cv_falls_back_to_the_one_sent(self) -> None:
        assert classify(200, headers()).ms_cv is None
        assert classify(200, headers(), ms_cv="mine.0").ms_cv == "mine.0"

    def test_legacy_status_header(self) -> None:
        assert classify(200, headers(X_WNS_NotificationStatus="received")).wns_status == "received"
        assert classify(200, headers(X_WNS_Status="received", X_WNS_NotificationStatus="dropped")).wns_status \
            == "received"

    def test_dropped_is_accepted_but_noted(self) -> None:
        outcome = classify(200, headers(X_WNS_Status="dropped"))
        assert outcome.kind is DELIVERED and outcome.reason == "dropped" and outcome.delivered

    def test_channel_throttled_status_means_throttled(self) -> None:
        outcome = classify(200, headers(X_WNS_Status="channelThrottled", Retry_After="30"))
        assert (outcome.kind, outcome.reason, outcome.retry_after) == (THROTTLED, "channel_throttled", 30.0)
        assert classify(200, headers(X_WNS_NotificationStatus="channelthrottled")).kind is THROTTLED

    def test_retry_after_read_on_throttling(self) -> None:
        assert classify(406, headers(Retry_After="12")).retry_after == 12.0
        later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
        assert classify(503, headers(Retry_After=later), now=NOW).retry_after == 90.0
        assert classify(406, headers()).retry_after is None


class TestRetryAfter:
    @pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("120", 120.0), (" 7 ", 7.0)])
    def test_delta_seconds(self, value: str, seconds: float) -> None:
        assert parse_retry_after(value) == seconds

    def test_http_date(self) -> None:
        assert parse_retry_after("Thu, 01 Apr 2027 12:00:30 GMT", NOW) == 30.0
        # The obsolete RFC 850 and asctime forms are HTTP-dates too.
        assert parse_retry_after("Thursday, 01-Apr-27 12:01:00 GMT", NOW) == 60.0
        assert parse_retry_after("Thu Apr  1 12:00:10 2027", NOW) == 10.0

    def test_date_in_the_past_is_now(self) -> None:
        assert parse_retry_after("Thu, 01 Apr 2027 11:00:00 GMT", NOW) == 0.0

    @pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "٣", "Thu, 99 Foo 2027"])
    def test_unreadable(self, value: str | None) -> None:
        assert parse_retry_after(value, NOW) is None


def fixed(value: float) -> float:
    return value


class TestRetryDecision:
    def test_throttled_waits_as_asked(self) -> None:
        assert retry_decision(Outcome(THROTTLED, 406, retry_after=7), 1) == 7
        assert retry_decision(Outcome(THROTTLED, 503, retry_after=0), 3) == 0

    def test_throttled_longer_than_the_cap_is_handed_back(self) -> None:
        # Sending before WNS's time would only be refused; the caller reschedules instead.
        assert retry_decision(Outcome(THROTTLED, 406, retry_after=61), 1) is None
        assert retry_decision(Outcome(THROTTLED, 406, retry_after=60), 1) == 60
        assert retry_decision(Outcome(THROTTLED, 406, retry_after=200), 1, max_wait=300) == 200

    def test_throttled_without_retry_after_backs_off_with_jitter(self) -> None:
        delays = [retry_decision(Outcome(THROTTLED, 503), a, rng=lambda: 1.0) for a in (1, 2, 3)]
        assert delays == [2.0, 4.0, 8.0]
        assert retry_decision(Outcome(THROTTLED, 503), 1, rng=lambda: 0.0) == 1.0

    def test_retryable_exponential(self) -> None:
        delays = [retry_decision(Outcome(RETRYABLE, 500), a, rng=lambda: 1.0) for a in (1, 2, 3)]
        assert delays == [1.0, 2.0, 4.0]
        low = [retry_decision(Outcome(RETRYABLE, None, "timeout"), a, rng=lambda: 0.0) for a in (1, 2, 3)]
        assert low == [0.5, 1.0, 2.0]

    def test_bounded_attempts(self) -> None:
        assert wns.MAX_ATTEMPTS == 4
        assert retry_decision(Outcome(RETRYABLE, 500), 4) is None
        assert retry_decision(Outcome(THROTTLED, 406, retry_after=1), 4) is None
        assert retry_decision(Outcome(RETRYABLE, 500), 1, max_attempts=1) is None

    def test_waits_never_exceed_the_cap(self) -> None:
        for attempt in range(1, 20):
            delay = retry_decision(Outcome(RETRYABLE, 500), attempt, max_attempts=50, rng=lambda: 1.0)
            assert delay is not None and delay <= wns.MAX_WAIT

    @pytest.mark.parametrize(
        "outcome",
        [Outcome(DELIVERED, 200), Outcome(CHANNEL_GONE, 410), Outcome(FAILED, 400, "bad_request"),
         Outcome(FAILED, 401, "unauthorized"), Outcome(FAILED, 403, "forbidden"),
         Outcome(FAILED, None, "tls_verification_failed")],
    )
    def test_final_outcomes_are_not_retried(self, outcome: Outcome) -> None:
        assert retry_decision(outcome, 1) is None


class TestRedaction:
    def test_host_and_short_hash(self) -> None:
        uri = "https://dm3p.notify.windows.com/?token=AwYAAAB%2bsecret%3d"
        red = redact_channel(uri)
        assert red == "dm3p.notify.windows.com#" + hashlib.sha256(uri.encode()).hexdigest()[:8]
        assert "token" not in red and "secret" not in red

    def test_distinct_channels_distinct_forms(self) -> None:
        assert redact_channel("https://a.notify.windows.com/?token=1") != redact_channel(
            "https://a.notify.windows.com/?token=2"
        )

    def test_odd_inputs(self) -> None:
        assert redact_channel("not a uri").startswith("?#")
        assert redact_channel("https://user:pw@h.example/x").startswith("h.example#")


def test_ms_cv_is_fresh_and_well_formed() -> None:
    cvs = {wns.new_ms_cv() for _ in range(1000)}
    assert len(cvs) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9+/]{16}\.0", cv) for cv in cvs)


class TestTrustStore:
    def test_ssl_cert_file_read_when_the_context_is_made(self, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: object) -> None:
        ca = trustme.CA()
        path = f"{tmp_path}/ca.pem"
        ca.cert_pem.write_to_path(path)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.setenv("SSL_CERT_FILE", path)
        ctx = wns.default_ssl_context()
        assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
        assert ctx.cert_store_stats()["x509_ca"] == 1

    def test_requests_ca_bundle_alone(self, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
        path = f"{tmp_path}/ca.pem"
        trustme.CA().cert_pem.write_to_path(path)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", path)
        ctx = wns.default_ssl_context()
        assert ctx.verify_mode is ssl.CERT_REQUIRED
        assert ctx.cert_store_stats()["x509_ca"] == 1
