"""Delivery over real HTTPS to a local receiver: classification, Retry-After, outages, and no leaks."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import certifi
import pytest
import requests

from shared.notify.channels import Channel, channels_from_settings
from shared.notify.delivery import (
    BACKOFF_CAP_S,
    MAX_RETRY_AFTER_S,
    backoff_delay,
    deliver,
    new_session,
    parse_retry_after,
    senders_for,
    shared_session,
)
from shared.notify.generic import verify
from shared.notify.message import to_json
from tests.https_receiver import HttpsReceiver
from tests.test_notify_message import make_notification

SECRET_PATH = "/services/T0SECRET/B0SECRET/PaThToKeN"
SECRET_QUERY = "sig=QuErYsIgNaTuRe"
HMAC_SECRET = "HmAcSeCrEt-4f2a"
LEAKS = ("PaThToKeN", "T0SECRET", "QuErYsIgNaTuRe", HMAC_SECRET, SECRET_PATH)
NOW = datetime(2026, 11, 27, 18, 6, 7, tzinfo=UTC)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpsReceiver]:
    with HttpsReceiver() as rx:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", rx.ca_path)
        yield rx


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with new_session() as s:
        yield s


def configured(rx: HttpsReceiver) -> dict[str, Channel]:
    """Channels built through the real settings path, all pointing at the receiver."""
    url = rx.url(f"{SECRET_PATH}?{SECRET_QUERY}")
    channels = channels_from_settings({
        "TEAMS_WEBHOOK_URL": url, "SLACK_WEBHOOK_URL": url, "ALERT_WEBHOOK_URL": url,
        "ALERT_WEBHOOK_SECRET": HMAC_SECRET, "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    })
    return {c.name: c for c in channels}


def assert_no_leak(text: str) -> None:
    for secret in LEAKS:
        assert secret not in text, f"{secret!r} leaked into: {text}"


@pytest.mark.parametrize("name", ["teams", "slack", "webhook"])
def test_200_is_delivered_with_the_channel_body(receiver: HttpsReceiver, session: requests.Session,
                                                name: str) -> None:
    channel = configured(receiver)[name]
    result = deliver(channel, make_notification(), session=session, now=NOW)

    assert (result.delivered, result.status, result.permanent, result.error) == (True, 200, False, "")
    got, = receiver.requests
    assert got.method == "POST"
    assert got.path == f"{SECRET_PATH}?{SECRET_QUERY}"
    assert got.headers["Content-Type"] == "application/json"
    body = json.loads(got.body)
    if name == "teams":
        assert body["type"] == "message"
    elif name == "slack":
        assert body["blocks"][0]["type"] == "header"
    else:
        assert body["findingId"] == "f-7d1c"
        assert body["sentAt"] == "2026-11-27T18:06:07Z"
        assert verify(HMAC_SECRET, got.headers, got.body, NOW)


def test_202_from_workflows_counts_as_delivered(receiver: HttpsReceiver, session: requests.Session) -> None:
    receiver.fail_next(1, 202)
    assert deliver(configured(receiver)["teams"], make_notification(), session=session, now=NOW).delivered


def test_429_with_retry_after_seconds(receiver: HttpsReceiver, session: requests.Session) -> None:
    receiver.fail_next(1, 429, headers={"Retry-After": "17"})
    result = deliver(configured(receiver)["slack"], make_notification(), session=session, now=NOW)
    assert (result.delivered, result.permanent, result.status, result.retry_after_s) == (False, False, 429, 17.0)
    assert result.retryable
    assert_no_leak(result.error)


def test_429_with_retry_after_http_date(receiver: HttpsReceiver, session: requests.Session) -> None:
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=120)
    receiver.fail_next(1, 429, headers={"Retry-After": format_datetime(later, usegmt=True)})
    result = deliver(configured(receiver)["teams"], make_notification(), session=session)
    assert result.retry_after_s is not None
    assert 100 <= result.retry_after_s <= 120


@pytest.mark.parametrize("status", [500, 502, 503, 408])
def test_server_errors_and_408_are_retryable(receiver: HttpsReceiver, session: requests.Session,
                                             status: int) -> None:
    receiver.fail_next(1, status, body=b"try later")
    result = deliver(configured(receiver)["webhook"], make_notification(), session=session, now=NOW)
    assert (result.delivered, result.permanent, result.status) == (False, False, status)
    assert result.retry_after_s is None
    assert f"HTTP {status}" in result.error
    assert "try later" in result.error
    assert_no_leak(result.error)
    # and the next attempt (the receiver is healthy again) goes through
    assert deliver(configured(receiver)["webhook"], make_notification(), session=session, now=NOW).delivered


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_client_errors_are_permanent(receiver: HttpsReceiver, session: requests.Session, status: int) -> None:
    receiver.fail_next(1, status, body=b"invalid_blocks")
    result = deliver(configured(receiver)["slack"], make_notification(), session=session, now=NOW)
    assert (result.delivered, result.permanent, result.status) == (False, True, status)
    assert "invalid_blocks" in result.error  # Slack explains rejections in the body
    assert_no_leak(result.error)


def test_receiver_echoing_the_url_is_scrubbed(receiver: HttpsReceiver, session: requests.Session) -> None:
    receiver.fail_next(1, 404, body=f"no such hook {SECRET_PATH}?{SECRET_QUERY}".encode())
    result = deliver(configured(receiver)["slack"], make_notification(), session=session, now=NOW)
    assert result.permanent
    assert "no such hook" in result.error
    assert_no_leak(result.error)


def test_redirects_are_not_followed(receiver: HttpsReceiver, session: requests.Session) -> None:
    receiver.fail_next(1, 302, headers={"Location": "https://evil.example/steal"})
    result = deliver(configured(receiver)["slack"], make_notification(), session=session, now=NOW)
    assert (result.delivered, result.permanent, result.status) == (False, True, 302)
    assert len(receiver.requests) == 1


def test_outage_is_retryable_and_recovers_on_the_same_url(receiver: HttpsReceiver,
                                                          session: requests.Session) -> None:
    channel = configured(receiver)["slack"]
    port = receiver.port
    receiver.go_down()
    result = deliver(channel, make_notification(), session=session, now=NOW)
    assert (result.delivered, result.permanent, result.status) == (False, False, None)
    assert "Connection refused" in result.error
    assert "127.0.0.1" in result.error  # the host is useful and not secret
    assert_no_leak(result.error)

    receiver.come_up()
    assert receiver.port == port
    assert deliver(channel, make_notification(), session=session, now=NOW).delivered


def test_read_timeout_is_retryable(receiver: HttpsReceiver, session: requests.Session) -> None:
    receiver.fail_next(1, 200, delay_s=1.5)
    result = deliver(configured(receiver)["teams"], make_notification(), session=session, now=NOW,
                     timeout=(2.0, 0.3))
    assert (result.delivered, result.permanent, result.status) == (False, False, None)
    assert "timed out" in result.error
    assert_no_leak(result.error)


def test_untrusted_certificate_is_a_retryable_tls_failure(receiver: HttpsReceiver, session: requests.Session,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # public CAs only: trustme CA unknown
    result = deliver(configured(receiver)["webhook"], make_notification(), session=session, now=NOW)
    assert (result.delivered, result.permanent) == (False, False)
    assert "TLS" in result.error
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert_no_leak(result.error)
    assert receiver.requests == []


def test_default_pooled_session_reuses_connections(receiver: HttpsReceiver) -> None:
    assert shared_session() is shared_session()
    channel = configured(receiver)["slack"]
    assert deliver(channel, make_notification(), now=NOW).delivered
    assert deliver(channel, make_notification(), now=NOW).delivered
    assert len(receiver.requests) == 2


@pytest.mark.parametrize("answer", [b"", b"ok", b"x" * 5000])
def test_session_keeps_connections_alive(monkeypatch: pytest.MonkeyPatch, session: requests.Session,
                                         answer: bytes) -> None:
    """Pooling works only if every response is fully read, whatever the body size."""
    with HttpsReceiver(keep_alive=True) as rx:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", rx.ca_path)
        rx.fail_next(1, 200, body=answer)
        rx.fail_next(1, 500, body=answer)
        rx.fail_next(1, 400, body=answer)
        channel = configured(rx)["slack"]
        results = [deliver(channel, make_notification(), session=session, now=NOW) for _ in range(4)]
        assert [r.status for r in results] == [200, 500, 400, 200]
        assert rx.connections == 1
        rx.go_down()
        assert deliver(channel, make_notification(), session=session, now=NOW).retryable
        rx.come_up()
        assert deliver(channel, make_notification(), session=session, now=NOW).delivered
        assert rx.connections == 2


def test_nothing_secret_reaches_any_log_record(receiver: HttpsReceiver, session: requests.Session,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    channels = configured(receiver)
    n = make_notification()
    for channel in channels.values():
        deliver(channel, n, session=session, now=NOW)
    receiver.fail_next(1, 429, headers={"Retry-After": "3"})
    receiver.fail_next(1, 400, body=f"bad {SECRET_PATH}".encode())
    receiver.fail_next(1, 500)
    for channel in channels.values():
        deliver(channel, n, session=session, now=NOW)
    receiver.go_down()
    deliver(channels["webhook"], n, session=session, now=NOW)
    receiver.come_up()

    assert caplog.records, "expected delivery log records"
    # urllib3 really logged the request line: proves the scrubber had something to scrub.
    assert any(r.name == "urllib3.connectionpool" and '"POST' in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert_no_leak(record.getMessage())
        assert_no_leak(repr(record.args))
        if record.exc_info:
            assert_no_leak(logging.Formatter().formatException(record.exc_info))
    assert_no_leak(caplog.text)
    assert any("delivered via slack to https://127.0.0.1:" in r.getMessage() for r in caplog.records)


def test_senders_for_the_outbox(receiver: HttpsReceiver, session: requests.Session) -> None:
    senders = senders_for(configured(receiver).values(), session=session)
    assert sorted(senders) == ["slack", "teams", "webhook"]
    n = make_notification()

    result = senders["webhook"]("webhook", to_json(n))
    assert result.delivered
    got, = receiver.requests
    assert json.loads(got.body)["findingId"] == n.finding_id
    assert verify(HMAC_SECRET, got.headers, got.body, datetime.now(UTC))

    broken = senders["slack"]("slack", "{not json")
    assert (broken.delivered, broken.permanent) == (False, True)
    assert "unreadable outbox row" in broken.error
    assert len(receiver.requests) == 1


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(" 1.5 ", NOW) == 1.5
    assert parse_retry_after("-4", NOW) == 0.0
    assert parse_retry_after(format_datetime(NOW + timedelta(seconds=30), usegmt=True), NOW) == 30.0
    assert parse_retry_after(format_datetime(NOW - timedelta(hours=1), usegmt=True), NOW) == 0.0
    for garbage in (None, "", "soon", "nan", "inf", "Thu, 99 Foo 2026"):
        assert parse_retry_after(garbage, NOW) is None


def test_backoff_grows_exponentially_and_is_capped() -> None:
    low = [backoff_delay(a, rand=lambda: 0.0) for a in range(1, 12)]
    high = [backoff_delay(a, rand=lambda: 1.0) for a in range(1, 12)]
    assert low[:4] == [2.5, 5.0, 10.0, 20.0]
    assert high[:4] == [5.0, 10.0, 20.0, 40.0]
    assert max(high) == BACKOFF_CAP_S
    assert high[-1] == BACKOFF_CAP_S
    assert low[-1] == BACKOFF_CAP_S / 2
    assert backoff_delay(10_000, rand=lambda: 1.0) == BACKOFF_CAP_S  # no overflow for absurd attempts


def test_backoff_jitter_spreads_retries() -> None:
    samples = [backoff_delay(3) for _ in range(200)]
    assert all(10.0 <= s <= 20.0 for s in samples)
    assert len({round(s, 6) for s in samples}) > 100


def test_backoff_honours_a_larger_retry_after_up_to_a_ceiling() -> None:
    assert backoff_delay(1, 60.0, rand=lambda: 1.0) == 60.0
    assert backoff_delay(5, 1.0, rand=lambda: 1.0) == 80.0  # smaller Retry-After: our schedule wins
    assert backoff_delay(1, 10 * 24 * 3600.0, rand=lambda: 1.0) == MAX_RETRY_AFTER_S
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0)
