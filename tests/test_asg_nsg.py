"""ASG-scoped NSG rules and partial NSG results, at the cause level (hand-built snapshots).

Layout: one subnet and its NSG; pool A nodes carry asg-poola, pool B nodes asg-poolb. On the old main
only one source per (subnet, NIC NSG) was evaluated, so every rule scoped to asg-poolb was skipped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from shared.causes import nsg_blocks_10250, run_cause
from shared.model import Status
from shared.netrules.nsg_types import AdminRule, NetworkSecurityGroup, SecurityRule
from shared.snapshot import AgentPool, ClusterSnapshot, Node, Subnet, Unavailable
from tests.builders import NIC_NSG_ID, NSG_ID, SUB, SUBNET, snapshot

CAUSE = nsg_blocks_10250.CAUSE
RG = f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network"
ASG_A = f"{RG}/applicationSecurityGroups/asg-poola"
ASG_B = f"{RG}/applicationSecurityGroups/asg-poolb"
NIC_NSG_B = f"{RG}/networkSecurityGroups/nic-nsg-b"


def _node(pool: str, index: int, ip: str, asgs: tuple[str, ...], nic_nsg: str | None = None) -> Node:
    return Node(name=f"aks-{pool}-1-vmss00000{index}", pool=pool, private_ip=ip, subnet_id=SUBNET,
                instance_id=str(index), nic_nsg_id=nic_nsg, asg_ids=asgs)


POOL_A = tuple(_node("poola", i, f"10.224.0.{4 + i}", (ASG_A,)) for i in range(2))
POOL_B = tuple(_node("poolb", i, f"10.224.1.{4 + i}", (ASG_B.upper(),)) for i in range(2))
A_NAMES = {n.name for n in POOL_A}
B_NAMES = {n.name for n in POOL_B}


def _asg_rule(name: str, priority: int, access: str, *, source_asgs: tuple[str, ...] = (),
              destination_asgs: tuple[str, ...] = (), direction: str = "Inbound",
              nsg_id: str = NSG_ID) -> SecurityRule:
    return SecurityRule(name=name, priority=priority, direction=direction, access=access,  # type: ignore[arg-type]
                        protocol="Tcp", source_prefixes=("*",) if not source_asgs else (),
                        destination_prefixes=("*",) if not destination_asgs else (),
                        destination_ports=("10250",), source_asgs=source_asgs,
                        destination_asgs=destination_asgs, id=f"{nsg_id}/securityRules/{name}")


def two_pools(*rules: SecurityRule, **overrides: Any) -> ClusterSnapshot:
    snap = snapshot(subnet_rules=rules)
    return replace(snap, nodes=POOL_A + POOL_B,
                   pools=(AgentPool("poola", SUBNET, 2), AgentPool("poolb", SUBNET, 2)), **overrides)


def test_deny_from_an_asg_of_the_second_pool_is_detected() -> None:
    deny = _asg_rule("DenyFromPoolB", 200, "Deny", source_asgs=(ASG_B,))
    result = run_cause(CAUSE, two_pools(deny))
    assert result.status is Status.DETECTED, result
    assert result.subjects == (deny.id,)
    # from pool B nothing reaches any kubelet, pool B's own nodes included
    assert set(result.affected[deny.id]) == A_NAMES | B_NAMES
    assert any("aks-poolb" in e.detail and "DenyFromPoolB" in e.detail for e in result.evidence)


def test_deny_to_a_destination_asg_hits_only_that_pool() -> None:
    deny = _asg_rule("DenyToPoolA", 200, "Deny", destination_asgs=(ASG_A,))
    result = run_cause(CAUSE, two_pools(deny))
    assert result.status is Status.DETECTED
    assert set(result.affected[deny.id]) == A_NAMES


def test_outbound_deny_from_an_asg_is_detected_on_the_source_side() -> None:
    deny = _asg_rule("DenyOutPoolB", 300, "Deny", source_asgs=(ASG_B,), direction="Outbound")
    result = run_cause(CAUSE, two_pools(deny))
    assert result.status is Status.DETECTED
    assert any("outbound" in e.detail.lower() and "aks-poolb" in e.detail for e in result.evidence)


def test_allow_for_one_asg_above_a_deny_all_still_blocks_the_other_pool() -> None:
    allow = _asg_rule("AllowPoolA", 150, "Allow", source_asgs=(ASG_A,))
    deny = SecurityRule("DenyKubelet", 200, "Inbound", "Deny", "Tcp", destination_ports=("10250",),
                        id=f"{NSG_ID}/securityRules/DenyKubelet")
    result = run_cause(CAUSE, two_pools(allow, deny))
    assert result.status is Status.DETECTED
    assert result.subjects == (deny.id,)
    assert any("from aks-poolb" in e.detail for e in result.evidence)
    assert not any("from aks-poola" in e.detail and "DenyKubelet" in e.detail for e in result.evidence)


def test_allow_for_both_asgs_above_a_deny_all_is_clear() -> None:
    allow = _asg_rule("AllowPools", 150, "Allow", source_asgs=(ASG_A, ASG_B))
    deny = SecurityRule("DenyKubelet", 200, "Inbound", "Deny", "Tcp", destination_ports=("10250",),
                        id=f"{NSG_ID}/securityRules/DenyKubelet")
    assert run_cause(CAUSE, two_pools(allow, deny)).status is Status.CLEAR


def test_asg_no_node_carries_is_clear() -> None:
    gone = f"{RG}/applicationSecurityGroups/asg-gone"
    deny = _asg_rule("DenyFromGone", 200, "Deny", source_asgs=(gone,))
    assert run_cause(CAUSE, two_pools(deny)).status is Status.CLEAR


def test_deny_inside_one_asg_between_its_own_nodes_is_detected() -> None:
    deny = _asg_rule("DenyWithinB", 200, "Deny", source_asgs=(ASG_B,), destination_asgs=(ASG_B,))
    result = run_cause(CAUSE, two_pools(deny))
    assert result.status is Status.DETECTED
    assert set(result.affected[deny.id]) == B_NAMES


def test_deny_from_one_node_ip_is_not_hidden_behind_a_representative() -> None:
    """A /32 rule tells nodes of one pool apart: the second node's IP is a class of its own."""
    deny = SecurityRule("DenyOneNode", 200, "Inbound", "Deny", "Tcp", source_prefixes=("10.224.0.5/32",),
                        destination_ports=("10250",), id=f"{NSG_ID}/securityRules/DenyOneNode")
    result = run_cause(CAUSE, two_pools(deny))
    assert result.status is Status.DETECTED
    assert any("aks-poola-1-vmss000001" in e.detail for e in result.evidence)


def test_collected_asg_membership_alone_is_enough() -> None:
    """Collection fills address_context.asg_members from the NICs; nodes without asg_ids still match."""
    from shared.netrules.nsg_types import AddressContext

    deny = _asg_rule("DenyFromPoolB", 200, "Deny", source_asgs=(ASG_B,))
    plain = tuple(replace(n, asg_ids=()) for n in POOL_A + POOL_B)
    context = AddressContext(("10.224.0.0/12",), {ASG_B.lower(): frozenset(n.private_ip or "" for n in POOL_B)})
    snap = replace(two_pools(deny), nodes=plain, address_context=context)
    # with no asg_ids on the nodes every node is one class, but the B nodes' IPs are ASG members:
    result = run_cause(CAUSE, snap)
    assert result.status is Status.DETECTED


# ------------------------------------------------------------------ partial results (issue 8 item 2)


def _split_nic_nsgs(a_rules: tuple[SecurityRule, ...], b_rules: tuple[SecurityRule, ...] | None,
                    **overrides: Any) -> ClusterSnapshot:
    """Pool A behind NIC NSG `nic-nsg`, pool B behind `nic-nsg-b` (None: B's NSG could not be read)."""
    snap = snapshot(nic_rules=a_rules)
    nodes = tuple(replace(n, nic_nsg_id=NIC_NSG_ID) for n in POOL_A) + tuple(
        replace(n, nic_nsg_id=NIC_NSG_B) for n in POOL_B)
    assert not isinstance(snap.nsgs, Unavailable)
    nsgs = dict(snap.nsgs)
    errors: dict[str, str] = {}
    if b_rules is None:
        errors[NIC_NSG_B.lower()] = "access denied (403 AuthorizationFailed) reading NSG nic-nsg-b"
    else:
        nsgs[NIC_NSG_B] = NetworkSecurityGroup(NIC_NSG_B, "nic-nsg-b", b_rules)
    return replace(snap, nodes=nodes, nsgs=nsgs, nsg_errors=errors, **overrides)


def _deny(name: str, nsg_id: str, source: str = "*", priority: int = 200) -> SecurityRule:
    return SecurityRule(name, priority, "Inbound", "Deny", "Tcp", source_prefixes=(source,),
                        destination_ports=("10250",), id=f"{nsg_id}/securityRules/{name}")


def test_denied_and_undecided_flows_give_detected_with_the_undecided_nodes_unchecked() -> None:
    deny = _deny("DenyKubelet", NIC_NSG_ID)
    cloud = _deny("DenyCloud", NIC_NSG_B, source="AzureCloud", priority=100)
    result = run_cause(CAUSE, _split_nic_nsgs((deny,), (cloud,)))
    assert result.status is Status.DETECTED
    assert result.subjects == (deny.id,)
    assert set(result.affected[deny.id]) == A_NAMES
    assert set(result.unchecked) == B_NAMES
    assert all("AzureCloud" in why for why in result.unchecked.values())
    assert "unchecked" in result.to_json()


def test_only_undecided_flows_give_unknown_listing_them() -> None:
    cloud = _deny("DenyCloud", NIC_NSG_B, source="AzureCloud", priority=100)
    result = run_cause(CAUSE, _split_nic_nsgs((), (cloud,)))
    assert result.status is Status.UNKNOWN
    assert "AzureCloud" in (result.reason or "")
    assert set(result.unchecked) == B_NAMES


def test_unreadable_nic_nsg_of_one_pool_is_unknown_and_names_every_node_it_touches() -> None:
    """B's NIC NSG is on B's outbound path too, so flows from B into A are undecided as well."""
    result = run_cause(CAUSE, _split_nic_nsgs((), None))
    assert result.status is Status.UNKNOWN
    assert "403" in (result.reason or "")
    assert set(result.unchecked) == A_NAMES | B_NAMES
    assert "from aks-poolb" in result.unchecked["aks-poola-1-vmss000000"]


def test_unreadable_nsg_beside_a_deny_elsewhere_is_detected_with_unchecked() -> None:
    deny = _deny("DenyKubelet", NIC_NSG_ID)
    result = run_cause(CAUSE, _split_nic_nsgs((deny,), None))
    assert result.status is Status.DETECTED
    assert set(result.affected[deny.id]) == A_NAMES
    assert set(result.unchecked) == B_NAMES
    assert all("403" in why for why in result.unchecked.values())


def test_subnet_deny_holds_whatever_the_unread_nic_nsg_says() -> None:
    subnet_deny = _deny("SubnetDeny", NSG_ID)
    snap = _split_nic_nsgs((), None)
    assert not isinstance(snap.nsgs, Unavailable)
    nsgs = dict(snap.nsgs)
    nsgs[NSG_ID] = NetworkSecurityGroup(NSG_ID, "agentpool-nsg", (subnet_deny,))
    result = run_cause(CAUSE, replace(snap, nsgs=nsgs))
    assert result.status is Status.DETECTED
    assert set(result.affected[subnet_deny.id]) == A_NAMES | B_NAMES
    assert not result.unchecked  # every flow is denied before the unread NSG is reached or matters


def test_avnm_always_allow_makes_an_unread_nsg_irrelevant() -> None:
    always = (AdminRule("AlwaysKubeletIn", 10, "Inbound", "AlwaysAllow", "Tcp", destination_ports=("10250",)),
              AdminRule("AlwaysKubeletOut", 10, "Outbound", "AlwaysAllow", "Tcp", destination_ports=("10250",)))
    assert run_cause(CAUSE, _split_nic_nsgs((), None, admin_rules=always)).status is Status.CLEAR


def test_forbidden_avnm_is_unknown_even_with_clean_nsgs() -> None:
    result = run_cause(CAUSE, two_pools(admin_rules=Unavailable(
        "access denied (403 AuthorizationFailed) reading AVNM security admin rules of vnet")))
    assert result.status is Status.UNKNOWN
    assert "AVNM" in (result.reason or "")


def test_throttled_nic_list_is_unknown() -> None:
    reason = "ARM kept throttling (429) reading the node pools' scale sets and NICs; retries exhausted"
    result = run_cause(CAUSE, snapshot(nodes=Unavailable(reason), nsgs=Unavailable(reason)))
    assert result.status is Status.UNKNOWN
    assert "429" in (result.reason or "")


def test_node_on_a_subnet_that_was_not_collected_is_unknown_not_clear() -> None:
    stray = replace(POOL_B[0], subnet_id=SUBNET.replace("aks-subnet", "other"))
    snap = replace(two_pools(), nodes=(*POOL_A, stray))
    result = run_cause(CAUSE, snap)
    assert result.status is Status.UNKNOWN
    assert "was not collected" in (result.reason or "")


def test_second_subnet_with_its_own_nsg_is_evaluated_on_both_ends() -> None:
    other_subnet = SUBNET.replace("aks-subnet", "poolb-subnet")
    other_nsg = f"{RG}/networkSecurityGroups/poolb-nsg"
    out_deny = SecurityRule("DenyOut", 200, "Outbound", "Deny", "Tcp", destination_ports=("10250",),
                            id=f"{other_nsg}/securityRules/DenyOut")
    snap = two_pools()
    assert not isinstance(snap.nsgs, Unavailable)
    nodes = (*POOL_A, *(replace(n, subnet_id=other_subnet) for n in POOL_B))
    subnets = {**snap.subnets, other_subnet.lower(): Subnet(other_subnet, ("10.224.1.0/24",), other_nsg)}
    nsgs = {**snap.nsgs, other_nsg: NetworkSecurityGroup(other_nsg, "poolb-nsg", (out_deny,))}
    result = run_cause(CAUSE, replace(snap, nodes=nodes, subnets=subnets, nsgs=nsgs))
    assert result.status is Status.DETECTED
    assert result.subjects == (out_deny.id,)


def test_no_running_node_with_an_ip_is_unknown() -> None:
    stopped = tuple(replace(n, running=False) for n in POOL_A + POOL_B)
    result = run_cause(CAUSE, replace(two_pools(), nodes=stopped))
    assert result.status is Status.UNKNOWN
    assert "no running nodes" in (result.reason or "")
