"""What API server access settings do to the emulated tunnel: authorized IP ranges that leave out the
cluster's egress addresses keep every agent from connecting, and API Server VNet Integration replaces the
tunnel with a direct dial from the API server's subnet, as on Azure.

The agents dial the API server's public endpoint from the cluster's egress addresses (SNAT), so the
API server only accepts them when every address they may leave from is inside the authorized ranges:
an outbound prefix partly outside counts as outside (any of its addresses may be used). Private and
VNet-integrated clusters reach the API server privately and are never filtered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devtools.emulator.nodes import NodeState
from devtools.emulator.scenario import ClusterSpec, NodeSpec

KUBELET_PORT = 10250
DIAL_TIMEOUT_S = 2  # as the emulated API server's own kubelet dials

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


def tunnel_bypassed(cluster: ClusterSpec) -> bool:
    """API Server VNet Integration with pod IPs that are VNet IPs: the API server dials kubelets itself.

    Azure CNI Overlay, kubenet and bring-your-own CNI keep Konnectivity agents (Microsoft's exception).
    """
    return (cluster.api_server_vnet_integration and (cluster.network_plugin_mode or "").lower() != "overlay"
            and cluster.network_plugin.lower() not in ("kubenet", "none"))


def direct_dial(executor: Any, current_state: Callable[[NodeSpec], NodeState], cluster: ClusterSpec,
                target: NodeSpec) -> tuple[str, str] | None:
    """(outcome, how) of the API server dialling `target`'s kubelet from its own subnet, or None when the
    cluster's API server goes through the tunnel instead.

    Kernel lab: `nc` from the API server's network namespace, whose address is the internal load balancer
    IP in the delegated subnet, so the target's iptables / ufw judge the real source. In-process: the same
    decision from the declared node state.
    """
    if not tunnel_bypassed(cluster):
        return None
    exec_in_api = getattr(executor, "exec_in_api", None)
    if exec_in_api is not None:
        done = exec_in_api(["nc", "-vz", "-w", str(DIAL_TIMEOUT_S), target.ip, str(KUBELET_PORT)], timeout=30)
        text = (done.stdout + done.stderr).lower()
        if done.returncode == 0 and "succeeded" in text:
            outcome = "ok"
        elif "refused" in text:
            outcome = "refused"
        elif "no route" in text or "unreachable" in text:
            outcome = "noroute"
        else:
            outcome = "timeout"
        return outcome, "kernel (nc from the API server's namespace: API Server VNet Integration, no tunnel)"
    from devtools.emulator.responder import kubelet_outcome

    source = NodeState(name="kube-apiserver", ip=cluster.api_server.ip, containers=None)
    return (kubelet_outcome(source, current_state(target)),
            "in-process (approximate; API Server VNet Integration, no tunnel)")
