"""snat-port-exhaustion end to end: real SDK clients -> local ARM emulator.

Each outbound IP kind gets its own fix (exact commands asserted): a managed count, the user's own public
IPs, or prefixes whose length is read from Azure. Every NAT gateway on the node subnets is read; one that
cannot be read, or a prefix that cannot be read, never leaves the cause `clear`.

Arithmetic of the load balancer cases: pools system (2 nodes, surge 10% -> 1) and user (3 nodes,
autoscaler max 20, surge 10% of 20 -> 2) peak at 3 + 22 = 25 nodes; allocatedOutboundPorts 4000 with
failures -> recommend 2 x 4000 = 8000 ports (a multiple of 8) -> 8000 x 25 = 200,000 ports ->
ceil(200,000 / 64,000) = 4 IPs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from devtools.emulator.arm import Emulator
from shared.azure.clients import ArmClients
from shared.diagnose import diagnose
from shared.settings import Settings
from tests import snat_metrics
from tests.emulator_fixtures import emulator_fixture  # noqa: F401 (fixture)

SUB = "5d2e8f10-4a6b-4c3d-9e8f-0a1b2c3d4e5f"
NET = f"/subscriptions/{SUB}/resourceGroups/rg-egress/providers/Microsoft.Network"
NODE_IPS = [f"10.30.0.{i}" for i in range(4, 9)]


def lb_series(failed: float, *, used: float = 1000.0, allocated: float = 4000.0) -> list[dict[str, Any]]:
    return snat_metrics.lb_series(NODE_IPS, failed, used=used, allocated=allocated)


nat_series = snat_metrics.nat_series


POOLS = [{"name": "system", "count": 2}, {"name": "user", "count": 3, "minCount": 3, "maxCount": 20}]
VNET = {"name": "vnet-egress", "resourceGroup": "rg-egress", "addressSpace": ["10.30.0.0/16"],
        "subnets": [{"name": "snet-aks", "addressPrefix": "10.30.0.0/22"}]}


def lb_cluster(name: str, profile: dict[str, Any], failed: float = 5.0) -> dict[str, Any]:
    return {"name": name, "resourceGroup": "rg-snat", "location": "westeurope", "vnet": VNET,
            "loadBalancerProfile": {"allocatedOutboundPorts": 4000, **profile}, "agentPools": POOLS,
            "metrics": {"loadBalancer": lb_series(failed)}}


def fleet(*clusters: dict[str, Any]) -> dict[str, Any]:
    return {"subscriptions": [{"id": SUB, "clusters": list(clusters)}]}


def cluster_id(name: str, rg: str = "rg-snat") -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{name}"


def snat(name: str, rg: str = "rg-snat") -> dict[str, Any]:
    settings = Settings.from_env({**os.environ, "NODE_PROBES": "off"})
    clients = ArmClients(settings)
    try:
        report = diagnose(cluster_id(name, rg), settings=settings, clients=clients, probes=False).report
    finally:
        clients.close()
    return next(c for c in report["causes"] if c["id"] == "snat-port-exhaustion")


def details(cause: dict[str, Any]) -> list[str]:
    return [e["detail"] for e in cause["evidence"]]


def commands(cause: dict[str, Any]) -> list[str]:
    return [r for r in cause["remediation"] if r.startswith("az ")]


# ------------------------------------------------------------------ load balancer: one fix per IP kind


def test_managed_ip_count_fix_with_the_arithmetic(emulator: Callable[..., Emulator]) -> None:
    emulator(fleet(lb_cluster("aks-managed", {"managedOutboundIPCount": 2})))
    found = snat("aks-managed")
    assert found["status"] == "detected", found
    assert commands(found) == [
        "az aks update --resource-group rg-snat --name aks-managed --load-balancer-managed-outbound-ip-count 4 "
        "--load-balancer-outbound-ports 8000"]
    lines = details(found)
    assert "peak nodes = system: max(2, 0) + surge 1 + user: max(3, 20) + surge 2 = 25" in lines
    assert "capacity = 64,000 x 2 IP(s) / 4000 = 32 nodes" in lines
    assert ("recommended: 8000 ports/node (multiple of 8) x 25 nodes = 200,000 ports -> ceil(/ 64,000) = 4 IP(s); "
            "using 4") in lines


def test_own_public_ips_are_kept_and_extended(emulator: Callable[..., Emulator]) -> None:
    own = {"outboundIPs": [{"name": "egress-1", "resourceGroup": "rg-ips"},
                           {"name": "egress-2", "resourceGroup": "rg-ips"}]}
    emulator(fleet(lb_cluster("aks-ownips", own)))
    found = snat("aks-ownips")
    assert found["status"] == "detected", found
    ips = f"/subscriptions/{SUB}/resourceGroups/rg-ips/providers/Microsoft.Network/publicIPAddresses"
    assert commands(found) == [
        "az network public-ip create --resource-group rg-ips --name aks-ownips-outbound-ip-3 --location westeurope "
        "--sku Standard --allocation-method Static --version IPv4",
        "az network public-ip create --resource-group rg-ips --name aks-ownips-outbound-ip-4 --location westeurope "
        "--sku Standard --allocation-method Static --version IPv4",
        f"az aks update --resource-group rg-snat --name aks-ownips --load-balancer-outbound-ips "
        f"{ips}/egress-1,{ips}/egress-2,{ips}/aks-ownips-outbound-ip-3,{ips}/aks-ownips-outbound-ip-4 "
        "--load-balancer-outbound-ports 8000",
    ]
    assert not any("managed-outbound-ip-count" in r or "outbound-ip-prefixes" in r for r in found["remediation"])


def test_prefix_length_is_read_not_assumed(emulator: Callable[..., Emulator]) -> None:
    """A /31 holds 2 addresses: 4 IPs are needed, so a second prefix (/31) is added. Assuming /28 (16
    addresses) would have suggested no new prefix at all."""
    prefix = {"outboundIPPrefixes": [{"name": "egress-prefix", "resourceGroup": "rg-ips", "ipPrefix": "20.9.8.6/31"}]}
    emu = emulator(fleet(lb_cluster("aks-prefix", prefix)))
    emu.stats.reset()
    found = snat("aks-prefix")
    assert found["status"] == "detected", found
    prefixes = f"/subscriptions/{SUB}/resourceGroups/rg-ips/providers/Microsoft.Network/publicIPPrefixes"
    assert commands(found) == [
        "az network public-ip prefix create --resource-group rg-ips --name aks-prefix-outbound-prefix-2 "
        "--location westeurope --length 31 --version IPv4",
        f"az aks update --resource-group rg-snat --name aks-prefix --load-balancer-outbound-ip-prefixes "
        f"{prefixes}/egress-prefix,{prefixes}/aks-prefix-outbound-prefix-2 --load-balancer-outbound-ports 8000",
    ]
    assert "capacity = 64,000 x 2 IP(s) / 4000 = 32 nodes" in details(found)
    assert not any("managed-outbound-ip-count" in r or "outbound-ips " in r for r in found["remediation"])
    reads = emu.stats.snapshot().to_json()["callsByResource"]
    assert [c["count"] for c in reads if c["operation"] == "PublicIPPrefixes.Get"] == [1]  # read, and once


def test_prefix_big_enough_only_raises_the_ports(emulator: Callable[..., Emulator]) -> None:
    prefix = {"outboundIPPrefixes": [{"name": "egress-prefix", "resourceGroup": "rg-ips", "ipPrefix": "20.9.8.0/30"}]}
    emulator(fleet(lb_cluster("aks-prefix4", prefix)))
    found = snat("aks-prefix4")
    assert commands(found) == [
        "az aks update --resource-group rg-snat --name aks-prefix4 --load-balancer-outbound-ports 8000"]


def test_unreadable_prefix_is_unknown_without_failures_and_unchecked_with_them(
        emulator: Callable[..., Emulator]) -> None:
    prefix = {"outboundIPPrefixes": [{"name": "egress-prefix", "resourceGroup": "rg-ips", "ipPrefix": "20.9.8.0/30"}]}
    emu = emulator(fleet(lb_cluster("aks-quiet", prefix, failed=0.0), lb_cluster("aks-busy", prefix)))
    emu.faults.add(403, operation="PublicIPPrefixes.Get", count=None)
    quiet = snat("aks-quiet")
    assert quiet["status"] == "unknown", quiet
    assert "403" in quiet["reason"]
    busy = snat("aks-busy")
    assert busy["status"] == "detected", busy
    assert any("403" in u["reason"] for u in busy["unchecked"])
    assert not any("managed-outbound-ip-count" in r for r in busy["remediation"])


def test_healthy_load_balancer_is_clear(emulator: Callable[..., Emulator]) -> None:
    emulator(fleet(lb_cluster("aks-fine", {"managedOutboundIPCount": 2}, failed=0.0)))
    assert snat("aks-fine")["status"] == "clear"


# ------------------------------------------------------------------ NAT gateways: every one is read


def nat_cluster(*, b_failed: float, b_prefixes: bool = False) -> dict[str, Any]:
    vnet = {"name": "vnet-nat", "resourceGroup": "rg-egress", "addressSpace": ["10.40.0.0/16"],
            "subnets": [{"name": "snet-a", "addressPrefix": "10.40.0.0/22", "natGateway": "natgw-a"},
                        {"name": "snet-b", "addressPrefix": "10.40.4.0/22", "natGateway": "natgw-b"}]}
    gateway_b: dict[str, Any] = {"name": "natgw-b", "resourceGroup": "rg-egress", "metrics": nat_series(b_failed)}
    if b_prefixes:
        gateway_b |= {"publicIpCount": 0,
                      "publicIpPrefixes": [{"name": "natgw-b-prefix", "ipPrefix": "20.7.7.0/30"}]}
    return {"name": "aks-nat", "resourceGroup": "rg-snat", "location": "westeurope",
            "outboundType": "userAssignedNATGateway", "vnet": vnet, "nicNsg": False,
            "natGateway": {"name": "natgw-a", "resourceGroup": "rg-egress", "publicIpCount": 2},
            "natGateways": [gateway_b],
            "metrics": {"natGateway": nat_series(0)},
            "agentPools": [{"name": "poola", "count": 2, "subnet": "snet-a"},
                           {"name": "poolb", "count": 2, "subnet": "snet-b"}]}


def test_exhaustion_on_the_second_nat_gateway_is_detected_with_its_own_fix(
        emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet(nat_cluster(b_failed=7)))
    found = snat("aks-nat")
    assert found["status"] == "detected", found
    assert "natgw-b" in found["summary"]
    assert "natgw-a" not in found["summary"]
    assert commands(found) == [
        "az network public-ip create --resource-group rg-egress --name natgw-b-pip-2 --location westeurope "
        "--sku Standard --allocation-method Static --version IPv4",
        f"az network nat gateway update --resource-group rg-egress --name natgw-b --public-ip-addresses "
        f"{NET}/publicIPAddresses/natgw-b-pip-0 {NET}/publicIPAddresses/natgw-b-pip-2",
    ]
    assert any(e["resource"] == f"{NET}/natGateways/natgw-a" for e in found["evidence"])  # both were read
    emu.state.set_metrics(f"{NET}/natGateways/natgw-b", nat_series(0))
    assert snat("aks-nat")["status"] == "clear"


def test_prefix_only_nat_gateway_gets_another_prefix(emulator: Callable[..., Emulator]) -> None:
    emulator(fleet(nat_cluster(b_failed=3, b_prefixes=True)))
    found = snat("aks-nat")
    assert found["status"] == "detected", found
    assert commands(found) == [
        "az network public-ip prefix create --resource-group rg-egress --name natgw-b-prefix-2 --location "
        "westeurope --length 31 --version IPv4",
        f"az network nat gateway update --resource-group rg-egress --name natgw-b --public-ip-prefixes "
        f"{NET}/publicIPPrefixes/natgw-b-prefix {NET}/publicIPPrefixes/natgw-b-prefix-2",
    ]
    assert any("64,512 ports x 4 IP(s) = 258,048 SNAT ports" in d for d in details(found))


def test_unreadable_nat_gateway_is_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet(nat_cluster(b_failed=0)))
    emu.faults.add(403, operation="NatGateways.Get", resource=f"{NET}/natGateways/natgw-b", count=None)
    found = snat("aks-nat")
    assert found["status"] == "unknown", found
    assert "natgw-b" in found["reason"]
    assert "403" in found["reason"]
    assert [u["subject"] for u in found["unchecked"]] == [f"{NET}/natGateways/natgw-b"]


def test_unreadable_nat_gateway_metrics_beside_exhaustion_elsewhere(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet(nat_cluster(b_failed=9)))
    emu.faults.add(403, operation="Metrics.List", resource=f"{NET}/natGateways/natgw-a", count=None)
    found = snat("aks-nat")
    assert found["status"] == "detected", found
    assert [u["subject"] for u in found["unchecked"]] == [f"{NET}/natGateways/natgw-a"]


def test_managed_nat_gateway_fix_raises_the_managed_count(emulator: Callable[..., Emulator]) -> None:
    cluster = {"name": "aks-mnat", "resourceGroup": "rg-snat", "location": "westeurope",
               "outboundType": "managedNATGateway", "natGateway": {"publicIpCount": 2},
               "metrics": {"natGateway": nat_series(4)}}
    emulator(fleet(cluster))
    found = snat("aks-mnat")
    assert found["status"] == "detected", found
    assert commands(found) == [
        "az aks update --resource-group rg-snat --name aks-mnat --nat-gateway-managed-outbound-ip-count 3"]


# ------------------------------------------------------------------ partial inputs through the real SDK


def test_zero_allocated_ports_under_the_default_table_is_unknown(emulator: Callable[..., Emulator]) -> None:
    cluster = lb_cluster("aks-zero", {"managedOutboundIPCount": 1}, failed=0.0)
    cluster["loadBalancerProfile"]["allocatedOutboundPorts"] = 0
    cluster["metrics"]["loadBalancer"] = lb_series(0.0, used=10.0, allocated=0.0)
    emulator(fleet(cluster))
    found = snat("aks-zero")
    assert found["status"] == "unknown", found
    assert "0 allocated SNAT ports" in found["reason"]


def test_missing_connection_metric_is_unknown(emulator: Callable[..., Emulator]) -> None:
    cluster = lb_cluster("aks-nodata", {"managedOutboundIPCount": 1}, failed=0.0)
    cluster["metrics"]["loadBalancer"] = [s for s in lb_series(0.0) if s["name"] != "SnatConnectionCount"]
    emulator(fleet(cluster))
    found = snat("aks-nodata")
    assert found["status"] == "unknown", found
    assert "SnatConnectionCount" in found["reason"]


def test_throttled_metrics_past_retries_are_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet(lb_cluster("aks-throttled", {"managedOutboundIPCount": 1}, failed=0.0)))
    emu.faults.add(429, operation="Metrics.List", count=None, retry_after=1)
    found = snat("aks-throttled")
    assert found["status"] == "unknown", found
    assert "429" in found["reason"]


def test_one_prefix_read_serves_snat_and_authorized_ranges(emulator: Callable[..., Emulator]) -> None:
    """Both causes read the prefix (its size; its range): one GET, and neither gets the other's value."""
    prefix = {"outboundIPPrefixes": [{"name": "egress-prefix", "resourceGroup": "rg-ips", "ipPrefix": "20.9.8.0/30"}]}
    cluster = lb_cluster("aks-ranges", prefix) | {"apiServerAccessProfile": {"authorizedIpRanges": ["20.9.8.0/24"]}}
    emu = emulator(fleet(cluster))
    emu.stats.reset()
    settings = Settings.from_env({**os.environ, "NODE_PROBES": "off"})
    clients = ArmClients(settings)
    try:
        report = diagnose(cluster_id("aks-ranges"), settings=settings, clients=clients, probes=False).report
    finally:
        clients.close()
    by_id = {c["id"]: c for c in report["causes"]}
    assert by_id["snat-port-exhaustion"]["status"] == "detected", by_id["snat-port-exhaustion"]
    assert "capacity = 64,000 x 4 IP(s) / 4000 = 64 nodes" in details(by_id["snat-port-exhaustion"])
    ranges = by_id.get("authorized-ip-ranges-exclude-egress")
    assert ranges is not None
    assert ranges["status"] == "clear", ranges
    reads = emu.stats.snapshot().to_json()["callsByResource"]
    assert [c["count"] for c in reads if c["operation"] == "PublicIPPrefixes.Get"] == [1]
