"""authorized-ip-ranges-exclude-egress when node pools leave by different egress paths, end to end: real SDK
clients -> ARM emulator -> `diagnose`.

The egress set is the union over the node subnets. Under userDefinedRouting every node subnet's default
route contributes its own Azure Firewall's public IPs; an NVA whose public IP cannot be known or a route
table that cannot be read leaves that subnet's egress unknown (never `clear`). Under loadBalancer a NAT
gateway takes over only the subnets it is attached to: the pools on the other subnets still leave through
the load balancer's outbound IPs, which must be compared too.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from typing import Any

from devtools.emulator import naming
from devtools.emulator.arm import Emulator
from shared.azure.clients import ArmClients
from shared.diagnose import diagnose
from shared.settings import Settings
from tests.emulator_fixtures import emulator_fixture  # noqa: F401 (fixture)

SUB = "7c4e2a91-3b5d-4f6e-8a9b-0c1d2e3f4a5b"
RG = "rg-paths"
OFFICE = "73.140.245.0/24"
FW1_IP, FW2_IP = "20.90.1.1", "20.91.1.1"
LB_IP = "20.61.3.7"
CAUSE = "authorized-ip-ranges-exclude-egress"


def route(hop: str) -> list[dict[str, Any]]:
    return [{"name": "default", "addressPrefix": "0.0.0.0/0", "nextHopType": "VirtualAppliance",
             "nextHopIpAddress": hop}]


def udr_cluster(ranges: list[str], *, second_hop: str = "10.1.1.4") -> dict[str, Any]:
    """Pool a routes through fw-hub (hub 10.0.0.0/16), pool b through fw-hub2 (hub2 10.1.0.0/16) or an NVA."""
    return {
        "name": "aks-two-paths", "resourceGroup": RG, "outboundType": "userDefinedRouting",
        "vnet": {"name": "vnet-spoke", "addressSpace": ["10.20.0.0/16"],
                 "peerings": [{"name": "to-hub", "remoteAddressSpace": ["10.0.0.0/16"]},
                              {"name": "to-hub2", "remoteAddressSpace": ["10.1.0.0/16"]}],
                 "subnets": [{"name": "snet-a", "addressPrefix": "10.20.0.0/22", "routeTable": "rt-a"},
                             {"name": "snet-b", "addressPrefix": "10.20.4.0/22", "routeTable": "rt-b"}]},
        "routeTables": [{"name": "rt-a", "routes": route("10.0.1.4")},
                        {"name": "rt-b", "routes": route(second_hop)}],
        "firewall": {"name": "fw-hub", "resourceGroup": "rg-hub", "privateIp": "10.0.1.4", "publicIp": FW1_IP},
        "firewalls": [{"name": "fw-hub2", "resourceGroup": "rg-hub", "vnet": "hub2-vnet", "privateIp": "10.1.1.4",
                       "publicIp": FW2_IP}],
        "agentPools": [{"name": "poola", "count": 2, "subnet": "snet-a"},
                       {"name": "poolb", "count": 2, "subnet": "snet-b"}],
        "apiServerAccessProfile": {"authorizedIpRanges": ranges},
    }


def lb_cluster(ranges: list[str]) -> dict[str, Any]:
    """outboundType loadBalancer; a NAT gateway on snet-a only: pool b still leaves through the load balancer."""
    return {
        "name": "aks-lb-partial-nat", "resourceGroup": RG, "outboundType": "loadBalancer",
        "loadBalancerProfile": {"outboundIPs": [{"name": "lb-out", "ipAddress": LB_IP}]},
        "vnet": {"name": "vnet-mixed", "addressSpace": ["10.30.0.0/16"],
                 "subnets": [{"name": "snet-a", "addressPrefix": "10.30.0.0/22", "natGateway": "natgw-a"},
                             {"name": "snet-b", "addressPrefix": "10.30.4.0/22"}]},
        "natGateways": [{"name": "natgw-a", "resourceGroup": RG}],
        "agentPools": [{"name": "poola", "count": 2, "subnet": "snet-a"},
                       {"name": "poolb", "count": 2, "subnet": "snet-b"}],
        "apiServerAccessProfile": {"authorizedIpRanges": ranges},
    }


def fleet(cluster: dict[str, Any]) -> dict[str, Any]:
    return {"subscriptions": [{"id": SUB, "clusters": [cluster]}]}


def cluster_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/{name}"


def judge(name: str) -> dict[str, Any]:
    settings = Settings.from_env({**os.environ, "NODE_PROBES": "off"})
    clients = ArmClients(settings)
    try:
        report = diagnose(cluster_id(name), settings=settings, clients=clients, probes=False).report
    finally:
        clients.close()
    return next(c for c in report["causes"] if c["id"] == CAUSE)


def nat_ip(emu: Emulator) -> str:
    pip = emu.state.public_ip(naming.resource_id(SUB, RG, "Microsoft.Network/publicIPAddresses", "natgw-a-pip-0"))
    assert pip is not None
    return pip.ip_address


def apply_fix(emu: Emulator, name: str, command: str) -> None:
    words = shlex.split(command)
    ranges = words[words.index("--api-server-authorized-ip-ranges") + 1].split(",")
    emu.state.set_authorized_ip_ranges(cluster_id(name), ranges)


# ------------------------------------------------------------------ gap 1: userDefinedRouting, two egress paths


def test_second_subnets_firewall_ip_outside_the_ranges_is_detected_then_the_fix_clears_it(
        emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet(udr_cluster([OFFICE, f"{FW1_IP}/32"])))
    assert set(emu.state.egress_addresses(cluster_id("aks-two-paths"))) == {FW1_IP, FW2_IP}
    result = judge("aks-two-paths")
    assert result["status"] == "detected", result  # was clear: only fw-hub (first default route) was compared
    assert FW2_IP in result["summary"]
    assert FW1_IP not in result["summary"]
    assert any(FW2_IP in e["detail"] and "fw-hub2" in e["detail"] for e in result["evidence"])
    (command,) = result["remediation"]
    assert command.endswith(f"{OFFICE},{FW1_IP}/32,{FW2_IP}/32")
    apply_fix(emu, "aks-two-paths", command)
    fixed = judge("aks-two-paths")
    assert fixed["status"] == "clear", fixed
    assert {FW1_IP, FW2_IP} <= {w for e in fixed["evidence"] for w in e["detail"].split()}


def test_both_firewalls_inside_is_clear(emulator: Callable[..., Emulator]) -> None:
    emulator(fleet(udr_cluster([OFFICE, f"{FW1_IP}/32", f"{FW2_IP}/32"])))
    result = judge("aks-two-paths")
    assert result["status"] == "clear", result
    assert not result.get("unchecked")


def test_second_subnet_through_an_nva_is_unknown_never_clear(emulator: Callable[..., Emulator]) -> None:
    """fw-hub's IP is inside; pool b leaves through 10.20.9.9, not an Azure Firewall: its public IP is unknown."""
    emulator(fleet(udr_cluster([OFFICE, f"{FW1_IP}/32"], second_hop="10.20.9.9")))
    result = judge("aks-two-paths")
    assert result["status"] == "unknown", result
    assert "10.20.9.9" in result["reason"]
    assert result["unchecked"]


def test_nva_beside_a_missing_firewall_ip_is_detected_with_the_nva_unchecked(
        emulator: Callable[..., Emulator]) -> None:
    emulator(fleet(udr_cluster([OFFICE], second_hop="10.20.9.9")))
    result = judge("aks-two-paths")
    assert result["status"] == "detected", result
    assert FW1_IP in result["summary"]
    assert any("10.20.9.9" in u["reason"] for u in result["unchecked"]), result["unchecked"]


def test_second_route_table_unreadable_is_unknown_never_clear(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet(udr_cluster([OFFICE, f"{FW1_IP}/32"])))
    rt_b = naming.resource_id(SUB, RG, "Microsoft.Network/routeTables", "rt-b")
    emu.faults.add(403, operation="RouteTables.Get", resource=rt_b, count=None)
    result = judge("aks-two-paths")
    assert result["status"] == "unknown", result  # was clear: a second unreadable table was ignored
    assert "403" in result["reason"]
    assert "rt-b" in result["reason"]


# ------------------------------------------------------------------ gap 2: loadBalancer, NAT gateway on some subnets


def test_load_balancer_ip_of_the_pools_without_a_nat_gateway_is_compared(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet(lb_cluster([OFFICE])))
    nat = nat_ip(emu)
    assert set(emu.state.egress_addresses(cluster_id("aks-lb-partial-nat"))) == {nat, LB_IP}
    emu.state.set_authorized_ip_ranges(cluster_id("aks-lb-partial-nat"), [OFFICE, f"{nat}/32"])
    result = judge("aks-lb-partial-nat")
    assert result["status"] == "detected", result  # was clear: only the NAT gateway's IP was compared
    assert LB_IP in result["summary"]
    assert nat not in result["summary"]
    (command,) = result["remediation"]
    assert command.endswith(f"{OFFICE},{nat}/32,{LB_IP}/32")
    apply_fix(emu, "aks-lb-partial-nat", command)
    assert judge("aks-lb-partial-nat")["status"] == "clear"


def test_nat_gateway_ip_is_still_compared_beside_the_load_balancer(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet(lb_cluster([OFFICE, f"{LB_IP}/32"])))
    result = judge("aks-lb-partial-nat")
    assert result["status"] == "detected", result
    assert nat_ip(emu) in result["summary"]
    assert LB_IP not in result["summary"]
