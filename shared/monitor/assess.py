"""Collect, probe and evaluate one cluster for some check families: the one code path behind `diagnose`,
`scan` and the queue workers (issue 9: the deployed app and the CLI must not drift apart).

Storage-free on purpose: `diagnose` needs no storage account, and the monitor adds reconciliation on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from shared.azure.collect import ACTIVITY, Collector
from shared.azure.probes import Prober, RunCommandLedger
from shared.causes import REGISTRY, run_cause
from shared.kube.unexplained import EXPLAINERS_OF, Explainer, SymptomExplanation, explain_symptom
from shared.model import CauseResult, Status
from shared.monitor.families import SPECS, family_of, owned_causes, parts_of
from shared.progress import Progress
from shared.snapshot import ActivityEvent, ClusterSnapshot, NodeProbe, Unavailable
from shared.tunnel import tunnel_ports


@dataclass(frozen=True)
class Assessment:
    snapshot: ClusterSnapshot
    results: list[CauseResult]  # the families' causes, in contract order
    run_commands: int = 0
    # The symptom against the detected causes (None: the symptom was not read in this run). Its result is
    # the `tunnel-unexplained` finding; the report shows it as `symptom.explanation`.
    explanation: SymptomExplanation | None = None


@dataclass(frozen=True)
class ProbeOptions:
    """How node probes run for this assessment (NODE_PROBES, sample size, time budget, in-flight ledger)."""

    mode: str = "off"
    per_pool: int = 2
    deadline: float | None = None  # time.monotonic() value no run-command may outlast
    ledger: RunCommandLedger | None = None
    must_probe: frozenset[str] = frozenset()  # nodes probed (and asked through the API server) whatever the sample
    progress: Progress | None = None
    kube_mode: str = "sample"  # NODE_PROBES as set: the Kubernetes read samples nodes even when probes are off


def assess(collector: Collector, cluster: dict[str, Any], families: Sequence[str], probes: ProbeOptions, *,
           activity: tuple[ActivityEvent, ...] | Unavailable | None = None,
           every_cause: bool = False, explainers: Sequence[Explainer] = ()) -> Assessment:
    """Reads what the families' causes need (and nothing else), probes nodes if a family asks, evaluates.

    `every_cause` (diagnose) evaluates the whole catalog, including causes no family owns yet.
    `explainers`: causes other families found (their open findings), which may explain a broken symptom.
    """
    probing = probes.mode != "off" and any(SPECS[f].probes for f in families)
    parts = parts_of(families)
    # Parts only a probing family wants, to explain what its probes could not prove (e.g. the NSG outbound
    # rules behind a blocked egress): read after the probes, and only when some node class is left unproven.
    deferred = (frozenset().union(*(SPECS[f].after_probes for f in families)) - eager_parts(families)
                if probing else frozenset())
    snapshot = collector.snapshot(cluster, with_instances=probing, activity=activity, parts=parts - deferred)
    run_commands = 0
    if probing:
        prober = Prober(collector.clients, deadline=probes.deadline, ledger=probes.ledger)
        snapshot = prober.probe(snapshot, probes.mode, per_pool=probes.per_pool, must_probe=probes.must_probe,
                                progress=probes.progress)
        run_commands = prober.run_commands
        if deferred and not egress_proven(snapshot):
            # Same collector: everything already read comes from its memo, only the deferred parts are new.
            full = collector.snapshot(cluster, with_instances=True, activity=activity, parts=parts)
            snapshot = replace(snapshot, nsgs=full.nsgs, nsg_errors=full.nsg_errors, admin_rules=full.admin_rules,
                               subnets=full.subnets)
    if every_cause or any(SPECS[f].kube for f in families):
        # The symptom and the agents come from the Kubernetes API (not a run-command): read even with
        # probes off.
        from shared.kube.collect import KubeOptions, read_cluster

        snapshot = read_cluster(collector.clients, cluster, snapshot,
                                KubeOptions(mode=probes.kube_mode, per_pool=probes.per_pool,
                                            must_check=probes.must_probe))
    owned = owned_causes(families)
    results = [run_cause(cause, snapshot) for cause in REGISTRY if every_cause or cause.id in owned]
    explanation = None
    if every_cause or any(SPECS[f].kube for f in families):
        explanation = explain_symptom(snapshot, results, explainers)
        if explanation is not None and explanation.status is Status.DETECTED:
            explanation = _explain_further(collector, cluster, snapshot, explanation, results=results,
                                           explainers=explainers, parts=parts, probing=probing, activity=activity)
    return Assessment(snapshot, results, run_commands, explanation)


def _explain_further(collector: Collector, cluster: dict[str, Any], snapshot: ClusterSnapshot,
                     explanation: SymptomExplanation, *, results: Sequence[CauseResult],
                     explainers: Sequence[Explainer], parts: frozenset[str], probing: bool,
                     activity: tuple[ActivityEvent, ...] | Unavailable | None) -> SymptomExplanation:
    """The tunnel is broken and this family's causes do not explain it: evaluate the causes that could (an
    NSG for a kubelet timeout, SNAT for no agent) before saying no documented cause does. Those belong to
    other families and run on other timers; without this, a cluster checked by the probe family before the
    NSG family would alert `tunnel-unexplained` next to the NSG finding. Only broken clusters pay the reads."""
    evaluated = {str(r.id) for r in results}
    wanted = {c for n in explanation.unexplained for c in EXPLAINERS_OF[n.result]} - evaluated
    missing = [cause for cause in REGISTRY if str(cause.id) in wanted]
    if not missing:
        return explanation
    extra = frozenset().union(*(SPECS[family].parts for c in missing
                                if (family := family_of(str(c.id))) is not None)) - {ACTIVITY}
    full = collector.snapshot(cluster, with_instances=probing, activity=activity, parts=parts | extra)
    richer = replace(full, probes=snapshot.probes, probes_mode=snapshot.probes_mode, tunnel=snapshot.tunnel,
                     kube=snapshot.kube, symptom=snapshot.symptom)
    found = [run_cause(cause, richer) for cause in missing]
    return explain_symptom(snapshot, [*results, *found], explainers) or explanation


def eager_parts(families: Sequence[str]) -> frozenset[str]:
    """Parts some family needs before (or without) probes."""
    return frozenset().union(*(SPECS[f].parts - SPECS[f].after_probes for f in families))


def egress_proven(snapshot: ClusterSnapshot) -> bool:
    """Every running node's egress class (subnet, NIC NSG) has a probed node that reached the API server on
    every tunnel port: the NSG rules on those paths then cannot be what blocks the tunnel, so reading them
    would explain nothing. Anything less (a failure, a class nobody probed, unknown nodes) reads them."""
    if isinstance(snapshot.nodes, Unavailable):
        return False
    ports = tunnel_ports(snapshot)
    proven = {(n.subnet_id.lower(), (n.nic_nsg_id or "").lower()) for n in snapshot.nodes
              if isinstance(p := snapshot.probes.get(n.name), NodeProbe)
              and all(p.egress.get(port) == "ok" for port in ports)}
    classes = {(n.subnet_id.lower(), (n.nic_nsg_id or "").lower()) for n in snapshot.nodes
               if n.running and n.private_ip}
    return bool(classes) and classes <= proven
