"""egress-tunnel-port-blocked on hand-built snapshots: every evidence rule of issue 8 (items 4 and 6).

Nodes are 10.224.0.4-6 in 10.224.0.0/16; the API server is 20.50.2.10 once a probe resolved it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from shared.causes import egress_tunnel_port_blocked as egress
from shared.causes.base import run_cause
from shared.model import CauseResult, Status
from shared.snapshot import ClusterSnapshot, Firewall, FirewallRule, NodeProbe, TlsCheck, Unavailable
from tests.builders import CLUSTER_ID, RT_ID, probe, routed_snapshot, snapshot

FW_ID = "/subscriptions/s/resourceGroups/hub/providers/Microsoft.Network/azureFirewalls/fw-hub"
POLICY = "/subscriptions/s/resourceGroups/hub/providers/Microsoft.Network/firewallPolicies/child"
PARENT = "/subscriptions/s/resourceGroups/hub/providers/Microsoft.Network/firewallPolicies/parent"
NODES = ("aks-nodepool1-1-vmss000000", "aks-nodepool1-1-vmss000001", "aks-nodepool1-1-vmss000002")


def app_rule(name: str = "aks", action: str = "Allow", priority: int = 100, **kw: Any) -> FirewallRule:
    fields: dict[str, Any] = {"fqdn_tags": ("AzureKubernetesService",), "collection_id": f"{FW_ID}/app/{name}"}
    fields.update(kw)
    return FirewallRule(name, priority, action, name, "application", ("Https:443",), **fields)


def net_rule(name: str, action: str, priority: int, port: str, proto: str = "TCP", **kw: Any) -> FirewallRule:
    fields: dict[str, Any] = {"destination_addresses": ("*",), "destination_ports": (port,),
                              "collection_id": f"{FW_ID}/net/{name}"}
    fields.update(kw)
    return FirewallRule(name, priority, action, name, "network", (proto,), **fields)


def firewall(*rules: FirewallRule, **kw: Any) -> Firewall:
    return Firewall(FW_ID, "10.0.1.4", rules, **kw)


def with_probes(snap: ClusterSnapshot, **fields: Any) -> ClusterSnapshot:
    assert not isinstance(snap.nodes, Unavailable)
    return replace(snap, probes_mode="all", probes={n.name: probe(n.name, **fields) for n in snap.nodes})


def evaluate(snap: ClusterSnapshot) -> CauseResult:
    return run_cause(egress.CAUSE, snap)


# ------------------------------------------------------------------ control plane without probes


def test_classic_rule_for_another_subnet_does_not_allow_the_nodes() -> None:
    other = app_rule(source_addresses=("10.99.0.0/16",))
    result = evaluate(routed_snapshot(firewall(other)))
    assert result.status is Status.DETECTED, result
    assert result.subjects == (FW_ID,)  # default deny: the firewall is what to fix
    assert set(result.affected[FW_ID]) == set(NODES)
    assert any("10.224.0.0/16" in r for r in result.remediation)  # the fix names the node subnet


def test_classic_source_ip_group_of_the_nodes_allows_and_of_others_does_not() -> None:
    nodes_group = "/subscriptions/s/resourceGroups/hub/providers/Microsoft.Network/ipGroups/aks"
    rule_ = app_rule(source_addresses=(), source_ip_groups=(nodes_group,))
    allowed = firewall(rule_, ip_groups={nodes_group: ("10.224.0.0/16",)})
    assert evaluate(with_probes(routed_snapshot(allowed))).status is Status.CLEAR
    elsewhere = firewall(rule_, ip_groups={nodes_group: ("10.99.0.0/16",)})
    assert evaluate(routed_snapshot(elsewhere)).status is Status.DETECTED
    unread = firewall(rule_, unreadable={nodes_group: "403"})
    result = evaluate(routed_snapshot(unread))
    assert result.status is Status.UNKNOWN, result  # the one rule that could allow depends on the unread group


def test_network_collections_are_evaluated_before_application_collections() -> None:
    """The application collection has the better priority, yet a network Deny on 443 decides first."""
    fw = firewall(app_rule(priority=100), net_rule("block-443", "Deny", 300, "443"))
    result = evaluate(routed_snapshot(fw))
    assert result.status is Status.DETECTED, result
    assert result.subjects == (f"{FW_ID}/net/block-443",)
    assert "block-443" in result.evidence[0].detail


def test_parent_policy_rules_come_first() -> None:
    parent_deny = net_rule("deny-all-443", "Deny", 900, "443", layer=0, group="base", group_priority=900,
                           collection_id=f"{PARENT}/ruleCollectionGroups/base", policy_id=PARENT)
    child_allow = app_rule(layer=1, group="aks", group_priority=100,
                           collection_id=f"{POLICY}/ruleCollectionGroups/aks", policy_id=POLICY)
    fw = firewall(child_allow, parent_deny, policy_id=POLICY, policy_chain=(POLICY, PARENT))
    result = evaluate(routed_snapshot(fw))
    assert result.status is Status.DETECTED
    assert result.subjects == (f"{PARENT}/ruleCollectionGroups/base",)
    assert "parent" in result.evidence[0].detail
    assert any("firewall policy rule-collection-group" in r for r in result.remediation)


def test_allowing_rules_without_a_probe_are_unknown_not_clear() -> None:
    result = evaluate(routed_snapshot(firewall(app_rule())))
    assert result.status is Status.UNKNOWN
    assert "not confirmed from a node" in (result.reason or "")
    assert set(result.unchecked) == set(NODES)


def test_service_tag_rule_is_undecidable_and_never_clear() -> None:
    tagged = net_rule("apiudp", "Allow", 100, "1194", "UDP", destination_addresses=("AzureCloud.westeurope",))
    snap = routed_snapshot(firewall(tagged), tunnel="aks-link")
    result = evaluate(snap)
    assert result.status is Status.UNKNOWN
    assert "apiudp" in (result.reason or "")


def test_virtual_appliance_that_is_not_a_readable_firewall_is_unknown_without_probes() -> None:
    nva = Unavailable("next hop 10.50.0.4 is a virtual appliance that is not an Azure Firewall the monitor can read")
    result = evaluate(routed_snapshot(nva, next_hop="10.50.0.4"))
    assert result.status is Status.UNKNOWN
    assert "10.50.0.4" in (result.reason or "")


def test_nva_hop_lets_the_probe_decide() -> None:
    nva = Unavailable("next hop 10.50.0.4 is a virtual appliance that is not an Azure Firewall the monitor can read")
    routed = routed_snapshot(nva, next_hop="10.50.0.4")
    ok = evaluate(with_probes(routed))
    assert ok.status is Status.CLEAR
    assert "not fully judged" in ok.evidence[0].detail  # the unread hop is a note, not a verdict
    blocked = evaluate(with_probes(routed, egress={"tcp/443": "timeout"}))
    assert blocked.status is Status.DETECTED
    assert blocked.subjects == (f"{RT_ID}/routes/default-via-fw",)


def test_unreadable_policy_with_a_probe_that_reached_the_api_is_clear_with_a_note() -> None:
    unread = Unavailable("access denied (403 AuthorizationFailed) reading Firewall Policy child")
    result = evaluate(with_probes(routed_snapshot(unread)))
    assert result.status is Status.CLEAR
    assert "403" in result.evidence[0].detail


def test_probe_timeout_without_an_explanation_is_one_cluster_subject() -> None:
    result = evaluate(with_probes(snapshot(), egress={"tcp/443": "timeout"}))
    assert result.status is Status.DETECTED
    assert result.subjects == (f"{CLUSTER_ID}/egress/tcp-443",)
    assert set(result.affected[f"{CLUSTER_ID}/egress/tcp-443"]) == set(NODES)


def test_probe_timeout_through_a_denying_firewall_names_the_firewall_once() -> None:
    result = evaluate(with_probes(routed_snapshot(firewall(app_rule(fqdn_tags=(), destination_fqdns=("x.com",)))),
                                  egress={"tcp/443": "timeout"}))
    assert result.status is Status.DETECTED
    assert result.subjects == (FW_ID,)
    assert len(result.affected[FW_ID]) == 3


def test_threat_intel_deny_is_a_note() -> None:
    result = evaluate(with_probes(routed_snapshot(firewall(app_rule(), threat_intel_mode="Deny"))))
    assert result.status is Status.CLEAR
    assert "threat intelligence" in result.evidence[0].detail


def test_tls_inspection_on_the_firewall_is_detected() -> None:
    inspecting = app_rule(terminate_tls=True)
    result = evaluate(routed_snapshot(firewall(inspecting)))
    assert result.status is Status.DETECTED
    assert any("TLS inspection" in r for r in result.remediation)


# ------------------------------------------------------------------ probes: UDP, TLS, containers


def test_silent_udp_is_unknown_with_the_reason() -> None:
    snap = with_probes(snapshot(tunnel="aks-link"), egress={"udp/1194": "silent"},
                       container_states={"aks-link": "exited"})
    result = evaluate(snap)
    assert result.status is Status.UNKNOWN
    assert egress.SILENT_UDP in (result.reason or "")
    assert "aks-link container on the node is exited" in (result.reason or "")


def test_udp_answer_is_clear() -> None:
    snap = with_probes(snapshot(tunnel="aks-link"), egress={"udp/1194": "ok"})
    assert evaluate(snap).status is Status.CLEAR


def test_tls_not_verifying_is_detected_with_issuer_and_remediation() -> None:
    tls = TlsCheck(verified=False, alpn=None, issuer="CN=Contoso Inspection CA")
    result = evaluate(with_probes(snapshot(), tls=tls))
    assert result.status is Status.DETECTED
    assert "Contoso Inspection CA" in result.evidence[0].detail
    assert any("*.hcp.westeurope.azmk8s.io" in r for r in result.remediation)
    assert result.subjects == (f"{CLUSTER_ID}/egress/tls-443",)


def test_alpn_stripped_is_detected_and_tls_error_is_a_note() -> None:
    stripped = evaluate(with_probes(snapshot(), tls=TlsCheck(verified=True, alpn=None)))
    assert stripped.status is Status.DETECTED
    assert "ALPN" in stripped.evidence[0].detail
    errored = evaluate(with_probes(snapshot(), tls=TlsCheck(verified=None, alpn=None, error="openssl not found")))
    assert errored.status is Status.CLEAR
    assert "openssl not found" in errored.evidence[0].detail
    fine = evaluate(with_probes(snapshot(), tls=TlsCheck(verified=True, alpn="konnectivity")))
    assert fine.status is Status.CLEAR


# ------------------------------------------------------------------ tunnel component unknown (item 6)


ALL_OK = {"tcp/443": "ok", "tcp/9000": "ok", "udp/1194": "ok"}


def test_unknown_component_failed_9000_with_443_reachable_is_unknown_never_clear() -> None:
    snap = with_probes(snapshot(tunnel="unknown"), egress={**ALL_OK, "tcp/9000": "timeout"})
    result = evaluate(snap)
    assert result.status is Status.UNKNOWN
    assert "tcp/9000" in (result.reason or "")


def test_unknown_component_with_every_port_failing_is_detected_with_the_caveat() -> None:
    snap = with_probes(snapshot(tunnel="unknown"),
                       egress={"tcp/443": "timeout", "tcp/9000": "timeout", "udp/1194": "refused"})
    result = evaluate(snap)
    assert result.status is Status.DETECTED
    assert "tunnel component unknown" in result.evidence[0].detail
    assert {f"{CLUSTER_ID}/egress/{p}" for p in ("tcp-443", "tcp-9000", "udp-1194")} == set(result.subjects)


def test_unknown_component_with_udp_silent_and_tcp_failing_is_unknown() -> None:
    """aks-link on 1194 may work (silence proves nothing): the failing TCP ports are named, not judged."""
    snap = with_probes(snapshot(tunnel="unknown"),
                       egress={"tcp/443": "timeout", "tcp/9000": "timeout", "udp/1194": "silent"})
    result = evaluate(snap)
    assert result.status is Status.UNKNOWN
    assert "tcp/443, tcp/9000 blocked" in (result.reason or "")


def test_unknown_component_without_probes_and_a_firewall_allowing_only_443_is_unknown() -> None:
    """The recommended AKS firewall opens 443 only; with the component unknown that is not a block."""
    result = evaluate(routed_snapshot(firewall(app_rule()), tunnel="unknown"))
    assert result.status is Status.UNKNOWN
    assert "tcp/9000" in (result.reason or "")


def test_unknown_component_all_reachable_is_clear() -> None:
    assert evaluate(with_probes(snapshot(tunnel="unknown"), egress=ALL_OK)).status is Status.CLEAR


def test_unknown_component_failed_1194_alone_is_unknown() -> None:
    snap = with_probes(snapshot(tunnel="unknown"), egress={**ALL_OK, "udp/1194": "timeout"})
    assert evaluate(snap).status is Status.UNKNOWN


# ------------------------------------------------------------------ scope


def test_api_server_vnet_integration_is_not_applicable() -> None:
    result = evaluate(snapshot(api_server_vnet_integration=True))
    assert result.status is Status.NOT_APPLICABLE
    assert result.summary.startswith("no tunnel")


def test_sample_mode_judges_only_sampled_nodes_unless_configuration_blocks() -> None:
    snap = snapshot()
    assert not isinstance(snap.nodes, Unavailable)
    first = snap.nodes[0].name
    sampled = replace(snap, probes_mode="sample", probes={first: probe(first)})
    assert evaluate(sampled).status is Status.CLEAR
    routed = routed_snapshot(firewall(app_rule(source_addresses=("10.99.0.0/16",))))
    blocked = replace(routed, probes_mode="sample", probes={first: probe(first, egress={"tcp/443": "timeout"})})
    result = evaluate(blocked)
    assert result.status is Status.DETECTED
    assert set(result.affected[FW_ID]) == set(NODES)  # configuration blocks the unsampled nodes too


def test_failed_probe_is_unknown_with_its_reason() -> None:
    snap = snapshot()
    assert not isinstance(snap.nodes, Unavailable)
    probes: dict[str, NodeProbe | Unavailable] = {n.name: Unavailable("run-command timed out") for n in snap.nodes}
    result = evaluate(replace(snap, probes_mode="all", probes=probes))
    assert result.status is Status.UNKNOWN
    assert "run-command timed out" in (result.reason or "")


def test_unknown_reason_is_grouped_by_cause_not_repeated_per_node() -> None:
    result = evaluate(routed_snapshot(firewall(app_rule())))
    assert result.status is Status.UNKNOWN
    assert (result.reason or "").count("not confirmed from a node") == 1
    assert all(n in (result.reason or "") for n in NODES)
    assert set(result.unchecked) == set(NODES)  # every node still listed as unchecked, for the lifecycle


def test_a_definite_deny_stays_detected_even_when_the_probe_got_through() -> None:
    denying = firewall(net_rule("block-443", "Deny", 100, "443"), app_rule())
    result = evaluate(with_probes(routed_snapshot(denying)))
    assert result.status is Status.DETECTED
    assert result.subjects == (f"{FW_ID}/net/block-443",)
    assert "reached" in result.evidence[0].detail


# ------------------------------------------------------------------ inputs missing or ambiguous: never clear


def test_unreadable_route_table_is_unknown_without_a_probe() -> None:
    snap = replace(routed_snapshot(firewall(app_rule())), route_tables={},
                   unreadable_route_tables={RT_ID.lower(): "access denied (403) reading route table rt-aks"})
    result = evaluate(snap)
    assert result.status is Status.UNKNOWN
    assert "403" in (result.reason or "")


def test_unreadable_nsg_on_the_path_is_never_clear() -> None:
    from tests.builders import NSG_ID

    snap = with_probes(snapshot(), egress={"tcp/443": "error"})
    snap = replace(snap, nsgs={}, nsg_errors={NSG_ID.lower(): "throttled (429)"})
    result = evaluate(snap)
    assert result.status is Status.UNKNOWN
    assert "429" in (result.reason or "")


def test_nodes_that_could_not_be_read_are_unknown() -> None:
    result = evaluate(snapshot(nodes=Unavailable("throttled (429) reading the scale sets")))
    assert result.status is Status.UNKNOWN
    assert "429" in (result.reason or "")


def test_service_tag_route_may_bypass_the_firewall_so_no_detection_without_a_probe() -> None:
    from shared.snapshot import Route, RouteTable

    snap = routed_snapshot(firewall(app_rule(fqdn_tags=(), destination_fqdns=("x.com",))))
    table = RouteTable(RT_ID, (Route("default-via-fw", "0.0.0.0/0", "VirtualAppliance", "10.0.1.4"),
                               Route("azurecloud-direct", "AzureCloud.westeurope", "Internet")))
    result = evaluate(replace(snap, route_tables={RT_ID.lower(): table}))
    assert result.status is Status.UNKNOWN
    assert "azurecloud-direct" in (result.reason or "")
