"""Teams message for a Workflows webhook ("When a Teams webhook request is received"): one Adaptive Card.

Free text (summary, evidence, commands) goes into RichTextBlock/TextRun rather than TextBlock on
purpose: TextBlock renders Markdown, so a command such as `--source-address-prefixes '*' ... '*'`
would lose its asterisks to bold text and no longer be copy-pasteable. TextRun is always literal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.model import Evidence
from shared.notify.message import Notification, truncate

CARD_VERSION = "1.4"  # the highest version Teams renders everywhere (mobile included) for Workflows posts
ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
# Teams refuses messages above ~28 KB; keep headroom for the envelope Power Automate adds.
MAX_PAYLOAD_BYTES = 24_000
MAX_PORTAL_URL_CHARS = 2048

_EVENT_LABEL = {"detected": "detected", "reminder": "still open", "resolved": "resolved"}
_EVENT_COLOR = {"detected": "Attention", "reminder": "Warning", "resolved": "Good"}


@dataclass(frozen=True)
class _Budget:
    """How much free text a card may carry; shrunk step by step until the card fits the size limit."""

    fact_chars: int
    evidence_items: int
    evidence_chars: int
    commands: int
    command_chars: int
    summary_chars: int


_BUDGETS = (
    _Budget(fact_chars=600, evidence_items=20, evidence_chars=600, commands=10, command_chars=2000, summary_chars=2000),
    _Budget(fact_chars=300, evidence_items=10, evidence_chars=300, commands=6, command_chars=1000, summary_chars=1000),
    _Budget(fact_chars=200, evidence_items=5, evidence_chars=200, commands=3, command_chars=600, summary_chars=500),
    _Budget(fact_chars=100, evidence_items=2, evidence_chars=120, commands=1, command_chars=300, summary_chars=300),
)


def build_teams_payload(n: Notification) -> dict[str, Any]:
    """The Workflows webhook body: a `message` with the card as its only attachment."""
    payload: dict[str, Any] = {}
    for budget in _BUDGETS:
        payload = _envelope(build_adaptive_card(n, budget))
        if len(json.dumps(payload, ensure_ascii=False).encode("utf-8")) <= MAX_PAYLOAD_BYTES:
            break
    return payload


def _envelope(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


def build_adaptive_card(n: Notification, budget: _Budget = _BUDGETS[0]) -> dict[str, Any]:
    """The card itself (the attachment `content`), exposed separately so tests can validate it."""
    event_label = _EVENT_LABEL[n.event]
    body: list[dict[str, Any]] = [
        _literal(
            truncate(f"{n.cause.title} — {event_label}", 300),
            size="Large", weight="Bolder", color=_EVENT_COLOR[n.event],
        ),
        _literal(truncate(n.summary, budget.summary_chars)),
        {
            "type": "FactSet",
            "facts": [
                {"title": title, "value": truncate(value or "—", budget.fact_chars)}
                for title, value in (
                    ("Cluster", n.cluster.name or n.cluster.id),
                    ("Subscription", n.cluster.subscription_id),
                    ("Cause", n.cause.id),
                    ("Status", n.cause.status),
                    ("Subject", n.subject),
                    ("First seen", n.first_seen),
                    ("Last seen", n.last_seen),
                )
            ],
        },
    ]
    if n.evidence:
        body.append(_heading("Evidence"))
        body.extend(_evidence_blocks(n.evidence, budget))
    if n.remediation and n.event != "resolved":
        body.append(_heading("The fix"))
        body.extend(_command_blocks(n.remediation, budget))
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "fallbackText": truncate(f"{n.cause.title} — {event_label}: {n.summary}", 500),
        "body": body,
        "msteams": {"width": "Full"},
    }
    # A truncated link would open the wrong blade, so an absurdly long one is left out instead.
    if len(n.portal_url) <= MAX_PORTAL_URL_CHARS:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open cluster in Azure portal", "url": n.portal_url}]
    return card


def _evidence_blocks(evidence: tuple[Evidence, ...], budget: _Budget) -> list[dict[str, Any]]:
    shown = evidence[: budget.evidence_items]
    blocks = [
        _literal(truncate(f"• {e.resource}: {e.detail}" if e.resource else f"• {e.detail}",
                          budget.evidence_chars))
        for e in shown
    ]
    if len(evidence) > len(shown):
        blocks.append(_literal(f"… and {len(evidence) - len(shown)} more", is_subtle=True))
    return blocks


def _command_blocks(commands: tuple[str, ...], budget: _Budget) -> list[dict[str, Any]]:
    shown = commands[: budget.commands]
    blocks = [_literal(truncate(c, budget.command_chars), font_type="Monospace") for c in shown]
    if len(commands) > len(shown):
        blocks.append(_literal(f"… and {len(commands) - len(shown)} more command(s)", is_subtle=True))
    return blocks


def _literal(
    text: str,
    *,
    size: str | None = None,
    weight: str | None = None,
    color: str | None = None,
    font_type: str | None = None,
    is_subtle: bool = False,
) -> dict[str, Any]:
    """A RichTextBlock with one TextRun: shown verbatim (no Markdown), wrapping long lines."""
    run: dict[str, Any] = {"type": "TextRun", "text": text}
    for key, value in (("size", size), ("weight", weight), ("color", color), ("fontType", font_type)):
        if value is not None:
            run[key] = value
    if is_subtle:
        run["isSubtle"] = True
    return {"type": "RichTextBlock", "inlines": [run]}


def _heading(text: str) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "weight": "Bolder", "spacing": "Medium", "wrap": True}
