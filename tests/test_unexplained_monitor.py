"""The `tunnel-unexplained` finding through the monitor (real Azurite, the ARM emulator with its Kubernetes
API servers, a real HTTPS webhook receiver): a broken tunnel that no documented cause explains opens one
finding and one alert, stays quiet while open, resolves (and says so) once the tunnel works; a broken
tunnel that a cause owned by another timer explains (an NSG rule on 10250) opens nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.emulator.arm import Emulator
from shared.model import UNEXPLAINED_ID
from shared.monitor.cycle import Monitor
from shared.settings import Settings
from shared.store.findings import list_findings
from tests.azurite import isolated_store
from tests.emulator_fixtures import emulator_fixture  # noqa: F401 (fixture)
from tests.https_receiver import HttpsReceiver
from tests.kube_scenarios import cluster, fleet, node_names
from tests.webhook_world import signed_alerts, webhook_env

DROP_10250 = ["-A INPUT -p tcp -m tcp --dport 10250 -j DROP"]
DENY_KUBELET = {"name": "deny-kubelet", "priority": 200, "direction": "Inbound", "access": "Deny",
                "protocol": "Tcp", "sourceAddressPrefix": "VirtualNetwork", "sourcePortRange": "*",
                "destinationAddressPrefix": "*", "destinationPortRange": "10250"}


def custom_vnet(name: str, *rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return cluster(name, count=2, vnet={"name": f"vnet-{name}", "addressSpace": ["10.10.0.0/16"], "subnets": [
        {"name": "snet-aks", "addressPrefix": "10.10.0.0/22", "nsg": f"nsg-{name}"}]},
        nsgs=[{"name": f"nsg-{name}", "rules": list(rules)}], **extra)


@pytest.fixture
def world(emulator: Callable[..., Emulator], azurite_connection: str, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    emu = emulator(fleet(
        cluster("aks-odd", count=2, kube={"plainHttpNodes": [1]}),  # something else answers on 10250
        custom_vnet("aks-nsg", DENY_KUBELET, agentPools=[{"name": "nodepool1", "count": 2, "nodes": [
            {"index": 1, "iptables": DROP_10250}]}]),  # the NSG denies 10250: the timeout is explained
        custom_vnet("aks-drop", agentPools=[{"name": "nodepool1", "count": 2, "nodes": [
            {"index": 1, "iptables": DROP_10250}]}]),  # same timeout, no NSG rule, probes off: unexplained
    ))
    with HttpsReceiver() as receiver, isolated_store(azurite_connection, channels=("webhook",)) as store:
        env = webhook_env(emu, receiver, azurite_connection, tmp_path)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield {"emu": emu, "receiver": receiver, "store": store,
               "monitor": Monitor(Settings.from_env(env), store, env=env)}


def unexplained(store: Any) -> dict[str, tuple[str, ...]]:
    return {f.cluster_name: f.affected for f in list_findings(store, "open", cause=UNEXPLAINED_ID)}


def spec(emu: Emulator, name: str) -> Any:
    return next(c for c in emu.state.fleet.clusters if c.name == name)


def test_unexplained_broken_tunnel_opens_one_finding_alerts_once_and_resolves(world: dict[str, Any]) -> None:
    emu, monitor, store, receiver = world["emu"], world["monitor"], world["store"], world["receiver"]
    odd, drop = node_names(emu, "aks-odd")[1], node_names(emu, "aks-drop")[1]
    first = monitor.run_cycle(("probe",))
    assert not first.errors, first.errors
    assert unexplained(store) == {"aks-odd": (odd,), "aks-drop": (drop,)}
    sent = [a for a in signed_alerts(receiver) if a["cause"]["id"] == UNEXPLAINED_ID]
    assert sorted((a["event"], a["cluster"]["name"]) for a in sent) == [
        ("detected", "aks-drop"), ("detected", "aks-odd")]
    assert all("no documented cause explains it" in a["summary"] for a in sent)
    report = next(r for r in first.reports if r["cluster"]["name"] == "aks-odd")
    assert report["verdict"] == "problem"
    assert report["symptom"]["explanation"]["unexplainedNodes"] == [odd]
    assert UNEXPLAINED_ID not in {c["id"] for c in report["causes"]}

    before = len(receiver.requests)
    monitor.run_cycle(("probe",))
    assert len(receiver.requests) == before  # still open: no repeat

    spec(emu, "aks-odd").kube.pop("plainHttpNodes")
    third = monitor.run_cycle(("probe",))
    assert not third.errors, third.errors
    assert set(unexplained(store)) == {"aks-drop"}
    resolved = [a for a in signed_alerts(receiver)[before:] if a["event"] == "resolved"]
    assert [(a["cause"]["id"], a["cluster"]["name"]) for a in resolved] == [(UNEXPLAINED_ID, "aks-odd")]


def test_a_timeout_an_nsg_rule_explains_opens_no_unexplained_finding(world: dict[str, Any]) -> None:
    # Only the probe timer runs: the NSG cause belongs to the nsg timer, so the probe family must evaluate
    # it itself before saying that no documented cause explains the timeout.
    monitor, store = world["monitor"], world["store"]
    first = monitor.run_cycle(("probe",))
    assert not first.errors, first.errors
    assert "aks-nsg" not in unexplained(store)
    report = next(r for r in first.reports if r["cluster"]["name"] == "aks-nsg")
    assert report["symptom"]["status"] == "degraded"
    explanation = report["symptom"]["explanation"]
    assert explanation["status"] == "clear"
    assert list(explanation["explainedBy"].values()) == [["nsg-blocks-10250"]]
    # The nsg timer's own finding is the one alert for it.
    monitor.run_cycle(("nsg",))
    assert {f.cause for f in list_findings(store, "open") if f.cluster_name == "aks-nsg"} == {"nsg-blocks-10250"}
    monitor.run_cycle(("probe",))
    assert "aks-nsg" not in unexplained(store)


def test_findings_api_filters_on_the_unexplained_id(world: dict[str, Any]) -> None:
    from shared.functions.api import Api

    world["monitor"].run_cycle(("probe",))
    api = Api(lambda: world["monitor"])
    response = api.findings({"cause": UNEXPLAINED_ID})
    assert response.status == 200, response.body
    items = response.body["findings"]
    assert {i["cause"] for i in items} == {UNEXPLAINED_ID}
    assert response.body["count"] == 2
    assert api.findings({"cause": "tunnel-nonsense"}).status == 400
