"""Slack Block Kit payload: content, mrkdwn escaping, and the documented limits under huge inputs."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from shared.model import Evidence
from shared.notify.message import CauseRef, ClusterRef
from shared.notify.slack import build_slack_payload, escape_fit, pack_lines
from tests.test_notify_message import make_notification


def limit_violations(payload: dict[str, Any]) -> list[str]:
    """Checks Block Kit's documented limits independently of the builder's own constants."""
    problems: list[str] = []
    blocks = payload.get("blocks", [])
    if len(blocks) > 50:
        problems.append(f"{len(blocks)} blocks > 50")
    if not payload.get("text"):
        problems.append("no top-level text fallback")
    for i, block in enumerate(blocks):
        kind = block["type"]
        if kind == "header" and len(block["text"]["text"]) > 150:
            problems.append(f"block {i}: header text {len(block['text']['text'])} > 150")
        if kind == "section":
            if "text" in block and len(block["text"]["text"]) > 3000:
                problems.append(f"block {i}: section text {len(block['text']['text'])} > 3000")
            fields = block.get("fields", [])
            if len(fields) > 10:
                problems.append(f"block {i}: {len(fields)} fields > 10")
            problems.extend(f"block {i}: field > 2000" for f in fields if len(f["text"]) > 2000)
        if kind == "context" and len(block["elements"]) > 10:
            problems.append(f"block {i}: {len(block['elements'])} context elements > 10")
        if kind == "actions":
            for element in block["elements"]:
                if len(element["text"]["text"]) > 75:
                    problems.append(f"block {i}: button text > 75")
                if len(element.get("url", "")) > 3000:
                    problems.append(f"block {i}: button url > 3000")
    return problems


def test_limit_checker_catches_violations() -> None:
    bad = {"text": "t", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}] * 51}
    assert len(limit_violations(bad)) == 52


def test_payload_content() -> None:
    n = make_notification()
    payload = build_slack_payload(n)
    blocks = payload["blocks"]

    assert limit_violations(payload) == []
    assert blocks[0]["type"] == "header"
    assert "An NSG blocks TCP 10250" in blocks[0]["text"]["text"]
    assert "detected" in blocks[0]["text"]["text"]
    fields = {f["text"].split("\n", 1)[0]: f["text"].split("\n", 1)[1] for f in blocks[1]["fields"]}
    assert fields["*Cluster*"] == "aks1"
    assert fields["*Subscription*"] == "0000-1111"
    assert fields["*Cause*"] == "nsg-blocks-10250"
    assert fields["*Subject*"] == n.subject
    assert fields["*Last seen*"] == n.last_seen
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert any(t.startswith("*Evidence*") and "aks-nodepool1-vmss_0" in t for t in texts)
    fix = next(t for t in texts if t.startswith("*The fix*"))
    assert f"```{n.remediation[1]}```" in fix  # commands verbatim inside code blocks
    button = blocks[-1]["elements"][0]
    assert button["type"] == "button"
    assert button["url"] == n.portal_url
    assert "An NSG blocks TCP 10250" in payload["text"]
    assert "aks1" in payload["text"]
    json.dumps(payload)


def test_resolved_message_omits_the_fix() -> None:
    payload = build_slack_payload(make_notification(event="resolved",
                                                    cause=CauseRef("nsg-blocks-10250", "NSG", "clear")))
    assert "resolved" in payload["blocks"][0]["text"]["text"]
    assert not any(b["type"] == "section" and b["text"]["text"].startswith("*The fix*")
                   for b in payload["blocks"])


def test_mrkdwn_control_characters_are_escaped() -> None:
    n = make_notification(summary="<!channel> & <https://evil.example|click>",
                          remediation=("iptables -A INPUT -p tcp --dport 10250 -j ACCEPT && echo <ok>",))
    payload = build_slack_payload(n)
    serialised = json.dumps(payload)
    assert "<!channel>" not in serialised
    assert payload["blocks"][1]["text"]["text"] == "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"
    assert "&amp;&amp; echo &lt;ok&gt;" in serialised


def _no_broken_entities(text: str) -> bool:
    stripped = re.sub(r"&(amp|lt|gt);", "", text)
    return not any(ch in stripped for ch in "&<>")


def test_huge_inputs_stay_within_every_limit() -> None:
    huge = "<&>" * 20_000
    n = make_notification(
        cause=CauseRef("nsg-blocks-10250", "T" * 5000, "detected"),
        cluster=ClusterRef(id="/subscriptions/s/" + "c" * 4000, name="N" * 5000, subscription_id="S" * 5000),
        subject="subject-" + huge,
        summary="summary-" + huge,
        evidence=tuple(Evidence(f"resource-{i}-" + "r" * 300, f"detail {i} " + huge) for i in range(5000)),
        remediation=tuple(f"az command {i} " + huge for i in range(500)),
        finding_id="F" * 5000,
    )
    payload = build_slack_payload(n)

    assert limit_violations(payload) == []
    for block in payload["blocks"]:
        for text in _texts(block):
            assert _no_broken_entities(text), text[:80]
    sections = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert any("… and " in t and "more" in t for t in sections if "detail" in t)
    assert any("… and " in t and "more" in t for t in sections if "az command" in t)
    assert len(payload["text"]) <= 3000
    # A portal link longer than Slack allows is dropped rather than cut into a wrong link.
    assert not any(b["type"] == "actions" for b in payload["blocks"])


def test_many_small_items_are_packed_not_one_block_each() -> None:
    n = make_notification(evidence=tuple(Evidence(f"node-{i}", "10250 refused") for i in range(2000)),
                          remediation=tuple(f"ufw allow from 10.0.0.0/8 to any port 10250 # {i}" for i in range(300)))
    payload = build_slack_payload(n)
    assert limit_violations(payload) == []
    assert len(payload["blocks"]) <= 2 + 8 + 8 + 2
    text = "\n".join(b["text"]["text"] for b in payload["blocks"] if b["type"] == "section")
    assert "node-0:" in text
    assert "node-100:" in text
    shown = len(re.findall(r"node-\d+:", text))
    assert 100 < shown < 2000
    assert f"… and {2000 - shown} more" in text


def _texts(block: dict[str, Any]) -> list[str]:
    out = []
    if isinstance(block.get("text"), dict) and block["text"]["type"] == "mrkdwn":
        out.append(block["text"]["text"])
    out.extend(f["text"] for f in block.get("fields", []))
    out.extend(e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn")
    return out


@pytest.mark.parametrize("limit", [1, 2, 4, 5, 6, 10])
def test_escape_fit_never_splits_an_entity(limit: int) -> None:
    out = escape_fit("&&&&&&", limit)
    assert len(out) <= limit
    assert _no_broken_entities(out)
    assert out.endswith("…")


def test_pack_lines_respects_section_and_count_limits() -> None:
    lines = ["x" * 1000] * 50
    sections = pack_lines("*T*", lines, limit=3000, max_sections=3)
    assert len(sections) == 3
    assert all(len(s) <= 3000 for s in sections)
    assert sections[-1].endswith("more_")
    assert pack_lines("*T*", ["a", "b"]) == ["*T*\na\nb"]
