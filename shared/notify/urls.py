"""Webhook URL policy: HTTPS to known chat/automation hosts only, and never echo the URL itself.

Teams, Power Automate and Slack put the credential in the URL's path or query, so an error message or
log line that quotes the URL leaks the ability to post into the customer's channel. Everything here
talks about the *setting* that held the URL, or a `scheme://host/…` redaction of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

# Teams (legacy connectors and Workflows), Power Automate / Logic Apps triggers, and Slack.
# `*.powerplatform.com` covers the new `<env>.environment.api.powerplatform.com` Workflows URLs.
DEFAULT_ALLOWED_HOSTS: tuple[str, ...] = (
    "*.webhook.office.com",
    "*.logic.azure.com",
    "*.powerplatform.com",
    "*.api.powerplatform.com",
    "hooks.slack.com",
)

_HOST_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_RE = re.compile(rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*$")
_IPV4_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def parse_allowed_hosts(value: str, *, setting: str = "WEBHOOK_ALLOWED_HOSTS") -> tuple[str, ...]:
    """Reads the comma list of extra hosts: exact names/IPs or `*.suffix` wildcards.

    A bare `*` (or `*.com`-style single-label suffix) is refused: it would turn the allow-list off
    without anybody noticing.
    """
    hosts: list[str] = []
    for raw in value.split(","):
        entry = raw.strip().lower().rstrip(".")
        if not entry:
            continue
        name = entry.removeprefix("*.")
        wildcard = name != entry
        if not (_HOST_RE.match(name) or (not wildcard and _IPV4_RE.match(name))):
            raise ValueError(f"{setting}: {entry!r} is not a host name or '*.suffix'")
        if wildcard and "." not in name:
            raise ValueError(f"{setting}: {entry!r} is too broad; name at least two labels after '*.'")
        hosts.append(entry)
    return tuple(hosts)


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Exact match, or `*.suffix` matching any name strictly below the suffix (not the suffix itself)."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        pattern = entry.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def validate_webhook_url(url: str, extra_allowed_hosts: Iterable[str] = (), *, setting: str = "webhook") -> str:
    """Returns the URL (stripped) when it is HTTPS to an allowed host; otherwise raises ValueError.

    The error names `setting` and at most the host, never the path or query.
    """
    what = f"webhook URL for {setting}"
    candidate = url.strip()
    if not candidate:
        raise ValueError(f"{what} is empty")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in candidate):
        raise ValueError(f"{what} contains whitespace or control characters")
    try:
        parts = urlsplit(candidate)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError(f"{what} is not a valid URL") from None
    if parts.scheme.lower() != "https":
        raise ValueError(f"{what} must use https")
    if not host:
        raise ValueError(f"{what} has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} must not carry user credentials before the host")
    allowed = (*DEFAULT_ALLOWED_HOSTS, *extra_allowed_hosts)
    if not host_allowed(host, allowed):
        raise ValueError(
            f"{what} points to host {host!r}, which is not an allowed webhook host; "
            "add it to WEBHOOK_ALLOWED_HOSTS if it is intended"
        )
    return candidate


def redact(url: str) -> str:
    """`scheme://host[:port]/…`: enough to tell channels apart in logs, nothing that grants access."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if not parts.scheme or not host:
        return "<unparsable URL>"
    shown_host = f"[{host}]" if ":" in host else host
    netloc = f"{shown_host}:{port}" if port is not None else shown_host
    return f"{parts.scheme.lower()}://{netloc}/…"


def sensitive_parts(url: str) -> tuple[str, ...]:
    """The pieces of a webhook URL that must never appear in text we emit (path, query, userinfo)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return (url,) if url else ()
    pieces = [url.strip()]
    if parts.path not in ("", "/"):
        pieces.append(parts.path)
    if parts.query:
        pieces.append(parts.query)
    if parts.password:
        pieces.append(parts.password)
    return tuple(p for p in pieces if p)
