"""The cause catalog: a small explicit registry, in the order every report lists the causes.

nsg-blocks-10250 is registered with the API-server-subnet flows of API Server VNet Integration merged in
(`apiserver_subnet.with_api_server_subnet`): same id and subjects, so the contract is unchanged. The causes
that only exist because of the tunnel are `not_applicable` when the cluster does not use one
(`ClusterSnapshot.tunnel_not_used`: VNet integration outside Microsoft's documented exceptions).
"""

from __future__ import annotations

from dataclasses import replace

from shared.causes import (
    apiserver_subnet,
    authorized_ip_ranges,
    egress_tunnel_port_blocked,
    iptables_blocks_10250,
    konnectivity_agent_unhealthy,
    nsg_blocks_10250,
    snat_port_exhaustion,
    ufw_blocks_10250,
)
from shared.causes.base import Cause, run_cause
from shared.model import CAUSE_ORDER, CauseResult
from shared.snapshot import ClusterSnapshot


def _needs_the_tunnel(cause: Cause) -> Cause:
    """`not_applicable` first when the cluster uses no tunnel, then the cause's own rule."""
    own = cause.not_applicable

    def not_applicable(snapshot: ClusterSnapshot) -> str | None:
        return snapshot.tunnel_not_used() or own(snapshot)

    return replace(cause, not_applicable=not_applicable)


REGISTRY: tuple[Cause, ...] = (
    apiserver_subnet.with_api_server_subnet(nsg_blocks_10250.CAUSE),
    ufw_blocks_10250.CAUSE,
    iptables_blocks_10250.CAUSE,
    _needs_the_tunnel(egress_tunnel_port_blocked.CAUSE),
    snat_port_exhaustion.CAUSE,
    _needs_the_tunnel(konnectivity_agent_unhealthy.CAUSE),
    authorized_ip_ranges.CAUSE,
)
assert tuple(c.id for c in REGISTRY) == CAUSE_ORDER, "registry must follow the contract's cause order"


def evaluate_all(snapshot: ClusterSnapshot) -> list[CauseResult]:
    """Every cause, in contract order; each one answers even if its check crashes."""
    return [run_cause(cause, snapshot) for cause in REGISTRY]


__all__ = ["REGISTRY", "Cause", "evaluate_all", "run_cause"]
