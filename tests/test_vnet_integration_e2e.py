"""API Server VNet Integration end to end: real SDK clients -> ARM emulator -> `diagnose`.

A VNet-integrated cluster uses no tunnel: the tunnel causes are `not_applicable`, and nsg-blocks-10250
checks what this mode needs instead (the API server subnet reaching every node on TCP 10250, and the NSG
rules Microsoft documents for that subnet), read from the cluster's real ARM shape
(`apiServerAccessProfile.enableVnetIntegration` / `subnetId`). Azure CNI Overlay keeps the tunnel.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from devtools.emulator.arm import Emulator
from shared.azure.clients import ArmClients
from shared.diagnose import Diagnosis, diagnose
from shared.settings import Settings
from tests.emulator_fixtures import REPO, emulator_fixture  # noqa: F401 (fixture)
from tests.netns_lab import netns_unavailable_reason

ACCESS_SCENARIO = REPO / "devtools" / "emulator" / "scenarios" / "access.json"
API_PREFIX = "10.30.4.0/28"


def deny(name: str, priority: int, port: str, *, direction: str = "Inbound", source: str = "*") -> dict[str, Any]:
    return {"name": name, "properties": {"priority": priority, "direction": direction, "access": "Deny",
                                         "protocol": "Tcp", "sourceAddressPrefix": source, "sourcePortRange": "*",
                                         "destinationAddressPrefix": "*", "destinationPortRange": port}}


def run(emu: Emulator, name: str = "aks-vnet-int", *, probes: bool = False) -> Diagnosis:
    settings = Settings.from_env({**os.environ, "NODE_PROBES": "all"})  # symptom on every node; probes=False
    clients = ArmClients(settings)
    cluster = next(str(c.id) for c in emu.state.fleet.clusters if c.name == name)
    try:
        return diagnose(cluster, settings=settings, clients=clients, probes=probes)
    finally:
        clients.close()


def cause(diagnosis: Diagnosis, cause_id: str) -> dict[str, Any]:
    return next(c for c in diagnosis.report["causes"] if c["id"] == cause_id)


def test_tunnel_causes_are_not_applicable_and_the_api_server_subnet_is_checked(
        emulator: Callable[..., Emulator]) -> None:
    found = run(emulator(ACCESS_SCENARIO))
    for tunnel_cause in ("egress-tunnel-port-blocked", "konnectivity-agent-unhealthy"):
        result = cause(found, tunnel_cause)
        assert result["status"] == "not_applicable", result
        assert "VNet Integration" in result["summary"]
    nsg = cause(found, "nsg-blocks-10250")
    assert nsg["status"] == "clear", nsg
    assert "API server subnet reaches every node" in nsg["summary"]
    assert cause(found, "authorized-ip-ranges-exclude-egress")["status"] == "not_applicable"


def test_node_nsg_denying_the_api_server_subnet_is_detected_then_clears(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(ACCESS_SCENARIO)
    emu.state.add_nsg_rule("nsg-aks", deny("deny-apiserver-kubelet", 300, "10250", source=API_PREFIX),
                           caller="jane.doe@contoso.com")
    nsg = cause(run(emu), "nsg-blocks-10250")
    assert nsg["status"] == "detected", nsg
    assert "deny-apiserver-kubelet" in nsg["summary"]
    assert any("TCP 10250 from the API server subnet" in e["detail"] for e in nsg["evidence"])
    assert any("--nsg-name nsg-aks" in r and "--priority 299" in r and f"--source-address-prefixes {API_PREFIX}" in r
               for r in nsg["remediation"])
    emu.state.remove_nsg_rule("nsg-aks", "deny-apiserver-kubelet")
    assert cause(run(emu), "nsg-blocks-10250")["status"] == "clear"


def test_api_server_subnet_nsg_blocking_the_documented_ports_is_detected(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(ACCESS_SCENARIO)
    emu.state.add_nsg_rule("nsg-apiserver", deny("deny-https-in", 400, "443", source="VirtualNetwork"))
    nsg = cause(run(emu), "nsg-blocks-10250")
    assert nsg["status"] == "detected", nsg
    assert any("TCP 443 from node" in e["detail"] for e in nsg["evidence"])
    emu.state.set_nsg_rules("nsg-apiserver", [deny("deny-probe", 400, "9988", source="AzureLoadBalancer")])
    nsg = cause(run(emu), "nsg-blocks-10250")
    assert nsg["status"] == "detected", nsg
    assert any("TCP 9988 from AzureLoadBalancer" in e["detail"] for e in nsg["evidence"])


def test_api_server_subnet_nsg_forbidden_is_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(ACCESS_SCENARIO)
    nsg_id = next(n.id for n in emu.state.fleet.nsgs if n.name == "nsg-apiserver")
    emu.faults.add(403, operation="NetworkSecurityGroups.Get", resource=nsg_id, count=None)
    nsg = cause(run(emu), "nsg-blocks-10250")
    assert nsg["status"] == "unknown", nsg
    assert "403" in nsg["reason"]


def test_azure_cni_overlay_keeps_the_tunnel_causes(emulator: Callable[..., Emulator]) -> None:
    found = run(emulator(ACCESS_SCENARIO), "aks-vnet-overlay")
    for tunnel_cause in ("egress-tunnel-port-blocked", "konnectivity-agent-unhealthy"):
        result = cause(found, tunnel_cause)
        assert "VNet Integration: the API server reaches" not in result["summary"], result


def test_managed_vnet_api_server_subnet_is_found_by_its_delegation(emulator: Callable[..., Emulator]) -> None:
    """AKS-managed VNet: no subnetId is reported, so the subnet delegated to AKS in the node VNet is used."""
    emu = emulator(ACCESS_SCENARIO)
    found = run(emu, "aks-vnet-managed")
    nsg = cause(found, "nsg-blocks-10250")
    assert nsg["status"] == "clear", nsg
    assert any(e["resource"].endswith("/subnets/aks-apiserver-subnet") for e in nsg["evidence"])
    assert cause(found, "egress-tunnel-port-blocked")["status"] == "not_applicable"


# ------------------------------------------------------------------ the symptom without a tunnel

# Drops TCP 10250 unless it comes from the node subnet: harmless with a tunnel (agents dial from a node), fatal
# with VNet integration (the API server dials from its own subnet, 10.30.4.0/28).
ONLY_NODES = ["-A INPUT -p tcp -m tcp --dport 10250 ! -s 10.30.0.0/22 -j DROP"]


def _symptom(found: Diagnosis) -> dict[str, str]:
    return {n["node"]: n["result"] for n in found.report["symptom"].get("nodes", [])}


# The same block named directly, in the subset of iptables the in-process responder models.
FROM_API_SUBNET = ["-A INPUT -p tcp -m tcp --dport 10250 -s 10.30.4.0/28 -j DROP"]


def _block_from_api_subnet(emu: Emulator, rules: list[str]) -> list[str]:
    names = [n.name for c in emu.state.fleet.clusters if c.name == "aks-vnet-int" for n in c.nodes]
    emu.state.patch_node_sim(names[1], iptables=rules)
    return names


def test_symptom_comes_from_the_api_server_subnet_without_agents(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(ACCESS_SCENARIO)
    names = _block_from_api_subnet(emu, FROM_API_SUBNET)
    found = run(emu)
    assert _symptom(found) == {names[0]: "ok", names[1]: "timeout", names[2]: "ok"}, found.report["symptom"]
    assert emu.kube is not None
    assert all("VNet Integration" in how for how in emu.kube.dials), emu.kube.dials
    assert cause(found, "konnectivity-agent-unhealthy")["status"] == "not_applicable"


@pytest.mark.kernel
def test_symptom_from_the_api_server_namespace_in_the_kernel(emulator: Callable[..., Emulator]) -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"kernel test skipped: {reason}")
    emu = emulator(ACCESS_SCENARIO, prefer_kernel=True)
    names = _block_from_api_subnet(emu, ONLY_NODES)
    found = run(emu, probes=True)
    assert _symptom(found) == {names[0]: "ok", names[1]: "timeout", names[2]: "ok"}, found.report["symptom"]
    # The node probe's iptables-save, judged from the API server's subnet, explains the timeout.
    iptables = cause(found, "iptables-blocks-10250")
    assert iptables["status"] == "detected", iptables
    assert any(names[1] in e["resource"] and "10.30.4." in e["detail"] for e in iptables["evidence"]), iptables
    assert cause(found, "egress-tunnel-port-blocked")["status"] == "not_applicable"
    assert emu.kube is not None
    assert set(emu.kube.dials) == {"kernel (nc from the API server's namespace: API Server VNet Integration, "
                                   "no tunnel)"}
    emu.state.patch_node_sim(names[1], iptables=None)
    assert set(_symptom(run(emu)).values()) == {"ok"}
