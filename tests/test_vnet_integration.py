"""API Server VNet Integration on hand-built snapshots: the API-server-subnet flows merged into
nsg-blocks-10250, the tunnel flag, and Microsoft's Konnectivity exception."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shared.azure import rest
from shared.azure.egress_ips import tunnel_exception
from shared.causes import REGISTRY, apiserver_subnet, run_cause
from shared.model import CauseId, CauseResult, Status
from shared.netrules.nsg_types import NetworkSecurityGroup, SecurityRule
from shared.snapshot import ClusterSnapshot, Subnet, Unavailable
from tests.builders import NSG_ID, SUB, VNET, probe, rule, snapshot

API_SUBNET = f"{VNET}/subnets/apiserver-subnet"
API_NSG = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/api-nsg"
API_PREFIX = "10.225.0.0/28"
NSG_CAUSE = next(c for c in REGISTRY if c.id is CauseId.NSG)


def api_rule(name: str, priority: int, access: str, port: str, *, direction: str = "Inbound",
             source: str = "*", destination: str = "*") -> SecurityRule:
    return SecurityRule(name=name, priority=priority, direction=direction, access=access,  # type: ignore[arg-type]
                        protocol="Tcp", source_prefixes=(source,), destination_prefixes=(destination,),
                        destination_ports=(port,), id=f"{API_NSG}/securityRules/{name}")


def integrated(*, api_rules: tuple[SecurityRule, ...] = (), api_nsg: bool = True, **overrides: Any) -> ClusterSnapshot:
    base = snapshot(**{k: v for k, v in overrides.items() if k == "subnet_rules"})
    assert isinstance(base.nsgs, dict)
    nsgs = dict(base.nsgs)
    if api_nsg:
        nsgs[API_NSG] = NetworkSecurityGroup(API_NSG, "api-nsg", api_rules)
    subnets = {**base.subnets, API_SUBNET.lower(): Subnet(API_SUBNET, (API_PREFIX,), API_NSG if api_nsg else None)}
    rest_overrides = {k: v for k, v in overrides.items() if k != "subnet_rules"}
    return replace(base, nsgs=nsgs, subnets=subnets, api_server_vnet_integration=True,
                   api_server_subnet_id=API_SUBNET, **rest_overrides)


def nsg_result(snap: ClusterSnapshot) -> CauseResult:
    return run_cause(NSG_CAUSE, snap)


def test_default_rules_are_clear_and_say_the_api_server_subnet_was_checked() -> None:
    result = nsg_result(integrated())
    assert result.status is Status.CLEAR, result
    assert "API Server VNet Integration" in result.summary
    assert any(e.resource == API_SUBNET for e in result.evidence)


def test_node_nsg_denying_10250_from_the_api_server_subnet_is_detected() -> None:
    deny = rule("deny-apiserver", 200, "Deny", source=API_PREFIX)
    result = nsg_result(integrated(subnet_rules=(deny,)))
    assert result.status is Status.DETECTED, result
    assert deny.id in result.subjects
    assert result.affected[deny.id] == ("aks-nodepool1-1-vmss000000", "aks-nodepool1-1-vmss000001",
                                        "aks-nodepool1-1-vmss000002")
    assert any("deny-apiserver" in e.detail and "10250" in e.detail for e in result.evidence)
    assert any("--nsg-name agentpool-nsg" in r and "--priority 199" in r and "--source-address-prefixes 10.225.0.0/28"
               in r and "--destination-port-ranges 10250" in r for r in result.remediation)


def test_the_same_snapshot_without_vnet_integration_is_clear() -> None:
    """The deny only names the API server subnet: node-to-node 10250 is untouched, so without VNet
    integration nothing is wrong (the extra flows are what made the test above detect)."""
    deny = rule("deny-apiserver", 100, "Deny", source=API_PREFIX)
    result = nsg_result(replace(integrated(subnet_rules=(deny,)), api_server_vnet_integration=False))
    assert result.status is Status.CLEAR
    assert "API Server VNet Integration" not in result.summary


def test_api_server_subnet_nsg_denying_outbound_10250_is_detected_with_its_fix() -> None:
    deny = api_rule("deny-out-kubelet", 200, "Deny", "10250", direction="Outbound")
    result = nsg_result(integrated(api_rules=(deny,)))
    assert result.status is Status.DETECTED
    assert result.subjects == (deny.id,)
    assert any("--nsg-name api-nsg" in r and "--direction Outbound" in r and "--priority 199" in r
               for r in result.remediation)


@pytest.mark.parametrize(("port", "source"), [("443", "VirtualNetwork"), ("4443", "10.224.0.0/16"),
                                              ("9988", "AzureLoadBalancer")])
def test_documented_api_server_subnet_rules_are_checked(port: str, source: str) -> None:
    deny = api_rule(f"deny-{port}", 300, "Deny", port, source=source)
    result = nsg_result(integrated(api_rules=(deny,)))
    assert result.status is Status.DETECTED, result
    assert result.subjects == (deny.id,)
    assert any(f"TCP {port}" in e.detail for e in result.evidence)


def test_a_deny_on_part_of_the_api_server_subnet_is_found() -> None:
    """Any address of the subnet may be the API server's: a rule splitting the subnet is still evaluated."""
    deny = rule("deny-upper-half", 100, "Deny", source="10.225.0.8/29")
    assert nsg_result(integrated(subnet_rules=(deny,))).status is Status.DETECTED


def test_unreadable_api_server_subnet_nsg_is_unknown_with_the_nodes_unchecked() -> None:
    snap = replace(integrated(api_nsg=False), subnets={**integrated().subnets,
                                                       API_SUBNET.lower(): Subnet(API_SUBNET, (API_PREFIX,), API_NSG)},
                   nsg_errors={API_NSG.lower(): "access denied (403 AuthorizationFailed) reading NSG api-nsg"})
    result = nsg_result(snap)
    assert result.status is Status.UNKNOWN
    assert "403" in (result.reason or "")
    assert set(result.unchecked) == {"aks-nodepool1-1-vmss000000", "aks-nodepool1-1-vmss000001",
                                     "aks-nodepool1-1-vmss000002"}


def test_unreadable_api_nsg_beside_a_node_to_node_deny_stays_detected() -> None:
    deny = rule("deny-all-kubelet", 100, "Deny")
    snap = replace(integrated(subnet_rules=(deny,), api_nsg=False),
                   subnets={**integrated().subnets, API_SUBNET.lower(): Subnet(API_SUBNET, (API_PREFIX,), API_NSG)},
                   nsg_errors={API_NSG.lower(): "403"})
    result = nsg_result(snap)
    assert result.status is Status.DETECTED
    assert result.unchecked


def test_api_server_subnet_not_collected_is_unknown() -> None:
    snap = replace(integrated(), subnets={k: v for k, v in integrated().subnets.items() if k != API_SUBNET.lower()})
    result = nsg_result(snap)
    assert result.status is Status.UNKNOWN
    assert "API server subnet" in (result.reason or "")


def test_vnet_integration_without_a_subnet_id_is_unknown() -> None:
    result = nsg_result(replace(integrated(), api_server_subnet_id=None))
    assert result.status is Status.UNKNOWN
    assert "no API server" in (result.reason or "")


def test_a_crash_in_the_extension_never_reads_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(_snapshot: ClusterSnapshot) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(apiserver_subnet, "check", boom)
    result = nsg_result(integrated())
    assert result.status is Status.UNKNOWN
    assert "RuntimeError" in (result.reason or "")


def test_node_nsg_unchanged_keeps_the_node_to_node_verdict_first() -> None:
    deny = rule("deny-all-kubelet", 100, "Deny")
    result = nsg_result(integrated(subnet_rules=(deny,)))
    assert result.status is Status.DETECTED
    assert result.subjects[0] == f"{NSG_ID}/securityRules/deny-all-kubelet"


# ------------------------------------------------------------------ tunnel flag and the exception


def access(**fields: Any) -> rest.AccessFacts:
    return rest.AccessFacts(**{"vnet_integration": True, "network_plugin": "azure", **fields})


@pytest.mark.parametrize(("facts", "expected"), [
    (access(), None),
    (access(network_plugin_mode="overlay"), "Azure CNI Overlay"),
    (access(network_plugin="kubenet"), "kubenet"),
    (access(network_plugin="none"), "bring-your-own CNI"),
    (access(network_plugin=""), "not reported"),
    (access(vnet_integration=False, network_plugin_mode="overlay"), None),
])
def test_tunnel_exception(facts: rest.AccessFacts, expected: str | None) -> None:
    got = tunnel_exception(facts)
    assert (got is None) if expected is None else (got is not None and expected in got)


def test_tunnel_not_used_only_with_vnet_integration_and_no_exception() -> None:
    assert snapshot().tunnel_not_used() is None
    assert "VNet Integration" in (integrated().tunnel_not_used() or "")
    assert integrated(tunnel_exception="Azure CNI Overlay").tunnel_not_used() is None


PIP_A = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/pip-a"
PIP_B = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/pip-b"
PREFIX_A = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/publicIPPrefixes/prefix-a"


def test_cluster_facts_read_the_access_profile() -> None:
    facts = rest.cluster_facts({
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c",
        "name": "c", "location": "westeurope",
        "properties": {
            "nodeResourceGroup": "MC_rg_c_westeurope",
            "apiServerAccessProfile": {"authorizedIPRanges": ["73.140.245.0/24", " "], "enableVnetIntegration": True,
                                       "subnetId": API_SUBNET},
            "networkProfile": {"networkPlugin": "azure", "networkPluginMode": "overlay", "outboundType": "loadBalancer",
                               "loadBalancerProfile": {
                                   "effectiveOutboundIPs": [{"id": PIP_A}, {"id": PREFIX_A}],
                                   "outboundIPs": {"publicIPs": [{"id": PIP_A}, {"id": PIP_B}]},
                                   "outboundIPPrefixes": {"publicIPPrefixes": [{"id": PREFIX_A}]}}},
        }})
    assert facts.access == rest.AccessFacts(
        authorized_ip_ranges=("73.140.245.0/24",), vnet_integration=True, api_server_subnet_id=API_SUBNET,
        network_plugin="azure", network_plugin_mode="overlay", lb_outbound_ip_ids=(PIP_A, PIP_B),
        lb_outbound_prefix_ids=(PREFIX_A,))


@pytest.mark.parametrize("cause_id", [CauseId.EGRESS, CauseId.KONNECTIVITY_AGENT])
def test_tunnel_causes_are_not_applicable_without_a_tunnel(cause_id: CauseId) -> None:
    cause = next(c for c in REGISTRY if c.id is cause_id)
    result = run_cause(cause, integrated())
    assert result.status is Status.NOT_APPLICABLE
    assert "VNet Integration" in result.summary


@pytest.mark.parametrize("cause_id", [CauseId.EGRESS, CauseId.KONNECTIVITY_AGENT])
def test_tunnel_causes_still_apply_under_microsofts_exception(cause_id: CauseId) -> None:
    cause = next(c for c in REGISTRY if c.id is cause_id)
    result = run_cause(cause, integrated(tunnel_exception="Azure CNI Overlay"))
    assert result.status is not Status.NOT_APPLICABLE or "VNet Integration" not in result.summary


def test_only_the_node_whose_nic_nsg_denies_is_affected() -> None:
    """Nodes are evaluated per class of what rules can see: a NIC NSG on one node makes it its own class."""
    nic_nsg = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/odd-nic"
    deny = rule("deny-apiserver", 200, "Deny", source=API_PREFIX, nsg_id=nic_nsg)
    base = integrated()
    assert isinstance(base.nsgs, dict)
    assert not isinstance(base.nodes, Unavailable)
    odd = replace(base.nodes[1], nic_nsg_id=nic_nsg)
    snap = replace(base, nodes=(base.nodes[0], odd, base.nodes[2]),
                   nsgs={**base.nsgs, nic_nsg: NetworkSecurityGroup(nic_nsg, "odd-nic", (deny,))})
    result = nsg_result(snap)
    assert result.status is Status.DETECTED
    assert result.affected == {deny.id: (odd.name,)}


def test_vnet_facts_read_subnet_delegations_and_the_delegated_subnet_is_found() -> None:
    from shared.azure.egress_ips import delegated_subnet

    vnet = rest.vnet_facts({"id": VNET, "properties": {"addressSpace": {"addressPrefixes": ["10.224.0.0/12"]},
                                                      "subnets": [
        {"id": f"{VNET}/subnets/aks-subnet", "properties": {"addressPrefix": "10.224.0.0/16"}},
        {"id": API_SUBNET, "properties": {"addressPrefix": API_PREFIX, "delegations": [
            {"name": "aks", "properties": {"serviceName": "Microsoft.ContainerService/managedClusters"}}]}}]}})
    subnets = {s.id.lower(): s for s in vnet.subnets}
    assert subnets[API_SUBNET.lower()].delegations == ("Microsoft.ContainerService/managedClusters",)
    found = delegated_subnet(subnets)
    assert found is not None
    assert found.id == API_SUBNET
    twice = {**subnets, "other": replace(subnets[API_SUBNET.lower()], id=f"{VNET}/subnets/other")}
    assert delegated_subnet(twice) is None  # two candidates: no guess


# ------------------------------------------------------------------ node firewalls judged from the API server

ONLY_NODES_SAVE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 10250 ! -s 10.224.0.0/16 -j DROP
COMMIT
"""
UFW_ONLY_NODES = """Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), disabled (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
10250/tcp                  ALLOW IN    10.224.0.0/16
"""


def with_probes(snap: ClusterSnapshot, **fields: Any) -> ClusterSnapshot:
    assert not isinstance(snap.nodes, Unavailable)
    return replace(snap, probes={n.name: probe(n.name, **fields) for n in snap.nodes}, probes_mode="all")


@pytest.mark.parametrize(("cause_id", "fields"), [
    (CauseId.IPTABLES, {"iptables_save": ONLY_NODES_SAVE}),
    (CauseId.UFW, {"ufw_status": UFW_ONLY_NODES}),
])
def test_node_firewall_allowing_only_the_nodes_is_detected_under_vnet_integration(
        cause_id: CauseId, fields: dict[str, Any]) -> None:
    """With a tunnel the kubelet's caller is an agent node (allowed); with VNet integration it is the API
    server in 10.225.0.0/28, which the same rule refuses."""
    cause = next(c for c in REGISTRY if c.id is cause_id)
    tunnel = run_cause(cause, with_probes(snapshot(), **fields))
    assert tunnel.status is Status.CLEAR, tunnel
    integrated_result = run_cause(cause, with_probes(integrated(), **fields))
    assert integrated_result.status is Status.DETECTED, integrated_result
    assert "10.225.0." in " ".join(e.detail for e in integrated_result.evidence)


def test_api_server_sources_are_the_usable_addresses_of_its_subnet() -> None:
    from shared.causes.node_sources import api_server_sources

    assert api_server_sources(integrated()) == tuple(f"10.225.0.{i}" for i in range(4, 15))
    wide = replace(integrated(), subnets={**integrated().subnets,
                                          API_SUBNET.lower(): Subnet(API_SUBNET, ("10.225.0.0/24",), API_NSG)})
    got = api_server_sources(wide)
    assert (len(got), got[0], got[-1]) == (16, "10.225.0.4", "10.225.0.254")
    assert api_server_sources(replace(integrated(), api_server_subnet_id=None)) == ()


@pytest.mark.parametrize(("cause_id", "fields"), [
    (CauseId.IPTABLES, {"iptables_save": ONLY_NODES_SAVE}),
    (CauseId.UFW, {"ufw_status": UFW_ONLY_NODES}),
])
def test_node_firewall_is_unknown_when_the_api_server_subnet_is_not_known(
        cause_id: CauseId, fields: dict[str, Any]) -> None:
    cause = next(c for c in REGISTRY if c.id is cause_id)
    result = run_cause(cause, with_probes(replace(integrated(), api_server_subnet_id=None), **fields))
    assert result.status is Status.UNKNOWN, result
