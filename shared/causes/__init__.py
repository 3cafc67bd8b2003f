"""The cause catalog: a small explicit registry, in the order every report lists the causes."""

from __future__ import annotations

from shared.causes import (
    egress_tunnel_port_blocked,
    iptables_blocks_10250,
    nsg_blocks_10250,
    snat_port_exhaustion,
    ufw_blocks_10250,
)
from shared.causes.base import Cause, run_cause
from shared.model import CAUSE_ORDER, CauseResult
from shared.snapshot import ClusterSnapshot

REGISTRY: tuple[Cause, ...] = (
    nsg_blocks_10250.CAUSE,
    ufw_blocks_10250.CAUSE,
    iptables_blocks_10250.CAUSE,
    egress_tunnel_port_blocked.CAUSE,
    snat_port_exhaustion.CAUSE,
)
assert tuple(c.id for c in REGISTRY) == CAUSE_ORDER, "registry must follow the contract's cause order"


def evaluate_all(snapshot: ClusterSnapshot) -> list[CauseResult]:
    """Every cause, in contract order; each one answers even if its check crashes."""
    return [run_cause(cause, snapshot) for cause in REGISTRY]


__all__ = ["REGISTRY", "Cause", "evaluate_all", "run_cause"]
