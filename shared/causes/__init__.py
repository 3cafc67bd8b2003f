"""The cause catalog: a small explicit registry, in the order every report lists the causes."""

from __future__ import annotations

import importlib

from shared.causes import (
    egress_tunnel_port_blocked,
    iptables_blocks_10250,
    konnectivity_agent_unhealthy,
    nsg_blocks_10250,
    snat_port_exhaustion,
    ufw_blocks_10250,
)
from shared.causes.base import Cause, run_cause
from shared.model import CAUSE_ORDER, CauseId, CauseResult, Status
from shared.snapshot import ClusterSnapshot


def _pending(cause_id: CauseId, title: str) -> Cause:
    """A cause whose check has not landed in this build: always `unknown`, never a silent `clear`."""
    reason = "this build of the monitor does not check this cause yet"

    def evaluate(_snapshot: ClusterSnapshot) -> CauseResult:
        return CauseResult(cause_id, Status.UNKNOWN, title, f"Could not be checked: {reason}", reason=reason)

    return Cause(cause_id, title, reason, lambda _snapshot: None, evaluate)


try:  # issue 10 section 3 (another change) adds this module; until then the id stays honest
    _AUTHORIZED: Cause = importlib.import_module("shared.causes.authorized_ip_ranges").CAUSE
except ImportError:
    _AUTHORIZED = _pending(CauseId.AUTHORIZED_IP_RANGES, "API server authorized IP ranges exclude the egress IPs")

REGISTRY: tuple[Cause, ...] = (
    nsg_blocks_10250.CAUSE,
    ufw_blocks_10250.CAUSE,
    iptables_blocks_10250.CAUSE,
    egress_tunnel_port_blocked.CAUSE,
    snat_port_exhaustion.CAUSE,
    konnectivity_agent_unhealthy.CAUSE,
    _AUTHORIZED,
)
assert tuple(c.id for c in REGISTRY) == CAUSE_ORDER, "registry must follow the contract's cause order"


def evaluate_all(snapshot: ClusterSnapshot) -> list[CauseResult]:
    """Every cause, in contract order; each one answers even if its check crashes."""
    return [run_cause(cause, snapshot) for cause in REGISTRY]


__all__ = ["REGISTRY", "Cause", "evaluate_all", "run_cause"]
