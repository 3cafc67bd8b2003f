"""Generic JSON webhook: the DESIGN.md body, signed so receivers can trust and de-duplicate it.

Signature = HMAC-SHA256(secret, f"{timestamp}." + raw body). Binding the timestamp into the MAC is
what lets a receiver refuse replays: an attacker who captured one delivery cannot re-date it.
`verify` is the reference implementation receivers can copy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime

from shared.notify.message import Notification, to_generic_body

TIMESTAMP_HEADER = "X-Monitor-Timestamp"
SIGNATURE_HEADER = "X-Monitor-Signature"
SIGNATURE_PREFIX = "sha256="
DEFAULT_TOLERANCE_S = 300


def sign(secret: str | bytes, timestamp: str | int, raw_body: bytes) -> str:
    """`sha256=<hex>` over `<timestamp>.<raw body>`; sign the exact bytes sent, never a re-serialisation."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    mac = hmac.new(key, f"{timestamp}.".encode() + raw_body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def build_generic_request(n: Notification, secret: str, now: datetime) -> tuple[bytes, dict[str, str]]:
    """The body bytes and headers for one delivery attempt (`sentAt` and the timestamp are `now`)."""
    raw_body = json.dumps(to_generic_body(n, now), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    timestamp = str(int(now.timestamp()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, raw_body),
    }
    return raw_body, headers


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    raw_body: bytes,
    now: float | datetime,
    tolerance: int = DEFAULT_TOLERANCE_S,
) -> bool:
    """True only for an intact body signed with `secret` within `tolerance` seconds of `now`.

    Header names are matched case-insensitively (HTTP servers normalise them differently); the
    comparison is constant-time so the signature cannot be guessed byte by byte from timings.
    Timestamps too far in the future are refused as well, which also bounds clock-skew abuse.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "").strip()
    signature = lowered.get(SIGNATURE_HEADER.lower(), "").strip()
    if not timestamp.isascii() or not timestamp.isdigit() or not signature.startswith(SIGNATURE_PREFIX):
        return False
    current = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(current - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, raw_body).encode(), signature.encode("utf-8", "replace"))
