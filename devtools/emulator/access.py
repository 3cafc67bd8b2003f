"""What API server access settings do to the emulated tunnel: authorized IP ranges that leave out the
cluster's egress addresses keep every agent from connecting, as on Azure.

The agents dial the API server's public endpoint from the cluster's egress addresses (SNAT), so the
API server only accepts them when every address they may leave from is inside the authorized ranges:
an outbound prefix partly outside counts as outside (any of its addresses may be used). Private and
VNet-integrated clusters reach the API server privately and are never filtered.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from devtools.emulator.scenario import ClusterSpec

if TYPE_CHECKING:
    from devtools.emulator.state import EmulatorState


def agents_locked_out(state: EmulatorState, cluster: ClusterSpec) -> str | None:
    """Why no agent can reach the API server because of its authorized IP ranges, or None."""
    if not cluster.authorized_ip_ranges or cluster.private or cluster.api_server_vnet_integration:
        return None
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for text in cluster.authorized_ip_ranges:
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            continue
        (v4 if isinstance(network, ipaddress.IPv4Network) else v6).append(network)  # type: ignore[arg-type]
    allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
        *ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]  # adjacent ranges join
    outside = []
    for address in state.egress_addresses(cluster.id):
        egress = ipaddress.ip_network(address, strict=False)
        if not any(egress.version == r.version and egress.subnet_of(r) for r in allowed):  # type: ignore[arg-type]
            outside.append(address)
    if not outside:
        return None
    return f"the API server's authorized IP ranges leave out the egress address(es) {', '.join(outside)}"
