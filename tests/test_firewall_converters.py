"""Firewall, Firewall Policy, rule collection group and IP group converters, on Azure's own examples."""

from __future__ import annotations

from shared.azure import rest, rest_firewall
from shared.netrules.firewall import Packet, evaluate_firewall
from shared.netrules.firewall_types import Firewall
from tests.specs import example


def test_policy_example_reads_groups_threat_intel_and_dns_proxy() -> None:
    policy = rest_firewall.firewall_policy(example("Network/2024-07-01/FirewallPolicyGet.json"))
    assert policy.name == "firewallPolicy"
    assert policy.base_policy_id is None
    assert policy.threat_intel_mode == "Alert"
    assert policy.dns_proxy is True
    assert policy.sku_tier == "Premium"
    assert policy.group_ids == (
        "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/firewallPolicies/firewallPolicy/"
        "ruleCollectionGroups/ruleCollectionGroup1",)


def test_policy_with_a_parent() -> None:
    body = example("Network/2024-07-01/FirewallPolicyGet.json")
    body["properties"]["basePolicy"] = {"id": "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/"
                                              "firewallPolicies/parent"}
    assert rest_firewall.firewall_policy(body).base_policy_id is not None


def test_rule_collection_group_list_example() -> None:
    (group,) = example("Network/2024-07-01/FirewallPolicyRuleCollectionGroupList.json")["value"]
    (rule,) = rest_firewall.rule_collection_group(group, layer=1, policy_id="p")
    assert (rule.kind, rule.name, rule.action) == ("network", "network-rule-1", "Deny")
    assert (rule.group, rule.group_priority, rule.collection_priority, rule.layer) == (
        "ruleCollectionGroup1", 110, 120, 1)
    assert rule.protocols == ("TCP",)
    assert rule.source_addresses == ("10.1.25.0/24",)
    assert rule.destination_addresses == ("*",)
    assert rule.destination_ports == ("*",)
    assert rule.collection_id == group["id"]


def test_rule_with_only_ip_groups_is_not_from_anywhere() -> None:
    group = example("Network/2024-07-01/FirewallPolicyRuleCollectionGroupWithIpGroupsGet.json")
    (rule,) = rest_firewall.rule_collection_group(group)
    assert rule.source_addresses == ()
    assert rule.source_ip_groups == ("/subscriptions/subid/providers/Microsoft.Network/resourceGroup/rg1/ipGroups/"
                                     "ipGroups1",)
    assert rule.destination_ip_groups
    assert not rule.destination_addresses
    assert rest_firewall.referenced_ip_groups((rule,)) == (*rule.source_ip_groups, *rule.destination_ip_groups)


def test_nat_collection_is_dnat_and_never_decides_egress() -> None:
    group = example("Network/2024-07-01/FirewallPolicyNatRuleCollectionGroupGet.json")
    (rule,) = rest_firewall.rule_collection_group(group)
    assert rule.kind == "nat"
    fw = Firewall("fw", "10.0.1.4", (rule,))
    decision = evaluate_firewall(fw, Packet("2.2.2.2", "TCP", 8080, "x.hcp.eastus.azmk8s.io", "152.23.32.23"))
    assert decision.allowed is False  # default deny: DNAT is inbound only
    assert decision.rule is None


def test_application_rule_with_web_categories_example() -> None:
    group = example("Network/2024-07-01/FirewallPolicyRuleCollectionGroupWithWebCategoriesGet.json")
    (rule,) = rest_firewall.rule_collection_group(group)
    assert rule.kind == "application"
    assert rule.protocols == ("Https:443",)
    assert rule.web_categories == ("Hacking",)
    assert rule.source_addresses == ("216.58.216.164", "10.0.0.0/24")
    # A Deny by web category cannot be decided for the API FQDN: the category of a host is not known here.
    decision = evaluate_firewall(Firewall("fw", "10.0.1.4", (rule,)),
                                 Packet("10.0.0.4", "TCP", 443, "x.hcp.eastus.azmk8s.io", tls=True))
    assert decision.allowed is False  # both outcomes deny: the Deny category rule, or the default deny
    allow = rule.__class__(**{**rule.__dict__, "action": "Allow"})
    undecided = evaluate_firewall(Firewall("fw", "10.0.1.4", (allow,)),
                                  Packet("10.0.0.4", "TCP", 443, "x.hcp.eastus.azmk8s.io", tls=True))
    assert undecided.allowed is None
    assert "rule1" in undecided.detail


def test_ip_group_example() -> None:
    assert rest_firewall.ip_group_addresses(example("Network/2024-07-01/IpGroupsGet.json")) == (
        "13.64.39.16/32", "40.74.146.80/31", "40.74.147.32/28")


def test_classic_firewall_example() -> None:
    fw = rest.firewall(example("Network/2024-07-01/AzureFirewallGet.json"))
    assert fw.policy_id is None
    assert fw.private_ip
    kinds = {r.kind for r in fw.rules}
    assert kinds == {"network", "application", "nat"}
    assert all(r.collection_id for r in fw.rules)


def test_policy_attached_firewall_in_a_hub() -> None:
    fw = rest.firewall(example("Network/2024-07-01/AzureFirewallPutInHub.json"))
    assert fw.policy_id == ("/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/firewallPolicies/"
                            "policy1")
    assert fw.rules == ()
    assert fw.private_ip == "10.0.0.0"  # hubIPAddresses.privateIPAddress
    assert fw.threat_intel_mode == "Alert"


def test_emulator_policy_shapes_match_the_official_examples() -> None:
    """What the emulator serves has the official examples' keys, so the SDK parses both the same way."""
    from devtools.emulator import resources
    from devtools.emulator.scenario import FirewallPolicySpec, IpGroupSpec

    policy = FirewallPolicySpec(
        id="/subscriptions/s/resourceGroups/rg1/providers/Microsoft.Network/firewallPolicies/p", name="p",
        resource_group="rg1", location="eastus", dns_proxy=True,
        rule_collection_groups=({"name": "g", "priority": 110, "ruleCollections": [
            {"name": "Example-Filter-Rule-Collection", "priority": 120, "action": "Deny", "rules": [
                {"name": "network-rule-1", "ipProtocols": ["TCP"], "sourceAddresses": ["10.1.25.0/24"],
                 "destinationAddresses": ["*"], "destinationPorts": ["*"]}]}]},))
    official = example("Network/2024-07-01/FirewallPolicyRuleCollectionGroupList.json")["value"][0]
    served = resources.rule_collection_group_json(policy, policy.rule_collection_groups[0])

    def keys(group: dict[str, object]) -> tuple[set[str], set[str], set[str]]:
        props = group["properties"]
        assert isinstance(props, dict)
        coll = props["ruleCollections"][0]
        return set(props) - {"size"}, set(coll), set(coll["rules"][0]) - {"description"}

    assert keys(served) == keys(official)
    assert rest_firewall.rule_collection_group(served) == rest_firewall.rule_collection_group(
        {**official, "id": served["id"], "name": "g"})
    policy_body = resources.firewall_policy_json(policy)
    assert set(policy_body["properties"]) <= set(example("Network/2024-07-01/FirewallPolicyGet.json")["properties"]) | {
        "basePolicy", "childPolicies"}
    group = IpGroupSpec(id="/subscriptions/s/resourceGroups/rg1/providers/Microsoft.Network/ipGroups/i", name="i",
                        resource_group="rg1", location="eastus", ip_addresses=("10.0.0.0/24",))
    assert set(resources.ip_group_json(group)["properties"]) == set(
        example("Network/2024-07-01/IpGroupsGet.json")["properties"])


def test_rule_kind_without_the_discriminator_is_inferred_from_its_fields() -> None:
    group = example("Network/2024-07-01/FirewallPolicyRuleCollectionGroupWithWebCategoriesGet.json")
    del group["properties"]["ruleCollections"][0]["rules"][0]["ruleType"]
    (rule,) = rest_firewall.rule_collection_group(group)
    assert rule.kind == "application"
    listed = example("Network/2024-07-01/FirewallPolicyRuleCollectionGroupList.json")["value"][0]
    del listed["properties"]["ruleCollections"][0]["rules"][0]["ruleType"]
    (network,) = rest_firewall.rule_collection_group(listed)
    assert network.kind == "network"
