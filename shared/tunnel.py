"""Facts about the API-server-to-node tunnel that collection, probes and causes all rely on.

This module sits below both collection (`shared.azure`) and evaluation (`shared.causes`), so neither has
to import the other to learn which port a tunnel component dials or which container runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.snapshot import ClusterSnapshot

KUBELET_PORT = 10250

# Container name (crictl) -> tunnel component, in the order the probe reports them.
TUNNEL_CONTAINERS: tuple[str, ...] = ("konnectivity-agent", "tunnel-front", "aks-link")
TUNNEL_COMPONENT: Mapping[str, str] = {
    "konnectivity-agent": "konnectivity",
    "tunnel-front": "tunnel-front",
    "aks-link": "aks-link",
}

# Outbound port each component dials towards the API server ("proto/port").
PORTS_BY_TUNNEL: Mapping[str, tuple[str, ...]] = {
    "konnectivity": ("tcp/443",),
    "tunnel-front": ("tcp/9000",),
    "aks-link": ("udp/1194",),
}
# With the component unknown, every port one of them could need is judged (none may read `clear` unseen).
ALL_TUNNEL_PORTS: tuple[str, ...] = ("tcp/443", "tcp/9000", "udp/1194")


def tunnel_ports(snapshot: ClusterSnapshot) -> tuple[str, ...]:
    """Ports the cluster's tunnel needs: private clusters only ever use 443 (Private Link); an unknown
    component needs every port one of the components could use, so none is left unjudged."""
    if snapshot.private:
        return ("tcp/443",)
    return PORTS_BY_TUNNEL.get(snapshot.tunnel, ALL_TUNNEL_PORTS)


def api_host(snapshot: ClusterSnapshot) -> str:
    """The API server host the agents dial (the private FQDN for private clusters)."""
    return (snapshot.private_fqdn if snapshot.private else snapshot.fqdn) or f"*.hcp.{snapshot.location}.azmk8s.io"
