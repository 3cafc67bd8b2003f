"""Text that may leave the process (logs, span attributes, stored errors) with its secrets taken out.

Webhook URLs are credentials: Slack's secret is its path, Teams / Logic Apps put a `sig` in the
query, and the generic webhook's HMAC secret signs every body. Two layers:

* known secrets: the sensitive parts of every configured webhook URL and the HMAC secret are
  registered when channels are built (and from the settings at start-up), and replaced wherever they
  appear, with or without a URL around them (a path alone in `url.path`, an echo in a response body);
* shapes: any `scheme://host/path?query` keeps only `scheme://host/…`, and `key=value` pairs whose
  key says secret (`sig`, `token`, `AccountKey`, ...), `sha256=<hex>` signatures and bearer tokens
  lose their values.

Kept dependency-free and cheap: it runs on every exported log record and span.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

REDACTED = "…"
MIN_SECRET_LENGTH = 6  # shorter registered values would shred ordinary text; shapes still apply

# The rest of a URL runs to whitespace or a double quote / angle bracket: OData keys put `'` in paths.
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,15})://([^\s/?#'\"<>`]+)([^\s\"<>`]*)")
_SECRET_PAIR = re.compile(
    r"(?i)\b(sig|signature|code|key|token|secret|password|pwd|accountkey|sharedaccesskey|"
    r"sharedaccesssignature|client_secret|access_token|refresh_token|apikey|api_key)=([^&\s;,'\"<>]+)")
_SIGNATURE = re.compile(r"(?i)\bsha(1|256|512)=[0-9a-f]{16,}")
_BEARER = re.compile(r"(?i)\b(bearer|basic|sharedkey)\s+[A-Za-z0-9._~+/=:-]{8,}")

_lock = threading.Lock()
_known: tuple[str, ...] = ()


def register(secrets: Iterable[str | None]) -> None:
    """Adds values that must never be emitted (longest first, so a URL is replaced before its path)."""
    global _known
    fresh = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
    if not fresh - set(_known):
        return
    with _lock:
        _known = tuple(sorted(set(_known) | fresh, key=len, reverse=True))


def url_secrets(url: str) -> tuple[str, ...]:
    """The parts of a URL that grant access: the whole URL, its path, query and any password."""
    text = url.strip()
    if not text:
        return ()
    try:
        parts = urlsplit(text)
    except ValueError:
        return (text,)
    pieces = [text]
    if parts.path not in ("", "/"):
        pieces.append(parts.path)
        pieces.extend(segment for segment in parts.path.split("/") if len(segment) >= 16)
    if parts.query:
        pieces.append(parts.query)
        pieces.extend(value for _, _, value in (p.partition("=") for p in parts.query.split("&")) if value)
    if parts.password:
        pieces.append(parts.password)
    return tuple(pieces)


# Settings whose values (or URL parts) are secrets.
URL_SETTINGS = ("TEAMS_WEBHOOK_URL", "SLACK_WEBHOOK_URL", "ALERT_WEBHOOK_URL")
SECRET_SETTINGS = ("ALERT_WEBHOOK_SECRET",)


def register_settings(env: Mapping[str, str]) -> None:
    """Registers the secrets held in the app settings, so they are redacted before any channel exists."""
    secrets: list[str] = []
    for name in URL_SETTINGS:
        secrets.extend(url_secrets(env.get(name) or ""))
    secrets.extend(env.get(name) or "" for name in SECRET_SETTINGS)
    for value in (env.get("AzureWebJobsStorage") or "").split(";"):
        key, _, secret = value.partition("=")
        if key.strip().lower() in ("accountkey", "sharedaccesssignature"):
            secrets.append(secret.strip())
    register(secrets)


def _shorten_url(match: re.Match[str]) -> str:
    scheme, netloc = match.group(1), match.group(2)
    host = netloc.rsplit("@", 1)[-1]  # never user:password@
    rest = match.group(3)
    return f"{scheme.lower()}://{host}/{REDACTED}" if rest not in ("", "/") else f"{scheme.lower()}://{host}"


def redact_text(text: str) -> str:
    """`text` without registered secrets, URL paths/queries, secret parameters, signatures or tokens."""
    if not text:
        return text
    for secret in _known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _URL.sub(_shorten_url, text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    text = _SIGNATURE.sub(lambda m: f"sha{m.group(1)}={REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


# Attribute names that hold a URL or a piece of one (OpenTelemetry semantic conventions, old and new).
_URL_PIECE_KEYS = ("url", "target", "path", "query", "route", "fragment")


def redact_attribute(key: str, value: object) -> object:
    """A span / log attribute value safe to export; URL pieces without a scheme are dropped whole."""
    if isinstance(value, str):
        last = key.rsplit(".", 1)[-1].lower()
        if "url" in last and "://" in value:
            return _URL.sub(_shorten_url, value.strip().replace(" ", "%20"))
        cleaned = redact_text(value)
        if (any(piece in last for piece in _URL_PIECE_KEYS) and "://" not in value
                and not key.startswith("code.") and cleaned not in ("", "/")):
            return REDACTED
        return cleaned
    if isinstance(value, list | tuple):
        return type(value)(redact_attribute(key, v) for v in value)
    return value
