"""The symptom through the Kubernetes API: one pod-log call per node, classified, and every way of not
being able to make it ending as `unknown` with the exact reason (never `ok`, never `clear`).

These run the real `kubernetes` client and the real Azure SDK against the emulator (its kubelet dials
decided in-process here; tests/test_kube_kernel.py does the same through real network namespaces).
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.kube.types import BROKEN
from shared.kube.unexplained import explain_symptom
from shared.model import UNEXPLAINED_ID, CauseId, Status
from tests.emulator_fixtures import emulator_fixture  # noqa: F401 (fixture)
from tests.kube_scenarios import Start, by_node, cause, cluster, fleet, node_names, run

KONN = str(CauseId.KONNECTIVITY_AGENT)
DROP_10250 = ["-A INPUT -p tcp -m tcp --dport 10250 -j DROP"]
REJECT_10250 = ["-A INPUT -p tcp -m tcp --dport 10250 -j REJECT --reject-with tcp-reset"]


def test_healthy_cluster_every_node_ok_and_report_contract(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-ok")))
    found = run(emu, "aks-ok")
    symptom = found.report["symptom"]
    assert symptom["status"] == "ok"
    assert {"tunnelNodes", "unreachableNodes", "nodes"} <= set(symptom)  # existing fields kept
    assert sorted(by_node(found)) == sorted(node_names(emu, "aks-ok"))
    assert {n["result"] for n in symptom["nodes"]} == {"ok"}
    assert [c["id"] for c in found.report["causes"]][5:7] == [KONN, str(CauseId.AUTHORIZED_IP_RANGES)]
    assert cause(found, KONN)["status"] == "clear"
    assert emu.kube is not None
    assert emu.kube.calls["log"] == 3


def test_iptables_drop_on_one_node_is_a_timeout_for_that_node_only(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-drop", nodes=[{"index": 2, "iptables": DROP_10250}])))
    found = run(emu, "aks-drop")
    names = node_names(emu, "aks-drop")
    results = by_node(found)
    assert results[names[2]]["result"] == "timeout"
    assert "dial tcp 10.224.0.6:10250: i/o timeout" in results[names[2]]["detail"]
    assert {results[n]["result"] for n in names[:2]} == {"ok"}
    assert found.report["symptom"]["status"] == "degraded"
    assert found.report["verdict"] == "problem"


def test_reject_is_refused_and_plain_http_is_classified(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-mixed", nodes=[{"index": 1, "iptables": REJECT_10250}],
                                 kube={"plainHttpNodes": [2]})))
    names = node_names(emu, "aks-mixed")
    found = run(emu, "aks-mixed")
    results = by_node(found)
    assert results[names[1]]["result"] == "refused"
    assert "connect: connection refused" in results[names[1]]["detail"]
    assert results[names[2]]["result"] == "plain-http"
    assert results[names[0]]["result"] == "ok"


def test_blocked_tunnel_egress_everywhere_is_no_agent(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-egress", count=2, nodes=[{"index": 0, "egressBlocked": ["tcp/443"]},
                                                               {"index": 1, "egressBlocked": ["tcp/443"]}])))
    found = run(emu, "aks-egress")
    assert {n["result"] for n in found.report["symptom"]["nodes"]} == {"no-agent"}
    assert all("No agent available" in n["detail"] for n in found.report["symptom"]["nodes"])
    assert found.report["symptom"]["status"] == "degraded"


def test_sample_mode_asks_a_rotating_sample_per_pool(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-big", count=7)))
    found = run(emu, "aks-big", mode="sample")
    assert len(found.report["symptom"]["nodes"]) == 2  # PROBE_SAMPLE_PER_POOL default
    assert emu.kube is not None
    assert emu.kube.calls["log"] == 2


# ------------------------------------------------------------------ cannot read the API -> unknown


def _unknown_everywhere(found: Any, reason_part: str) -> None:
    report = found.report
    konn = cause(found, KONN)
    assert konn["status"] == "unknown", konn
    assert reason_part in konn["reason"], konn["reason"]
    assert report["symptom"]["status"] == "unknown"
    assert report["symptom"]["nodes"], "each node that would be asked is listed with why it was not"
    assert all(reason_part in n["detail"] for n in report["symptom"]["nodes"])
    assert not {n["result"] for n in report["symptom"]["nodes"]} & ({"ok"} | BROKEN)
    assert report["verdict"] != "healthy"


def test_rbac_forbidden_is_unknown_with_the_servers_words(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-rbac", kube={"rbac": "forbid"})))
    found = run(emu, "aks-rbac")
    _unknown_everywhere(found, 'Kubernetes RBAC forbids the monitor\'s identity (entra-id) reading nodes: nodes is '
                               'forbidden: User "00000000-0000-0000-0000-000000000001" cannot list resource "nodes"')
    assert {n["result"] for n in found.report["symptom"]["nodes"]} == {"forbidden"}


def test_logs_forbidden_is_forbidden_per_node_and_not_degraded(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-nologs", kube={"rbac": "no-logs"})))
    found = run(emu, "aks-nologs")
    nodes = found.report["symptom"]["nodes"]
    assert {n["result"] for n in nodes} == {"forbidden"}
    assert all('cannot get resource "pods/log"' in n["detail"] for n in nodes)
    assert found.report["symptom"]["status"] == "unknown"
    assert cause(found, KONN)["status"] == "clear"  # the agent reads were allowed


def test_events_forbidden_makes_the_agent_cause_unknown_but_the_symptom_still_runs(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-noevents", kube={"rbac": "no-events"})))
    found = run(emu, "aks-noevents")
    konn = cause(found, KONN)
    assert konn["status"] == "unknown"
    assert konn["reason"].startswith("Kubernetes RBAC forbids the monitor's identity (entra-id) reading events in "
                                     "kube-system: events is forbidden")
    assert found.report["symptom"]["status"] == "ok"


def test_private_cluster_without_line_of_sight_is_unknown(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-priv", private=True, kube={"reachable": "private"})))
    found = run(emu, "aks-priv")
    _unknown_everywhere(found, "private cluster: the monitor has no network line of sight to the API server 127.0.0.1")
    assert {n["result"] for n in found.report["symptom"]["nodes"]} == {"unreachable"}


def test_unreachable_public_api_is_unknown(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-gone", kube={"reachable": "authorized-ranges"})))
    found = run(emu, "aks-gone")
    _unknown_everywhere(found, "the Kubernetes API server 127.0.0.1 could not be reached")


def test_credential_forbidden_by_arm_is_unknown(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-arm403")))
    emu.faults.add(403, operation="ManagedClusters.ListClusterUserCredentials")
    found = run(emu, "aks-arm403")
    _unknown_everywhere(found, "access denied (403 AuthorizationFailed) reading the cluster user credential "
                               "(listClusterUserCredential)")
    assert {n["result"] for n in found.report["symptom"]["nodes"]} == {"forbidden"}


def test_local_account_cluster_uses_the_monitoring_user_certificate(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-local", kube={"aad": False})))
    found = run(emu, "aks-local")
    assert found.report["symptom"]["status"] == "ok"
    assert found.snapshot.kube is not None
    assert getattr(found.snapshot.kube, "auth", "") == "monitoring-user"
    assert emu.stats.calls("ManagedClusters.ListClusterMonitoringUserCredentials") == 1
    assert emu.stats.calls("ManagedClusters.ListClusterUserCredentials") == 0


def test_entra_cluster_uses_the_user_credential_and_a_token_for_the_aks_app(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-entra")))
    found = run(emu, "aks-entra")
    assert found.snapshot.kube is not None
    assert getattr(found.snapshot.kube, "auth", "") == "entra-id"
    assert emu.stats.calls("ManagedClusters.ListClusterUserCredentials") == 1
    assert emu.stats.calls("ManagedClusters.ListClusterMonitoringUserCredentials") == 0


# ------------------------------------------------------------------ symptom without a cause still alerts


def test_degraded_symptom_without_a_cause_is_a_problem_with_an_unexplained_finding(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-odd", kube={"plainHttpNodes": [0]})))
    names = node_names(emu, "aks-odd")
    found = run(emu, "aks-odd")
    assert not [c for c in found.report["causes"] if c["status"] == "detected"]
    assert found.report["verdict"] == "problem"
    assert found.report["symptom"]["explanation"]["unexplainedNodes"] == [names[0]]
    explanation = explain_symptom(found.snapshot, found.results)
    assert explanation is not None
    finding = explanation.to_result(found.snapshot.id)
    assert finding.id == UNEXPLAINED_ID
    assert finding.status is Status.DETECTED
    assert finding.subjects == (found.snapshot.id,)
    assert finding.affected == {found.snapshot.id: (names[0],)}
    assert names[0] in finding.summary
    assert "no documented cause explains it" in finding.summary


def test_unexplained_finding_clears_when_a_cause_explains_it_and_is_unknown_when_unread(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-x", count=2, nodes=[{"index": 0, "egressBlocked": ["tcp/443"]},
                                                          {"index": 1, "egressBlocked": ["tcp/443"]}],
                                 kube={"agents": [{"node": 0, "ready": False}]}),
                         cluster("aks-y", kube={"rbac": "forbid"})))
    explained = run(emu, "aks-x")
    assert cause(explained, KONN)["status"] == "detected"
    explanation = explained.report["symptom"]["explanation"]
    assert explanation["status"] == "clear"
    assert KONN in explanation["summary"]
    unread = run(emu, "aks-y")
    found = explain_symptom(unread.snapshot, unread.results)
    assert found is not None
    finding = found.to_result(unread.snapshot.id)
    assert finding.status is Status.UNKNOWN
    assert "RBAC forbids" in (finding.reason or "")


def test_emulator_answers_only_authenticated_callers(emulator: Start) -> None:
    import urllib.error
    import urllib.request

    emu = emulator(fleet(cluster("aks-auth")))
    found = run(emu, "aks-auth")
    server = getattr(found.snapshot.kube, "server", "")
    assert server.startswith("https://127.0.0.1:")
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        request = urllib.request.Request(f"{server}/api/v1/nodes", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, context=context, timeout=10)
        assert refused.value.code == 401


def test_tunnel_front_agent_needs_port_9000(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-tf", count=2, tunnel="tunnel-front",
                                 nodes=[{"index": 0, "egressBlocked": ["tcp/443"]},
                                        {"index": 1, "egressBlocked": ["tcp/443"]}]),
                         cluster("aks-tf9000", count=2, tunnel="tunnel-front",
                                 nodes=[{"index": 0, "egressBlocked": ["tcp/9000"]},
                                        {"index": 1, "egressBlocked": ["tcp/9000"]}])))
    assert run(emu, "aks-tf").report["symptom"]["status"] == "ok"  # 443 is not tunnel-front's port
    assert {n["result"] for n in run(emu, "aks-tf9000").report["symptom"]["nodes"]} == {"no-agent"}


def test_tls_inspection_on_the_agents_egress_leaves_no_agent(emulator: Start) -> None:
    from dataclasses import replace

    from devtools.emulator.nodebridge import node_state

    emu = emulator(fleet(cluster("aks-tls", count=2)))
    for spec in emu.state.fleet.clusters[0].nodes:
        emu.state.update_node(replace(node_state(spec), tls_inspected=True))
    found = run(emu, "aks-tls")
    assert {n["result"] for n in found.report["symptom"]["nodes"]} == {"no-agent"}
    assert found.report["verdict"] == "problem"


def test_a_stopped_node_is_not_asked(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-stopped", nodes=[{"index": 2, "powerState": "deallocated"}])))
    found = run(emu, "aks-stopped")
    names = node_names(emu, "aks-stopped")
    assert sorted(by_node(found)) == sorted(names[:2])  # NotReady: its kubelet would not answer anyway
    assert found.report["symptom"]["status"] == "ok"
