"""The NSG cause, which decides one flow per class of indistinguishable nodes, must agree with a naive
walk over every ordered pair of nodes (tests/nsg_reference.py::ref_cluster) on random clusters.

Nodes get random subnets, NIC NSGs and ASG sets; rules are drawn from sides that matter here (ASGs the
nodes carry or not, single node IPs, subnet prefixes, VirtualNetwork, unknown tags) so that classes
split, merge and shadow each other. What must agree: which rules block, which nodes each blocks, which
nodes are left undecided, and hence the status.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.causes import nsg_blocks_10250, run_cause
from shared.model import Status
from shared.netrules.nsg_types import AddressContext, AdminRule, NetworkSecurityGroup, SecurityRule
from shared.snapshot import Node, Subnet
from tests.builders import snapshot
from tests.nsg_reference import ReferenceNode, ref_cluster

NET = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network"
ASGS = [f"{NET}/applicationSecurityGroups/asg-{x}" for x in ("a", "b", "c")]
SUBNETS = [(f"{NET}/virtualNetworks/v/subnets/s{i}", f"10.1.{i}.0/24", f"{NET}/networkSecurityGroups/subnet-{i}")
           for i in range(2)]
NIC_NSGS = [f"{NET}/networkSecurityGroups/nic-{i}" for i in range(2)]
VNET = ("10.1.0.0/16",)


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[Node], dict[str, NetworkSecurityGroup], tuple[AdminRule, ...]]:
    count = draw(st.integers(1, 6))
    nodes: list[Node] = []
    for i in range(count):
        subnet = draw(st.sampled_from(SUBNETS))
        host = draw(st.integers(4, 7))
        ip = f"10.1.{subnet[1].split('.')[2]}.{host + 10 * i}"
        nodes.append(Node(
            name=f"n{i}", pool=f"p{i % 2}", private_ip=ip, subnet_id=subnet[0],
            nic_nsg_id=draw(st.sampled_from([None, *NIC_NSGS])),
            asg_ids=tuple(draw(st.lists(st.sampled_from(ASGS), max_size=2, unique=True))),
        ))
    ips = [n.private_ip or "" for n in nodes]
    prefix = st.sampled_from(["*", "VirtualNetwork", "10.1.0.0/24", "10.1.1.0/24", "AzureCloud", "Internet",
                              *ips, *(f"{ip}/32" for ip in ips)])

    def side() -> tuple[tuple[str, ...], tuple[str, ...]]:
        if draw(st.integers(0, 2)) == 0:
            return (), tuple(draw(st.lists(st.sampled_from(ASGS), min_size=1, max_size=2, unique=True)))
        return (draw(prefix),), ()

    nsgs: dict[str, NetworkSecurityGroup] = {}
    for nsg_id in [s[2] for s in SUBNETS] + NIC_NSGS:
        rules = []
        for r in range(draw(st.integers(0, 4))):
            source, source_asgs = side()
            destination, destination_asgs = side()
            rules.append(SecurityRule(
                name=f"r{r}", priority=draw(st.integers(100, 110)) * 10 + r,
                direction=draw(st.sampled_from(["Inbound", "Outbound"])),
                access=draw(st.sampled_from(["Allow", "Deny", "Deny"])),
                protocol=draw(st.sampled_from(["Tcp", "*", "Udp"])),
                source_prefixes=source, source_asgs=source_asgs,
                destination_prefixes=destination, destination_asgs=destination_asgs,
                destination_ports=(draw(st.sampled_from(["10250", "*", "22", "10000-11000"])),),
                id=f"{nsg_id}/securityRules/r{r}",
            ))
        nsgs[nsg_id] = NetworkSecurityGroup(nsg_id, nsg_id.rsplit("/", 1)[-1], tuple(rules))
    admin = tuple(
        AdminRule(f"admin-{i}", draw(st.integers(1, 9)), draw(st.sampled_from(["Inbound", "Outbound"])),
                  draw(st.sampled_from(["Allow", "Deny", "AlwaysAllow"])), "Tcp",
                  sources=(draw(prefix),), destination_ports=("10250",), id=f"/avnm/admin-{i}")
        for i in range(draw(st.sampled_from([0, 0, 0, 1, 2])))
    )
    return nodes, nsgs, admin


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters())
def test_cause_agrees_with_every_pair_reference(cluster: tuple[list[Node], dict[str, NetworkSecurityGroup],
                                                               tuple[AdminRule, ...]]) -> None:
    nodes, nsgs, admin = cluster
    subnets = {s[0].lower(): Subnet(s[0], (s[1],), s[2]) for s in SUBNETS}
    snap = replace(snapshot(), nodes=tuple(nodes), subnets=subnets, nsgs=nsgs, admin_rules=admin,
                   address_context=AddressContext(VNET))
    result = run_cause(nsg_blocks_10250.CAUSE, snap)

    subnet_nsg = {s[0]: nsgs[s[2]] for s in SUBNETS}
    expected = ref_cluster(
        [ReferenceNode(n.name, n.private_ip or "", subnet_nsg[n.subnet_id],
                       nsgs[n.nic_nsg_id] if n.nic_nsg_id else None, n.asg_ids) for n in nodes],
        VNET, admin)

    assert set(result.subjects) == set(expected.blocking_rules), (result, expected)
    for rule_id, destinations in expected.blocked_destinations.items():
        assert set(result.affected[rule_id]) == destinations, rule_id
    assert set(result.unchecked) == set(expected.undecided_destinations)
    if expected.blocking_rules:
        assert result.status is Status.DETECTED
    elif expected.undecided_destinations:
        assert result.status is Status.UNKNOWN
    else:
        assert result.status is Status.CLEAR
