"""REST JSON -> snapshot converters, exercised on Azure's own examples rather than our guesses."""

from shared.azure import rest
from tests.specs import example


def test_managed_cluster_example() -> None:
    facts = rest.cluster_facts(example("ContainerService/2025-05-01/ManagedClustersGet.json"))
    assert facts.node_resource_group == "MC_rg1_clustername1_location1"
    assert facts.outbound_type == "loadBalancer"
    assert facts.private is False
    assert facts.fqdn == "dnsprefix1-abcd1234.hcp.eastus.azmk8s.io"
    assert facts.load_balancer_profile is not None
    assert facts.load_balancer_profile.allocated_outbound_ports == 2000
    assert facts.load_balancer_profile.outbound_ip_count == 2
    (pool,) = facts.pools
    assert (pool.name, pool.count, pool.max_count) == ("nodepool1", 3, None)
    assert pool.max_surge == 1  # 33% of 3 nodes, rounded up
    assert facts.unsupported_reason is None


def test_availability_set_pool_is_unsupported_with_a_reason() -> None:
    cluster = example("ContainerService/2025-05-01/ManagedClustersGet.json")
    cluster["properties"]["agentPoolProfiles"][0]["type"] = "AvailabilitySet"
    facts = rest.cluster_facts(cluster)
    assert facts.unsupported_reason is not None
    assert "availability sets" in facts.unsupported_reason


def test_private_cluster_flag() -> None:
    cluster = example("ContainerService/2025-05-01/ManagedClustersGet.json")
    cluster["properties"]["apiServerAccessProfile"] = {"enablePrivateCluster": True}
    cluster["properties"]["privateFQDN"] = "x.privatelink.eastus.azmk8s.io"
    facts = rest.cluster_facts(cluster)
    assert facts.private is True
    assert facts.private_fqdn == "x.privatelink.eastus.azmk8s.io"


def test_surge_percentages_and_counts() -> None:
    assert rest.surge_nodes(None, 10) == 1
    assert rest.surge_nodes("3", 10) == 3
    assert rest.surge_nodes("33%", 10) == 4
    assert rest.surge_nodes("100%", 7) == 7


def test_nsg_example_rules() -> None:
    nsg = rest.network_security_group(example("Network/2025-01-01/NetworkSecurityGroupGet.json"))
    (rule,) = nsg.rules
    assert rule.name == "rule1"
    assert (rule.priority, rule.direction, rule.access, rule.protocol) == (130, "Inbound", "Allow", "*")
    assert rule.destination_ports == ("80",)
    assert rule.source_prefixes == ("*",)


def test_vmss_nic_list_example_maps_instances_to_ips() -> None:
    body = example("Network/2024-07-01/VmssNetworkInterfaceList.json")
    nics = [rest.nic_facts(n) for n in body["value"]]
    assert {n.private_ip for n in nics} == {"10.0.0.4", "10.0.0.5"}
    assert all(n.instance_id.isdigit() for n in nics)
    assert all("/subnets/" in n.subnet_id for n in nics)


def test_node_name_uses_base36_instance_id() -> None:
    vmss = rest.ScaleSet("id", "aks-nodepool1-123-vmss", "nodepool1", "aks-nodepool1-123-vmss")
    assert rest.node_name(vmss, "0") == "aks-nodepool1-123-vmss000000"
    assert rest.node_name(vmss, "35") == "aks-nodepool1-123-vmss00000z"
    assert rest.node_name(vmss, "36") == "aks-nodepool1-123-vmss000010"


def test_route_table_and_firewall_examples() -> None:
    table = rest.route_table(example("Network/2024-07-01/RouteTableGet.json"))
    assert table.routes
    assert table.routes[0].next_hop_type
    fw = rest.firewall(example("Network/2024-07-01/AzureFirewallGet.json"))
    assert fw.private_ip
    assert {r.kind for r in fw.rules} == {"network", "application", "nat"}  # DNAT kept, never judged outbound


def test_activity_log_example_keeps_only_nsg_operations() -> None:
    body = example("Insights/2015-04-01/GetActivityLogsFiltered.json")
    events = [rest.activity_event(e) for e in body["value"]]
    # The official example is a compute event; none of it is an NSG change.
    assert events
    assert all(e is None for e in events)
    nsg_event = dict(body["value"][0])
    nsg_event["operationName"] = {"value": "Microsoft.Network/networkSecurityGroups/securityRules/write"}
    nsg_event["resourceId"] = ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/"
                               "networkSecurityGroups/n/securityRules/r")
    event = rest.activity_event(nsg_event)
    assert event is not None
    assert event.caller == nsg_event["caller"]


def test_metric_series_matches_dimension_names_case_insensitively() -> None:
    body = example("Insights/2024-02-01/GetMetric.json")
    metric = body["value"][0]
    name = metric["name"]["value"]
    dims = {m["name"]["value"] for s in metric["timeseries"] for m in s.get("metadatavalues", [])}
    (dimension,) = sorted(dims)[:1]
    series = rest.metric_series(body, name.upper(), dimension.upper())
    assert series
    assert all(key == key.lower() for key in series)
