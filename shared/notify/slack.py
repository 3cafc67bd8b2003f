"""Slack incoming-webhook message: Block Kit blocks plus the `text` fallback used by notifications.

Slack rejects the whole message (`invalid_blocks`) when any documented limit is exceeded, so every
piece of free text is escaped first and cut to its limit afterwards, and long lists are packed into
a bounded number of sections with an "… and N more" note.
"""

from __future__ import annotations

from typing import Any

from shared.notify.message import ELLIPSIS, Notification, truncate

# Documented Block Kit limits (https://api.slack.com/reference/block-kit/blocks).
MAX_BLOCKS = 50
MAX_HEADER_CHARS = 150
MAX_SECTION_TEXT_CHARS = 3000
MAX_FIELDS = 10
MAX_FIELD_CHARS = 2000
MAX_BUTTON_TEXT_CHARS = 75
MAX_BUTTON_URL_CHARS = 3000
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK_TEXT_CHARS = 3000

# How many sections the evidence and the fix may each take: enough for any real finding, and far
# below MAX_BLOCKS together with the fixed blocks.
MAX_LIST_SECTIONS = 8
_EVIDENCE_LINE_CHARS = 1000
_MORE_NOTE_ROOM = 40

_EVENT_LABEL = {"detected": "detected", "reminder": "still open", "resolved": "resolved"}
_EVENT_EMOJI = {"detected": ":rotating_light:", "reminder": ":hourglass:", "resolved": ":white_check_mark:"}
_MRKDWN_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def build_slack_payload(n: Notification) -> dict[str, Any]:
    label = _EVENT_LABEL[n.event]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": truncate(f"{_EVENT_EMOJI[n.event]} {n.cause.title} — {label}", MAX_HEADER_CHARS),
                "emoji": True,
            },
        },
        {
            "type": "section",
            "text": _mrkdwn(escape_fit(n.summary or n.cause.title, MAX_SECTION_TEXT_CHARS)),
            "fields": [_mrkdwn(_field(title, value)) for title, value in _facts(n)][:MAX_FIELDS],
        },
    ]
    if n.evidence:
        lines = [
            "• " + escape_fit(f"{e.resource}: {e.detail}" if e.resource else e.detail, _EVIDENCE_LINE_CHARS)
            for e in n.evidence
        ]
        blocks.extend(_section(text) for text in pack_lines("*Evidence*", lines))
    if n.remediation and n.event != "resolved":
        code_room = MAX_SECTION_TEXT_CHARS - _MORE_NOTE_ROOM - len("*The fix*\n") - len("``````")
        lines = [f"```{escape_fit(cmd, code_room)}```" for cmd in n.remediation]
        blocks.extend(_section(text) for text in pack_lines("*The fix*", lines))
    blocks.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(escape_fit(f"Finding {n.finding_id}", 300)),
                _mrkdwn(escape_fit(f"Cause {n.cause.id}", 300)),
                _mrkdwn("Sent by aks-tunnel-monitor"),
            ][:MAX_CONTEXT_ELEMENTS],
        }
    )
    if len(n.portal_url) <= MAX_BUTTON_URL_CHARS:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": truncate("Open in Azure portal", MAX_BUTTON_TEXT_CHARS)},
                        "url": n.portal_url,
                    }
                ],
            }
        )
    return {
        "text": escape_fit(
            f"{n.cause.title} — {label} on {n.cluster.name or n.cluster.id}: {n.summary}", MAX_FALLBACK_TEXT_CHARS
        ),
        "blocks": blocks[:MAX_BLOCKS],
    }


def _facts(n: Notification) -> list[tuple[str, str]]:
    return [
        ("Cluster", n.cluster.name or n.cluster.id),
        ("Subscription", n.cluster.subscription_id),
        ("Cause", n.cause.id),
        ("Status", n.cause.status),
        ("Subject", n.subject),
        ("First seen", n.first_seen),
        ("Last seen", n.last_seen),
    ]


def _field(title: str, value: str) -> str:
    prefix = f"*{title}*\n"
    return prefix + escape_fit(value or "—", MAX_FIELD_CHARS - len(prefix))


def pack_lines(title: str, lines: list[str], *, limit: int = MAX_SECTION_TEXT_CHARS,
               max_sections: int = MAX_LIST_SECTIONS) -> list[str]:
    """Joins lines into as few section texts as fit `limit`, at most `max_sections` of them.

    Every line must already fit a section on its own; what does not fit is summarised as
    "… and N more" at the end of the last section (room for it is always kept free).
    """
    room = limit - _MORE_NOTE_ROOM
    sections: list[str] = []
    current = title
    for index, line in enumerate(lines):
        if len(current) + 1 + len(line) <= room:
            current = f"{current}\n{line}"
            continue
        if len(sections) + 1 >= max_sections:
            current += f"\n_{ELLIPSIS} and {len(lines) - index} more_"
            break
        sections.append(current)
        current = line
    sections.append(current)
    return sections


def escape_fit(raw: str, limit: int) -> str:
    """Escapes `&`, `<`, `>` for mrkdwn and cuts to `limit` without splitting an entity like `&amp;`."""
    # Escaping never shortens text, so characters past `limit` can never fit: don't escape them at all.
    head = raw[: limit + 1]
    escaped = "".join(_MRKDWN_ESCAPES.get(ch, ch) for ch in head)
    if len(head) == len(raw) and len(escaped) <= limit:
        return escaped
    kept: list[str] = []
    used = 0
    for ch in head:
        piece = _MRKDWN_ESCAPES.get(ch, ch)
        if used + len(piece) > limit - len(ELLIPSIS):
            break
        kept.append(piece)
        used += len(piece)
    return "".join(kept) + ELLIPSIS


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}
