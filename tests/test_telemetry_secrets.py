"""Nothing secret leaves: every exported span, log record and metric, every stored entity and every
error text, captured while alerts go to Slack-, Teams- and generic-shaped webhook URLs.

The scenario (tests/telemetry_scenario.py) runs in its own interpreter, because OpenTelemetry's
providers are process-global; it configures telemetry through `function_app` exactly as the host
does, with only the Azure Monitor exporters swapped for in-memory ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.redaction import redact_attribute, redact_text, register, url_secrets

ROOT = Path(__file__).resolve().parent.parent

SLACK_PATH = "/services/T0SLACKSECRET/B0SLACKSECRET/xoxSlackPathSecret24chars"
TEAMS_PATH = ("/workflows/teamsworkflowsecretid0001/triggers/manual/paths/invoke?api-version=2016-06-01"
              "&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=TeamsSigSecretValue123456")
GENERIC_PATH = "/hooks/GenericPathSecret987654?token=GenericTokenSecret55"
HMAC_SECRET = "HmacSecretValue-7f3e9a"
NEEDLES = ("T0SLACKSECRET", "B0SLACKSECRET", "xoxSlackPathSecret24chars", "teamsworkflowsecretid0001",
           "TeamsSigSecretValue123456", "GenericPathSecret987654", "GenericTokenSecret55", HMAC_SECRET)


@pytest.fixture(scope="module")
def captured(azurite_connection: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("telemetry") / "captured.json"
    env = {
        **os.environ,
        "AZURITE_CONNECTION_STRING": azurite_connection,
        "AzureWebJobsStorage": azurite_connection,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            "IngestionEndpoint=https://127.0.0.1:9/;LiveEndpoint=https://127.0.0.1:9/"),
        "OTEL_TRACES_SAMPLER": "always_on",  # the default rate limit (5/s) would drop spans to check
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        "ALERT_WEBHOOK_SECRET": HMAC_SECRET,
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "TEST_SLACK_PATH": SLACK_PATH, "TEST_TEAMS_PATH": TEAMS_PATH, "TEST_GENERIC_PATH": GENERIC_PATH,
    }
    env.pop("AZURE_CLIENT_ID", None)
    done = subprocess.run([sys.executable, "-m", "tests.telemetry_scenario", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    data["stderr"] = done.stderr + done.stdout
    return data


def leaks(blob: str, needles: tuple[str, ...]) -> list[str]:
    return [n for n in needles if n in blob]


def test_the_secrets_were_really_used(captured: dict[str, Any]) -> None:
    """Otherwise the leak checks below would pass vacuously."""
    paths = {r["path"] for r in captured["received"]}
    assert any("xoxSlackPathSecret24chars" in p for p in paths)
    assert any("TeamsSigSecretValue123456" in p for p in paths)
    assert any("GenericPathSecret987654" in p for p in paths)
    assert any(r["signature"].startswith("sha256=") for r in captured["received"])


def test_exported_spans_carry_no_webhook_url_or_secret(captured: dict[str, Any]) -> None:
    spans = captured["spans"]
    url_attrs = [v for s in spans for k, v in (s.get("attributes") or {}).items() if k in ("http.url", "url.full")]
    assert url_attrs, "requests instrumentation was forced on: its spans must be exported (scrubbed)"
    webhook_calls = [v for v in url_attrs if v.startswith("https://127.0.0.1:")]
    assert webhook_calls
    assert all(v.endswith("/…") for v in url_attrs)
    assert leaks(json.dumps(spans), NEEDLES + signatures(captured)) == []


def test_exported_log_records_carry_no_webhook_url_or_secret(captured: dict[str, Any]) -> None:
    logs = captured["logs"]
    bodies = [str(r.get("body")) for r in logs]
    assert any("not delivered" in b for b in bodies)
    assert "posting to … failed" in bodies
    crashed = [r for r in logs if r.get("body") == "delivery crashed"]
    assert crashed
    assert "RuntimeError" in json.dumps(crashed[0]["attributes"])
    assert leaks(json.dumps(logs), NEEDLES + signatures(captured)) == []
    assert leaks(json.dumps(captured["metrics"]), NEEDLES) == []


def test_root_log_lines_the_host_forwards_carry_no_secret(captured: dict[str, Any]) -> None:
    lines = captured["root"]
    assert any('"POST ' in line for line in lines), "urllib3's request lines should have been captured"
    assert leaks("\n".join(lines), NEEDLES + signatures(captured)) == []
    assert leaks(captured["stderr"], NEEDLES) == []


def test_stored_entities_and_error_texts_carry_no_secret(captured: dict[str, Any]) -> None:
    assert any("HTTP 500" in e for e in captured["entities"])
    assert any("evil.example" in e for e in captured["errors"])  # the settings error names the host only
    assert leaks("\n".join(captured["entities"]), NEEDLES + signatures(captured)) == []
    assert leaks("\n".join(captured["errors"]), NEEDLES + signatures(captured)) == []


def signatures(captured: dict[str, Any]) -> tuple[str, ...]:
    return tuple(r["signature"].removeprefix("sha256=") for r in captured["received"] if r["signature"])


def test_redaction_shapes() -> None:
    register(url_secrets("https://hooks.slack.com/services/TXXXXXXXX/BXXXXXXXX/abcdefghijklmnopqrstuvwx"))
    assert redact_text("see abcdefghijklmnopqrstuvwx") == "see …"
    assert redact_text("GET https://user:pw@example.org/a/b?sig=1 x") == "GET https://example.org/… x"
    assert redact_text("ok https://example.org") == "ok https://example.org"
    assert "zz" not in redact_text("AccountKey=zzzzzz;token=zz&sig=zz")
    assert redact_text("X-Monitor-Signature: sha256=" + "ab" * 32) == "X-Monitor-Signature: sha256=…"
    assert redact_text("Authorization: Bearer eyJhbGciOi.abc.def") == "Authorization: Bearer …"
    assert redact_attribute("url.path", "/hooks/x") == "…"
    assert redact_attribute("code.filepath", "shared/notify/delivery.py") == "shared/notify/delivery.py"
    assert redact_attribute("http.status_code", 500) == 500
