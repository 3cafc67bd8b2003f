"""Collect, probe and evaluate one cluster for some check families: the one code path behind `diagnose`,
`scan` and the queue workers (issue 9: the deployed app and the CLI must not drift apart).

Storage-free on purpose: `diagnose` needs no storage account, and the monitor adds reconciliation on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.azure.collect import Collector
from shared.azure.probes import Prober, RunCommandLedger
from shared.causes import REGISTRY, run_cause
from shared.model import CauseResult
from shared.monitor.families import SPECS, owned_causes, parts_of
from shared.progress import Progress
from shared.snapshot import ActivityEvent, ClusterSnapshot, Unavailable


@dataclass(frozen=True)
class Assessment:
    snapshot: ClusterSnapshot
    results: list[CauseResult]  # the families' causes, in contract order
    run_commands: int = 0


@dataclass(frozen=True)
class ProbeOptions:
    """How node probes run for this assessment (NODE_PROBES, sample size, time budget, in-flight ledger)."""

    mode: str = "off"
    per_pool: int = 2
    deadline: float | None = None  # time.monotonic() value no run-command may outlast
    ledger: RunCommandLedger | None = None
    must_probe: frozenset[str] = frozenset()
    progress: Progress | None = None
    kube_mode: str = "sample"  # NODE_PROBES as set: the Kubernetes read samples nodes even when probes are off


def assess(collector: Collector, cluster: dict[str, Any], families: Sequence[str], probes: ProbeOptions, *,
           activity: tuple[ActivityEvent, ...] | Unavailable | None = None,
           every_cause: bool = False) -> Assessment:
    """Reads what the families' causes need (and nothing else), probes nodes if a family asks, evaluates.

    `every_cause` (diagnose) evaluates the whole catalog, including causes no family owns yet.
    """
    probing = probes.mode != "off" and any(SPECS[f].probes for f in families)
    snapshot = collector.snapshot(cluster, with_instances=probing, activity=activity, parts=parts_of(families))
    run_commands = 0
    if probing:
        prober = Prober(collector.clients, deadline=probes.deadline, ledger=probes.ledger)
        snapshot = prober.probe(snapshot, probes.mode, per_pool=probes.per_pool, must_probe=probes.must_probe,
                                progress=probes.progress)
        run_commands = prober.run_commands
    if every_cause or any(SPECS[f].kube for f in families):
        # The symptom and the agents come from the Kubernetes API (not a run-command): read even with
        # probes off.
        from shared.kube.collect import KubeOptions, read_cluster

        snapshot = read_cluster(collector.clients, cluster, snapshot,
                                KubeOptions(mode=probes.kube_mode, per_pool=probes.per_pool))
    owned = owned_causes(families)
    results = [run_cause(cause, snapshot) for cause in REGISTRY if every_cause or cause.id in owned]
    return Assessment(snapshot, results, run_commands)
