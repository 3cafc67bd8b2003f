"""Review of issue 10: authorized-ip-ranges-exclude-egress must not read `clear` when the egress it judged is
only part of the cluster's egress.

Collection picks the egress addresses from the outbound type and what it could read: a node VNet it could
not read hides a NAT gateway on the node subnet (which takes over egress from the load balancer), and only
the first routed subnet's firewall is followed. The cause itself now checks every node subnet's default
route against what was collected, so any egress path the addresses do not cover leaves it unknown.
Plus the range shapes: 0.0.0.0/0, a bare IP vs /32, IPv6 ranges, a prefix inside a larger range.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.causes import run_cause
from shared.causes.authorized_ip_ranges import CAUSE
from shared.model import CauseResult, Status
from shared.netrules.firewall_types import Firewall
from shared.snapshot import ClusterSnapshot, EgressAddress, EgressIps, Route, RouteTable, Subnet, Unavailable
from tests.builders import RT_ID, SUB, SUBNET, routed_snapshot, snapshot

PIP = f"/subscriptions/{SUB}/resourceGroups/mc/providers/Microsoft.Network/publicIPAddresses/outbound-1"
FW_PIP = f"/subscriptions/{SUB}/resourceGroups/hub/providers/Microsoft.Network/publicIPAddresses/fw-pip"
FW2_PIP = f"/subscriptions/{SUB}/resourceGroups/hub/providers/Microsoft.Network/publicIPAddresses/fw2-pip"
FW_ID = f"/subscriptions/{SUB}/resourceGroups/hub/providers/Microsoft.Network/azureFirewalls/hub-fw"
FW2_ID = f"/subscriptions/{SUB}/resourceGroups/hub/providers/Microsoft.Network/azureFirewalls/hub-fw-2"
LB = f"/subscriptions/{SUB}/resourceGroups/mc/providers/Microsoft.Network/loadBalancers/kubernetes"
SUBNET2 = SUBNET.rsplit("/", 1)[0] + "/aks-subnet-2"
RT2_ID = RT_ID + "-2"


def lb_egress(address: str = "20.61.3.7") -> EgressIps:
    return EgressIps((EgressAddress(address, PIP, LB),))


def judge(snap: ClusterSnapshot, ranges: tuple[str, ...], egress: EgressIps) -> CauseResult:
    return run_cause(CAUSE, replace(snap, authorized_ip_ranges=ranges, egress_ips=egress))


def test_node_vnet_unread_is_unknown_not_clear() -> None:
    # The VNet read failed: no subnet is known, so a NAT gateway on it (the real egress) was never seen.
    snap = replace(snapshot(), subnets={})
    result = judge(snap, ("20.61.0.0/16",), lb_egress())
    assert result.status is Status.UNKNOWN, result  # was: clear, from the load balancer's IP alone
    assert SUBNET in result.unchecked


def test_a_second_node_subnet_routed_through_another_firewall_is_not_clear() -> None:
    fw1 = Firewall(FW_ID, "10.0.1.4", public_ip_ids=(FW_PIP,))
    fw2 = Firewall(FW2_ID, "10.0.2.4", public_ip_ids=(FW2_PIP,))
    base = routed_snapshot(fw1)
    nodes = base.nodes
    assert not isinstance(nodes, Unavailable)
    moved = (*nodes[:2], replace(nodes[2], subnet_id=SUBNET2))
    subnets = {**base.subnets, SUBNET2.lower(): Subnet(SUBNET2, ("10.225.0.0/24",), None, RT2_ID)}
    tables = {**base.route_tables,
              RT2_ID.lower(): RouteTable(RT2_ID, (Route("default", "0.0.0.0/0", "VirtualAppliance", "10.0.2.4"),))}
    snap = replace(base, nodes=moved, subnets=subnets, route_tables=tables,
                   appliances={"10.0.1.4": fw1, "10.0.2.4": fw2})
    egress = EgressIps((EgressAddress("52.1.1.1", FW_PIP, FW_ID),))  # collection followed the first firewall only
    result = judge(snap, ("52.1.1.0/24",), egress)
    assert result.status is Status.UNKNOWN, result  # was: clear
    assert FW2_ID in result.unchecked
    # Both firewalls' IPs collected and inside: clear.
    both = EgressIps((EgressAddress("52.1.1.1", FW_PIP, FW_ID), EgressAddress("52.2.2.2", FW2_PIP, FW2_ID)))
    assert judge(snap, ("52.1.1.0/24", "52.2.2.2/32"), both).status is Status.CLEAR


def test_unreadable_route_table_or_appliance_is_unknown() -> None:
    fw = Firewall(FW_ID, "10.0.1.4", public_ip_ids=(FW_PIP,))
    egress = EgressIps((EgressAddress("52.1.1.1", FW_PIP, FW_ID),))
    unreadable = replace(routed_snapshot(fw), route_tables={}, unreadable_route_tables={RT_ID.lower(): "403"})
    assert judge(unreadable, ("52.1.1.0/24",), egress).status is Status.UNKNOWN
    nva = routed_snapshot(Unavailable("next hop 10.0.1.4 is a virtual appliance that is not an Azure Firewall"))
    # Collection would have made the egress Unavailable; even if a stale address is there, never clear.
    assert judge(nva, ("52.1.1.0/24",), egress).status is Status.UNKNOWN


def test_load_balancer_outbound_with_a_default_route_to_a_firewall_is_not_clear() -> None:
    # outboundType loadBalancer, but the node subnet sends 0.0.0.0/0 to a firewall: the firewall's IPs egress.
    fw = Firewall(FW_ID, "10.0.1.4", public_ip_ids=(FW_PIP,))
    snap = replace(routed_snapshot(fw), outbound_type="loadBalancer")
    assert judge(snap, ("20.61.0.0/16",), lb_egress()).status is Status.UNKNOWN  # was: clear


def test_default_route_to_a_vpn_gateway_is_unknown() -> None:
    base = routed_snapshot(Unavailable("unused"))
    table = RouteTable(RT_ID, (Route("to-onprem", "0.0.0.0/0", "VirtualNetworkGateway"),))
    snap = replace(base, route_tables={RT_ID.lower(): table}, appliances={}, outbound_type="loadBalancer")
    assert judge(snap, ("20.61.0.0/16",), lb_egress()).status is Status.UNKNOWN


def test_the_firewall_collection_followed_is_clear_when_inside() -> None:
    fw = Firewall(FW_ID, "10.0.1.4", public_ip_ids=(FW_PIP,))
    egress = EgressIps((EgressAddress("52.1.1.1", FW_PIP, FW_ID),))
    assert judge(routed_snapshot(fw), ("52.1.1.0/24",), egress).status is Status.CLEAR


@pytest.mark.parametrize(("ranges", "address", "status"), [
    (("0.0.0.0/0",), "20.61.3.7", Status.CLEAR),
    (("20.61.3.7",), "20.61.3.7", Status.CLEAR),          # a bare IP is a /32
    (("20.61.3.7/32",), "20.61.3.7/32", Status.CLEAR),
    (("20.61.0.0/16",), "20.61.3.0/28", Status.CLEAR),    # an outbound prefix inside a larger range
    (("20.61.3.0/29",), "20.61.3.0/28", Status.DETECTED),  # half of the prefix outside
    (("2001:db8::/32",), "20.61.3.7", Status.DETECTED),   # IPv6 ranges do not cover an IPv4 egress
    (("::/0",), "20.61.3.7", Status.DETECTED),
    (("2001:db8::/32", "20.61.3.7/32"), "2001:db8::5", Status.CLEAR),
])
def test_range_shapes(ranges: tuple[str, ...], address: str, status: Status) -> None:
    assert judge(snapshot(), ranges, lb_egress(address)).status is status
