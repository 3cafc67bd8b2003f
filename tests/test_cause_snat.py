"""snat-port-exhaustion over hand-built snapshots: each outbound IP kind's fix, and every partial input.

Pools as in tests/test_snat.py: system (3 nodes, surge 1) and user (10 nodes, autoscaler max 40, surge 1)
peak at 4 + 41 = 45 nodes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shared.azure import rest
from shared.causes import run_cause, snat_port_exhaustion
from shared.causes.snat_remediation import prefix_lengths_for
from shared.model import Status
from shared.snapshot import AgentPool, ClusterSnapshot, LoadBalancerProfile, SnatMetrics, Unavailable
from tests.builders import SUB, SUBNET, snapshot

CAUSE = snat_port_exhaustion.CAUSE
NRG = f"/subscriptions/{SUB}/resourceGroups/MC_rg_aks1_westeurope/providers/Microsoft.Network"
LB = f"{NRG}/loadBalancers/kubernetes"
OWN = f"/subscriptions/{SUB}/resourceGroups/rg-ips/providers/Microsoft.Network"
POOLS = (AgentPool("system", SUBNET, 3, None, 1), AgentPool("user", SUBNET, 10, 40, 1))
FIXTURES = Path(__file__).parent / "fixtures" / "azure-rest-api-specs"


def lb_metrics(failed: float = 0.0, **overrides: Any) -> SnatMetrics:
    base = SnatMetrics(LB, "loadBalancer", 15, failed, 100.0, {"10.224.0.4": (100.0, 200.0)},
                       {"10.224.0.4": (1024.0, 1024.0)}, outbound_ip_count=1)
    return replace(base, **overrides)


def lb_snapshot(profile: LoadBalancerProfile, metrics: SnatMetrics | Unavailable | None) -> ClusterSnapshot:
    return snapshot(load_balancer_profile=profile, pools=POOLS, snat=metrics)


def az(result: Any) -> list[str]:
    return [r for r in result.remediation if r.startswith("az ")]


# ------------------------------------------------------------------ fixes by outbound IP kind


def test_managed_count_fix_covers_autoscaler_max_and_surge() -> None:
    # 1,024 ports by default for 45 nodes; failures -> 2,048 ports -> 2,048 x 45 = 92,160 -> 2 IPs
    result = run_cause(CAUSE, lb_snapshot(LoadBalancerProfile(0, 1, kind="managed", managed_ip_count=1),
                                          lb_metrics(12)))
    assert result.status is Status.DETECTED
    assert result.subjects == (LB,)
    assert az(result) == ["az aks update --resource-group rg --name aks1 --load-balancer-managed-outbound-ip-count 2 "
                          "--load-balancer-outbound-ports 2048"]
    details = [e.detail for e in result.evidence]
    assert "peak nodes = system: max(3, 0) + surge 1 + user: max(10, 40) + surge 1 = 45" in details
    assert any(d.startswith("recommended: 2048 ports/node (multiple of 8) x 45 nodes = 92,160 ports") for d in details)


def test_own_ips_fix_keeps_them_and_never_switches_to_a_managed_count() -> None:
    ips = (f"{OWN}/publicIPAddresses/egress-1",)
    profile = LoadBalancerProfile(4000, 1, kind="ips", outbound_ip_ids=ips)
    result = run_cause(CAUSE, lb_snapshot(profile, lb_metrics(3)))
    # 8,000 ports x 45 nodes = 360,000 -> ceil(/ 64,000) = 6 IPs: five new ones
    assert az(result)[:5] == [
        f"az network public-ip create --resource-group rg-ips --name aks1-outbound-ip-{i} --location westeurope "
        "--sku Standard --allocation-method Static --version IPv4" for i in range(2, 7)]
    new = ",".join(f"{OWN}/publicIPAddresses/aks1-outbound-ip-{i}" for i in range(2, 7))
    assert az(result)[5] == (f"az aks update --resource-group rg --name aks1 --load-balancer-outbound-ips "
                             f"{ips[0]},{new} --load-balancer-outbound-ports 8000")
    assert not any("managed-outbound-ip-count" in r or "ip-prefixes" in r for r in result.remediation)


def test_prefix_fix_uses_the_read_length() -> None:
    prefixes = (f"{OWN}/publicIPPrefixes/egress",)
    profile = LoadBalancerProfile(4000, 1, kind="prefixes", outbound_ip_prefix_ids=prefixes)
    # the prefix was read as a /30: 4 addresses; 6 are needed -> one more /31
    result = run_cause(CAUSE, lb_snapshot(profile, lb_metrics(3, outbound_ip_count=4)))
    assert az(result) == [
        "az network public-ip prefix create --resource-group rg-ips --name aks1-outbound-prefix-2 --location "
        "westeurope --length 31 --version IPv4",
        f"az aks update --resource-group rg --name aks1 --load-balancer-outbound-ip-prefixes {prefixes[0]},"
        f"{OWN}/publicIPPrefixes/aks1-outbound-prefix-2 --load-balancer-outbound-ports 8000"]
    assert "capacity = 64,000 x 4 IP(s) / 4000 = 64 nodes" in [e.detail for e in result.evidence]


def test_prefix_of_16_addresses_only_raises_the_ports() -> None:
    profile = LoadBalancerProfile(4000, 1, kind="prefixes", outbound_ip_prefix_ids=(f"{OWN}/publicIPPrefixes/p",))
    result = run_cause(CAUSE, lb_snapshot(profile, lb_metrics(3, outbound_ip_count=16)))
    assert az(result) == ["az aks update --resource-group rg --name aks1 --load-balancer-outbound-ports 8000"]


@pytest.mark.parametrize(("needed", "lengths"), [(1, [31]), (2, [31]), (3, [30]), (5, [29]), (16, [28]),
                                                 (17, [28, 31]), (20, [28, 30]), (40, [28, 28, 29])])
def test_prefix_sizes_for_extra_addresses(needed: int, lengths: list[int]) -> None:
    assert prefix_lengths_for(needed) == lengths
    assert sum(2 ** (32 - n) for n in lengths) >= needed


def test_rest_reads_the_outbound_kind() -> None:
    own = rest._lb_profile({"outboundIPs": {"publicIPs": [{"id": "a"}, {"id": "b"}]},
                            "effectiveOutboundIPs": [{"id": "a"}, {"id": "b"}]})
    assert (own.kind, own.outbound_ip_count, own.outbound_ip_ids) == ("ips", 2, ("a", "b"))
    prefixes = rest._lb_profile({"outboundIPPrefixes": {"publicIPPrefixes": [{"id": "p"}]},
                                 "effectiveOutboundIPs": [{"id": "p"}]})
    assert (prefixes.kind, prefixes.outbound_ip_prefix_ids) == ("prefixes", ("p",))
    managed = rest._lb_profile({"managedOutboundIPs": {"count": 3}, "effectiveOutboundIPs": [{"id": "x"}] * 3})
    assert (managed.kind, managed.managed_ip_count, managed.outbound_ip_count) == ("managed", 3, 3)


# ------------------------------------------------------------------ NAT gateways


def nat(name: str, failed: float, **overrides: Any) -> SnatMetrics:
    base = SnatMetrics(f"{NRG}/natGateways/{name}", "natGateway", 15, failed, 300.0,
                       public_ip_ids=(f"{NRG}/publicIPAddresses/{name}-pip-0",), outbound_ip_count=1)
    return replace(base, **overrides)


def nat_snapshot(primary: SnatMetrics | Unavailable, outbound: str = "userAssignedNATGateway") -> ClusterSnapshot:
    return snapshot(outbound_type=outbound, load_balancer_profile=None, snat=primary)


def test_every_gateway_counts_and_each_exhausted_one_is_a_subject() -> None:
    primary = nat("natgw-b", 7, also=(nat("natgw-a", 0), nat("natgw-c", 2)))
    result = run_cause(CAUSE, nat_snapshot(primary))
    assert result.status is Status.DETECTED
    assert result.subjects == (primary.source_id, f"{NRG}/natGateways/natgw-c")
    assert any("--name natgw-c --public-ip-addresses" in r for r in result.remediation)


def test_one_unread_gateway_and_no_failures_is_unknown() -> None:
    unread = {f"{NRG}/natGateways/natgw-b": "access denied (403 AuthorizationFailed) reading NAT gateway natgw-b"}
    result = run_cause(CAUSE, nat_snapshot(nat("natgw-a", 0, unread=unread)))
    assert result.status is Status.UNKNOWN
    assert "403" in (result.reason or "")
    assert set(result.unchecked) == set(unread)


def test_unread_gateway_beside_an_exhausted_one_is_detected_with_it_unchecked() -> None:
    unread = {f"{NRG}/natGateways/natgw-b": "ARM kept throttling (429) reading NAT gateway natgw-b"}
    result = run_cause(CAUSE, nat_snapshot(nat("natgw-a", 4, unread=unread)))
    assert result.status is Status.DETECTED
    assert set(result.unchecked) == set(unread)


def test_all_gateways_unreadable_is_unknown() -> None:
    result = run_cause(CAUSE, nat_snapshot(Unavailable("natgw-a: access denied (403) reading NAT gateway natgw-a")))
    assert result.status is Status.UNKNOWN


def test_managed_nat_gateway_raises_its_managed_count() -> None:
    gateway = nat("aks-natgw", 3, public_ip_ids=(f"{NRG}/publicIPAddresses/a", f"{NRG}/publicIPAddresses/b"),
                  outbound_ip_count=2)
    result = run_cause(CAUSE, nat_snapshot(gateway, "managedNATGateway"))
    assert az(result) == ["az aks update --resource-group rg --name aks1 --nat-gateway-managed-outbound-ip-count 3"]
    assert any("64,512 ports x 2 IP(s) = 129,024 SNAT ports" in e.detail for e in result.evidence)


def test_nat_gateway_at_16_ips_is_not_told_to_add_one() -> None:
    gateway = nat("natgw", 3, outbound_ip_count=16)
    result = run_cause(CAUSE, nat_snapshot(gateway))
    assert az(result) == []
    assert any("maximum" in r for r in result.remediation)


# ------------------------------------------------------------------ partial inputs are never clear


PARTIAL_LB = [
    ("missing connection metric", lb_metrics(missing=("SnatConnectionCount",)), "SnatConnectionCount"),
    ("missing port metrics", lb_metrics(missing=("UsedSnatPorts", "AllocatedSnatPorts")), "UsedSnatPorts"),
    ("prefix unreadable", lb_metrics(outbound_ip_count=None,
                                     outbound_ips_error="access denied (403) reading public IP prefix p"), "403"),
    ("0 allocated ports under the default table", lb_metrics(allocated_ports={"10.224.0.4": (0.0, 0.0)}),
     "0 allocated SNAT ports"),
    ("allocated series absent for a used backend", lb_metrics(allocated_ports={}), "0 allocated SNAT ports"),
]


@pytest.mark.parametrize(("label", "metrics", "said"), PARTIAL_LB, ids=[p[0] for p in PARTIAL_LB])
def test_partial_load_balancer_input_is_unknown(label: str, metrics: SnatMetrics, said: str) -> None:
    profile = LoadBalancerProfile(0, 1, kind="prefixes" if "prefix" in label else "managed",
                                  outbound_ip_prefix_ids=(f"{OWN}/publicIPPrefixes/p",) if "prefix" in label else ())
    result = run_cause(CAUSE, lb_snapshot(profile, metrics))
    assert result.status is Status.UNKNOWN, label
    assert said in (result.reason or "")
    assert result.unchecked


@pytest.mark.parametrize(("label", "metrics", "said"), PARTIAL_LB, ids=[p[0] for p in PARTIAL_LB])
def test_partial_input_beside_failures_is_detected_with_the_gap_unchecked(label: str, metrics: SnatMetrics,
                                                                           said: str) -> None:
    profile = LoadBalancerProfile(0, 1, kind="prefixes" if "prefix" in label else "managed",
                                  outbound_ip_prefix_ids=(f"{OWN}/publicIPPrefixes/p",) if "prefix" in label else ())
    result = run_cause(CAUSE, lb_snapshot(profile, replace(metrics, failed_connections=5.0)))
    assert result.status is Status.DETECTED, label
    assert any(said in why for why in result.unchecked.values())


def test_prefix_unreadable_fix_never_guesses_a_count() -> None:
    profile = LoadBalancerProfile(4000, 1, kind="prefixes", outbound_ip_prefix_ids=(f"{OWN}/publicIPPrefixes/p",))
    result = run_cause(CAUSE, lb_snapshot(profile, lb_metrics(
        2, outbound_ip_count=None, outbound_ips_error="access denied (403) reading public IP prefix p")))
    assert result.status is Status.DETECTED
    assert not any("managed-outbound-ip-count" in r or "prefix create" in r for r in result.remediation)
    assert any("capacity: unknown" in e.detail for e in result.evidence)


def test_explicit_allocation_with_a_zero_metric_still_judges_by_the_configured_ports() -> None:
    """allocatedOutboundPorts > 0 says what each node has: a 0 in the metric is then not ambiguous."""
    profile = LoadBalancerProfile(1024, 1, kind="managed", managed_ip_count=1)
    result = run_cause(CAUSE, lb_snapshot(profile, lb_metrics(allocated_ports={"10.224.0.4": (0.0, 0.0)})))
    assert result.status is Status.CLEAR


def test_nat_gateway_missing_metric_is_unknown() -> None:
    result = run_cause(CAUSE, nat_snapshot(nat("natgw-a", 0, missing=("SNATConnectionCount",))))
    assert result.status is Status.UNKNOWN
    assert "SNATConnectionCount" in (result.reason or "")


def test_nat_gateway_prefix_unreadable_is_unknown() -> None:
    result = run_cause(CAUSE, nat_snapshot(nat("natgw-a", 0, outbound_ip_count=None,
                                               outbound_ips_error="access denied (403) reading public IP prefix q")))
    assert result.status is Status.UNKNOWN
    assert "403" in (result.reason or "")


def test_metrics_forbidden_or_not_collected_is_unknown() -> None:
    profile = LoadBalancerProfile(0, 1)
    assert run_cause(CAUSE, lb_snapshot(profile, Unavailable("access denied (403) reading metrics"))).status \
        is Status.UNKNOWN
    assert run_cause(CAUSE, lb_snapshot(profile, None)).status is Status.UNKNOWN


def test_dimension_names_in_lower_case_are_matched() -> None:
    """The official GetMetric example answers the dimension in lower case ("tier")."""
    body = json.loads((FIXTURES / "Insights" / "2024-02-01" / "GetMetric.json").read_text())["responses"]["200"]["body"]
    series = rest.metric_series(body, "blobcount", "Tier")
    assert {"hot", "standard"} <= set(series)
    assert series["hot"][0] == 7.0
    failed = {"value": [{"name": {"value": "SnatConnectionCount"}, "timeseries": [
        {"metadatavalues": [{"name": {"value": "connectionstate"}, "value": "Failed"}],
         "data": [{"total": 3.0}, {"total": 4.0}]}]}]}
    assert rest.metric_series(failed, "SnatConnectionCount", "ConnectionState") == {"failed": [3.0, 4.0]}


def test_official_nat_gateway_example_keeps_ips_and_prefixes() -> None:
    """NatGatewayGet.json has one IP and one prefix: the fix adds an IP and keeps both lists as they are."""
    body = json.loads((FIXTURES / "Network" / "2024-07-01" / "NatGatewayGet.json").read_text())["responses"]["200"][
        "body"]
    ip_ids, prefix_ids = rest.nat_gateway_public_ips(body)
    assert [i.rsplit("/", 1)[-1] for i in ip_ids] == ["PublicIpAddress1"]
    assert [i.rsplit("/", 1)[-1] for i in prefix_ids] == ["PublicIpPrefix1"]
    gateway = nat("test-natGateway", 5, source_id=body["id"], public_ip_ids=ip_ids, public_ip_prefix_ids=prefix_ids,
                  outbound_ip_count=3)
    result = run_cause(CAUSE, nat_snapshot(gateway))
    new = "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/publicIPAddresses/test-natGateway-pip-2"
    assert az(result) == [
        "az network public-ip create --resource-group rg1 --name test-natGateway-pip-2 --location westeurope "
        "--sku Standard --allocation-method Static --version IPv4",
        f"az network nat gateway update --resource-group rg1 --name test-natGateway --public-ip-addresses "
        f"{ip_ids[0]} {new}",
    ]


def test_managed_count_above_aks_limit_is_not_suggested() -> None:
    pools = (AgentPool("big", SUBNET, 1000, 1000, 10),)
    snap = replace(lb_snapshot(LoadBalancerProfile(8000, 60, kind="managed", managed_ip_count=60),
                               lb_metrics(9, outbound_ip_count=60)), pools=pools)
    result = run_cause(CAUSE, snap)
    # 16,000 ports x 1,010 nodes = 16,160,000 -> 253 IPs, above 100
    assert result.status is Status.DETECTED
    assert az(result) == []
    assert any("above AKS's limit of 100" in r for r in result.remediation)


def test_series_without_the_split_dimension_count_as_missing() -> None:
    """If Azure answered SnatConnectionCount without a recognisable ConnectionState, failures cannot be told
    apart from successes: collection must report the metric missing (-> unknown), not zero failures."""
    from shared.azure.snat_collect import _has_points

    unsplit = {"value": [{"name": {"value": "SnatConnectionCount"}, "timeseries": [
        {"metadatavalues": [{"name": {"value": "state"}, "value": "Failed"}], "data": [{"total": 3.0}]}]}]}
    series = rest.metric_series(unsplit, "SnatConnectionCount", "ConnectionState")
    assert series == {"": [3.0]}
    assert not _has_points(series)
    assert _has_points(rest.metric_series({"value": [{"name": {"value": "SnatConnectionCount"}, "timeseries": [
        {"metadatavalues": [{"name": {"value": "connectionstate"}, "value": "Failed"}], "data": [{"total": 3.0}]}]}]},
        "SnatConnectionCount", "ConnectionState"))


@pytest.mark.parametrize(("properties", "size"), [
    ({"prefixLength": 30, "ipPrefix": "20.1.2.0/30"}, 4),
    ({"prefixLength": 31}, 2),  # not allocated yet: the length still says it
    ({"ipPrefix": "20.1.2.0/29"}, 8),
    ({"prefixLength": 28, "publicIPAddressVersion": "IPv4"}, 16),
    ({"prefixLength": 124, "publicIPAddressVersion": "IPv6"}, 16),
    ({}, None),
    ({"prefixLength": "x"}, None),
])
def test_prefix_size_is_read_never_assumed(properties: dict[str, Any], size: int | None) -> None:
    from shared.azure.snat_collect import prefix_size

    assert prefix_size({"id": "p", "properties": properties}) == size
