"""The compiled evaluator must agree with the naive reference on random NSGs, admin rules and flows.

Rules drawn at random almost never match a random flow, and then only the default rules get tested.
So each example draws the flow first and builds every rule dimension either "fitted" to the flow (its
exact IP or port, a range that just covers it, one that just misses it) or from a small pool of
everything Azure allows (tags, unknown tags, CIDRs, IPv6, ASGs, lists, malformed ports). Rules then
overlap, shadow each other and sit on boundaries, which is where a compiled evaluator goes wrong.
"""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.netrules.nsg import evaluate_nsg, evaluate_path
from shared.netrules.nsg_types import (
    AddressContext,
    AdminRule,
    Direction,
    Flow,
    NetworkSecurityGroup,
    SecurityRule,
)
from tests.nsg_reference import ref_evaluate_nsg, ref_evaluate_path, reference_path_matches

ASG_A = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/asg-a"
ASG_B = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/asg-b"
ASG_GONE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/gone"

PREFIX_POOL = [
    "*",
    "Any",
    "VirtualNetwork",
    "virtualnetwork",
    "AzureLoadBalancer",
    "Internet",
    "AzureCloud",
    "Storage.WestEurope",
    "10.0.0.0/16",
    "10.0.1.0/24",
    "10.0.1.4",
    "10.0.1.5/32",
    "10.50.0.0/16",
    "192.168.0.0/16",
    "8.8.8.0/24",
    "0.0.0.0/0",
    "168.63.129.16",
    "100.64.0.0/10",
    "52.0.0.0/8",
    "2001:db8::/32",
    "::/0",
]
PORT_POOL = [
    "*",
    "10250",
    "10249",
    "10251",
    "10000-11000",
    "80",
    "443",
    "0-65535",
    "22-80",
    "0-10250",
    "10251-65535",
    "10252-65535",
    "1025O",
]
PROTOCOL_POOL = ["Tcp", "Udp", "Icmp", "Esp", "Ah", "*", "tcp", "Any"]
FLOW_IP_POOL = [
    "10.0.1.4",
    "10.0.1.5",
    "10.0.2.9",
    "10.50.3.3",
    "10.99.0.1",
    "192.168.1.1",
    "172.20.0.1",
    "8.8.8.8",
    "52.1.2.3",
    "168.63.129.16",
    "100.64.1.1",
    "127.0.0.1",
    "169.254.1.1",
]
FLOW_PORT_POOL = [0, 22, 80, 443, 9999, 10000, 10249, 10250, 10251, 11000, 11001, 50123, 65535]

CONTEXTS = [
    AddressContext(vnet_prefixes=("10.0.0.0/16",)),
    AddressContext(
        vnet_prefixes=("10.0.0.0/16", "10.50.0.0/16"),
        asg_members={ASG_A.lower(): frozenset({"10.0.1.4"}), ASG_B.lower(): frozenset({"10.0.1.5", "10.0.2.9"})},
    ),
]

DIRECTIONS: list[Direction] = ["Inbound", "Outbound"]
directions = st.sampled_from(DIRECTIONS)
flows = st.builds(
    Flow,
    direction=directions,
    protocol=st.sampled_from(["Tcp", "Tcp", "Tcp", "Udp", "Icmp", "Esp", "Ah", "TCP"]),
    source_ip=st.one_of(st.sampled_from(FLOW_IP_POOL), st.ip_addresses(v=4).map(str)),
    source_port=st.sampled_from(FLOW_PORT_POOL),
    destination_ip=st.one_of(st.sampled_from(FLOW_IP_POOL), st.ip_addresses(v=4).map(str)),
    destination_port=st.sampled_from(FLOW_PORT_POOL),
)


def prefixes_near(ip: str) -> list[str]:
    """The flow's own address, as a single IP, a /32, its /24, and a neighbouring /24 that misses."""
    own_24 = ipaddress.ip_network(f"{ip}/24", strict=False)
    next_24 = ipaddress.ip_network((int(own_24.network_address) + 256) % 2**32).supernet(new_prefix=24)
    return [ip, f"{ip}/32", str(own_24), str(next_24)]


def ports_near(port: int) -> list[str]:
    """The flow's port exactly, ranges ending or starting on it, and ranges just beside it."""
    below, above = max(port - 1, 0), min(port + 1, 65535)
    return [str(port), f"{port}-{port}", f"{below}-{port}", f"{port}-{above}", f"0-{below}", f"{above}-65535"]


def side(near: list[str], pool: list[str]) -> st.SearchStrategy[tuple[str, ...]]:
    item = st.one_of(st.sampled_from(near), st.sampled_from(near), st.sampled_from(pool))
    return st.one_of(st.just(("*",)), st.lists(item, min_size=1, max_size=3).map(tuple))


ANY_PORT = st.just(("*",))
ASG_SIDES = st.tuples(
    st.sampled_from([(), ("*",), ("*",), ("10.0.1.0/24",)]),
    st.lists(st.sampled_from([ASG_A, ASG_A.upper(), ASG_B, ASG_GONE]), min_size=1, max_size=2).map(tuple),
)


class Palette:
    """Strategies for rule fields, fitted to one flow; built once per example because building
    Hypothesis strategies is far slower than drawing from them."""

    def __init__(self, flow: Flow) -> None:
        self.direction: st.SearchStrategy[Direction] = st.one_of(st.just(flow.direction), directions)
        self.protocol = st.one_of(st.just(flow.protocol), st.sampled_from(PROTOCOL_POOL))
        self.sources = side(prefixes_near(flow.source_ip), PREFIX_POOL)
        self.destinations = side(prefixes_near(flow.destination_ip), PREFIX_POOL)
        self.source_ports = st.one_of(ANY_PORT, ANY_PORT, side(ports_near(flow.source_port), PORT_POOL))
        self.destination_ports = side(ports_near(flow.destination_port), PORT_POOL)
        # Prefixes (four times in five) or ASGs, usually beside a `*` placeholder.
        self.source_side = st.one_of(*[self.sources.map(lambda p: (p, ()))] * 4, ASG_SIDES)
        self.destination_side = st.one_of(*[self.destinations.map(lambda p: (p, ()))] * 4, ASG_SIDES)


@st.composite
def security_rules(draw: st.DrawFn, palette: Palette, name: str) -> SecurityRule:
    source, source_asgs = draw(palette.source_side)
    destination, destination_asgs = draw(palette.destination_side)
    return SecurityRule(
        name=name,
        priority=draw(st.integers(100, 4096)),
        direction=draw(palette.direction),
        access=draw(st.sampled_from(["Allow", "Deny", "deny"])),
        protocol=draw(palette.protocol),
        source_prefixes=source,
        source_ports=draw(palette.source_ports),
        destination_prefixes=destination,
        destination_ports=draw(palette.destination_ports),
        source_asgs=source_asgs,
        destination_asgs=destination_asgs,
        id=draw(st.sampled_from(["", f"/explicit/{name}"])),
    )


@st.composite
def nsgs(draw: st.DrawFn, palette: Palette, label: str, *, present: bool = False) -> NetworkSecurityGroup | None:
    if not present and draw(st.integers(0, 5)) == 0:
        return None
    count = draw(st.integers(0, 12))
    rules = tuple(draw(security_rules(palette, f"{label}-r{i}")) for i in range(count))
    return NetworkSecurityGroup(id=f"/nsg/{label}", name=label, rules=rules)


@st.composite
def admin_rules(draw: st.DrawFn, palette: Palette) -> tuple[AdminRule, ...]:
    count = draw(st.sampled_from([0, 0, 1, 2, 4]))
    return tuple(
        AdminRule(
            name=f"admin-{i}",
            priority=draw(st.integers(1, 50)),
            direction=draw(palette.direction),
            access=draw(st.sampled_from(["Allow", "Deny", "AlwaysAllow"])),
            protocol=draw(palette.protocol),
            sources=draw(palette.sources),
            destinations=draw(palette.destinations),
            source_ports=draw(palette.source_ports),
            destination_ports=draw(palette.destination_ports),
            id=f"/avnm/admin-{i}",
        )
        for i in range(count)
    )


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(data=st.data(), context=st.sampled_from(CONTEXTS))
def test_single_nsg_agrees_with_reference(data: st.DataObject, context: AddressContext) -> None:
    flow = data.draw(flows)
    nsg = data.draw(nsgs(Palette(flow), "single", present=True))
    assert nsg is not None
    actual = evaluate_nsg(flow, nsg, context)
    expected = ref_evaluate_nsg(flow, nsg, context)
    assert actual.allowed is expected.allowed
    assert actual.decision == expected.decision
    if expected.blamed_rule is None:
        assert actual.reason is None
    else:
        assert actual.reason is not None
        assert f"'{expected.blamed_rule}'" in actual.reason


@SETTINGS
@given(data=st.data(), context=st.sampled_from(CONTEXTS))
def test_path_with_admin_rules_agrees_with_reference(data: st.DataObject, context: AddressContext) -> None:
    flow = data.draw(flows)
    palette = Palette(flow)
    path = [data.draw(nsgs(palette, "subnet")), data.draw(nsgs(palette, "nic"))]
    admin = data.draw(admin_rules(palette))
    actual = evaluate_path(flow, path, context=context, admin_rules=admin)
    expected = ref_evaluate_path(flow, path, context, admin)
    assert reference_path_matches(actual, expected), (actual, expected)


@SETTINGS
@given(data=st.data(), context=st.sampled_from(CONTEXTS))
def test_repeated_evaluation_gives_the_same_answer(data: st.DataObject, context: AddressContext) -> None:
    """The compiled form is cached per object: asking again, or with an equal copy, must not differ."""
    flow = data.draw(flows)
    nsg = data.draw(nsgs(Palette(flow), "cached"))
    first = evaluate_path(flow, [nsg], context=context)
    assert evaluate_path(flow, [nsg], context=context) == first
    copy = None if nsg is None else NetworkSecurityGroup(nsg.id, nsg.name, tuple(nsg.rules))
    assert evaluate_path(flow, [copy], context=context) == first
