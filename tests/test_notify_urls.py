"""Webhook URL policy: HTTPS only, allowed hosts only, and errors that never quote the secret part."""

from __future__ import annotations

import pytest

from shared.notify.urls import host_allowed, parse_allowed_hosts, redact, validate_webhook_url

SECRET_PATH = "/services/T0ABC/B0DEF/XyZsEcReTtOkEn"
SECRET_QUERY = "sig=SuperSecretSignature123"


@pytest.mark.parametrize(
    "url",
    [
        "https://contoso.webhook.office.com/webhookb2/abc@def/IncomingWebhook/123/456",
        "https://prod-12.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke"
        f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&{SECRET_QUERY}",
        "https://default0123abcd.ab.environment.api.powerplatform.com:443/powerautomate/automations/direct/"
        f"workflows/0f1e/triggers/manual/paths/invoke?api-version=1&{SECRET_QUERY}",
        f"https://hooks.slack.com{SECRET_PATH}",
        f"  https://HOOKS.SLACK.COM{SECRET_PATH}\n",
    ],
)
def test_default_hosts_are_accepted(url: str) -> None:
    assert validate_webhook_url(url, setting="TEAMS_WEBHOOK_URL") == url.strip()


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        (f"http://hooks.slack.com{SECRET_PATH}?{SECRET_QUERY}", "must use https"),
        (f"ftp://hooks.slack.com{SECRET_PATH}", "must use https"),
        (f"hooks.slack.com{SECRET_PATH}", "must use https"),
        (f"https://evil.example{SECRET_PATH}?{SECRET_QUERY}", "not an allowed webhook host"),
        (f"https://hooks.slack.com.evil.example{SECRET_PATH}", "not an allowed webhook host"),
        (f"https://evilwebhook.office.com{SECRET_PATH}", "not an allowed webhook host"),
        (f"https://webhook.office.com{SECRET_PATH}", "not an allowed webhook host"),
        (f"https://127.0.0.1:8443{SECRET_PATH}", "not an allowed webhook host"),
        (f"https://user:{SECRET_QUERY}@hooks.slack.com{SECRET_PATH}", "user credentials"),
        (f"https://hooks.slack.com:99999{SECRET_PATH}", "not a valid URL"),
        (f"https://[::1{SECRET_PATH}", "not a valid URL"),
        (f"https://hooks.slack.com{SECRET_PATH} trailing", "whitespace"),
        (f"https:///{SECRET_PATH}", "no host"),
        ("", "empty"),
    ],
)
def test_rejections_name_the_setting_but_never_the_secret(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as caught:
        validate_webhook_url(url, setting="SLACK_WEBHOOK_URL")
    message = str(caught.value)
    assert "SLACK_WEBHOOK_URL" in message
    for secret in ("XyZsEcReTtOkEn", "SuperSecretSignature123", "T0ABC", SECRET_PATH):
        assert secret not in message
    # A traceback must not show a chained parser error quoting the URL either.
    error = caught.value
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def test_extra_allowed_hosts_extend_the_defaults() -> None:
    url = f"https://alerts.internal.example:8443{SECRET_PATH}"
    with pytest.raises(ValueError, match="WEBHOOK_ALLOWED_HOSTS"):
        validate_webhook_url(url, setting="ALERT_WEBHOOK_URL")
    assert validate_webhook_url(url, ["alerts.internal.example"], setting="ALERT_WEBHOOK_URL") == url
    assert validate_webhook_url(url, ["*.internal.example"], setting="ALERT_WEBHOOK_URL") == url
    with pytest.raises(ValueError, match="not an allowed"):
        validate_webhook_url(url, ["*.other.example"], setting="ALERT_WEBHOOK_URL")


def test_wildcards_match_strictly_below_the_suffix() -> None:
    assert host_allowed("a.b.example.com", ["*.example.com"])
    assert host_allowed("A.Example.COM.", ["*.example.com"])
    assert not host_allowed("example.com", ["*.example.com"])
    assert not host_allowed("badexample.com", ["*.example.com"])
    assert host_allowed("example.com", ["example.com"])
    assert not host_allowed("a.example.com", ["example.com"])


def test_parse_allowed_hosts() -> None:
    assert parse_allowed_hosts("") == ()
    assert parse_allowed_hosts(" a.example.com , *.Corp.Example ,,127.0.0.1 ") == (
        "a.example.com", "*.corp.example", "127.0.0.1")
    for bad in ("*", "*.com", "https://a.example.com", "a.example.com/path", "a b.example"):
        with pytest.raises(ValueError, match="WEBHOOK_ALLOWED_HOSTS"):
            parse_allowed_hosts(bad)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://hooks.slack.com{SECRET_PATH}", "https://hooks.slack.com/…"),
        (f"https://prod-1.westus.logic.azure.com:443/workflows/x?{SECRET_QUERY}",
         "https://prod-1.westus.logic.azure.com:443/…"),
        (f"https://user:pw@[::1]:8443{SECRET_PATH}", "https://[::1]:8443/…"),
        ("nonsense", "<unparsable URL>"),
        ("https://[::1/x", "<unparsable URL>"),
    ],
)
def test_redact_keeps_only_scheme_and_host(url: str, shown: str) -> None:
    assert redact(url) == shown
