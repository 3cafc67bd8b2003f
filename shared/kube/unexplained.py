"""The finding for a broken tunnel that no documented cause explains, so that it still alerts.

It is not a report cause (the report's `causes` stay the documented ids): it is a finding the lifecycle
keeps next to the causes' findings, with the id `tunnel-unexplained` and the cluster as its subject,
and the report's `symptom.explanation` says the same thing. `explain_symptom` returns:

- None: the symptom was not checked in this run (an open finding stays untouched);
- `detected`: some node's call failed in a way that proves the tunnel broken (timeout, refused,
  no-agent, plain-http) and no detected cause explains that node (the finding lists those nodes);
- `clear`: every checked node is ok, or every broken node is explained by a detected cause;
- `unknown`: the symptom could not be read, or no node answered conclusively (forbidden, unreachable,
  error). Nodes that did not answer conclusively are `unchecked`, so an open finding that lists one of
  them is never resolved by this run.

What explains what follows where the call broke (docs/symptom.md): a kubelet dial that timed out or was
refused is explained by causes 1-3 (an NSG, UFW or iptables rule) that hit that node; `No agent available`
by the causes that keep agents from connecting (egress, SNAT, the agents themselves, authorized ranges);
something else answering HTTP on 10250 by none of them. A node-level cause explains a node it names, or a
node it could not check while it found the problem on another node (the same image, most likely the same
rule); it does not explain a node it checked and found clean. A cause detected in another family's run
(the NSG and SNAT timers) counts through its open finding (`Explainer.from_finding`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.kube.types import BROKEN, NO_AGENT, OK, PLAIN_HTTP, REFUSED, TIMEOUT, KubeView, NodeSymptom
from shared.model import UNEXPLAINED_ID, CauseId, CauseResult, Evidence, Status
from shared.snapshot import ClusterSnapshot, NodeProbe, Unavailable

TITLE = "The tunnel is broken and no documented cause explains it"

# Which causes can explain a node's result (by where the call broke).
KUBELET_PATH_CAUSES = frozenset({str(CauseId.NSG), str(CauseId.UFW), str(CauseId.IPTABLES)})
AGENT_PATH_CAUSES = frozenset({str(CauseId.EGRESS), str(CauseId.SNAT), str(CauseId.KONNECTIVITY_AGENT),
                               str(CauseId.AUTHORIZED_IP_RANGES)})
NODE_PROBE_CAUSES = frozenset({str(CauseId.UFW), str(CauseId.IPTABLES)})  # seen only on probed nodes
EXPLAINERS_OF: Mapping[str, frozenset[str]] = {
    TIMEOUT: KUBELET_PATH_CAUSES, REFUSED: KUBELET_PATH_CAUSES, NO_AGENT: AGENT_PATH_CAUSES,
    PLAIN_HTTP: frozenset(),  # something else answers on 10250: no documented cause is about that
}


@dataclass(frozen=True)
class Explainer:
    """A cause detected for this cluster, with the nodes it hits (empty: the whole cluster) and the nodes
    it could not check (where it may well be the same problem)."""

    cause: str
    nodes: frozenset[str] = frozenset()
    unchecked: frozenset[str] = frozenset()

    def covers(self, node: str) -> bool:
        """A kubelet-path cause (1-3) covers the nodes it names; the agent-path causes (egress, SNAT, the
        agents, authorized ranges) name the agents' nodes, but break the tunnel to every node."""
        if self.cause not in KUBELET_PATH_CAUSES:
            return True
        key = node.strip().lower()
        return not self.nodes or key in self.nodes or key in self.unchecked

    @classmethod
    def from_result(cls, result: CauseResult, unprobed: frozenset[str] = frozenset()) -> Explainer:
        """`unprobed`: nodes no probe looked at; a node-level cause found elsewhere could not check them."""
        nodes = _folded(n for names in result.affected.values() for n in names)
        unchecked = _folded(result.unchecked) | (unprobed if str(result.id) in NODE_PROBE_CAUSES else frozenset())
        return cls(str(result.id), nodes, unchecked)

    @classmethod
    def from_finding(cls, cause: str, affected: Sequence[str]) -> Explainer:
        """An open finding: its affected nodes, or the whole cluster when it names none (a cluster-wide
        subject, or a row written before `affected` existed)."""
        return cls(cause, _folded(affected))


@dataclass(frozen=True)
class SymptomExplanation:
    """Which broken nodes a detected cause explains, which none does, and which did not answer."""

    status: Status
    summary: str
    reason: str | None = None
    unexplained: tuple[NodeSymptom, ...] = ()
    explained_by: Mapping[str, tuple[str, ...]] | None = None  # node -> cause ids
    unsure: Mapping[str, str] | None = None  # node -> "result: detail"
    # Nodes the API's node list has that this run did not ask (outside the sample, NotReady): they change no
    # verdict, but a finding that lists one (or whose node list was cut) is not resolved by this run.
    unasked: Mapping[str, str] | None = None

    @classmethod
    def unread(cls, reason: str) -> SymptomExplanation:
        """The symptom could not be read in this run (API unreadable, or the check itself failed)."""
        return cls(Status.UNKNOWN, f"Could not be checked: {reason}", reason)

    def to_json(self) -> dict[str, Any]:
        """The report's `symptom.explanation` (an addition: consumers ignore fields they do not know)."""
        return {"status": str(self.status), "summary": self.summary, "reason": self.reason,
                "unexplainedNodes": [n.node for n in self.unexplained],
                "explainedBy": {node: list(causes) for node, causes in (self.explained_by or {}).items()}}

    def to_result(self, cluster_id: str) -> CauseResult:
        """The finding's result for the lifecycle: subject the cluster, affected the unexplained nodes."""
        unchecked = {**(self.unasked or {}), **(self.unsure or {})}
        if self.status is Status.DETECTED:
            names = tuple(n.node for n in self.unexplained)
            return CauseResult(
                UNEXPLAINED_ID, Status.DETECTED, TITLE, self.summary,
                evidence=tuple(Evidence(n.node, f"{n.result}: {n.detail}") for n in self.unexplained),
                remediation=_remediation(self.unexplained),
                subjects=(cluster_id,), affected={cluster_id: names}, unchecked=unchecked)
        return CauseResult(UNEXPLAINED_ID, self.status, TITLE, self.summary, reason=self.reason,
                           unchecked=unchecked)


def explain_symptom(snapshot: ClusterSnapshot, results: Sequence[CauseResult],
                    also: Iterable[Explainer] = ()) -> SymptomExplanation | None:
    """`results`: this run's cause results; `also`: causes detected elsewhere (other families' open findings)."""
    symptom = snapshot.symptom
    if symptom is None:
        return None
    if isinstance(symptom, Unavailable):
        return SymptomExplanation.unread(symptom.reason)
    unsure = {n.node: f"{n.result}: {n.detail}" for n in symptom if n.result != OK and n.result not in BROKEN}
    unasked = _unasked(snapshot, symptom)
    broken = [n for n in symptom if n.result in BROKEN]
    if not broken:
        if unsure or not symptom:
            reason = "; ".join(f"{k}: {v}" for k, v in unsure.items()) or "no node was checked"
            return SymptomExplanation(Status.UNKNOWN, f"Could not be checked: {reason}", reason, unsure=unsure,
                                      unasked=unasked)
        return SymptomExplanation(Status.CLEAR, f"The tunnel reached the kubelet of all {len(symptom)} checked "
                                  "node(s).", unsure=unsure, unasked=unasked)
    unprobed = _unprobed(snapshot)
    explainers = [Explainer.from_result(r, unprobed) for r in results
                  if r.status is Status.DETECTED and r.id != UNEXPLAINED_ID]
    # A cause this run evaluated speaks for itself (a stale open finding does not), unless it could not be
    # evaluated (`unknown`: an NSG that could not be read, probes that failed): then its open finding stands.
    evaluated = {str(r.id) for r in results if r.status is not Status.UNKNOWN}
    explainers += [e for e in also if e.cause not in evaluated]
    explained_by: dict[str, tuple[str, ...]] = {}
    unexplained: list[NodeSymptom] = []
    for node in broken:
        causes = tuple(dict.fromkeys(e.cause for e in explainers
                                     if e.cause in EXPLAINERS_OF[node.result] and e.covers(node.node)))
        if causes:
            explained_by[node.node] = causes
        else:
            unexplained.append(node)
    if not unexplained:
        why = "; ".join(f"{node}: {', '.join(causes)}" for node, causes in explained_by.items())
        return SymptomExplanation(Status.CLEAR, f"The broken tunnel is explained by detected causes ({why}).",
                                  explained_by=explained_by, unsure=unsure, unasked=unasked)
    names = ", ".join(f"{n.node} ({n.result})" for n in unexplained)
    summary = f"The tunnel is broken to {len(unexplained)} node(s): {names}, and no documented cause explains it."
    if explained_by:
        others = "; ".join(f"{node} by {', '.join(causes)}" for node, causes in explained_by.items())
        summary += f" Explained: {others}."
    # The causes that could have explained these nodes but could not be checked: it still alerts (the tunnel
    # is broken for users), and says where to look first.
    could = {c for n in unexplained for c in EXPLAINERS_OF[n.result]}
    unchecked = [f"{r.id} ({r.reason})" for r in results if str(r.id) in could and r.status is Status.UNKNOWN]
    if unchecked:
        summary += f" Not checked in this run, so not ruled out: {'; '.join(unchecked)}."
    return SymptomExplanation(Status.DETECTED, summary, unexplained=tuple(unexplained), explained_by=explained_by,
                              unsure=unsure, unasked=unasked)


def _remediation(nodes: Sequence[NodeSymptom]) -> tuple[str, ...]:
    steps = ["kubectl -n kube-system get pods -l app=konnectivity-agent -o wide"]
    if any(n.result == NO_AGENT for n in nodes):
        steps.append("kubectl -n kube-system logs -l app=konnectivity-agent --tail=50 (why the agents do not "
                     "connect to the API server)")
    if any(n.result in (TIMEOUT, REFUSED) for n in nodes):
        steps.append(f"kubectl get --raw '/api/v1/nodes/{nodes[0].node}/proxy/healthz' (as an admin; the monitor "
                     "itself does not use nodes/proxy), and check what else filters TCP 10250 between the agents' "
                     "nodes and these nodes (a firewall appliance, a host agent, a network policy on the node network)")
    if any(n.result == PLAIN_HTTP for n in nodes):
        steps.append("Find what listens on TCP 10250 on these nodes instead of the kubelet (for example "
                     "`ss -ltnp 'sport = :10250'` through `az vmss run-command invoke`)")
    return tuple(steps)


def _unasked(snapshot: ClusterSnapshot, symptom: Sequence[NodeSymptom]) -> dict[str, str]:
    """Nodes the API's node list has (read in this run) that were not asked: a NotReady node (its kubelet
    does not answer whatever the tunnel does) or one outside the rotating sample. A node the list no longer
    has (scaled down, deleted) is not here: nothing is left to be broken, so it does not pin a finding open."""
    if not isinstance(snapshot.kube, KubeView):
        return {}
    seen = _folded(n.node for n in symptom)
    return {n.name: "not asked in this run: " + ("the node is NotReady" if not n.ready else "outside the sample")
            for n in snapshot.kube.nodes if not n.virtual and n.name.strip().lower() not in seen}


def _unprobed(snapshot: ClusterSnapshot) -> frozenset[str]:
    nodes = () if isinstance(snapshot.nodes, Unavailable) else snapshot.nodes
    return _folded(n.name for n in nodes if not isinstance(snapshot.probes.get(n.name), NodeProbe))


def _folded(names: Iterable[str]) -> frozenset[str]:
    return frozenset(n.strip().lower() for n in names if n and n.strip())
