"""The firewall evaluator must agree with the naive reference on random firewalls and flows.

Random rules almost never match a random flow, so the flow is drawn first and every rule side is drawn
from small pools that contain the flow's own values (its source IP, a CIDR around it, one just beside
it, its port, a range around it, the API host and wildcards covering or missing it) next to the things
that cannot be decided here (service tags, web categories, unread IP groups). Layers, group priorities
and collection priorities are drawn from tiny sets so that rules overlap and shadow each other, which
is where ordering bugs show.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.netrules.firewall import Packet, evaluate_firewall
from shared.netrules.firewall_types import Firewall, FirewallRule
from tests.firewall_reference import ref_evaluate

NODE_IP = "10.20.0.4"
API_IP = "20.50.2.10"
HOST = "aks1-abc.hcp.eastus.azmk8s.io"
GROUP_NODES = "/subscriptions/s/resourceGroups/hub/providers/Microsoft.Network/ipGroups/aks-nodes"
GROUP_OTHER = "/subscriptions/s/resourceGroups/hub/providers/Microsoft.Network/ipGroups/other"
GROUP_UNREAD = "/subscriptions/s/resourceGroups/hub/providers/Microsoft.Network/ipGroups/forbidden"
GROUP_API = "/subscriptions/s/resourceGroups/hub/providers/Microsoft.Network/ipGroups/api"

SOURCES = ["*", "*", NODE_IP, "10.20.0.0/22", "10.20.4.0/22", "10.20.0.5", "10.20.0.1-10.20.0.9",
           "10.20.0.5-10.20.0.9", "192.168.0.0/16", "10.0.0.0/8", "VirtualNetwork"]
DESTINATIONS = ["*", API_IP, "20.50.2.0/24", "20.50.3.0/24", "AzureCloud", "AzureCloud.eastus", "Storage",
                "20.50.2.1-20.50.2.20", "10.0.0.0/8", "0.0.0.0/0"]
FQDNS = ["*", HOST, "*.hcp.eastus.azmk8s.io", "*.azmk8s.io", "*.hcp.westus.azmk8s.io", "other.hcp.eastus.azmk8s.io",
         "mcr.microsoft.com", "*azmk8s.io", "*.ubuntu.com"]
PORTS = ["*", "443", "443", "9000", "1194", "443-444", "1-1000", "8443", "80", "bad"]
NET_PROTOCOLS = ["TCP", "UDP", "Any", "ICMP"]
APP_PROTOCOLS = ["Https:443", "Http:80", "Https:8443", "Mssql:1433", "Http:443"]
TAGS = ["AzureKubernetesService", "WindowsUpdate", "azurekubernetesservice"]


def _subset(pool: list[str], max_size: int = 3, min_size: int = 0) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(pool), min_size=min_size, max_size=max_size).map(tuple)


@st.composite
def rules(draw: st.DrawFn, index: int) -> FirewallRule:
    kind = draw(st.sampled_from(["network", "network", "application", "nat"]))
    common: dict[str, Any] = {
        "collection": f"c{draw(st.integers(0, 3))}",
        "collection_priority": draw(st.sampled_from([100, 200, 300])),
        "action": draw(st.sampled_from(["Allow", "Deny", "allow"])),
        "name": f"r{index}",
        "kind": kind,
        "source_addresses": draw(_subset(SOURCES, 2, 1)),
        "source_ip_groups": draw(_subset([GROUP_NODES, GROUP_OTHER, GROUP_UNREAD], 2)),
        "layer": draw(st.sampled_from([0, 0, 1])),
        "group_priority": draw(st.sampled_from([0, 100, 200])),
    }
    if kind == "application":
        return FirewallRule(
            protocols=draw(_subset(APP_PROTOCOLS, 2, 1)),
            destination_fqdns=draw(_subset(FQDNS, 2)),
            fqdn_tags=draw(_subset(TAGS, 1)),
            web_categories=draw(st.sampled_from([(), ("Hacking",)])),
            target_urls=draw(st.sampled_from([(), (f"{HOST}/api",), ("www.example.com/x",)])),
            destination_addresses=draw(st.sampled_from([(), (API_IP,), ("AzureCloud",)])),
            **common,
        )
    return FirewallRule(
        protocols=draw(_subset(NET_PROTOCOLS, 2, 1)),
        destination_addresses=draw(_subset(DESTINATIONS, 2, 1)),
        destination_ip_groups=draw(_subset([GROUP_API, GROUP_UNREAD], 1)),
        destination_fqdns=draw(_subset(FQDNS, 1)),
        destination_ports=draw(_subset(PORTS, 2, 1)),
        **common,
    )


@st.composite
def firewalls(draw: st.DrawFn) -> Firewall:
    count = draw(st.integers(0, 8))
    drawn = tuple(draw(rules(i)) for i in range(count))
    return Firewall(
        id="/subscriptions/s/resourceGroups/hub/providers/Microsoft.Network/azureFirewalls/fw",
        private_ip="10.0.1.4", rules=drawn, dns_proxy=draw(st.booleans()),
        ip_groups={GROUP_NODES: ("10.20.0.0/24",), GROUP_OTHER: ("10.30.0.0/16",), GROUP_API: (API_IP,)},
        unreadable={GROUP_UNREAD: "403"},
    )


packets = st.builds(
    Packet,
    source_ip=st.sampled_from([NODE_IP, "10.20.4.9", "10.20.0.5"]),
    protocol=st.sampled_from(["TCP", "UDP"]),
    port=st.sampled_from([443, 9000, 1194, 8443]),
    host=st.sampled_from([HOST, "*.hcp.eastus.azmk8s.io"]),
    destination_ip=st.sampled_from([API_IP, None, "20.50.3.7"]),
    tls=st.booleans(),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(firewall=firewalls(), packet=packets)
def test_evaluator_agrees_with_the_reference(firewall: Firewall, packet: Packet) -> None:
    got = evaluate_firewall(firewall, packet)
    want = ref_evaluate(firewall, packet)
    assert got.allowed == want.allowed, (got, want)
    assert (got.rule.name if got.rule else None) == want.rule_name, (got, want)


@settings(max_examples=100, deadline=None)
@given(firewall=firewalls(), packet=packets)
def test_order_of_the_rule_list_does_not_matter(firewall: Firewall, packet: Packet) -> None:
    """Azure orders by kind, layer, group and collection priority, not by where a rule was written
    (rules sharing all four keys sit in one collection and share its action, so only the name may move)."""
    reversed_fw = Firewall(firewall.id, firewall.private_ip, tuple(reversed(firewall.rules)),
                           dns_proxy=firewall.dns_proxy, ip_groups=firewall.ip_groups, unreadable=firewall.unreadable)
    forward, backward = evaluate_firewall(firewall, packet), evaluate_firewall(reversed_fw, packet)
    keys = {(r.kind, r.layer, r.group_priority, r.collection_priority) for r in firewall.rules}
    if len(keys) == len(firewall.rules):
        assert forward.allowed == backward.allowed
