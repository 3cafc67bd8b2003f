"""HMAC signing of the generic webhook: known answers computed independently, and receiver-side checks."""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from shared.notify.generic import SIGNATURE_HEADER, TIMESTAMP_HEADER, build_generic_request, sign, verify
from shared.notify.message import to_generic_body
from tests.test_notify_message import make_notification

SECRET = "s3cr3t-shared-with-the-receiver"
NOW = datetime(2026, 11, 27, 18, 6, 7, tzinfo=UTC)


def test_sign_known_answer() -> None:
    body = b'{"event":"detected"}'
    expected = hmac.new(SECRET.encode(), b"1764266767." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1764266767", body) == "sha256=" + expected
    assert sign(SECRET, 1764266767, body) == "sha256=" + expected
    assert sign(SECRET.encode(), "1764266767", body) == "sha256=" + expected


def test_sign_fixed_vector_from_openssl() -> None:
    # printf '1700000000.{"event":"detected"}' | openssl dgst -sha256 -hmac key
    expected = "77c1a6ee291c63a239d4b7e4379bdf9c14405d80fb6eacdbbf0a385eadffbd19"
    assert sign("key", "1700000000", b'{"event":"detected"}') == f"sha256={expected}"
    assert sign("key", "1700000001", b'{"event":"detected"}') != f"sha256={expected}"
    assert sign("key2", "1700000000", b'{"event":"detected"}') != f"sha256={expected}"


def test_request_carries_contract_headers_and_signs_the_exact_bytes() -> None:
    n = make_notification()
    body, headers = build_generic_request(n, SECRET, NOW)

    assert headers["Content-Type"] == "application/json"
    unix = calendar.timegm((2026, 11, 27, 18, 6, 7))
    assert headers[TIMESTAMP_HEADER] == str(unix)
    expected = hmac.new(SECRET.encode(), f"{unix}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert json.loads(body) == to_generic_body(n, NOW)


def test_verify_accepts_an_intact_fresh_delivery() -> None:
    body, headers = build_generic_request(make_notification(), SECRET, NOW)
    assert verify(SECRET, headers, body, NOW)
    assert verify(SECRET, headers, body, NOW.timestamp() + 299)
    lowered = {k.lower(): v for k, v in headers.items()}  # servers normalise header case
    assert verify(SECRET, lowered, body, NOW)


def test_verify_rejects_tampering() -> None:
    body, headers = build_generic_request(make_notification(), SECRET, NOW)
    tampered = body.replace(b'"detected"', b'"resolved"', 1)
    assert tampered != body
    assert not verify(SECRET, headers, tampered, NOW)
    assert not verify("another-secret", headers, body, NOW)
    re_dated = dict(headers, **{TIMESTAMP_HEADER: str(int(NOW.timestamp()) + 10)})
    assert not verify(SECRET, re_dated, body, NOW)  # timestamp is inside the MAC
    flipped = headers[SIGNATURE_HEADER][:-1] + ("0" if headers[SIGNATURE_HEADER][-1] != "0" else "1")
    assert not verify(SECRET, dict(headers, **{SIGNATURE_HEADER: flipped}), body, NOW)


@pytest.mark.parametrize("skew", [301, 3600, -301])
def test_verify_rejects_stale_or_future_timestamps(skew: int) -> None:
    body, headers = build_generic_request(make_notification(), SECRET, NOW)
    assert not verify(SECRET, headers, body, NOW.timestamp() + skew)
    assert verify(SECRET, headers, body, NOW.timestamp() + skew, tolerance=abs(skew))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {SIGNATURE_HEADER: "sha256=00"},
        {TIMESTAMP_HEADER: "1764266767"},
        {TIMESTAMP_HEADER: "soon", SIGNATURE_HEADER: "sha256=00"},
        {TIMESTAMP_HEADER: "1764266767", SIGNATURE_HEADER: "md5=00"},
        {TIMESTAMP_HEADER: "١٧٦٤٢٦٦٧٦٧", SIGNATURE_HEADER: "sha256=00"},  # non-ASCII digits
    ],
)
def test_verify_rejects_missing_or_malformed_headers(headers: dict[str, str]) -> None:
    assert not verify(SECRET, headers, b"{}", NOW)
