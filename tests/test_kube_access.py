"""Reaching the Kubernetes API: classification of the API server's answers, kubeconfig handling, the exact
`unknown` reasons, key material on disk, and the bounds (per cluster, per fleet, time budget)."""

from __future__ import annotations

import base64
import os
import stat
import threading
from typing import Any

import pytest

from shared.azure.clients import ArmClients
from shared.azure.collect import Collector
from shared.azure.ids import parse_cluster_id
from shared.kube import access
from shared.kube.access import AccessError, KeyFiles, KubeTarget
from shared.kube.classify import classify, status_message
from shared.kube.client import KubeCallError, KubeClient
from shared.kube.collect import KubeOptions, read_cluster, unreachable_reason
from shared.settings import Settings
from shared.snapshot import ClusterSnapshot
from tests.emulator_fixtures import emulator_fixture  # noqa: F401 (fixture)
from tests.kube_scenarios import Start, cluster, cluster_id, fleet

LOG_URL = 'Get "https://10.224.0.5:10250/containerLogs/kube-system/kube-proxy-x/kube-proxy?tailLines=1": '


@pytest.mark.parametrize(("status", "message", "result"), [
    (200, "I1203 ...", "ok"),
    (500, LOG_URL + "dial tcp 10.224.0.5:10250: i/o timeout", "timeout"),
    (500, "error dialing backend: dial tcp 10.224.0.5:10250: i/o timeout", "timeout"),  # the article's 2nd form
    (500, LOG_URL + "dial tcp 10.224.0.5:10250: connect: connection refused", "refused"),
    (500, LOG_URL + "dial tcp 10.224.0.5:10250: connect: no route to host", "refused"),
    (500, LOG_URL + "No agent available", "no-agent"),
    (500, "error dialing backend: EOF", "no-agent"),
    (500, LOG_URL + "http: server gave HTTP response to HTTPS client", "plain-http"),
    (403, 'pods "x" is forbidden: User "u" cannot get resource "pods/log"', "forbidden"),
    (401, "Unauthorized", "forbidden"),
    (None, "[Errno 111] Connection refused", "unreachable"),
    (500, "etcdserver: request timed out", "error"),
    (503, "the server is currently unable to handle the request", "error"),
])
def test_classify(status: int | None, message: str, result: str) -> None:
    got, detail = classify(status, message)
    assert got == result
    assert detail == " ".join(message.split())


def test_status_message_reads_the_kubernetes_status_body() -> None:
    body = '{"kind":"Status","apiVersion":"v1","status":"Failure","message":"No agent available","code":500}'
    assert status_message(body, "Internal Server Error") == "No agent available"
    assert status_message("", "Internal Server Error") == "Internal Server Error"
    assert status_message("plain text", "x") == "plain text"


# ------------------------------------------------------------------ exact reasons


def _cluster(**access_profile: Any) -> dict[str, Any]:
    return {"id": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1",
            "properties": {"apiServerAccessProfile": access_profile}}


TARGET = KubeTarget("https://aks1-abc.hcp.westeurope.azmk8s.io:443", b"", "entra-id", token="t")


def test_unreachable_reasons_name_the_cause() -> None:
    down = KubeCallError(None, "ConnectTimeoutError: timed out", "nodes")
    assert unreachable_reason(down, _cluster(authorizedIPRanges=["203.0.113.0/24"]), TARGET) == (
        "API server authorized IP ranges (203.0.113.0/24) exclude the monitor: the API server "
        "aks1-abc.hcp.westeurope.azmk8s.io did not answer (ConnectTimeoutError: timed out)")
    assert unreachable_reason(down, _cluster(enablePrivateCluster=True), TARGET) == (
        "private cluster: the monitor has no network line of sight to the API server "
        "aks1-abc.hcp.westeurope.azmk8s.io (ConnectTimeoutError: timed out)")
    assert unreachable_reason(down, _cluster(), TARGET) == (
        "the Kubernetes API server aks1-abc.hcp.westeurope.azmk8s.io could not be reached: "
        "ConnectTimeoutError: timed out")
    forbidden = KubeCallError(403, 'nodes is forbidden: User "u" cannot list resource "nodes"', "nodes")
    assert unreachable_reason(forbidden, _cluster(authorizedIPRanges=["1.2.3.4/32"]), TARGET) == (
        "Kubernetes RBAC forbids the monitor's identity (entra-id) reading nodes: nodes is forbidden: User \"u\" "
        "cannot list resource \"nodes\"")
    assert "(401 Unauthorized)" in unreachable_reason(KubeCallError(401, "Unauthorized", "nodes"), _cluster(), TARGET)
    assert unreachable_reason(KubeCallError(429, "slow down", "pods"), _cluster(), TARGET) == (
        "the Kubernetes API answered HTTP 429 reading pods: slow down")


def _kubeconfig(cluster_: dict[str, Any], user: dict[str, Any]) -> str:
    import json

    return json.dumps({"apiVersion": "v1", "clusters": [{"name": "c", "cluster": cluster_}],
                       "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                       "current-context": "c", "users": [{"name": "u", "user": user}]})


def test_kubeconfig_failures_are_exact_reasons() -> None:
    what = "the cluster user credential"
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()
    server, ca_pem, _user = access._parse_kubeconfig(_kubeconfig({"server": "https://h:443",
                                                                  "certificate-authority-data": ca}, {}), what)
    assert (server, ca_pem) == ("https://h:443", b"-----BEGIN CERTIFICATE-----")
    with pytest.raises(AccessError, match="names no https API server"):
        access._parse_kubeconfig(_kubeconfig({"server": "http://h", "certificate-authority-data": ca}, {}), what)
    with pytest.raises(AccessError, match="no certificate-authority-data"):
        access._parse_kubeconfig(_kubeconfig({"server": "https://h"}, {}), what)
    not_pem = base64.b64encode(b"\x00\x01").decode()
    with pytest.raises(AccessError, match="not a PEM certificate"):
        access._parse_kubeconfig(_kubeconfig({"server": "https://h", "certificate-authority-data": not_pem}, {}),
                                 what)
    with pytest.raises(AccessError, match="not valid YAML"):
        access._parse_kubeconfig("a: [", what)
    with pytest.raises(AccessError, match="returned no kubeconfig"):
        access._first_kubeconfig({"kubeconfigs": []}, what)
    encoded = base64.b64encode(b"apiVersion: v1\n").decode()
    assert access._first_kubeconfig({"kubeconfigs": [{"value": encoded}]}, what) == "apiVersion: v1\n"
    assert access._first_kubeconfig({"kubeconfigs": [{"value": b"apiVersion: v1\n"}]}, what) == "apiVersion: v1\n"


def test_client_key_files_are_private_and_removed() -> None:
    files = KeyFiles(b"cert", b"key")
    assert stat.S_IMODE(os.stat(files.key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(files.directory).st_mode) == 0o700
    files.close()
    assert not os.path.exists(files.directory)


# ------------------------------------------------------------------ bounds, against the emulator


def _read(emu_cluster: str, options: KubeOptions, log_timeout: float = 40.0) -> ClusterSnapshot:
    settings = Settings.from_env({**os.environ, "NODE_PROBES": "all"})
    clients = ArmClients(settings)
    try:
        collector = Collector(clients)
        raw = collector.managed_cluster(parse_cluster_id(emu_cluster))
        return read_cluster(clients, raw, collector.snapshot(raw, with_instances=False), options,
                            connect=lambda target: KubeClient(target, log_timeout=log_timeout))
    finally:
        clients.close()


def test_log_calls_are_bounded_per_cluster_and_per_fleet(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-wide", count=16)))
    assert emu.kube is not None
    emu.kube.latency = 0.05
    read = _read(cluster_id(emu, "aks-wide"), KubeOptions(mode="all", per_cluster=4))
    assert isinstance(read.symptom, tuple)
    assert len(read.symptom) == 16
    assert emu.kube.calls["log"] == 16  # at most one call per node
    assert 2 <= emu.kube.max_in_flight <= 4
    emu.kube.max_in_flight = 0
    _read(cluster_id(emu, "aks-wide"), KubeOptions(mode="all", per_cluster=8, fleet=threading.BoundedSemaphore(2)))
    assert emu.kube.max_in_flight <= 2


def test_time_budget_turns_unasked_nodes_into_not_checked(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-slow", count=3)))
    read = _read(cluster_id(emu, "aks-slow"), KubeOptions(mode="all", budget_s=0.0))
    assert isinstance(read.symptom, tuple)
    assert {n.result for n in read.symptom} == {"error"}
    assert all("time budget" in n.detail for n in read.symptom)


def test_a_log_call_without_an_answer_is_an_error_not_unreachable(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-hang", count=2, kube={"logDelaySeconds": 2})))
    read = _read(cluster_id(emu, "aks-hang"), KubeOptions(mode="all"), log_timeout=0.5)
    assert isinstance(read.symptom, tuple)
    assert {n.result for n in read.symptom} == {"error"}
    assert all(n.detail.startswith("no answer from the API server for kube-proxy-") for n in read.symptom)


def test_emulated_objects_fit_the_kubernetes_clients_models() -> None:
    """Every emulated kind deserialises through the client's own (pydantic) models with its facts intact."""
    import json
    from datetime import UTC, datetime

    from kubernetes import client

    from devtools.emulator import kubeobjects
    from devtools.emulator.scenario_load import fleet_from_json
    from tests.kube_scenarios import cluster as cluster_json
    from tests.kube_scenarios import fleet as fleet_json

    spec = fleet_from_json(fleet_json(cluster_json("aks-shape", kube={"agents": [
        {"node": 0, "restarts": 3, "lastTerminated": "OOMKilled"}, {"phase": "Pending", "ready": False}]}))).clusters[0]
    now = datetime.now(UTC)
    api = client.ApiClient()

    def load(obj: object, kind: str) -> Any:
        return api.deserialize(json.dumps(obj), kind, "application/json")

    pods = load({"items": kubeobjects.pods_json(spec, now), "metadata": {}}, "V1PodList").items
    agent = next(p for p in pods if (p.metadata.labels or {}).get("app") == "konnectivity-agent" and p.spec.node_name)
    assert agent.status.container_statuses[0].last_state.terminated.reason == "OOMKilled"
    assert agent.metadata.owner_references[0].kind == "ReplicaSet"
    pending = next(p for p in pods if p.status.phase == "Pending")
    assert pending.status.conditions[0].reason == "Unschedulable"
    nodes = load({"items": [kubeobjects.node_json(spec, n, now) for n in spec.nodes], "metadata": {}}, "V1NodeList")
    assert nodes.items[0].status.addresses[0].type == "InternalIP"
    events = load({"items": kubeobjects.events_json(spec, now), "metadata": {}}, "CoreV1EventList").items
    assert {e.reason for e in events} == {"BackOff", "FailedScheduling"}
    assert load(kubeobjects.configmap_json(spec), "V1ConfigMap").data["ladder"]
    assert load(kubeobjects.deployment_json(spec, now), "V1Deployment").spec.replicas == 2
    with pytest.raises(ValueError, match=r"involved_object|involvedObject"):
        load({"items": [{"metadata": {"name": "x"}}], "metadata": {}}, "CoreV1EventList")


def test_a_crash_in_the_read_costs_only_the_read(emulator: Start) -> None:
    emu = emulator(fleet(cluster("aks-crash", count=2)))
    settings = Settings.from_env({**os.environ, "NODE_PROBES": "all"})
    clients = ArmClients(settings)
    try:
        collector = Collector(clients)
        raw = collector.managed_cluster(parse_cluster_id(cluster_id(emu, "aks-crash")))

        def broken(_target: KubeTarget) -> KubeClient:
            raise RuntimeError("boom")

        read = read_cluster(clients, raw, collector.snapshot(raw, with_instances=False), KubeOptions(mode="all"),
                            connect=broken)
    finally:
        clients.close()
    assert read.kube is not None
    assert getattr(read.kube, "reason", "") == "the Kubernetes API read failed: RuntimeError: boom"
    assert isinstance(read.symptom, tuple)
    assert {n.result for n in read.symptom} == {"error"}


def test_no_token_for_the_aks_server_application_is_unknown(emulator: Start) -> None:
    """Entra ID refuses the AKS server application's scope (as AADSTS errors do); ARM tokens still work."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    class RefusesAksScope:
        def __init__(self) -> None:
            self.inner = DefaultAzureCredential()

        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            if access.AKS_SERVER_APP_SCOPE in scopes:
                raise ClientAuthenticationError("AADSTS500011: The resource principal named "
                                                "6dae42f8-4368-4678-94ff-3960e28e3630 was not found")
            return self.inner.get_token(*scopes, **kwargs)

        def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
            return self.inner.get_token_info(*scopes, **kwargs)

    emu = emulator(fleet(cluster("aks-notoken", count=2)))
    settings = Settings.from_env({**os.environ, "NODE_PROBES": "all"})
    clients = ArmClients(settings, credential=RefusesAksScope())
    try:
        collector = Collector(clients)
        raw = collector.managed_cluster(parse_cluster_id(cluster_id(emu, "aks-notoken")))
        read = read_cluster(clients, raw, collector.snapshot(raw, with_instances=False), KubeOptions(mode="all"))
    finally:
        clients.close()
    assert getattr(read.kube, "reason", "") == (
        "could not get a token for the AKS server application (6dae42f8-4368-4678-94ff-3960e28e3630/.default) from "
        "the monitor's identity: AADSTS500011: The resource principal named 6dae42f8-4368-4678-94ff-3960e28e3630 "
        "was not found")
    assert isinstance(read.symptom, tuple)
    assert {n.result for n in read.symptom} == {"forbidden"}
