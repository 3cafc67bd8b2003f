"""Where the tunnel's connections to a node's kubelet come from, for the node-firewall causes.

The API server reaches a kubelet through the tunnel agent, so TCP 10250 arrives from the node that runs the
agent (konnectivity-agent has several replicas). A firewall rule can single out one source, so a node is
checked from every agent host the probes named, and any refusal counts. When no probe named an agent host
(crictl absent or failed, or the sample missed the agents), the source is a guess: the node is checked from
several VNet nodes, and only a verdict that does not depend on which of them is the source is conclusive.
With API Server VNet Integration there is no tunnel: the API server itself dials each kubelet from its
delegated subnet, so the node is checked from that subnet's addresses instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Final

from shared.causes.common import NodeOutcome, running_nodes
from shared.model import Status
from shared.snapshot import ClusterSnapshot, Node, NodeProbe, Unavailable
from shared.tunnel import TUNNEL_CONTAINERS

MAX_GUESSED_SOURCES: Final = 16
GUESSED: Final = ("no probed node reported a tunnel agent (crictl absent or failed, or the sample missed the "
                  "agents), so the source of the tunnel's connections is not known")


def tunnel_sources(snapshot: ClusterSnapshot, destination: Node) -> tuple[tuple[str, ...], str | None]:
    """The source IPs to check `destination` from, and None if they are the agent hosts or why they are a guess."""
    if snapshot.tunnel_not_used():  # API Server VNet Integration: the API server dials from its own subnet
        return api_server_sources(snapshot), None
    nodes = running_nodes(snapshot)
    if isinstance(nodes, Unavailable):
        return (), nodes.reason
    hosts = [n for n in nodes
             if isinstance(probe := snapshot.probes.get(n.name), NodeProbe) and probe.containers
             and any(c in TUNNEL_CONTAINERS for c in probe.containers)]
    if hosts:
        ips = [n.private_ip for n in hosts if n.name != destination.name and n.private_ip]
        return tuple(ips or [n.private_ip for n in hosts if n.private_ip]), None
    others = [n.private_ip for n in nodes if n.name != destination.name and n.private_ip]
    if not others and destination.private_ip:
        others = [destination.private_ip]
    return tuple(others[:MAX_GUESSED_SOURCES]), GUESSED


def api_server_sources(snapshot: ClusterSnapshot) -> tuple[str, ...]:
    """Addresses the API server may dial from under VNet Integration: its delegated subnet's usable addresses
    (every one for the usual /28, else the first and last eight); none when the subnet is not known."""
    subnet = snapshot.subnets.get((snapshot.api_server_subnet_id or "").lower())
    if subnet is None:
        return ()
    out: list[str] = []
    for prefix in subnet.prefixes:
        try:
            network = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            continue
        first, last = int(network.network_address) + 4, int(network.broadcast_address) - 1  # Azure reserves
        usable = range(first, last + 1)
        picked = usable if len(usable) <= MAX_GUESSED_SOURCES else [*usable[:8], *usable[-8:]]
        out.extend(str(ipaddress.ip_address(value)) for value in picked)
    return tuple(out)


def from_every_source(node: str, sources: Sequence[str], guessed: str | None,
                      check: Callable[[str], NodeOutcome]) -> NodeOutcome:
    """Check the node from each source and fold: any refusal from an agent host is detected; with guessed
    sources only a verdict shared by every source is conclusive; anything undecided stays unknown."""
    if not sources:
        return NodeOutcome(node, Status.UNKNOWN, "no VNet source address to test from")
    outcomes = [check(source) for source in sources]
    statuses = {o.status for o in outcomes}
    if len(statuses) == 1:
        return outcomes[0]
    detected = [o for o in outcomes if o.status is Status.DETECTED]
    if detected and guessed is None:
        return detected[0]
    unknown = next((o for o in outcomes if o.status is Status.UNKNOWN), None)
    if unknown is not None and not detected:
        return unknown
    by_status = "; ".join(f"from {source}: {o.status}" for source, o in zip(sources, outcomes, strict=True))
    return NodeOutcome(node, Status.UNKNOWN,
                       f"the verdict depends on the source address ({by_status}) and {guessed or 'some checks failed'}")
