"""The outside vocabulary of the monitor: cause ids, statuses, results and the report verdict.

Everything here is part of the contract in DESIGN.md (report JSON, exit codes), so names and string
values must not drift; inner modules build on these types instead of passing dicts around.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any


class CauseId(StrEnum):
    """Stable cause ids, declared in the order every report lists them."""

    NSG = "nsg-blocks-10250"
    UFW = "ufw-blocks-10250"
    IPTABLES = "iptables-blocks-10250"
    EGRESS = "egress-tunnel-port-blocked"
    SNAT = "snat-port-exhaustion"
    # Causes after the five (DESIGN.md), reported after them in this order.
    KONNECTIVITY_AGENT = "konnectivity-agent-unhealthy"
    AUTHORIZED_IP_RANGES = "authorized-ip-ranges-exclude-egress"


CAUSE_ORDER: tuple[CauseId, ...] = tuple(CauseId)

# Not a report cause: the finding a broken tunnel opens when no detected cause explains it
# (shared.kube.unexplained), so that it still alerts. Findings, their API filter and alerts use it like a
# cause id; reports list it under `symptom.explanation`, never in `causes`.
UNEXPLAINED_ID = "tunnel-unexplained"
FINDING_IDS: tuple[str, ...] = (*(str(c) for c in CAUSE_ORDER), UNEXPLAINED_ID)


class Status(StrEnum):
    DETECTED = "detected"
    CLEAR = "clear"
    NOT_APPLICABLE = "not_applicable"
    UNKNOWN = "unknown"


class Verdict(StrEnum):
    PROBLEM = "problem"
    INCONCLUSIVE = "inconclusive"
    HEALTHY = "healthy"


class ExitCode(IntEnum):
    """Exit codes shared by `diagnose`, `scan` and `analyze`."""

    HEALTHY = 0
    PROBLEM = 1
    BAD_INPUT = 2
    INCONCLUSIVE = 3


@dataclass(frozen=True)
class Evidence:
    """One observed fact behind a result, tied to the resource (ARM id or node name) it was seen on."""

    resource: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"resource": self.resource, "detail": self.detail}


@dataclass(frozen=True)
class CauseResult:
    """The outcome of one cause for one cluster (or one offline analysis).

    `subjects` names the things to fix (an NSG rule id, a firewall, a UFW or iptables rule, a load
    balancer; the cluster id when nothing narrower is known); findings are keyed by it, so one problem
    is one finding however many nodes it hits. `affected` maps a subject to the nodes (or flows) it
    affects: evidence for people, and the scope the lifecycle uses to decide whether a subject was
    really re-checked. `unchecked` maps each node / flow / piece that could not be checked conclusively
    in this run to why: a finding whose scope touches one of them stays open (partial results never
    resolve anything), and the report lists them.
    """

    id: CauseId | str  # a CauseId, or UNEXPLAINED_ID for the symptom's own finding
    status: Status
    title: str
    summary: str
    evidence: tuple[Evidence, ...] = ()
    remediation: tuple[str, ...] = ()
    reason: str | None = None
    subjects: tuple[str, ...] = field(default=(), compare=False)
    affected: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    unchecked: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.status is Status.UNKNOWN and not self.reason:
            raise ValueError(f"{self.id}: an unknown result must say why (reason)")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "status": str(self.status),
            "title": self.title,
            "summary": self.summary,
            "evidence": [e.to_json() for e in self.evidence],
            "remediation": list(self.remediation),
            "reason": self.reason,
        } | ({"unchecked": [{"subject": k, "reason": v} for k, v in self.unchecked.items()]}
             if self.unchecked else {})


def verdict_of(statuses: Iterable[Status]) -> Verdict:
    """`problem` beats `inconclusive` beats `healthy`: an unknown never passes as healthy."""
    seen = set(statuses)
    if Status.DETECTED in seen:
        return Verdict.PROBLEM
    if Status.UNKNOWN in seen:
        return Verdict.INCONCLUSIVE
    return Verdict.HEALTHY


def exit_code_of(verdict: Verdict) -> ExitCode:
    return {
        Verdict.HEALTHY: ExitCode.HEALTHY,
        Verdict.PROBLEM: ExitCode.PROBLEM,
        Verdict.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
    }[verdict]


def worst_exit_code(verdicts: Sequence[Verdict]) -> ExitCode:
    """Fleet-wide exit code: any problem wins, then any inconclusive cluster."""
    return exit_code_of(verdict_of(_as_status(v) for v in verdicts))


def _as_status(verdict: Verdict) -> Status:
    return {
        Verdict.PROBLEM: Status.DETECTED,
        Verdict.INCONCLUSIVE: Status.UNKNOWN,
        Verdict.HEALTHY: Status.CLEAR,
    }[verdict]
