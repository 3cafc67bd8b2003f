"""Which channels are configured, and how each turns a notification into one HTTP request.

Configuration errors are raised at start-up (naming the setting, never echoing its value) rather
than at the first alert, when nobody is watching.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from shared.notify.generic import build_generic_request
from shared.notify.message import Notification
from shared.notify.slack import build_slack_payload
from shared.notify.teams import build_teams_payload
from shared.notify.urls import parse_allowed_hosts, redact, validate_webhook_url
from shared.redaction import register as register_secrets
from shared.redaction import url_secrets

ChannelName = Literal["teams", "slack", "webhook"]

TEAMS_URL_SETTING = "TEAMS_WEBHOOK_URL"
SLACK_URL_SETTING = "SLACK_WEBHOOK_URL"
WEBHOOK_URL_SETTING = "ALERT_WEBHOOK_URL"
WEBHOOK_SECRET_SETTING = "ALERT_WEBHOOK_SECRET"  # noqa: S105 - the setting's name, not a secret
ALLOWED_HOSTS_SETTING = "WEBHOOK_ALLOWED_HOSTS"

_JSON_HEADERS = {"Content-Type": "application/json"}


class ChannelSettingsError(ValueError):
    """One or more notification settings are unusable; the message lists every problem at once."""


@dataclass(frozen=True)
class Channel:
    """A configured destination. `url` and `secret` stay out of repr so they never reach a log line."""

    name: ChannelName
    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # From now on these never appear in a log record, span, stored error or exception text we emit.
        register_secrets((*url_secrets(self.url), self.secret))
        if self.name == "webhook" and not self.secret:
            raise ValueError(f"the generic webhook channel needs a secret ({WEBHOOK_SECRET_SETTING})")

    @property
    def redacted_url(self) -> str:
        return redact(self.url)

    def build(self, n: Notification, now: datetime) -> tuple[bytes, dict[str, str]]:
        """Body bytes and headers for one attempt; rebuilt per attempt so signatures stay fresh."""
        if self.name == "webhook":
            if not self.secret:
                raise ValueError(f"the generic webhook channel needs a secret ({WEBHOOK_SECRET_SETTING})")
            return build_generic_request(n, self.secret, now)
        payload = build_teams_payload(n) if self.name == "teams" else build_slack_payload(n)
        return _json_bytes(payload), dict(_JSON_HEADERS)


def channels_from_settings(env: Mapping[str, str]) -> list[Channel]:
    """Reads the DESIGN.md settings; unset or blank URLs mean the channel is off."""
    problems: list[str] = []
    try:
        extra_hosts = parse_allowed_hosts(env.get(ALLOWED_HOSTS_SETTING, ""), setting=ALLOWED_HOSTS_SETTING)
    except ValueError as exc:
        problems.append(str(exc))
        extra_hosts = ()

    channels: list[Channel] = []
    chat_settings: tuple[tuple[ChannelName, str], ...] = (("teams", TEAMS_URL_SETTING), ("slack", SLACK_URL_SETTING))
    for name, setting in chat_settings:
        url = _setting(env, setting)
        if url:
            try:
                channels.append(Channel(name, validate_webhook_url(url, extra_hosts, setting=setting)))
            except ValueError as exc:
                problems.append(str(exc))

    webhook_url = _setting(env, WEBHOOK_URL_SETTING)
    # The secret is used verbatim (no stripping): receivers compute the HMAC with the exact same bytes.
    secret = env.get(WEBHOOK_SECRET_SETTING) or ""
    if webhook_url:
        try:
            checked = validate_webhook_url(webhook_url, extra_hosts, setting=WEBHOOK_URL_SETTING)
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if secret.strip():
                channels.append(Channel("webhook", checked, secret))
            else:
                problems.append(
                    f"{WEBHOOK_SECRET_SETTING} is required when {WEBHOOK_URL_SETTING} is set "
                    "(receivers verify the HMAC-SHA256 signature with it)"
                )
    if problems:
        raise ChannelSettingsError("; ".join(problems))
    return channels


def _setting(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


def _json_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
