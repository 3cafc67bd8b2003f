"""snat-port-exhaustion with outboundType loadBalancer and a NAT gateway on node subnets, end to end: real SDK
clients -> ARM emulator.

A NAT gateway on a subnet takes over that subnet's outbound traffic from the load balancer's outbound rules.
So its SNAT metrics (SNATConnectionCount, PacketDropCount) are read as well, in the full diagnosis and in
the monitor's SNAT-only collection; alone when every node subnet has one, beside the load balancer's when
only some do. A node subnet that cannot be read may hide one: never `clear` then. Clusters without
bring-your-own subnets read no VNet in the SNAT-only collection (reads per cluster stay as they were).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from devtools.emulator import naming
from devtools.emulator.arm import Emulator
from shared.azure.clients import ArmClients
from shared.azure.collect import SNAT, Collector
from shared.azure.ids import parse_cluster_id
from shared.causes import run_cause
from shared.causes.snat_port_exhaustion import CAUSE
from shared.diagnose import diagnose
from shared.settings import Settings
from tests import snat_metrics
from tests.emulator_fixtures import emulator_fixture  # noqa: F401 (fixture)

SUB = "8d5f3b02-4c6e-4a7f-9b0c-1d2e3f4a5b6c"
RG = "rg-snat-paths"
NAT_A = naming.resource_id(SUB, RG, "Microsoft.Network/natGateways", "natgw-a")
NAT_B = naming.resource_id(SUB, RG, "Microsoft.Network/natGateways", "natgw-b")
VNET = naming.resource_id(SUB, RG, "Microsoft.Network/virtualNetworks", "vnet-snat")
LB_IPS = [f"10.50.4.{i}" for i in range(4, 7)]


def nat_series(failed: float) -> list[dict[str, Any]]:
    return snat_metrics.nat_series(failed, dropped=failed)


def lb_series(failed: float) -> list[dict[str, Any]]:
    return snat_metrics.lb_series(LB_IPS, failed, used=100)


def cluster(name: str, *, nat_on_b: bool, nat_failed: float = 0.0, lb_failed: float = 0.0) -> dict[str, Any]:
    """Pool a on snet-a (NAT gateway natgw-a); pool b on snet-b (natgw-b, or the load balancer)."""
    subnet_b: dict[str, Any] = {"name": "snet-b", "addressPrefix": "10.50.4.0/22"}
    if nat_on_b:
        subnet_b["natGateway"] = "natgw-b"
    return {
        "name": name, "resourceGroup": RG, "outboundType": "loadBalancer",
        "loadBalancerProfile": {"allocatedOutboundPorts": 4000, "managedOutboundIPCount": 1},
        "vnet": {"name": "vnet-snat", "resourceGroup": RG, "addressSpace": ["10.50.0.0/16"],
                 "subnets": [{"name": "snet-a", "addressPrefix": "10.50.0.0/22", "natGateway": "natgw-a"},
                             subnet_b]},
        "natGateways": [{"name": "natgw-a", "resourceGroup": RG, "metrics": nat_series(nat_failed)},
                        {"name": "natgw-b", "resourceGroup": RG, "metrics": nat_series(0)}],
        "agentPools": [{"name": "poola", "count": 2, "subnet": "snet-a"},
                       {"name": "poolb", "count": 3, "subnet": "snet-b"}],
        "metrics": {"loadBalancer": lb_series(lb_failed)},
    }


def managed_vnet_cluster(name: str) -> dict[str, Any]:
    return {"name": name, "resourceGroup": RG, "outboundType": "loadBalancer",
            "loadBalancerProfile": {"allocatedOutboundPorts": 4000, "managedOutboundIPCount": 1},
            "agentPools": [{"name": "nodepool1", "count": 2}], "metrics": {"loadBalancer": lb_series(0)}}


def fleet(*clusters: dict[str, Any]) -> dict[str, Any]:
    return {"subscriptions": [{"id": SUB, "clusters": list(clusters)}]}


def cluster_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/{name}"


def settings() -> Settings:
    return Settings.from_env({**os.environ, "NODE_PROBES": "off"})


def diagnosed(name: str) -> dict[str, Any]:
    clients = ArmClients(settings())
    try:
        report = diagnose(cluster_id(name), settings=settings(), clients=clients, probes=False).report
    finally:
        clients.close()
    return next(c for c in report["causes"] if c["id"] == "snat-port-exhaustion")


def snat_only(name: str) -> dict[str, Any]:
    """The monitor's SNAT family: a snapshot of the SNAT part only (no NICs, no route tables)."""
    clients = ArmClients(settings())
    try:
        collector = Collector(clients)
        raw = collector.managed_cluster(parse_cluster_id(cluster_id(name)))
        snapshot = collector.snapshot(raw, with_instances=False, parts=frozenset({SNAT}))
    finally:
        clients.close()
    return run_cause(CAUSE, snapshot).to_json()


def test_exhausted_nat_gateway_on_every_node_subnet_is_detected(emulator: Callable[..., Emulator]) -> None:
    """Both subnets have a NAT gateway: the load balancer carries none of the nodes' outbound traffic."""
    emulator(fleet(cluster("aks-all-nat", nat_on_b=True, nat_failed=7)))
    for read in (diagnosed, snat_only):
        result = read("aks-all-nat")
        assert result["status"] == "detected", (read.__name__, result)  # was clear: only the LB was read
        assert "NAT gateway(s) natgw-a (" in result["summary"]
        assert "natgw-b" not in result["summary"]
        assert any(e["resource"] == NAT_B for e in result["evidence"])  # every gateway was read


def test_exhausted_nat_gateway_beside_a_healthy_load_balancer_is_detected(emulator: Callable[..., Emulator]) -> None:
    emulator(fleet(cluster("aks-some-nat", nat_on_b=False, nat_failed=7)))
    for read in (diagnosed, snat_only):
        result = read("aks-some-nat")
        assert result["status"] == "detected", (read.__name__, result)
        assert "NAT gateway(s) natgw-a (" in result["summary"]
        assert "natgw-b" not in result["summary"]
        assert "load balancer" not in result["summary"]
        # the load balancer (pool b) was judged too
        assert any("SnatConnectionCount" in e["detail"] and "loadBalancers/kubernetes" in e["resource"]
                   for e in result["evidence"])


def test_exhausted_load_balancer_beside_a_healthy_nat_gateway_is_detected(emulator: Callable[..., Emulator]) -> None:
    emulator(fleet(cluster("aks-some-nat", nat_on_b=False, lb_failed=5)))
    result = diagnosed("aks-some-nat")
    assert result["status"] == "detected", result
    assert "failed SNAT connections" in result["summary"]
    assert "on the outbound load balancer" in result["summary"]
    assert "natgw-a" not in result["summary"]
    assert any(e["resource"] == NAT_A for e in result["evidence"])  # the NAT gateway was judged too


def test_healthy_load_balancer_and_nat_gateway_are_clear(emulator: Callable[..., Emulator]) -> None:
    emulator(fleet(cluster("aks-some-nat", nat_on_b=False)))
    for read in (diagnosed, snat_only):
        result = read("aks-some-nat")
        assert result["status"] == "clear", (read.__name__, result)
        assert any(e["resource"] == NAT_A for e in result["evidence"])


def test_unreadable_node_vnet_is_unknown_never_clear(emulator: Callable[..., Emulator]) -> None:
    """The subnets cannot be read, so whether a NAT gateway takes over their egress is unknown."""
    emu = emulator(fleet(cluster("aks-all-nat", nat_on_b=True, nat_failed=7)))
    emu.faults.add(403, operation="VirtualNetworks.Get", resource=VNET, count=None)
    for read in (diagnosed, snat_only):
        result = read("aks-all-nat")
        assert result["status"] == "unknown", (read.__name__, result)  # was clear from the healthy LB
        assert "403" in result["reason"]
        assert result["unchecked"]


def test_unread_nat_gateway_beside_a_healthy_load_balancer_is_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet(cluster("aks-some-nat", nat_on_b=False)))
    emu.faults.add(403, operation="Metrics.List", resource=NAT_A, count=None)
    result = diagnosed("aks-some-nat")
    assert result["status"] == "unknown", result
    assert NAT_A in {u["subject"] for u in result["unchecked"]}


def test_snat_only_reads_no_vnet_without_byo_subnets(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet(managed_vnet_cluster("aks-managed"), cluster("aks-some-nat", nat_on_b=False)))
    emu.stats.reset()
    assert snat_only("aks-managed")["status"] == "clear"
    assert emu.stats.calls("VirtualNetworks.Get") == 0
    emu.stats.reset()
    snat_only("aks-some-nat")
    assert emu.stats.calls("VirtualNetworks.Get") == 1  # one read for the VNet of both BYO subnets
