"""The catalog as a whole: contract order, not-applicable and unknown paths, crash handling, the report."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from shared.causes import REGISTRY, evaluate_all, run_cause
from shared.causes import egress_tunnel_port_blocked as egress
from shared.causes import iptables_blocks_10250 as iptables_cause
from shared.causes import snat_port_exhaustion as snat
from shared.causes import ufw_blocks_10250 as ufw_cause
from shared.causes.base import Cause
from shared.model import CAUSE_ORDER, CauseId, Status
from shared.report import build_report
from shared.snapshot import Firewall, FirewallRule, SnatMetrics, Unavailable
from tests.builders import probe, routed_snapshot, snapshot

UFW_DENY = """Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), disabled (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
22/tcp                     ALLOW IN    Anywhere
10250/tcp                  DENY IN     Anywhere
"""

IPTABLES_DROP_IN_CHAIN = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:CUSTOM-BLOCK - [0:0]
-A INPUT -j CUSTOM-BLOCK
-A CUSTOM-BLOCK -p tcp -m tcp --dport 10250 -j DROP
COMMIT
"""


def metrics(failed: float = 0.0, kind: str = "loadBalancer") -> SnatMetrics:
    return SnatMetrics("/subscriptions/s/resourceGroups/nrg/providers/Microsoft.Network/loadBalancers/kubernetes",
                       kind, 15, failed, 100.0, {"10.224.0.4": (10.0,)}, {"10.224.0.4": (1024.0,)})


def probes_for(snap, **fields):  # type: ignore[no-untyped-def]
    return {n.name: probe(n.name, **fields) for n in snap.nodes}


def test_registry_follows_the_contract_order() -> None:
    assert tuple(c.id for c in REGISTRY) == CAUSE_ORDER
    assert [r.id for r in evaluate_all(snapshot())] == list(CAUSE_ORDER)


def test_a_crashing_check_is_unknown_with_the_error() -> None:
    def boom(_snapshot):  # type: ignore[no-untyped-def]
        raise RuntimeError("kaboom")

    cause = Cause(CauseId.NSG, "t", "d", lambda s: None, boom)
    result = run_cause(cause, snapshot())
    assert result.status is Status.UNKNOWN
    assert "RuntimeError: kaboom" in (result.reason or "")


def test_unsupported_cluster_makes_every_cause_unknown() -> None:
    results = evaluate_all(snapshot(unsupported_reason="availability sets"))
    assert {r.status for r in results} == {Status.UNKNOWN}


@pytest.mark.parametrize(("private", "outbound"), [(True, "loadBalancer"), (False, "userDefinedRouting"),
                                                   (False, "none")])
def test_snat_not_applicable(private: bool, outbound: str) -> None:
    result = run_cause(snat.CAUSE, snapshot(private=private, outbound_type=outbound, snat=metrics(5)))
    assert result.status is Status.NOT_APPLICABLE


def test_snat_detected_with_arithmetic_and_fix() -> None:
    result = run_cause(snat.CAUSE, snapshot(snat=metrics(7)))
    assert result.status is Status.DETECTED
    assert any("--load-balancer-outbound-ports" in r for r in result.remediation)
    assert any("peak nodes" in e.detail for e in result.evidence)


def test_snat_clear_and_unknown() -> None:
    assert run_cause(snat.CAUSE, snapshot(snat=metrics(0))).status is Status.CLEAR
    forbidden = run_cause(snat.CAUSE, snapshot(snat=Unavailable("access denied (403) reading metrics")))
    assert forbidden.status is Status.UNKNOWN
    assert run_cause(snat.CAUSE, snapshot(snat=None)).status is Status.UNKNOWN


def test_snat_on_nat_gateway() -> None:
    snap = snapshot(outbound_type="managedNATGateway", snat=metrics(3, "natGateway"))
    result = run_cause(snat.CAUSE, snap)
    assert result.status is Status.DETECTED
    assert "NAT gateway" in result.summary


def test_node_causes_are_unknown_when_probes_are_off() -> None:
    for cause in (ufw_cause.CAUSE, iptables_cause.CAUSE):
        result = run_cause(cause, snapshot())
        assert result.status is Status.UNKNOWN
        assert "probes are off" in (result.reason or "")


def test_ufw_deny_detected_on_the_probed_nodes() -> None:
    snap = snapshot(probes_mode="all")
    snap = replace(snap, probes=probes_for(snap, ufw_status=UFW_DENY))
    result = run_cause(ufw_cause.CAUSE, snap)
    assert result.status is Status.DETECTED
    assert result.subjects == ("ufw: DENY IN 10250/tcp from Anywhere",)  # one rule to fix, on 3 nodes
    assert len(result.affected["ufw: DENY IN 10250/tcp from Anywhere"]) == 3
    assert any("ufw delete 2" in r for r in result.remediation)
    assert any("ufw disable" in r for r in result.remediation)


def test_ufw_absent_everywhere_is_not_applicable() -> None:
    snap = snapshot(probes_mode="all")
    snap = replace(snap, probes=probes_for(snap, ufw_status=None))
    assert run_cause(ufw_cause.CAUSE, snap).status is Status.NOT_APPLICABLE


def test_one_node_unreadable_and_others_clear_is_unknown() -> None:
    snap = snapshot(probes_mode="all")
    probes = dict(probes_for(snap, ufw_status="Status: inactive\n"))
    first = next(iter(probes))
    probes[first] = Unavailable("probe output was truncated")
    result = run_cause(ufw_cause.CAUSE, replace(snap, probes=probes))
    assert result.status is Status.UNKNOWN
    assert "truncated" in (result.reason or "")


def test_iptables_drop_through_a_user_chain() -> None:
    snap = snapshot(probes_mode="all")
    snap = replace(snap, probes=probes_for(snap, iptables_save=IPTABLES_DROP_IN_CHAIN))
    result = run_cause(iptables_cause.CAUSE, snap)
    assert result.status is Status.DETECTED
    assert any("iptables -D CUSTOM-BLOCK" in r for r in result.remediation)


def test_iptables_accepting_input_is_clear() -> None:
    snap = snapshot(probes_mode="all")
    snap = replace(snap, probes=probes_for(snap))
    assert run_cause(iptables_cause.CAUSE, snap).status is Status.CLEAR


def test_egress_timeout_from_the_node_is_detected() -> None:
    snap = snapshot(probes_mode="all")
    snap = replace(snap, probes=probes_for(snap, egress={"tcp/443": "timeout"}))
    result = run_cause(egress.CAUSE, snap)
    assert result.status is Status.DETECTED
    assert "tcp/443" in result.summary


def test_egress_ports_by_tunnel_component() -> None:
    assert egress.tunnel_ports(snapshot(tunnel="konnectivity")) == ("tcp/443",)
    assert egress.tunnel_ports(snapshot(tunnel="tunnel-front")) == ("tcp/9000",)
    assert egress.tunnel_ports(snapshot(tunnel="aks-link")) == ("udp/1194",)
    assert egress.tunnel_ports(snapshot(tunnel="aks-link", private=True)) == ("tcp/443",)


def test_egress_through_a_firewall_without_an_allow_is_detected() -> None:
    fw = Firewall("/subscriptions/s/resourceGroups/hub/providers/Microsoft.Network/azureFirewalls/fw", "10.0.1.4", (
        FirewallRule("web", 200, "Allow", "allow-web", "application", ("Https:443",),
                     destination_fqdns=("*.microsoft.com",)),
    ))
    routed = routed_snapshot(fw)
    result = run_cause(egress.CAUSE, routed)
    assert result.status is Status.DETECTED
    assert any("AzureKubernetesService" in r for r in result.remediation)
    allowing = replace(fw, rules=(FirewallRule("aks", 100, "Allow", "aks", "application", ("Https:443",),
                                               fqdn_tags=("AzureKubernetesService",)),))
    # Rules that allow it do not prove the path open: only a node's own connection does (issue 8).
    unconfirmed = run_cause(egress.CAUSE, routed_snapshot(allowing))
    assert unconfirmed.status is Status.UNKNOWN
    assert "not confirmed from a node" in (unconfirmed.reason or "")


def test_egress_without_probes_or_control_plane_evidence_is_unknown() -> None:
    result = run_cause(egress.CAUSE, snapshot())
    assert result.status is Status.UNKNOWN


def test_report_shape_follows_the_contract() -> None:
    snap = snapshot(snat=metrics(2), probes_mode="all")
    snap = replace(snap, probes=probes_for(snap, reachability={"10.224.0.5": "timeout", "10.224.0.6": "ok"}))
    results = evaluate_all(snap)
    report = build_report(snap, results, datetime(2026, 11, 27, 18, 0, tzinfo=UTC))
    assert report["checkedAt"] == "2026-11-27T18:00:00Z"
    assert report["verdict"] == "problem"
    assert [c["id"] for c in report["causes"]] == [str(c) for c in CAUSE_ORDER]
    assert set(report["cluster"]) == {"id", "name", "subscriptionId", "resourceGroup", "location",
                                      "nodeResourceGroup", "private", "outboundType", "tunnel"}
    for cause in report["causes"]:
        assert set(cause) == {"id", "status", "title", "summary", "evidence", "remediation", "reason"}
    assert report["symptom"]["status"] == "degraded"
    assert report["symptom"]["unreachableNodes"] == ["aks-nodepool1-1-vmss000001"]
    assert len(report["symptom"]["tunnelNodes"]) == 3


def test_a_ufw_section_error_makes_only_ufw_unknown() -> None:
    snap = snapshot(probes_mode="all")
    snap = replace(snap, probes=probes_for(snap, ufw_error="`ufw status verbose` output (5000 bytes) is too large"))
    assert run_cause(ufw_cause.CAUSE, snap).status is Status.UNKNOWN
    assert run_cause(iptables_cause.CAUSE, snap).status is Status.CLEAR
