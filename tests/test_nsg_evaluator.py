"""Behaviour of the NSG / AVNM evaluator, one documented Azure behaviour per test.

The "doc_*" tests follow Microsoft's "How network security groups filter network traffic" article:
NSG1 sits on Subnet1 (VM1, VM2), NSG2 on VM1's and VM3's NICs, Subnet2 (VM3) and Subnet3 (VM4) have no
subnet NSG and VM4's NIC has none either.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.netrules.nsg import (
    AVNM_CONTAINER_ID,
    AVNM_CONTAINER_NAME,
    compile_admin_rules,
    default_rules,
    evaluate_nsg,
    evaluate_path,
    first_free_priority_below,
)
from shared.netrules.nsg_types import (
    AddressContext,
    AdminRule,
    Direction,
    Flow,
    NetworkSecurityGroup,
    PathDecision,
    SecurityRule,
)

VNET = "10.0.0.0/16"
VM1, VM2, VM3, VM4 = "10.0.1.4", "10.0.1.5", "10.0.2.4", "10.0.3.4"
NODE, OTHER_NODE = "10.0.1.4", "10.0.1.5"
INTERNET_CLIENT = "52.160.10.20"
CONTEXT = AddressContext(vnet_prefixes=(VNET,))


def rule(
    name: str,
    priority: int,
    access: str,
    *,
    direction: Direction = "Inbound",
    protocol: str = "Tcp",
    src: tuple[str, ...] = ("*",),
    dst: tuple[str, ...] = ("*",),
    dports: tuple[str, ...] = ("*",),
    sports: tuple[str, ...] = ("*",),
    src_asgs: tuple[str, ...] = (),
    dst_asgs: tuple[str, ...] = (),
) -> SecurityRule:
    return SecurityRule(
        name=name,
        priority=priority,
        direction=direction,
        access=access,
        protocol=protocol,
        source_prefixes=src,
        source_ports=sports,
        destination_prefixes=dst,
        destination_ports=dports,
        source_asgs=src_asgs,
        destination_asgs=dst_asgs,
    )


def nsg(name: str, *rules: SecurityRule) -> NetworkSecurityGroup:
    return NetworkSecurityGroup(id=f"/subscriptions/s/resourceGroups/rg/providers/nsg/{name}", name=name, rules=rules)


def inbound(src: str, dst: str, port: int, protocol: str = "Tcp") -> Flow:
    return Flow("Inbound", protocol, src, 50123, dst, port)


def outbound(src: str, dst: str, port: int, protocol: str = "Tcp") -> Flow:
    return Flow("Outbound", protocol, src, 50123, dst, port)


def deciders(decision: PathDecision) -> list[tuple[str, str]]:
    return [(d.container_name, d.rule_name) for d in decision.decisions]


# --- Microsoft's documented subnet/NIC combinations ------------------------------------------------

ALLOW_HTTP_FROM_INTERNET = rule("AllowHttp", 100, "Allow", src=("Internet",), dports=("80",))


def test_doc_vm1_inbound_80_is_denied_by_subnet_nsg_without_an_allow_rule() -> None:
    nsg1, nsg2 = nsg("NSG1"), nsg("NSG2", ALLOW_HTTP_FROM_INTERNET)
    decision = evaluate_path(inbound(INTERNET_CLIENT, VM1, 80), [nsg1, nsg2], context=CONTEXT)
    assert decision.allowed is False
    assert deciders(decision) == [("NSG1", "DenyAllInBound")]  # NSG2 is never reached


def test_doc_vm1_inbound_80_needs_an_allow_in_both_subnet_and_nic_nsg() -> None:
    nsg1, nsg2 = nsg("NSG1", ALLOW_HTTP_FROM_INTERNET), nsg("NSG2", ALLOW_HTTP_FROM_INTERNET)
    decision = evaluate_path(inbound(INTERNET_CLIENT, VM1, 80), [nsg1, nsg2], context=CONTEXT)
    assert decision.allowed is True
    assert deciders(decision) == [("NSG1", "AllowHttp"), ("NSG2", "AllowHttp")]


def test_doc_vm1_inbound_80_allowed_by_subnet_is_still_denied_by_nic_nsg_default() -> None:
    nsg1, nsg2 = nsg("NSG1", ALLOW_HTTP_FROM_INTERNET), nsg("NSG2")
    decision = evaluate_path(inbound(INTERNET_CLIENT, VM1, 80), [nsg1, nsg2], context=CONTEXT)
    assert decision.allowed is False
    assert decision.blocking is not None
    assert (decision.blocking.container_name, decision.blocking.rule_name) == ("NSG2", "DenyAllInBound")


def test_doc_vm2_subnet_nsg_allowing_80_is_enough_when_the_nic_has_no_nsg() -> None:
    nsg1 = nsg("NSG1", ALLOW_HTTP_FROM_INTERNET)
    decision = evaluate_path(inbound(INTERNET_CLIENT, VM2, 80), [nsg1, None], context=CONTEXT)
    assert decision.allowed is True
    assert deciders(decision) == [("NSG1", "AllowHttp")]


def test_doc_subnet_deny_beats_nic_allow() -> None:
    nsg1 = nsg("NSG1", rule("DenyHttp", 100, "Deny", dports=("80",)))
    nsg2 = nsg("NSG2", ALLOW_HTTP_FROM_INTERNET)
    decision = evaluate_path(inbound(INTERNET_CLIENT, VM1, 80), [nsg1, nsg2], context=CONTEXT)
    assert decision.allowed is False
    assert deciders(decision) == [("NSG1", "DenyHttp")]


def test_doc_vm3_nic_nsg_alone_decides_when_the_subnet_has_none() -> None:
    nsg2 = nsg("NSG2", ALLOW_HTTP_FROM_INTERNET)
    assert evaluate_path(inbound(INTERNET_CLIENT, VM3, 80), [None, nsg2], context=CONTEXT).allowed is True
    assert evaluate_path(inbound(INTERNET_CLIENT, VM3, 443), [None, nsg2], context=CONTEXT).allowed is False


def test_doc_vm4_without_any_nsg_allows_everything() -> None:
    decision = evaluate_path(inbound(INTERNET_CLIENT, VM4, 3389), [None, None], context=CONTEXT)
    assert decision == PathDecision(allowed=True, decisions=())


def test_doc_outbound_is_decided_by_the_nic_nsg_before_the_subnet_nsg() -> None:
    nic = nsg("NSG2", rule("DenyHttpOut", 100, "Deny", direction="Outbound", dst=("Internet",), dports=("80",)))
    subnet = nsg("NSG1", rule("AllowHttpOut", 100, "Allow", direction="Outbound", dports=("80",)))
    denied = evaluate_path(outbound(VM1, INTERNET_CLIENT, 80), [nic, subnet], context=CONTEXT)
    assert denied.allowed is False
    assert deciders(denied) == [("NSG2", "DenyHttpOut")]
    allowed = evaluate_path(outbound(VM1, INTERNET_CLIENT, 443), [nic, subnet], context=CONTEXT)
    assert deciders(allowed) == [("NSG2", "AllowInternetOutBound"), ("NSG1", "AllowInternetOutBound")]


def test_doc_denying_all_inbound_on_the_subnet_nsg_cuts_vm1_from_vm2() -> None:
    nsg1 = nsg("NSG1", rule("DenyAll", 100, "Deny", protocol="*"))
    assert evaluate_path(inbound(VM1, VM2, 22), [nsg1, None], context=CONTEXT).allowed is False
    assert evaluate_path(inbound(VM1, VM2, 22), [nsg("NSG1"), None], context=CONTEXT).allowed is True


# --- default rules ---------------------------------------------------------------------------------


def test_vnet_internal_traffic_falls_back_to_allow_vnet_inbound() -> None:
    decision = evaluate_path(inbound(OTHER_NODE, NODE, 10250), [nsg("subnet"), nsg("nic")], context=CONTEXT)
    assert decision.allowed is True
    assert deciders(decision) == [("subnet", "AllowVnetInBound"), ("nic", "AllowVnetInBound")]
    assert decision.decisions[0].priority == 65000


def test_peered_prefixes_count_as_virtual_network() -> None:
    peered = AddressContext(vnet_prefixes=(VNET, "10.50.0.0/16"))
    flow = inbound("10.50.0.9", NODE, 10250)
    assert evaluate_path(flow, [nsg("subnet")], context=peered).allowed is True
    assert evaluate_path(flow, [nsg("subnet")], context=CONTEXT).allowed is False


def test_internet_inbound_falls_back_to_deny_all_inbound() -> None:
    decision = evaluate_path(inbound(INTERNET_CLIENT, NODE, 10250), [nsg("subnet")], context=CONTEXT)
    assert decision.allowed is False
    assert decision.blocking is not None
    assert (decision.blocking.rule_name, decision.blocking.priority) == ("DenyAllInBound", 65500)
    assert decision.blocking.rule_id.endswith("/defaultSecurityRules/DenyAllInBound")


def test_azure_load_balancer_probe_is_allowed_by_default() -> None:
    flow = inbound("168.63.129.16", NODE, 10256)
    assert deciders(evaluate_path(flow, [nsg("n")], context=CONTEXT)) == [("n", "AllowAzureLoadBalancerInBound")]


def test_outbound_to_internet_is_allowed_but_to_a_private_non_vnet_range_is_denied() -> None:
    assert evaluate_path(outbound(NODE, "20.1.2.3", 443), [nsg("n")], context=CONTEXT).allowed is True
    private = evaluate_path(outbound(NODE, "192.168.7.7", 443), [nsg("n")], context=CONTEXT)
    assert deciders(private) == [("n", "DenyAllOutBound")]


def test_default_rules_are_azures_six() -> None:
    summary = [
        (r.name, r.priority, r.access, r.source_prefixes, r.destination_prefixes)
        for d in ("Inbound", "Outbound")
        for r in default_rules(d)
    ]
    assert summary == [
        ("AllowVnetInBound", 65000, "Allow", ("VirtualNetwork",), ("VirtualNetwork",)),
        ("AllowAzureLoadBalancerInBound", 65001, "Allow", ("AzureLoadBalancer",), ("*",)),
        ("DenyAllInBound", 65500, "Deny", ("*",), ("*",)),
        ("AllowVnetOutBound", 65000, "Allow", ("VirtualNetwork",), ("VirtualNetwork",)),
        ("AllowInternetOutBound", 65001, "Allow", ("*",), ("Internet",)),
        ("DenyAllOutBound", 65500, "Deny", ("*",), ("*",)),
    ]
    assert all(r.default and r.protocol == "*" for d in ("Inbound", "Outbound") for r in default_rules(d))


# --- ports, priorities, protocols, directions ------------------------------------------------------


def test_deny_whose_port_range_covers_10250_blocks_it_and_only_it() -> None:
    block = nsg("nic", rule("DenyHighPorts", 300, "Deny", src=(VNET,), dports=("10000-11000",)))
    denied = evaluate_path(inbound(OTHER_NODE, NODE, 10250), [block], context=CONTEXT)
    assert denied.blocking is not None
    assert (denied.blocking.rule_name, denied.blocking.priority) == ("DenyHighPorts", 300)
    for port in (9999, 11001):
        assert evaluate_path(inbound(OTHER_NODE, NODE, port), [block], context=CONTEXT).allowed is True
    for port in (10000, 11000):
        assert evaluate_path(inbound(OTHER_NODE, NODE, port), [block], context=CONTEXT).allowed is False


def test_port_lists_match_any_listed_port_or_range() -> None:
    block = nsg("nic", rule("DenySome", 300, "Deny", dports=("22", "8000-8080", "10250")))
    verdicts = {
        p: evaluate_path(inbound(OTHER_NODE, NODE, p), [block], context=CONTEXT).allowed
        for p in (22, 23, 8080, 10250, 10251)
    }
    assert verdicts == {22: False, 23: True, 8080: False, 10250: False, 10251: True}


def test_source_port_is_matched_too() -> None:
    block = nsg("nic", rule("DenyFromLowPorts", 300, "Deny", sports=("0-1023",)))
    assert evaluate_path(Flow("Inbound", "Tcp", OTHER_NODE, 80, NODE, 10250), [block], context=CONTEXT).allowed is False
    assert evaluate_path(Flow("Inbound", "Tcp", OTHER_NODE, 50000, NODE, 10250), [block], context=CONTEXT).allowed


def test_allow_with_lower_priority_number_shadows_a_deny() -> None:
    rules = (
        rule("DenyKubelet", 200, "Deny", dports=("10250",)),  # listed first on purpose
        rule("AllowKubeletFromVnet", 150, "Allow", src=("VirtualNetwork",), dports=("10250",)),
    )
    decision = evaluate_path(inbound(OTHER_NODE, NODE, 10250), [nsg("nic", *rules)], context=CONTEXT)
    assert deciders(decision) == [("nic", "AllowKubeletFromVnet")]
    from_internet = evaluate_path(inbound(INTERNET_CLIENT, NODE, 10250), [nsg("nic", *rules)], context=CONTEXT)
    assert deciders(from_internet) == [("nic", "DenyKubelet")]


def test_rules_of_the_other_direction_are_ignored() -> None:
    out_deny = nsg("nic", rule("DenyOut", 100, "Deny", direction="Outbound", protocol="*"))
    assert evaluate_path(inbound(OTHER_NODE, NODE, 10250), [out_deny], context=CONTEXT).allowed is True
    assert evaluate_path(outbound(NODE, OTHER_NODE, 10250), [out_deny], context=CONTEXT).allowed is False


@pytest.mark.parametrize(
    ("rule_protocol", "flow_protocol", "blocked"),
    [
        ("Udp", "Tcp", False),
        ("Tcp", "Tcp", True),
        ("tcp", "TCP", True),
        ("*", "Udp", True),
        ("Any", "Esp", True),
        ("Icmp", "Icmp", True),
        ("Esp", "Ah", False),
    ],
)
def test_protocol_matching_is_case_insensitive_and_star_means_any(
    rule_protocol: str, flow_protocol: str, blocked: bool
) -> None:
    block = nsg("nic", rule("Deny", 100, "Deny", protocol=rule_protocol))
    decision = evaluate_path(inbound(OTHER_NODE, NODE, 10250, flow_protocol), [block], context=CONTEXT)
    assert decision.allowed is (not blocked)


def test_portless_protocols_only_match_rules_covering_every_port() -> None:
    port_rule = nsg("nic", rule("DenyAnyOn10250", 100, "Deny", protocol="*", dports=("10250",)))
    full_range = nsg("nic", rule("DenyAnyAllPorts", 100, "Deny", protocol="*", dports=("0-65535",)))
    ping = inbound(OTHER_NODE, NODE, 0, "Icmp")
    assert evaluate_path(ping, [port_rule], context=CONTEXT).allowed is True
    assert evaluate_path(ping, [full_range], context=CONTEXT).allowed is False


def test_a_port_list_with_a_one_port_gap_does_not_cover_portless_protocols() -> None:
    ping = inbound(OTHER_NODE, NODE, 0, "Icmp")
    gap = nsg("nic", rule("DenyAlmostAll", 100, "Deny", protocol="*", dports=("0-10249", "10251-65535")))
    seamless = nsg("nic", rule("DenySplitAll", 100, "Deny", protocol="*", dports=("0-10250", "10251-65535")))
    assert evaluate_path(ping, [gap], context=CONTEXT).allowed is True
    assert evaluate_path(ping, [seamless], context=CONTEXT).allowed is False


# --- addresses -------------------------------------------------------------------------------------


def test_single_ip_cidr_and_any_prefixes() -> None:
    flow = inbound(OTHER_NODE, NODE, 10250)
    for prefix, blocks in [(OTHER_NODE, True), ("10.0.1.0/24", True), ("10.0.2.0/24", False), ("Any", True)]:
        block = nsg("nic", rule("Deny", 100, "Deny", src=(prefix,)))
        assert evaluate_path(flow, [block], context=CONTEXT).allowed is (not blocks), prefix


def test_ipv6_prefixes_never_match_an_ipv4_flow_and_do_not_crash() -> None:
    block = nsg("nic", rule("DenyV6", 100, "Deny", src=("2001:db8::/32", "::/0")))
    assert evaluate_path(inbound(OTHER_NODE, NODE, 10250), [block], context=CONTEXT).allowed is True


def test_internet_tag_excludes_the_vnet_and_private_and_shared_ranges() -> None:
    group = nsg("nic", rule("DenyInternet", 100, "Deny", src=("Internet",)))
    sources = [INTERNET_CLIENT, "8.8.8.8", OTHER_NODE, "172.20.0.1", "100.64.3.3", "169.254.1.1", "127.0.0.1"]
    matched = {
        source: decision.rule_name
        for source in sources
        if (decision := evaluate_nsg(inbound(source, NODE, 10250), group, CONTEXT).decision) is not None
    }
    assert matched == {
        INTERNET_CLIENT: "DenyInternet",
        "8.8.8.8": "DenyInternet",
        OTHER_NODE: "AllowVnetInBound",
        "172.20.0.1": "DenyAllInBound",
        "100.64.3.3": "DenyAllInBound",
        "169.254.1.1": "DenyAllInBound",
        "127.0.0.1": "DenyAllInBound",
    }


def test_service_tags_are_case_insensitive() -> None:
    block = nsg("nic", rule("Deny", 100, "Deny", src=("virtualnetwork",)))
    assert evaluate_path(inbound(OTHER_NODE, NODE, 10250), [block], context=CONTEXT).allowed is False


# --- application security groups -------------------------------------------------------------------

ASG_NODES = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/nodes"
ASG_CONTEXT = AddressContext(vnet_prefixes=(VNET,), asg_members={ASG_NODES.lower(): frozenset({NODE})})


def test_asg_rule_matches_a_member_ip_with_the_asg_id_in_any_case() -> None:
    block = nsg("nic", rule("DenyToNodes", 100, "Deny", dst=(), dst_asgs=(ASG_NODES.upper(),), dports=("10250",)))
    decision = evaluate_path(inbound(OTHER_NODE, NODE, 10250), [block], context=ASG_CONTEXT)
    assert deciders(decision) == [("nic", "DenyToNodes")]


def test_asg_rule_does_not_match_a_non_member_even_with_a_star_placeholder_prefix() -> None:
    block = nsg("nic", rule("DenyToNodes", 100, "Deny", dst=("*",), dst_asgs=(ASG_NODES,), dports=("10250",)))
    assert evaluate_path(inbound(NODE, OTHER_NODE, 10250), [block], context=ASG_CONTEXT).allowed is True


def test_asg_that_the_context_does_not_know_has_no_members() -> None:
    block = nsg("nic", rule("DenyToOther", 100, "Deny", dst=(), dst_asgs=(ASG_NODES + "-other",)))
    assert evaluate_path(inbound(OTHER_NODE, NODE, 10250), [block], context=ASG_CONTEXT).allowed is True


# --- AVNM security admin rules ---------------------------------------------------------------------


def admin(name: str, priority: int, access: str, **kw: tuple[str, ...]) -> AdminRule:
    return AdminRule(name, priority, "Inbound", access, "Tcp", id=f"/avnm/{name}", **kw)


def test_avnm_deny_denies_before_any_nsg_is_asked() -> None:
    allow_all = nsg("nic", rule("AllowAll", 100, "Allow", protocol="*"))
    decision = evaluate_path(
        inbound(OTHER_NODE, NODE, 10250),
        [allow_all],
        context=CONTEXT,
        admin_rules=(admin("DenyKubelet", 10, "Deny", destination_ports=("10250",)),),
    )
    assert decision.allowed is False
    assert [(d.container_id, d.rule_name, d.rule_id) for d in decision.decisions] == [
        (AVNM_CONTAINER_ID, "DenyKubelet", "/avnm/DenyKubelet")
    ]


def test_avnm_always_allow_wins_even_when_an_nsg_denies() -> None:
    deny_all = nsg("nic", rule("DenyAll", 100, "Deny", protocol="*"))
    decision = evaluate_path(
        inbound(OTHER_NODE, NODE, 10250), [deny_all], context=CONTEXT, admin_rules=(admin("Always", 10, "AlwaysAllow"),)
    )
    assert decision.allowed is True
    assert deciders(decision) == [(AVNM_CONTAINER_NAME, "Always")]


def test_avnm_allow_lets_the_nsgs_decide() -> None:
    deny_all = nsg("nic", rule("DenyAll", 100, "Deny", protocol="*"))
    decision = evaluate_path(
        inbound(OTHER_NODE, NODE, 10250),
        [deny_all],
        context=CONTEXT,
        admin_rules=[admin("Allow", 10, "Allow"), admin("Deny", 20, "Deny")],
    )
    assert decision.allowed is False
    assert [d.rule_name for d in decision.decisions] == ["Allow", "DenyAll"]


def test_avnm_rules_apply_in_priority_order_and_non_matching_ones_are_skipped() -> None:
    rules = (
        admin("DenySsh", 5, "Deny", destination_ports=("22",)),
        admin("Always", 30, "AlwaysAllow"),
        admin("DenyAll", 20, "Deny"),
    )
    decision = evaluate_path(inbound(OTHER_NODE, NODE, 10250), [None], context=CONTEXT, admin_rules=rules)
    assert decision.allowed is False
    assert decision.decisions[0].rule_name == "DenyAll"


def test_avnm_rules_of_the_other_direction_are_ignored() -> None:
    out_deny = AdminRule("DenyOut", 10, "Outbound", "Deny", "Any")
    decision = evaluate_path(inbound(OTHER_NODE, NODE, 10250), [None], context=CONTEXT, admin_rules=(out_deny,))
    assert decision == PathDecision(True, ())


def test_precompiled_admin_rules_give_the_same_answer() -> None:
    rules = [admin("DenyKubelet", 10, "Deny", destination_ports=("10250",))]
    flow = inbound(OTHER_NODE, NODE, 10250)
    plain = evaluate_path(flow, [None], context=CONTEXT, admin_rules=rules)
    assert evaluate_path(flow, [None], context=CONTEXT, admin_rules=compile_admin_rules(rules)) == plain


# --- unknown service tags --------------------------------------------------------------------------


def test_unknown_service_tag_that_could_match_makes_the_verdict_unknown() -> None:
    rules = (rule("AllowCloud", 100, "Allow", src=("AzureCloud",), dports=("10250",)),)
    decision = evaluate_path(inbound(OTHER_NODE, NODE, 10250), [nsg("nic", *rules)], context=CONTEXT)
    assert decision.allowed is None
    assert decision.reason is not None
    for expected in ("AzureCloud", "'AllowCloud'", "'nic'"):
        assert expected in decision.reason


def test_unknown_service_tag_rule_with_non_matching_port_or_protocol_is_skipped() -> None:
    rules = (
        rule("StorageHttps", 100, "Deny", dst=("Storage.WestEurope",), dports=("443",)),
        rule("CloudUdp", 110, "Deny", protocol="Udp", src=("AzureCloud",)),
    )
    decision = evaluate_path(inbound(OTHER_NODE, NODE, 10250), [nsg("nic", *rules)], context=CONTEXT)
    assert decision.allowed is True


def test_unknown_service_tag_after_the_deciding_rule_is_irrelevant() -> None:
    rules = (rule("DenyKubelet", 100, "Deny", dports=("10250",)), rule("AllowCloud", 200, "Allow", src=("AzureCloud",)))
    decision = evaluate_path(inbound(OTHER_NODE, NODE, 10250), [nsg("nic", *rules)], context=CONTEXT)
    assert decision.allowed is False


def test_unknown_tag_beside_a_matching_prefix_in_the_same_list_still_matches() -> None:
    rules = (rule("DenyMixed", 100, "Deny", src=("AzureCloud", "10.0.0.0/16")),)
    assert evaluate_path(inbound(OTHER_NODE, NODE, 10250), [nsg("nic", *rules)], context=CONTEXT).allowed is False


def test_unknown_tag_in_an_avnm_rule_makes_the_verdict_unknown() -> None:
    rules = (AdminRule("CloudAlways", 10, "Inbound", "AlwaysAllow", "Tcp", sources=("AzureCloud",)),)
    decision = evaluate_path(inbound(OTHER_NODE, NODE, 10250), [nsg("nic")], context=CONTEXT, admin_rules=rules)
    assert decision.allowed is None
    assert decision.reason is not None
    assert "AVNM" in decision.reason
    assert "'CloudAlways'" in decision.reason


def test_a_definite_deny_in_a_later_nsg_holds_even_when_an_earlier_one_is_unknown() -> None:
    subnet = nsg("subnet", rule("AllowCloud", 100, "Allow", src=("AzureCloud",)))
    nic = nsg("nic", rule("DenyKubelet", 100, "Deny", dports=("10250",)))
    decision = evaluate_path(inbound(OTHER_NODE, NODE, 10250), [subnet, nic], context=CONTEXT)
    assert decision.allowed is False
    assert deciders(decision) == [("nic", "DenyKubelet")]
    passes = evaluate_path(inbound(OTHER_NODE, NODE, 22), [subnet, nic], context=CONTEXT)
    assert passes.allowed is None
    assert passes.reason is not None
    assert "'AllowCloud'" in passes.reason


def test_unparseable_port_is_unknown_rather_than_ignored() -> None:
    rules = (rule("Typo", 100, "Deny", dports=("1025O",)),)
    decision = evaluate_path(inbound(OTHER_NODE, NODE, 10250), [nsg("nic", *rules)], context=CONTEXT)
    assert decision.allowed is None
    assert decision.reason is not None
    assert "1025O" in decision.reason


# --- single NSG, ids, caching, validation ----------------------------------------------------------


def test_evaluate_nsg_reports_the_deciding_rule_with_its_id() -> None:
    r = replace(rule("DenyKubelet", 100, "Deny", dports=("10250",)), id="/custom/id/DenyKubelet")
    verdict = evaluate_nsg(inbound(OTHER_NODE, NODE, 10250), nsg("nic", r), CONTEXT)
    assert verdict.allowed is False
    assert verdict.reason is None
    assert verdict.decision is not None
    assert (verdict.decision.rule_id, verdict.decision.container_name, verdict.decision.access) == (
        "/custom/id/DenyKubelet",
        "nic",
        "Deny",
    )


def test_a_changed_nsg_object_is_never_answered_from_the_old_compiled_form() -> None:
    flow = inbound(OTHER_NODE, NODE, 10250)
    before = nsg("nic")
    assert evaluate_nsg(flow, before, CONTEXT).allowed is True
    after = replace(before, rules=(rule("DenyKubelet", 100, "Deny", dports=("10250",)),))
    assert evaluate_nsg(flow, after, CONTEXT).allowed is False
    assert evaluate_nsg(flow, before, CONTEXT).allowed is True


def test_invalid_access_is_rejected_loudly() -> None:
    with pytest.raises(ValueError, match="Permit"):
        evaluate_nsg(inbound(OTHER_NODE, NODE, 10250), nsg("nic", rule("Odd", 100, "Permit")), CONTEXT)


# --- first_free_priority_below ---------------------------------------------------------------------


def test_first_free_priority_below_picks_the_closest_unused_priority() -> None:
    group = nsg(
        "nic",
        rule("A", 200, "Deny"),
        rule("B", 199, "Allow"),
        rule("C", 197, "Allow"),
        rule("OutOnly", 198, "Allow", direction="Outbound"),
    )
    assert first_free_priority_below(group, 200, "Inbound") == 198
    assert first_free_priority_below(group, 200, "Outbound") == 199


def test_first_free_priority_below_a_default_rule_starts_at_4096() -> None:
    group = nsg("nic", rule("Last", 4096, "Deny"))
    assert first_free_priority_below(group, 65500, "Inbound") == 4095
    assert first_free_priority_below(nsg("empty"), 65500, "Inbound") == 4096


def test_first_free_priority_below_returns_none_when_nothing_beats_it() -> None:
    assert first_free_priority_below(nsg("nic"), 100, "Inbound") is None
    crowded = nsg("nic", rule("A", 100, "Allow"), rule("B", 101, "Allow"), rule("C", 102, "Deny"))
    assert first_free_priority_below(crowded, 102, "Inbound") is None
