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

# Konnectivity server / proxy errors when no agent can carry the call (egress blocked, agents down). Real texts:
# the server's `No agent available`; konnectivity-client's `tunnel closed` / `dial closed`; the API server's
# egress selector in HTTP-CONNECT mode, `proxy error from <proxy> while dialing <ip>:10250[, code N]: <status>`
# and `reading HTTP response from CONNECT to <ip>:10250 via [uds ]proxy <proxy> failed: ...`.
_NO_AGENT = re.compile(
    r"no agent available|no backend available|failed to get a backend|agent.*not (?:connected|available)"
    r"|error dialing backend|konnectivity|tunnel (?:closed|error|is closed)|proxy.*(?:dial|tunnel).*failed"
    r"|proxy error from .* while dialing|reading HTTP response from CONNECT to|currently no tunnels available"
    r"|failed to tunnel dial request|\bdial closed\b",
    re.IGNORECASE,
)
# The dial to the kubelet did not complete in time: the agent's own dial (`dial tcp <ip>:10250: i/o timeout`),
# or the tunnel giving up waiting for the agent's answer (konnectivity-client `dial timeout, backstop` /
# `dial timeout, context`, konnectivity-server `timed out waiting for backend dial`, HTTP-CONNECT 504).
_TIMEOUT = re.compile(r"dial tcp [^ ]+:10250: (?:i/o timeout|connect: connection timed out)"
                      r"|:10250: i/o timeout|dial timeout, (?:backstop|context)|timed out waiting for backend dial"
                      r"|backend dial timeout|while dialing [^ ]+:10250(?:, code 504)?: 504\b", re.IGNORECASE)
# The kernel refused the dial: a REJECT (RST or ICMP) on the way, or a local netfilter OUTPUT drop on the
# agent's node (connect() fails at once with EPERM, `operation not permitted`).
_REFUSED = re.compile(r":10250: connect: (?:connection refused|no route to host|network is unreachable"
                      r"|host is unreachable|operation not permitted|permission denied)",
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
