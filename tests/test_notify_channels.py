"""Channel configuration from settings, and what each channel puts on the wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.notify.channels import Channel, ChannelSettingsError, channels_from_settings
from shared.notify.generic import verify
from shared.notify.message import to_generic_body
from tests.test_notify_message import make_notification

TEAMS = "https://prod-12.westus.logic.azure.com:443/workflows/w1/triggers/manual/paths/invoke?sig=TEAMSSIG"
SLACK = "https://hooks.slack.com/services/T0/B0/SLACKTOKEN"
GENERIC = "https://alerts.example.org/hooks/GENERICPATH?key=GENERICKEY"
SECRET = "WEBHOOK-HMAC-SECRET"
SECRETS = ("TEAMSSIG", "SLACKTOKEN", "GENERICPATH", "GENERICKEY", SECRET)
NOW = datetime(2026, 11, 27, 18, 6, 7, tzinfo=UTC)


def test_nothing_configured_means_no_channels() -> None:
    assert channels_from_settings({}) == []
    assert channels_from_settings({"TEAMS_WEBHOOK_URL": "  ", "ALERT_WEBHOOK_SECRET": "x"}) == []


def test_all_three_channels() -> None:
    channels = channels_from_settings({
        "TEAMS_WEBHOOK_URL": TEAMS,
        "SLACK_WEBHOOK_URL": SLACK,
        "ALERT_WEBHOOK_URL": GENERIC,
        "ALERT_WEBHOOK_SECRET": SECRET,
        "WEBHOOK_ALLOWED_HOSTS": "alerts.example.org",
    })
    assert [c.name for c in channels] == ["teams", "slack", "webhook"]
    assert [c.url for c in channels] == [TEAMS, SLACK, GENERIC]
    for channel in channels:
        for secret in SECRETS:
            assert secret not in repr(channel)
    assert channels[2].redacted_url == "https://alerts.example.org/…"


def test_generic_webhook_requires_a_secret() -> None:
    env = {"ALERT_WEBHOOK_URL": GENERIC, "WEBHOOK_ALLOWED_HOSTS": "alerts.example.org"}
    with pytest.raises(ChannelSettingsError, match="ALERT_WEBHOOK_SECRET is required") as caught:
        channels_from_settings(env)
    assert "GENERICPATH" not in str(caught.value)
    with pytest.raises(ChannelSettingsError, match="ALERT_WEBHOOK_SECRET"):
        channels_from_settings({**env, "ALERT_WEBHOOK_SECRET": "   "})
    with pytest.raises(ValueError, match="needs a secret"):
        Channel("webhook", GENERIC)


def test_every_problem_is_reported_at_once_without_urls() -> None:
    with pytest.raises(ChannelSettingsError) as caught:
        channels_from_settings({
            "TEAMS_WEBHOOK_URL": TEAMS.replace("https", "http"),
            "SLACK_WEBHOOK_URL": "https://slack.evil.example/services/T0/B0/SLACKTOKEN",
            "ALERT_WEBHOOK_URL": GENERIC,
            "ALERT_WEBHOOK_SECRET": SECRET,
        })
    message = str(caught.value)
    assert "webhook URL for TEAMS_WEBHOOK_URL must use https" in message
    assert "SLACK_WEBHOOK_URL" in message
    assert "ALERT_WEBHOOK_URL" in message  # alerts.example.org is not allowed without WEBHOOK_ALLOWED_HOSTS
    for secret in SECRETS:
        assert secret not in message


def test_bad_allowed_hosts_setting_is_named() -> None:
    with pytest.raises(ChannelSettingsError, match="WEBHOOK_ALLOWED_HOSTS"):
        channels_from_settings({"WEBHOOK_ALLOWED_HOSTS": "*", "SLACK_WEBHOOK_URL": SLACK})


def test_secret_is_used_verbatim() -> None:
    channel, = channels_from_settings({"ALERT_WEBHOOK_URL": GENERIC, "ALERT_WEBHOOK_SECRET": " padded ",
                                       "WEBHOOK_ALLOWED_HOSTS": "alerts.example.org"})
    body, headers = channel.build(make_notification(), NOW)
    assert verify(" padded ", headers, body, NOW)
    assert not verify("padded", headers, body, NOW)


def test_what_each_channel_sends() -> None:
    n = make_notification()
    teams, slack, webhook = Channel("teams", TEAMS), Channel("slack", SLACK), Channel("webhook", GENERIC, SECRET)

    body, headers = teams.build(n, NOW)
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(body)["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"

    body, headers = slack.build(n, NOW)
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(body)["blocks"][0]["type"] == "header"

    body, headers = webhook.build(n, NOW)
    assert json.loads(body) == to_generic_body(n, NOW)
    assert verify(SECRET, headers, body, NOW)
