"""Classify the API server's answer to a pod-log call: what it says about the tunnel path to one node.

The API server forwards `pods/log` to the node's kubelet through the tunnel (Konnectivity agent ->
kubelet :10250). When that fails it answers 500 with the Go error text of the failed dial, e.g.

    Get "https://10.224.0.5:10250/containerLogs/kube-system/kube-proxy-x/kube-proxy?tailLines=1":
        dial tcp 10.224.0.5:10250: i/o timeout

Those texts are the evidence, so `detail` always keeps the message as the API server gave it.
"""

from __future__ import annotations

import re

from shared.kube.types import ERROR, FORBIDDEN, NO_AGENT, OK, PLAIN_HTTP, REFUSED, TIMEOUT, UNREACHABLE

MAX_DETAIL = 500

# Konnectivity server / proxy errors when no agent can carry the call (egress blocked, agents down).
_NO_AGENT = re.compile(
    r"no agent available|no backend available|failed to get a backend|agent.*not (?:connected|available)"
    r"|error dialing backend|konnectivity|tunnel (?:closed|error|is closed)|proxy.*(?:dial|tunnel).*failed",
    re.IGNORECASE,
)
_TIMEOUT = re.compile(r"dial tcp [^ ]+:10250: (?:i/o timeout|connect: connection timed out)"
                      r"|:10250: i/o timeout", re.IGNORECASE)
_REFUSED = re.compile(r":10250: connect: (?:connection refused|no route to host|network is unreachable)",
                      re.IGNORECASE)
_PLAIN_HTTP = re.compile(r"server gave HTTP response to HTTPS client", re.IGNORECASE)


def classify(status: int | None, message: str) -> tuple[str, str]:
    """(result, detail) for one answer. `status` is the HTTP status (None: no HTTP answer at all)."""
    detail = _short(message)
    if status is not None and 200 <= status < 300:
        return OK, detail
    if status in (401, 403):
        return FORBIDDEN, detail
    if status is None:
        return UNREACHABLE, detail
    if _PLAIN_HTTP.search(message):
        return PLAIN_HTTP, detail
    if _TIMEOUT.search(message):
        return TIMEOUT, detail
    if _REFUSED.search(message):
        return REFUSED, detail
    if _NO_AGENT.search(message):
        return NO_AGENT, detail
    return ERROR, detail


def status_message(body: str | None, fallback: str) -> str:
    """The `message` of a Kubernetes `Status` body, or the raw body, or the fallback (HTTP reason)."""
    import json

    text = (body or "").strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            return str(parsed["message"])
    return text or fallback


def _short(message: str) -> str:
    one_line = " ".join(message.split())
    return one_line if len(one_line) <= MAX_DETAIL else one_line[: MAX_DETAIL - 3] + "..."
