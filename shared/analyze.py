"""`analyze`: a verdict on tool output an engineer already saved from the documented manual steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.causes.common import NodeOutcome
from shared.causes.iptables_blocks_10250 import iptables_outcome
from shared.causes.ufw_blocks_10250 import ufw_outcome
from shared.model import ExitCode, Status
from shared.netrules import iptables, ufw
from shared.netrules.netcat import UDP_SUCCESS_NOTE, parse_netcat_all

DEFAULT_SOURCE = "10.224.0.4"  # an address in AKS's default node subnet (10.224.0.0/16)
DEFAULT_DEST = "10.224.0.5"
KINDS = ("iptables", "ufw", "nc")


@dataclass(frozen=True)
class Analysis:
    status: Status
    summary: str
    evidence: tuple[dict[str, str], ...]
    remediation: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "summary": self.summary,
            "evidence": list(self.evidence),
            "remediation": list(self.remediation),
        }

    @property
    def exit_code(self) -> ExitCode:
        return {
            Status.DETECTED: ExitCode.PROBLEM,
            Status.CLEAR: ExitCode.HEALTHY,
            Status.NOT_APPLICABLE: ExitCode.HEALTHY,
            Status.UNKNOWN: ExitCode.INCONCLUSIVE,
        }[self.status]


def _from_outcome(outcome: NodeOutcome, assumptions: str) -> Analysis:
    return Analysis(
        status=outcome.status,
        summary=outcome.detail + assumptions,
        evidence=({"resource": outcome.node, "detail": outcome.detail},),
        remediation=outcome.remediation,
    )


def analyze(kind: str, text: str, *, source: str | None, dest: str | None, port: int, origin: str) -> Analysis:
    """Raises ParseError (with the line number) when `text` is not the expected tool output."""
    src = source or DEFAULT_SOURCE
    assumed = "" if source else f" (assumed source {src}; pass --source to test another)"
    if kind == "iptables":
        ruleset = iptables.parse_iptables(text)
        verdict = iptables.evaluate(
            ruleset, iptables.Packet(source_ip=src, destination_ip=dest or DEFAULT_DEST, destination_port=port)
        )
        return _from_outcome(iptables_outcome(origin, verdict, src, port=port), assumed)
    if kind == "ufw":
        status = ufw.parse_ufw_status(text)
        return _from_outcome(ufw_outcome(origin, ufw.decide(status, src, port), src, port=port), assumed)
    if kind == "nc":
        return _netcat(text, origin, dest, port)
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def _netcat(text: str, origin: str, dest: str | None, port: int) -> Analysis:
    results = [
        r for r in parse_netcat_all(text)
        if (r.port in (None, port)) and (dest is None or r.host in (None, dest))
    ]
    if not results:
        return Analysis(Status.UNKNOWN, f"no netcat result for port {port}" + (f" on {dest}" if dest else ""), (), ())
    evidence = tuple({"resource": f"{r.host}:{r.port}", "detail": r.line.strip()} for r in results)
    failed = [r for r in results if r.outcome in ("timeout", "refused", "no_route")]
    if failed:
        kinds = sorted({r.outcome for r in failed})
        hints = {
            "timeout": "a timeout means packets are silently dropped: an NSG deny, an iptables DROP or a UFW deny "
                       "on the node (check with `analyze iptables` / `analyze ufw`).",
            "refused": "refused means the node answered with a reset or ICMP: an iptables/UFW REJECT, or nothing "
                       "listening (is kubelet running? `systemctl status kubelet`).",
            "no_route": "no route to host: the address is not reachable from here (routing/UDR), or a REJECT "
                        "with icmp-host-unreachable.",
        }
        proto = "UDP" if all(r.protocol == "udp" for r in failed) else "TCP"
        return Analysis(
            Status.DETECTED,
            f"{proto} {port} unreachable on {len(failed)} of {len(results)} target(s) ({', '.join(kinds)}).",
            evidence,
            tuple(hints[k] for k in kinds),
        )
    unknown = [r for r in results if r.outcome not in ("succeeded",)]
    if unknown:
        return Analysis(Status.UNKNOWN, f"netcat could not test {len(unknown)} target(s): "
                        + ", ".join(sorted({r.outcome for r in unknown})), evidence, ())
    silent = [r for r in results if not r.conclusive]
    if silent:
        # UDP has no handshake: a dropped datagram and one a server ignored both read "succeeded".
        return Analysis(
            Status.UNKNOWN,
            f"UDP {port}: nc reported 'succeeded' on {len(silent)} target(s), which proves nothing: "
            f"{UDP_SUCCESS_NOTE}. A silent drop looks the same.",
            evidence,
            ("Test with a real answer instead: the monitor's node probe sends an OpenVPN client hard reset to UDP "
             "1194 and only counts a server hard reset as reachable.",),
        )
    return Analysis(Status.CLEAR, f"TCP {port} reachable on all {len(results)} target(s).", evidence, ())
