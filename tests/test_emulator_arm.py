"""The ARM emulator through the REAL Azure SDK clients: identity, shapes, paging, errors, metrics, activity log."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from devtools.emulator.metric_defaults import POINTS
from devtools.emulator.scenario import MetricSeries
from tests.emulator_fixtures import (  # noqa: F401 - emulator_fixture provides the `emulator` fixture
    DEMO_DEV_SUBSCRIPTION,
    DEMO_SUBSCRIPTION,
    arm_clients,
    emulator_fixture,
)
from tests.specs import SPECS as EXAMPLES

NODE_NAME = re.compile(r"^aks-[a-z0-9]+-\d{8}-vmss[0-9a-z]{6}$")


def _example(relative: str) -> dict:
    path = EXAMPLES / relative
    if not path.exists():
        pytest.skip(f"official example {relative} not available here")
    return json.loads(path.read_text())["responses"]["200"]["body"]


def _raw_get(emu, path: str, token: str | None = None, **params: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(emu.arm_endpoint + path, params=params, headers=headers, verify=emu.ca_bundle, timeout=10)


def _token(emu) -> str:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential().get_token(emu.arm_scope).token


# --- identity ------------------------------------------------------------------------------------------


def test_default_azure_credential_gets_token_from_app_service_endpoint(emulator):
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    emu = emulator()
    token = DefaultAzureCredential().get_token(emu.arm_scope)
    assert token.token
    assert token.expires_on > datetime.now(UTC).timestamp() + 3600
    assert ManagedIdentityCredential().get_token(emu.arm_scope).token != token.token
    assert emu.tokens_issued == 2
    # The real endpoint refuses callers without the secret header, as App Service does.
    refused = requests.get(emu.identity_endpoint, params={"api-version": "2019-08-01", "resource": "x"}, timeout=5)
    assert refused.status_code == 401


def test_arm_refuses_missing_invalid_and_foreign_audience_tokens(emulator, monkeypatch):
    from azure.identity import DefaultAzureCredential

    emu = emulator()
    missing = _raw_get(emu, "/subscriptions", **{"api-version": "2022-12-01"})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "AuthenticationFailed"
    assert _raw_get(emu, "/subscriptions", "forged", **{"api-version": "2022-12-01"}).json()["error"]["code"] == \
        "InvalidAuthenticationToken"
    foreign = DefaultAzureCredential().get_token("https://vault.azure.net/.default").token
    answer = _raw_get(emu, "/subscriptions", foreign, **{"api-version": "2022-12-01"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "InvalidAuthenticationTokenAudience")
    clients = arm_clients(emu, DEMO_SUBSCRIPTION, credential_scopes=["https://vault.azure.net/.default"])
    with pytest.raises(ClientAuthenticationError):
        list(clients.container.managed_clusters.list())


def test_api_version_is_required(emulator):
    emu = emulator()
    answer = _raw_get(emu, "/subscriptions", _token(emu))
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "MissingApiVersionParameter"


# --- shapes and paging ---------------------------------------------------------------------------------


def test_paging_follows_next_link_through_the_sdk(emulator):
    emu = emulator(page_size=1)
    clients = arm_clients(emu, DEMO_SUBSCRIPTION)
    assert {s.subscription_id for s in clients.subscriptions.subscriptions.list()} == {DEMO_SUBSCRIPTION,
                                                                                      DEMO_DEV_SUBSCRIPTION}
    names = [c.name for c in clients.container.managed_clusters.list()]
    assert names == ["aks-healthy", "aks-private", "aks-nsg-deny", "aks-ufw"]
    assert emu.stats.calls("ManagedClusters.List") == 4  # one page per cluster
    assert emu.stats.calls("ManagedClusters.List", f"/subscriptions/{DEMO_SUBSCRIPTION}") == 4
    first = _raw_get(emu, f"/subscriptions/{DEMO_SUBSCRIPTION}/providers/Microsoft.ContainerService/managedClusters",
                     _token(emu), **{"api-version": "2025-07-01"}).json()
    assert len(first["value"]) == 1
    assert first["nextLink"].startswith(emu.arm_endpoint)
    assert "api-version=2025-07-01" in first["nextLink"]


def test_managed_cluster_matches_official_shape(emulator):
    emu = emulator()
    clients = arm_clients(emu, DEMO_SUBSCRIPTION)
    cluster = clients.container.managed_clusters.get("rg-payments", "aks-private")
    assert cluster.id.split("/")[3] == "resourcegroups"  # official quirk
    assert cluster.type == "Microsoft.ContainerService/ManagedClusters"
    assert cluster.api_server_access_profile.enable_private_cluster is True
    assert cluster.private_fqdn.endswith(".privatelink.westeurope.azmk8s.io")
    assert cluster.node_resource_group == "MC_rg-payments_aks-private_westeurope"
    pool = cluster.agent_pool_profiles[0]
    assert pool.vnet_subnet_id.endswith("/subnets/aks-subnet")
    assert pool.type == "VirtualMachineScaleSets"
    official = _example("ContainerService/2025-05-01/ManagedClustersGet.json")
    ours = _raw_get(emu, cluster.id, _token(emu), **{"api-version": "2025-05-01"}).json()
    assert set(official) - {"tags", "eTag"} <= set(ours)
    for key in ("nodeResourceGroup", "networkProfile", "agentPoolProfiles", "fqdn", "dnsPrefix"):
        assert key in ours["properties"], key


def test_vmss_vms_carry_node_names_instance_ids_and_power_state(emulator):
    emu = emulator()
    clients = arm_clients(emu, DEMO_DEV_SUBSCRIPTION)
    cluster = clients.container.managed_clusters.get("rg-legacy", "aks-iptables")
    scale_sets = {s.name: s for s in clients.compute.virtual_machine_scale_sets.list(cluster.node_resource_group)}
    assert len(scale_sets) == 2
    states = {}
    for vmss in scale_sets.values():
        for vm in clients.compute.virtual_machine_scale_set_vms.list(cluster.node_resource_group, vmss.name,
                                                                     expand="instanceView"):
            assert NODE_NAME.match(vm.os_profile.computer_name), vm.os_profile.computer_name
            assert vm.id.endswith(f"/virtualMachines/{vm.instance_id}")
            power = [s.code for s in vm.instance_view.statuses if s.code.startswith("PowerState/")]
            states[vm.os_profile.computer_name] = power[0]
    assert sorted(states.values()) == ["PowerState/deallocated"] + ["PowerState/running"] * 3
    plain = next(iter(clients.compute.virtual_machine_scale_set_vms.list(cluster.node_resource_group,
                                                                         next(iter(scale_sets)))))
    assert plain.instance_view is None  # only with $expand=instanceView


def test_vmss_network_interfaces_map_instances_to_ips(emulator):
    emu = emulator()
    clients = arm_clients(emu, DEMO_SUBSCRIPTION)
    cluster = clients.container.managed_clusters.get("rg-search", "aks-nsg-deny")
    vmss = next(iter(clients.compute.virtual_machine_scale_sets.list(cluster.node_resource_group)))
    vms = {vm.id.lower(): vm for vm in clients.compute.virtual_machine_scale_set_vms.list(
        cluster.node_resource_group, vmss.name)}
    nics = list(clients.network.network_interfaces.list_virtual_machine_scale_set_network_interfaces(
        cluster.node_resource_group, vmss.name))
    ips = [n.ip_configurations[0].private_ip_address for n in nics]
    assert len(set(ips)) == len(ips) == 3
    assert all(ip.startswith("10.10.0.") for ip in ips)
    for nic in nics:
        assert nic.virtual_machine.id.lower() in vms
        assert nic.ip_configurations[0].subnet.id.endswith("/virtualNetworks/vnet-search/subnets/snet-aks")
        assert nic.network_security_group.id.endswith("-nsg")  # AKS's NSG sits on NICs in custom VNets


def test_missing_things_answer_azure_404_codes(emulator):
    emu = emulator()
    clients = arm_clients(emu, DEMO_SUBSCRIPTION)
    ghost = arm_clients(emu, "11111111-2222-3333-4444-555555555555")
    with pytest.raises(ResourceNotFoundError) as sub:
        list(ghost.container.managed_clusters.list())
    assert sub.value.error.code == "SubscriptionNotFound"
    with pytest.raises(ResourceNotFoundError) as rg:
        clients.network.network_security_groups.get("rg-nope", "nsg")
    assert rg.value.error.code == "ResourceGroupNotFound"
    with pytest.raises(ResourceNotFoundError) as res:
        clients.network.network_security_groups.get("rg-search", "nsg-nope")
    assert res.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError):
        clients.container.managed_clusters.get("rg-search", "aks-nope")


def test_network_resources_and_official_nsg_defaults(emulator):
    emu = emulator()
    prod, dev = arm_clients(emu, DEMO_SUBSCRIPTION), arm_clients(emu, DEMO_DEV_SUBSCRIPTION)
    nsg = prod.network.network_security_groups.get("rg-search", "nsg-snet-aks")
    deny = next(r for r in nsg.security_rules if r.name == "deny-kubelet")
    assert (deny.access, deny.destination_port_range, deny.priority) == ("Deny", "10250", 200)
    assert nsg.subnets[0].id.endswith("/subnets/snet-aks")
    official = _example("Network/2025-01-01/NetworkSecurityGroupGet.json")["properties"]["defaultSecurityRules"]
    ours = _raw_get(emu, nsg.id, _token(emu), **{"api-version": "2025-01-01"}).json()
    strip = {"provisioningState"}
    def comparable(rules: list) -> list:
        return [{k: v for k, v in r["properties"].items() if k not in strip} for r in rules]

    assert comparable(ours["properties"]["defaultSecurityRules"]) == comparable(official)
    vnet = prod.network.virtual_networks.get("rg-search", "vnet-search")
    assert vnet.virtual_network_peerings[0].remote_address_space.address_prefixes == ["10.0.0.0/16"]
    subnet = dev.network.subnets.get("rg-egress", "vnet-spoke", "snet-aks")
    table = dev.network.route_tables.get("rg-egress", "rt-aks")
    assert subnet.route_table.id == table.id
    assert (table.routes[0].next_hop_type, table.routes[0].next_hop_ip_address) == ("VirtualAppliance", "10.0.1.4")
    firewall = dev.network.azure_firewalls.get("rg-hub", "fw-hub")
    assert firewall.ip_configurations[0].private_ip_address == "10.0.1.4"
    assert firewall.network_rule_collections[0].action.type == "Allow"
    assert firewall.application_rule_collections[0].rules[0].protocols[1].port == 443
    snat = dev.container.managed_clusters.get("rg-batch", "aks-snat")
    lb = dev.network.load_balancers.get(snat.node_resource_group, "kubernetes")
    assert lb.outbound_rules[0].allocated_outbound_ports == 64
    assert lb.sku.name == "Standard"
    ufw = next(c for c in emu.state.fleet.clusters if c.name == "aks-ufw")
    nat_subnet = prod.network.subnets.get(ufw.node_resource_group, ufw.vnet.name, "aks-subnet")
    nat = prod.network.nat_gateways.get(ufw.node_resource_group, nat_subnet.nat_gateway.id.rsplit("/", 1)[1])
    assert nat.subnets[0].id == nat_subnet.id
    assert nat.sku.name == "Standard"


def test_admin_rules_page_with_skip_token(emulator):
    from azure.mgmt.network.models import QueryRequestOptions

    emu = emulator(page_size=1)
    cluster_id = next(c.id for c in emu.state.fleet.clusters if c.name == "aks-nsg-deny")
    emu.state.set_admin_rules(cluster_id, [
        {"name": "deny-kubelet-admin", "priority": 10, "access": "Deny", "protocol": "Tcp",
         "sources": ["*"], "destinations": ["*"], "destinationPortRanges": ["10250"]},
        {"name": "allow-ssh", "priority": 20, "access": "Allow", "protocol": "Tcp", "destinationPortRanges": ["22"]},
    ])
    network = arm_clients(emu, DEMO_SUBSCRIPTION).network
    seen, token = [], None
    while True:
        page = network.list_network_manager_effective_security_admin_rules(
            "rg-search", "vnet-search", QueryRequestOptions(skip_token=token))
        seen += [(r.kind, r.access, r.destination_port_ranges) for r in page.value]
        token = page.skip_token
        if not token:
            break
    assert seen == [("Custom", "Deny", ["10250"]), ("Custom", "Allow", ["22"])]
    assert emu.stats.calls("NetworkManagerEffectiveSecurityAdminRules.List") == 2


# --- metrics and activity log -------------------------------------------------------------------------


def _snat_lb(emu):
    dev = arm_clients(emu, DEMO_DEV_SUBSCRIPTION)
    cluster = dev.container.managed_clusters.get("rg-batch", "aks-snat")
    return dev, dev.network.load_balancers.get(cluster.node_resource_group, "kubernetes").id


def test_metrics_split_by_filter_with_lower_case_dimension_names(emulator):
    emu = emulator()
    dev, lb_id = _snat_lb(emu)
    result = dev.monitor.metrics.list(lb_id, timespan="PT30M", interval="PT5M", metricnames="SnatConnectionCount",
                                      aggregation="Total",
                                      filter="ConnectionState eq 'failed' and BackendIPAddress eq '*'")
    series = {ts.metadatavalues[1].value: [p.total for p in ts.data] for ts in result.value[0].timeseries}
    names = {m.name.value for ts in result.value[0].timeseries for m in ts.metadatavalues}
    assert names == {"connectionstate", "backendipaddress"}
    assert series["10.224.0.4"] == [0, 3, 12, 27, 41, 38]
    assert sum(series["10.224.0.5"]) == 0
    unsplit = dev.monitor.metrics.list(lb_id, timespan="PT30M", interval="PT5M",
                                       metricnames="UsedSnatPorts,AllocatedSnatPorts",
                                       aggregation="Maximum")
    assert [m.name.value for m in unsplit.value] == ["UsedSnatPorts", "AllocatedSnatPorts"]
    assert unsplit.value[1].timeseries[0].metadatavalues == []
    assert unsplit.value[1].timeseries[0].data[-1].maximum == 64
    with pytest.raises(HttpResponseError) as bad:
        dev.monitor.metrics.list(lb_id, metricnames="NoSuchMetric")
    assert bad.value.status_code == 400


def test_metrics_default_top_is_ten_series_and_set_metrics_clears(emulator):
    emu = emulator()
    dev, lb_id = _snat_lb(emu)
    emu.state.set_metrics(lb_id, [MetricSeries("SnatConnectionCount", {"BackendIPAddress": f"10.224.0.{i}",
                                                                       "ConnectionState": "failed"}, (float(i),))
                                  for i in range(4, 16)])
    split = "BackendIPAddress eq '*'"
    default_top = dev.monitor.metrics.list(lb_id, metricnames="SnatConnectionCount", filter=split)
    assert len(default_top.value[0].timeseries) == 10
    assert len(dev.monitor.metrics.list(lb_id, metricnames="SnatConnectionCount", filter=split, top=20)
               .value[0].timeseries) == 12
    emu.state.set_metrics(lb_id, [{"name": "SnatConnectionCount", "dimensions": {"ConnectionState": "failed"},
                                   "values": [0]}])
    cleared = dev.monitor.metrics.list(lb_id, metricnames="SnatConnectionCount", filter="ConnectionState eq 'failed'",
                                       aggregation="Total", interval="PT1M", timespan="PT10M")
    assert cleared.value[0].timeseries[0].data
    assert all(p.total == 0 for p in cleared.value[0].timeseries[0].data)


def test_nat_gateway_metrics_for_managed_nat_clusters(emulator):
    emu = emulator()
    cluster = next(c for c in emu.state.fleet.clusters if c.name == "aks-ufw")
    monitor = arm_clients(emu, DEMO_SUBSCRIPTION).monitor
    result = monitor.metrics.list(cluster.nat_gateway_id, metricnames="SNATConnectionCount",
                                  aggregation="Total", filter="ConnectionState eq '*'", interval="PT1M",
                                  timespan="PT6M")
    states = {ts.metadatavalues[0].value for ts in result.value[0].timeseries}
    assert states == {"Successful", "Failed"}
    assert len(result.value[0].timeseries[0].data) == POINTS
    with pytest.raises(HttpResponseError) as bad:  # a dimension the metric lacks is a 400, as in Azure
        monitor.metrics.list(cluster.nat_gateway_id, metricnames="PacketDropCount", filter="ConnectionState eq '*'")
    assert bad.value.status_code == 400


def test_activity_log_filters_by_time_and_provider_and_pages(emulator):
    emu = emulator(page_size=1)
    monitor = arm_clients(emu, DEMO_SUBSCRIPTION).monitor
    now = datetime.now(UTC)

    def window(hours: int, extra: str = "") -> str:
        return (f"eventTimestamp ge '{(now - timedelta(hours=hours)).isoformat()}' and "
                f"eventTimestamp le '{now.isoformat()}'{extra}")

    recent = list(monitor.activity_logs.list(filter=window(24, " and resourceProvider eq 'Microsoft.Network'")))
    assert [(e.caller, e.operation_name.value) for e in recent] == [
        ("jane.doe@contoso.com", "Microsoft.Network/networkSecurityGroups/securityRules/write")]
    both = list(monitor.activity_logs.list(filter=window(72)))
    assert [e.caller for e in both] == ["jane.doe@contoso.com", "pipeline@contoso.com"]  # newest first
    assert emu.stats.calls("ActivityLogs.List") >= 3  # page size 1: the SDK followed nextLink
    assert list(monitor.activity_logs.list(filter=window(72, " and resourceProvider eq 'Microsoft.Compute'"))) == []
    with pytest.raises(HttpResponseError) as bad:
        list(monitor.activity_logs.list(filter="resourceProvider eq 'Microsoft.Network'"))
    assert bad.value.status_code == 400


def test_fixing_an_nsg_is_visible_and_logged(emulator):
    emu = emulator()
    network = arm_clients(emu, DEMO_SUBSCRIPTION).network
    emu.state.remove_nsg_rule("nsg-snet-aks", "deny-kubelet", caller="fixer@contoso.com")
    assert [r.name for r in network.network_security_groups.get("rg-search", "nsg-snet-aks").security_rules] == \
        ["allow-https-in"]
    now = datetime.now(UTC)
    events = list(arm_clients(emu, DEMO_SUBSCRIPTION).monitor.activity_logs.list(
        filter=f"eventTimestamp ge '{(now - timedelta(minutes=5)).isoformat()}'"))
    assert [(e.caller, e.operation_name.value.rsplit("/", 1)[1]) for e in events] == [("fixer@contoso.com", "delete")]


# --- faults, throttling, counting ---------------------------------------------------------------------


def test_injected_403_surfaces_as_http_response_error(emulator):
    emu = emulator()
    network = arm_clients(emu, DEMO_SUBSCRIPTION).network
    emu.faults.add(403, operation="NetworkSecurityGroups.Get", count=2)
    for _ in range(2):
        with pytest.raises(HttpResponseError) as denied:
            network.network_security_groups.get("rg-search", "nsg-snet-aks")
        assert denied.value.status_code == 403
        assert denied.value.error.code == "AuthorizationFailed"
        assert "Microsoft.Network/networkSecurityGroups/read" in denied.value.error.message
    assert network.network_security_groups.get("rg-search", "nsg-snet-aks").name == "nsg-snet-aks"
    assert emu.stats.calls("NetworkSecurityGroups.Get") == 3


def test_fault_targets_a_resource_and_everything_beneath_it(emulator):
    emu = emulator()
    dev = arm_clients(emu, DEMO_DEV_SUBSCRIPTION)
    emu.faults.add(404, resource=f"/subscriptions/{DEMO_DEV_SUBSCRIPTION}/resourceGroups/rg-hub", count=None)
    with pytest.raises(ResourceNotFoundError):
        dev.network.azure_firewalls.get("rg-hub", "fw-hub")
    assert dev.network.route_tables.get("rg-egress", "rt-aks").name == "rt-aks"


def test_429_with_retry_after_and_500_are_retried_by_the_sdk(emulator):
    emu = emulator()
    container = arm_clients(emu, DEMO_SUBSCRIPTION).container
    emu.faults.add(429, operation="ManagedClusters.Get", count=1, retry_after=1)
    emu.faults.add(500, operation="ManagedClusters.List", count=1)
    assert container.managed_clusters.get("rg-shop", "aks-healthy").name == "aks-healthy"
    assert len(list(container.managed_clusters.list())) == 4
    assert emu.stats.calls("ManagedClusters.Get") == 2
    assert emu.stats.calls("ManagedClusters.List") == 2
    assert emu.stats.throttled == 1


def test_token_bucket_throttles_per_subscription(emulator):
    from devtools.emulator.throttle import BucketConfig

    emu = emulator()
    emu.throttle.enable(reads=BucketConfig(capacity=3, refill_per_second=0.5))
    token = _token(emu)
    path = f"/subscriptions/{DEMO_SUBSCRIPTION}/providers/Microsoft.ContainerService/managedClusters"
    answers = [_raw_get(emu, path, token, **{"api-version": "2025-07-01"}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert answers[0].headers["x-ms-ratelimit-remaining-subscription-reads"] == "2"
    other = f"/subscriptions/{DEMO_DEV_SUBSCRIPTION}/providers/Microsoft.ContainerService/managedClusters"
    assert _raw_get(emu, other, token, **{"api-version": "2025-07-01"}).status_code == 200  # separate bucket
    strict = arm_clients(emu, DEMO_SUBSCRIPTION, retry_total=0).container
    with pytest.raises(HttpResponseError) as throttled:
        list(strict.managed_clusters.list())
    assert throttled.value.status_code == 429
    assert emu.stats.throttled == 2
    emu.throttle.disable()
    assert len(list(strict.managed_clusters.list())) == 4


def test_stats_endpoint_and_latency_injection(emulator):
    emu = emulator()
    container = arm_clients(emu, DEMO_SUBSCRIPTION).container
    emu.faults.set_latency(0.3, operation="ManagedClusters.Get")
    started = datetime.now(UTC)
    container.managed_clusters.get("rg-shop", "aks-healthy")
    assert datetime.now(UTC) - started >= timedelta(seconds=0.3)
    stats = requests.get(emu.arm_endpoint + "/_emulator/stats", verify=emu.ca_bundle, timeout=5).json()
    assert stats["calls"] == {"ManagedClusters.Get": 1}
    assert stats["callsByResource"][0]["resource"].endswith("/managedclusters/aks-healthy")


def test_serves_many_concurrent_connections(emulator):
    emu = emulator()
    token = _token(emu)
    path = (f"/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/rg-search/providers/Microsoft.Network"
            "/networkSecurityGroups/nsg-snet-aks")

    def fetch(_: int) -> int:
        with requests.Session() as session:
            return session.get(emu.arm_endpoint + path, params={"api-version": "2024-07-01"},
                               headers={"Authorization": f"Bearer {token}"}, verify=emu.ca_bundle,
                               timeout=20).status_code

    with ThreadPoolExecutor(max_workers=64) as pool:
        statuses = list(pool.map(fetch, range(128)))
    assert statuses == [200] * 128
    assert emu.stats.calls("NetworkSecurityGroups.Get") == 128
