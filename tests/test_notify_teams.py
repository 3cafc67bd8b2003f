"""Teams Workflows payload: the envelope, the card's content, and validity per the official parser.

Validity is decided by Microsoft's own `adaptivecards` npm package (tests/validate_adaptive_card.js),
not by our reading of the schema.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.model import Evidence
from shared.notify.message import CauseRef, ClusterRef
from shared.notify.teams import MAX_PAYLOAD_BYTES, build_teams_payload
from tests.test_notify_message import make_notification

REPO = Path(__file__).resolve().parent.parent
VALIDATOR = REPO / "tests" / "validate_adaptive_card.js"
TEAMS_TARGET_VERSION = "1.4"


def validate_card(document: dict[str, Any], target: str = TEAMS_TARGET_VERSION) -> dict[str, Any]:
    """Runs the official parser on a card or a Teams envelope; skips (never passes) if it cannot run."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Adaptive Card validation skipped: `node` is not installed")
    if not (REPO / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.js").exists():
        pytest.skip("Adaptive Card validation skipped: run `npm ci` (node_modules/adaptivecards is missing)")
    done = subprocess.run([node, str(VALIDATOR), "-", "--target-version", target], input=json.dumps(document),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode in (0, 1), f"validator crashed: {done.stdout}{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    report["returncode"] = done.returncode
    return report


def card_of(payload: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = payload["attachments"][0]["content"]
    return content


def test_envelope_is_the_workflows_message_format() -> None:
    payload = build_teams_payload(make_notification())
    assert payload["type"] == "message"
    assert len(payload["attachments"]) == 1
    attachment = payload["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert "contentUrl" in attachment
    assert attachment["contentUrl"] is None
    assert attachment["content"]["type"] == "AdaptiveCard"
    assert attachment["content"]["version"] in ("1.4", "1.5")


def test_card_carries_title_facts_evidence_fix_and_portal_link() -> None:
    n = make_notification()
    card = card_of(build_teams_payload(n))
    runs = [run["text"] for block in card["body"] if block["type"] == "RichTextBlock" for run in block["inlines"]]
    assert runs[0] == "An NSG blocks TCP 10250 — detected"
    facts = {f["title"]: f["value"] for block in card["body"] if block["type"] == "FactSet" for f in block["facts"]}
    assert facts == {
        "Cluster": "aks1", "Subscription": "0000-1111", "Cause": "nsg-blocks-10250", "Status": "detected",
        "Subject": n.subject, "First seen": n.first_seen, "Last seen": n.last_seen,
    }
    assert any("aks-nodepool1-vmss_0" in r for r in runs)
    monospace = [run["text"] for block in card["body"] if block["type"] == "RichTextBlock"
                 for run in block["inlines"] if run.get("fontType") == "Monospace"]
    assert monospace == list(n.remediation)  # verbatim: TextRun is never Markdown-rendered
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open cluster in Azure portal",
                                "url": n.portal_url}]


@pytest.mark.parametrize("event", ["detected", "reminder", "resolved"])
def test_card_is_valid_for_the_official_parser(event: str) -> None:
    status = "clear" if event == "resolved" else "detected"
    payload = build_teams_payload(make_notification(event=event,
                                                    cause=CauseRef("nsg-blocks-10250", "NSG", status)))
    report = validate_card(payload)
    assert report["errors"] == [], report
    assert report["returncode"] == 0
    assert report["cards"] == 1


def test_validator_can_fail() -> None:
    """Guards the guard: a broken card must be reported, or the validity tests above prove nothing."""
    card = card_of(build_teams_payload(make_notification()))
    card["body"].append({"type": "TextBlock", "text": "x", "wieght": "Bolder"})
    card["body"].append({"type": "NoSuchElement"})
    card["actions"].append({"type": "Action.OpenUrl", "title": "no url"})
    report = validate_card(card)
    assert report["returncode"] == 1
    errors = "\n".join(report["errors"])
    assert "wieght" in errors
    assert "NoSuchElement" in errors
    assert "url" in errors
    too_new = dict(card_of(build_teams_payload(make_notification())), version="1.6")
    assert any("above the target" in e for e in validate_card(too_new)["errors"])


def test_huge_inputs_still_fit_teams_and_stay_valid() -> None:
    huge = "x*y_z " * 20_000
    n = make_notification(
        cause=CauseRef("nsg-blocks-10250", "T" * 5000, "detected"),
        cluster=ClusterRef(id="/subscriptions/s/" + "c" * 4000, name="N" * 5000, subscription_id="S" * 5000),
        subject="subject " + huge,
        summary="summary " + huge,
        evidence=tuple(Evidence(f"node-{i}", huge) for i in range(3000)),
        remediation=tuple(f"az command {i} {huge}" for i in range(300)),
    )
    payload = build_teams_payload(n)
    assert len(json.dumps(payload, ensure_ascii=False).encode()) <= MAX_PAYLOAD_BYTES
    runs = [run["text"] for block in card_of(payload)["body"] if block["type"] == "RichTextBlock"
            for run in block["inlines"]]
    assert any(r.startswith("… and ") and "more" in r for r in runs)
    report = validate_card(payload)
    assert report["errors"] == [], report


def test_moderately_large_finding_keeps_more_detail_than_a_huge_one() -> None:
    """The size budget shrinks step by step: a finding that fits keeps all of its evidence."""
    n = make_notification(evidence=tuple(Evidence(f"node-{i}", "kubelet 10250 refused") for i in range(15)))
    runs = [run["text"] for block in card_of(build_teams_payload(n))["body"] if block["type"] == "RichTextBlock"
            for run in block["inlines"]]
    assert sum(r.startswith("• node-") for r in runs) == 15
