"""The finding for a broken tunnel that no documented cause explains, so that it still alerts.

It is not a cause (the report's `causes` stay the documented ids): it is a finding the lifecycle keeps
next to the causes' findings, with the cause id `tunnel-unexplained` and the cluster as its subject.
`unexplained_symptom` returns an object with the same fields as `CauseResult` (id, status, title,
summary, evidence, remediation, reason, subjects, affected, unchecked, to_json), so `reconcile()` can
take it in the same list:

- None: the symptom was not checked in this run (open findings stay untouched);
- `detected`: some node's result is timeout/refused/no-agent/plain-http and no cause is `detected`;
- `clear`: every checked node is ok, or a detected cause explains the broken nodes;
- `unknown`: the symptom could not be read or is not conclusive (forbidden, unreachable, error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.kube.types import BROKEN, OK, NodeSymptom
from shared.model import CauseResult, Evidence, Status
from shared.snapshot import ClusterSnapshot, Unavailable

UNEXPLAINED_ID = "tunnel-unexplained"
TITLE = "The tunnel is broken and no documented cause explains it"


@dataclass(frozen=True)
class SymptomFinding:
    """Shaped like CauseResult (duck-typed: its id is not a CauseId, it is never a report cause)."""

    id: str
    status: Status
    title: str
    summary: str
    evidence: tuple[Evidence, ...] = ()
    remediation: tuple[str, ...] = ()
    reason: str | None = None
    subjects: tuple[str, ...] = ()
    affected: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unchecked: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": str(self.status), "title": self.title, "summary": self.summary,
                "evidence": [e.to_json() for e in self.evidence], "remediation": list(self.remediation),
                "reason": self.reason} | (
            {"unchecked": [{"subject": k, "reason": v} for k, v in self.unchecked.items()]} if self.unchecked else {})


def unexplained_symptom(snapshot: ClusterSnapshot, results: Sequence[CauseResult]) -> SymptomFinding | None:
    symptom = snapshot.symptom
    if symptom is None:
        return None
    if isinstance(symptom, Unavailable):
        return _unknown(symptom.reason, {})
    broken = [n for n in symptom if n.result in BROKEN]
    unsure = {n.node: f"{n.result}: {n.detail}" for n in symptom if n.result != OK and n.result not in BROKEN}
    if not broken:
        if unsure or not symptom:
            return _unknown(next(iter(unsure.values()), "no node was checked"), unsure)
        return SymptomFinding(UNEXPLAINED_ID, Status.CLEAR, TITLE,
                              f"the tunnel reached the kubelet of all {len(symptom)} checked node(s)")
    detected = [str(r.id) for r in results if r.status is Status.DETECTED]
    names = ", ".join(n.node for n in broken)
    if detected:
        return SymptomFinding(UNEXPLAINED_ID, Status.CLEAR, TITLE,
                              f"the broken tunnel to {names} is explained by {', '.join(detected)}")
    return SymptomFinding(
        UNEXPLAINED_ID, Status.DETECTED, TITLE,
        f"the tunnel is broken to {len(broken)} node(s) ({names}) and no documented cause explains it",
        evidence=tuple(_evidence(n) for n in broken),
        remediation=(
            "kubectl -n kube-system get pods -l app=konnectivity-agent -o wide",
            f"kubectl get --raw '/api/v1/nodes/{broken[0].node}/proxy/healthz' (as an admin; the monitor itself "
            "does not use nodes/proxy)",
            "Check what else filters TCP 10250 between the agents' nodes and these nodes (a firewall appliance, "
            "a host agent, a network policy on the node network) and what answers on 10250 there",
        ),
        subjects=(snapshot.id,), affected={snapshot.id: tuple(n.node for n in broken)}, unchecked=unsure,
    )


def _evidence(node: NodeSymptom) -> Evidence:
    return Evidence(node.node, f"{node.result}: {node.detail}")


def _unknown(reason: str, unchecked: Mapping[str, str]) -> SymptomFinding:
    return SymptomFinding(UNEXPLAINED_ID, Status.UNKNOWN, TITLE, f"Could not be checked: {reason}", reason=reason,
                          unchecked=dict(unchecked))
