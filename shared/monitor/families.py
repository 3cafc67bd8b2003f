"""Check families: which causes each timer owns and what it must read from ARM for them.

A family is the unit of scheduling (one timer, one queue message per cluster) and of reconciliation (it
only ever opens or resolves findings of its own causes, so a fast SNAT timer never resolves a finding
only a node probe can see). Its `parts` are the only collection it pays for: SNAT reads the scale set
models and two metric queries, not the whole topology.

Adding a family (or a cause to one) is one entry here: name, causes, collection parts, whether it
runs node probes and whether it needs the subscription's Activity Log (read once per subscription by
its timer, never per cluster). The queue message format, the worker, `scan`, health and the merged
cluster report all follow the mapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.azure.collect import ACTIVITY, ADMIN, EGRESS, NETWORK, NODES, SNAT
from shared.model import CauseId


@dataclass(frozen=True)
class Family:
    name: str
    causes: tuple[CauseId, ...]
    parts: frozenset[str]  # shared.azure.collect parts this family's causes read
    probes: bool = False  # runs node probes (run-command) when NODE_PROBES is not off
    activity_log: bool = False  # needs the subscription's Activity Log (read by the timer, stored)
    kube: bool = False  # reads the Kubernetes API (agent pods, the API server -> node symptom)
    # Parts read only after the probes, when they left a node class unproven (see assess.egress_proven).
    after_probes: frozenset[str] = frozenset()


SPECS: Mapping[str, Family] = {
    "snat": Family("snat", (CauseId.SNAT,), frozenset({SNAT})),
    "nsg": Family("nsg", (CauseId.NSG,), frozenset({NODES, NETWORK, ADMIN, ACTIVITY}), activity_log=True),
    # Egress is judged from the node's own connection attempt, and explained by the NSG outbound rules, the
    # default route and the firewall on it: the probe family reads those, not the Activity Log or metrics.
    # The causes after the five ride along where their inputs already are: the Konnectivity agents (and the
    # API server -> node symptom) from the Kubernetes API next to the node probes, the authorized IP ranges
    # against the egress addresses the EGRESS part finds (route table, firewall, outbound IPs).
    "probe": Family("probe", (CauseId.UFW, CauseId.IPTABLES, CauseId.EGRESS, CauseId.KONNECTIVITY_AGENT,
                              CauseId.AUTHORIZED_IP_RANGES),
                    frozenset({NODES, NETWORK, ADMIN, EGRESS}), probes=True, kube=True,
                    after_probes=frozenset({NETWORK, ADMIN})),
}

# Which causes each timer owns (the form older code and the queue parser use).
FAMILIES: Mapping[str, tuple[CauseId, ...]] = {name: spec.causes for name, spec in SPECS.items()}
ALL_FAMILIES: tuple[str, ...] = tuple(SPECS)


def owned_causes(families: Sequence[str]) -> frozenset[CauseId]:
    return frozenset(c for f in families for c in SPECS[f].causes)


def parts_of(families: Sequence[str]) -> frozenset[str]:
    return frozenset(p for f in families for p in SPECS[f].parts)


def family_of(cause: str) -> str | None:
    """The family that checks `cause` (None for a cause no family owns yet)."""
    return next((name for name, spec in SPECS.items() if cause in {str(c) for c in spec.causes}), None)
