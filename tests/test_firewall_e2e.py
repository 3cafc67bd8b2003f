"""Egress through Azure Firewall end to end: real SDK clients -> local ARM emulator (Firewall Policy, rule
collection groups, IP groups, virtual-appliance next hops) -> diagnose.

Hub-and-spoke: the spoke VNet 10.20.0.0/16 peers with a hub whose AzureFirewallSubnet holds the firewall
at 10.0.1.4; the node subnet's route table sends 0.0.0.0/0 there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from devtools.emulator.arm import Emulator
from devtools.emulator.nodebridge import node_state
from shared.azure.clients import ArmClients
from shared.diagnose import Diagnosis, diagnose
from shared.settings import Settings
from tests.emulator_fixtures import emulator_fixture  # noqa: F401 (fixture)
from tests.netns_lab import netns_unavailable_reason

SUB = "3f1a2b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"
EGRESS = "egress-tunnel-port-blocked"
SPOKE = "10.20.0.0/16"
BASE = "fwpol-base"
CHILD = "fwpol-aks"


def _policy_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg-hub/providers/Microsoft.Network/firewallPolicies/{name}"


def _allow_aks_group(**source: Any) -> dict[str, Any]:
    return {"name": "aks-egress", "priority": 300, "ruleCollections": [
        {"name": "aks-api", "priority": 100, "action": "Allow", "rules": [
            {"name": "apiserver", "ruleType": "ApplicationRule", "protocols": [{"protocolType": "Https", "port": 443}],
             "fqdnTags": ["AzureKubernetesService"], **(source or {"sourceAddresses": [SPOKE]})}]},
        {"name": "aks-basics", "priority": 200, "action": "Allow", "rules": [
            {"name": "ntp", "ruleType": "NetworkRule", "ipProtocols": ["UDP"], "sourceAddresses": [SPOKE],
             "destinationAddresses": ["*"], "destinationPorts": ["123"]}]}]}


def _deny_443_group() -> dict[str, Any]:
    return {"name": "block-web", "priority": 200, "ruleCollections": [
        {"name": "no-https", "priority": 100, "action": "Deny", "rules": [
            {"name": "deny-443", "ruleType": "NetworkRule", "ipProtocols": ["TCP"], "sourceAddresses": ["*"],
             "destinationAddresses": ["*"], "destinationPorts": ["443"]}]}]}


def scenario(firewall: dict[str, Any] | None, *, next_hop: str = "10.0.1.4",
             policies: Sequence[dict[str, Any]] = (), ip_groups: Sequence[dict[str, Any]] = (),
             node: dict[str, Any] | None = None) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": "aks-spoke", "resourceGroup": "rg-spoke", "location": "eastus",
        "outboundType": "userDefinedRouting",
        "vnet": {"name": "vnet-spoke", "addressSpace": [SPOKE],
                 "peerings": [{"name": "to-hub", "remoteAddressSpace": ["10.0.0.0/16"]}],
                 "subnets": [{"name": "snet-aks", "addressPrefix": "10.20.0.0/22", "routeTable": "rt-aks"}]},
        "routeTables": [{"name": "rt-aks", "routes": [
            {"name": "default-egress", "addressPrefix": "0.0.0.0/0", "nextHopType": "VirtualAppliance",
             "nextHopIpAddress": next_hop}]}],
        "firewallPolicies": list(policies), "ipGroups": list(ip_groups),
        "agentPools": [{"name": "nodepool1", "count": 2, "node": node or {}}],
    }
    if firewall is not None:
        cluster["firewall"] = {"name": "fw-hub", "resourceGroup": "rg-hub", "privateIp": "10.0.1.4", **firewall}
    return {"subscriptions": [{"id": SUB, "displayName": "spoke", "clusters": [cluster]}]}


def run(emu: Emulator, *, probes: bool) -> Diagnosis:
    settings = Settings.from_env({**os.environ, "NODE_PROBES": "all"})
    clients = ArmClients(settings)
    try:
        return diagnose(emu.state.fleet.clusters[0].id, settings=settings, clients=clients, probes=probes)
    finally:
        clients.close()


def egress_of(found: Diagnosis) -> dict[str, Any]:
    return next(c for c in found.report["causes"] if c["id"] == EGRESS)


def text_of(cause: dict[str, Any]) -> str:
    return " ".join([cause["summary"], cause.get("reason") or "", *(e["detail"] for e in cause["evidence"]),
                     *(e["resource"] for e in cause["evidence"])])


def test_policy_that_allows_aks_with_a_probe_is_clear(emulator: Callable[..., Emulator]) -> None:
    """Parent policy + child policy, the node subnet in an IP group, groups listed one per page."""
    nodes_group = {"name": "ipg-aks-nodes", "resourceGroup": "rg-hub", "ipAddresses": ["10.20.0.0/22"]}
    group_id = f"/subscriptions/{SUB}/resourceGroups/rg-hub/providers/Microsoft.Network/ipGroups/ipg-aks-nodes"
    policies: list[dict[str, Any]] = [
        {"name": BASE, "resourceGroup": "rg-hub", "threatIntelMode": "Deny", "ruleCollectionGroups": [
            {"name": "platform", "priority": 100, "ruleCollections": [
                {"name": "dns", "priority": 100, "action": "Allow", "rules": [
                    {"name": "dns", "ruleType": "NetworkRule", "ipProtocols": ["UDP", "TCP"], "sourceAddresses": ["*"],
                     "destinationAddresses": ["168.63.129.16"], "destinationPorts": ["53"]}]}]}]},
        {"name": CHILD, "resourceGroup": "rg-hub", "basePolicy": BASE, "dnsProxy": True,
         "ruleCollectionGroups": [_allow_aks_group(sourceIpGroups=[group_id]), _deny_other_group()]},
    ]
    emu = emulator(scenario({"firewallPolicy": CHILD}, policies=policies, ip_groups=[nodes_group]), page_size=1)
    found = egress_of(run(emu, probes=True))
    assert found["status"] == "clear", found
    assert "threat intelligence" in text_of(found)  # Deny mode is a note, never the verdict
    assert emu.stats.calls("FirewallPolicies.Get") == 2  # child, then its parent
    assert emu.stats.calls("FirewallPolicyRuleCollectionGroups.List") >= 3  # paged, one group per page
    assert emu.stats.calls("IpGroups.Get") == 1


def _deny_other_group() -> dict[str, Any]:
    """A catch-all web deny as an *application* rule, after the AKS allow (a network deny-all would be
    processed before every application rule and block the API server, as Azure does)."""
    return {"name": "zz-deny-rest", "priority": 4000, "ruleCollections": [
        {"name": "deny-all", "priority": 4000, "action": "Deny", "rules": [
            {"name": "everything", "ruleType": "ApplicationRule", "sourceAddresses": ["*"], "targetFqdns": ["*"],
             "protocols": [{"protocolType": "Https", "port": 443}, {"protocolType": "Http", "port": 80}]}]}]}


def test_policy_that_allows_aks_without_a_probe_is_unknown(emulator: Callable[..., Emulator]) -> None:
    policies = [{"name": CHILD, "resourceGroup": "rg-hub", "ruleCollectionGroups": [_allow_aks_group()]}]
    emu = emulator(scenario({"firewallPolicy": CHILD}, policies=policies))
    found = egress_of(run(emu, probes=False))
    assert found["status"] == "unknown", found
    assert "not confirmed from a node" in found["reason"]


def test_policy_denying_443_is_detected_naming_the_rule_collection(emulator: Callable[..., Emulator]) -> None:
    """The deny is in a network rule collection with a worse group priority than the application allow:
    network rules are processed first anyway."""
    policies = [{"name": CHILD, "resourceGroup": "rg-hub",
                 "ruleCollectionGroups": [_allow_aks_group(), _deny_443_group()]}]
    emu = emulator(scenario({"firewallPolicy": CHILD}, policies=policies))
    found = egress_of(run(emu, probes=False))
    assert found["status"] == "detected", found
    said = text_of(found)
    assert "no-https" in said
    assert "block-web" in said
    assert "fwpol-aks" in said
    assert found["remediation"]
    emu.state.set_rule_collection_groups(CHILD, [_allow_aks_group()])
    assert egress_of(run(emu, probes=False))["status"] == "unknown"  # allowed by rules, not confirmed


def test_parent_policy_deny_wins_over_child_allow(emulator: Callable[..., Emulator]) -> None:
    policies = [{"name": BASE, "resourceGroup": "rg-hub", "ruleCollectionGroups": [_deny_443_group()]},
                {"name": CHILD, "resourceGroup": "rg-hub", "basePolicy": BASE,
                 "ruleCollectionGroups": [_allow_aks_group()]}]
    emu = emulator(scenario({"firewallPolicy": CHILD}, policies=policies))
    found = egress_of(run(emu, probes=False))
    assert found["status"] == "detected", found
    assert "fwpol-base" in text_of(found)


def test_probe_blocked_through_a_denying_policy_is_one_finding(emulator: Callable[..., Emulator]) -> None:
    policies = [{"name": CHILD, "resourceGroup": "rg-hub", "ruleCollectionGroups": [_deny_443_group()]}]
    emu = emulator(scenario({"firewallPolicy": CHILD}, policies=policies, node={"egressBlocked": ["tcp/443"]}))
    found = run(emu, probes=True)
    cause = egress_of(found)
    assert cause["status"] == "detected", cause
    result = next(r for r in found.results if str(r.id) == EGRESS)
    assert result.subjects == (f"{_policy_id(CHILD)}/ruleCollectionGroups/block-web",)
    assert len(result.affected[result.subjects[0]]) == 2


def test_classic_rule_for_another_subnet_does_not_allow_the_nodes(emulator: Callable[..., Emulator]) -> None:
    classic = {"applicationRuleCollections": [
        {"name": "aks-fqdns", "priority": 100, "action": "Allow", "rules": [
            {"name": "apiserver", "protocols": [{"protocolType": "Https", "port": 443}],
             "sourceAddresses": ["10.99.0.0/16"], "fqdnTags": ["AzureKubernetesService"]}]}]}
    emu = emulator(scenario(classic))
    found = egress_of(run(emu, probes=False))
    assert found["status"] == "detected", found
    assert "default deny" in text_of(found)
    emu.state.set_firewall_rules("fw-hub", application=[{
        "name": "aks-fqdns", "priority": 100, "action": "Allow", "rules": [
            {"name": "apiserver", "protocols": [{"protocolType": "Https", "port": 443}],
             "sourceAddresses": [SPOKE], "fqdnTags": ["AzureKubernetesService"]}]}])
    fixed = egress_of(run(emu, probes=True))
    assert fixed["status"] == "clear", fixed


def test_virtual_appliance_next_hop_without_probes_is_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(scenario(None, next_hop="10.20.8.4"))
    found = egress_of(run(emu, probes=False))
    assert found["status"] == "unknown", found
    assert "10.20.8.4" in found["reason"]


def test_virtual_appliance_next_hop_with_a_probe_is_decided_by_the_probe(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(scenario(None, next_hop="10.20.8.4"))
    assert egress_of(run(emu, probes=True))["status"] == "clear"
    blocked = emulator(scenario(None, next_hop="10.20.8.4", node={"egressBlocked": ["tcp/443"]}))
    assert egress_of(run(blocked, probes=True))["status"] == "detected"


@pytest.mark.parametrize("operation", ["FirewallPolicies.Get", "FirewallPolicyRuleCollectionGroups.List"])
def test_forbidden_policy_read(emulator: Callable[..., Emulator], operation: str) -> None:
    """With a probe that reached the API server it is a note; without one, unknown naming the 403."""
    policies = [{"name": CHILD, "resourceGroup": "rg-hub", "ruleCollectionGroups": [_allow_aks_group()]}]
    emu = emulator(scenario({"firewallPolicy": CHILD}, policies=policies))
    emu.faults.add(403, operation=operation, count=None)
    found = egress_of(run(emu, probes=True))
    assert found["status"] == "clear", found
    assert "403" in text_of(found)
    unprobed = egress_of(run(emu, probes=False))
    assert unprobed["status"] == "unknown", unprobed
    assert "403" in unprobed["reason"]


def test_parent_policy_loop_is_unknown_not_followed(emulator: Callable[..., Emulator]) -> None:
    policies = [{"name": CHILD, "resourceGroup": "rg-hub", "basePolicy": BASE,
                 "ruleCollectionGroups": [_allow_aks_group()]},
                {"name": BASE, "resourceGroup": "rg-hub", "basePolicy": CHILD, "ruleCollectionGroups": []}]
    emu = emulator(scenario({"firewallPolicy": CHILD}, policies=policies))
    found = egress_of(run(emu, probes=False))
    assert found["status"] == "unknown", found
    assert "loop" in found["reason"]


# ------------------------------------------------------------------ real node namespaces (root only)


@pytest.fixture
def kernel(emulator: Callable[..., Emulator]) -> Callable[..., Emulator]:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"kernel test skipped: {reason}")
    return lambda scn: emulator(scn, prefer_kernel=True)


def _nodes(emu: Emulator) -> list[str]:
    return [n.name for n in emu.state.fleet.clusters[0].nodes]


@pytest.mark.kernel
def test_tls_inspection_on_the_path_is_detected_from_the_node(kernel: Callable[..., Emulator]) -> None:
    """The hub's proxy answers 443 with another CA's certificate and no ALPN: TCP reaches, Konnectivity breaks."""
    policies = [{"name": CHILD, "resourceGroup": "rg-hub", "ruleCollectionGroups": [_allow_aks_group()]}]
    emu = kernel(scenario({"firewallPolicy": CHILD}, policies=policies))
    for name in _nodes(emu):
        ref = emu.state.node_by_name(name)
        assert ref is not None
        emu.state.update_node(replace(node_state(ref.node), tls_inspected=True))
    found = run(emu, probes=True)
    cause = egress_of(found)
    assert cause["status"] == "detected", cause
    assert "Contoso TLS Inspection" in text_of(cause)
    assert any("TLS inspection" in r for r in cause["remediation"])
    result = next(r for r in found.results if str(r.id) == EGRESS)
    assert result.subjects == (_policy_id(CHILD),)  # the firewall on the path is what to fix


@pytest.mark.kernel
def test_aks_link_udp_dropped_is_unknown_and_answered_is_clear(kernel: Callable[..., Emulator]) -> None:
    dropped = scenario(None, next_hop="10.20.8.4", node={"egressBlocked": ["udp/1194"], "containers": ["aks-link"]})
    dropped["subscriptions"][0]["clusters"][0]["tunnel"] = "aks-link"
    emu = kernel(dropped)
    cause = egress_of(run(emu, probes=True))
    assert cause["status"] == "unknown", cause
    assert "silence proves nothing" in cause["reason"]
    for name in _nodes(emu):
        emu.state.patch_node_sim(name, egressBlocked=[])
    answered = egress_of(run(emu, probes=True))
    assert answered["status"] == "clear", answered
