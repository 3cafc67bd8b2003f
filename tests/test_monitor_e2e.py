"""The monitor across cycles: real Azurite, the ARM emulator, a local HTTPS webhook receiver, and the
Functions handlers called through azure-functions itself (no Core Tools)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from devtools.emulator.arm import Emulator
from shared.functions import context
from shared.monitor.cycle import FleetMember, Monitor
from shared.settings import Settings
from shared.store.findings import list_findings
from tests.azurite import isolated_store
from tests.emulator_fixtures import DEMO_SCENARIO, emulator_fixture  # noqa: F401 (fixture)
from tests.https_receiver import HttpsReceiver
from tests.webhook_world import signed_alerts, webhook_env

FAMILIES = ("nsg", "snat")  # control-plane families: no node probes needed for the lifecycle


@pytest.fixture
def world(emulator: Callable[..., Emulator], azurite_connection: str, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    emu = emulator(DEMO_SCENARIO)
    with HttpsReceiver() as receiver, isolated_store(azurite_connection, channels=("webhook",)) as store:
        env = webhook_env(emu, receiver, azurite_connection, tmp_path)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        clock = {"now": datetime.now(UTC)}
        monitor = Monitor(Settings.from_env(env), store, env=env, now=lambda: clock["now"])
        context.use_monitor(monitor)
        try:
            yield {"emu": emu, "receiver": receiver, "store": store, "monitor": monitor, "clock": clock}
        finally:
            context.reset()


def alerts(receiver: HttpsReceiver) -> list[dict[str, Any]]:
    return signed_alerts(receiver)


def cluster_id(emu: Emulator, name: str) -> str:
    return next(str(c.id) for c in emu.state.fleet.clusters if c.name == name)


def test_finding_lifecycle_one_alert_per_transition(world: dict[str, Any]) -> None:
    monitor, emu, receiver = world["monitor"], world["emu"], world["receiver"]
    first = monitor.run_cycle(FAMILIES)
    assert first.opened == 2, first.errors  # aks-nsg-deny (NSG) and aks-snat (SNAT)
    sent = alerts(receiver)
    assert sorted((a["event"], a["cause"]["id"]) for a in sent) == [
        ("detected", "nsg-blocks-10250"), ("detected", "snat-port-exhaustion")]
    assert {a["cluster"]["name"] for a in sent} == {"aks-nsg-deny", "aks-snat"}

    second = monitor.run_cycle(FAMILIES)
    assert second.opened == 0
    assert second.still_open == 2
    assert len(receiver.requests) == 2  # still open: no repeat

    emu.state.remove_nsg_rule("nsg-snet-aks", "deny-kubelet", caller="fixer@contoso.com")
    third = monitor.run_cycle(FAMILIES)
    assert third.resolved == 1
    resolved = [a for a in alerts(receiver) if a["event"] == "resolved"]
    assert [a["cause"]["id"] for a in resolved] == ["nsg-blocks-10250"]
    assert [f.cause for f in list_findings(world["store"], "open")] == ["snat-port-exhaustion"]


def test_reminder_after_the_interval(world: dict[str, Any]) -> None:
    monitor, receiver, clock = world["monitor"], world["receiver"], world["clock"]
    monitor.run_cycle(("snat",))
    clock["now"] += timedelta(hours=25)
    monitor.run_cycle(("snat",))
    events = [a["event"] for a in alerts(receiver)]
    assert events == ["detected", "reminder"]


def test_receiver_down_then_back_delivers_exactly_once(world: dict[str, Any]) -> None:
    monitor, receiver, clock = world["monitor"], world["receiver"], world["clock"]
    receiver.go_down()
    summary = monitor.run_cycle(("snat",))
    assert summary.opened == 1
    assert summary.notifications_sent == 0
    receiver.come_up()
    clock["now"] += timedelta(hours=1)  # past any backoff
    assert monitor.deliver_notifications() == (1, 0)
    assert monitor.deliver_notifications() == (0, 0)
    assert [a["event"] for a in alerts(receiver)] == ["detected"]


def test_rate_limited_receiver_is_retried_after_retry_after(world: dict[str, Any]) -> None:
    monitor, receiver, clock = world["monitor"], world["receiver"], world["clock"]
    receiver.fail_next(1, 429, headers={"Retry-After": "120"})
    monitor.run_cycle(("snat",))
    assert monitor.deliver_notifications() == (0, 0)  # not due before Retry-After
    clock["now"] += timedelta(minutes=3)
    assert monitor.deliver_notifications() == (1, 0)
    assert len(alerts(receiver)) == 2  # the 429'd attempt and the delivery


def _queue_message(cluster: str, families: tuple[str, ...]) -> func.QueueMessage:
    body = json.dumps({"clusterId": cluster, "subscriptionId": cluster.split("/")[2], "families": list(families),
                       "cycleId": "c1"}).encode()
    return func.QueueMessage(id="m1", body=body)


def _function(name: str) -> Callable[..., Any]:
    from tests.test_function_app import _indexed

    return next(f for f in _indexed() if f.get_function_name() == name).get_user_function()  # type: ignore[no-any-return]


def test_same_queue_message_twice_and_racing_workers_alert_once(world: dict[str, Any]) -> None:
    emu, receiver = world["emu"], world["receiver"]
    worker = _function("cluster_check_worker")
    message = _queue_message(cluster_id(emu, "aks-nsg-deny"), ("nsg",))
    worker(message)
    worker(message)
    threads = [threading.Thread(target=worker, args=(message,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a["event"] for a in alerts(receiver)] == ["detected"]
    assert len(list_findings(world["store"], "open")) == 1


def test_poison_message_makes_the_cluster_unknown_in_the_api(world: dict[str, Any]) -> None:
    emu = world["emu"]
    target = cluster_id(emu, "aks-healthy")
    _function("cluster_check_poison")(_queue_message(target, ("nsg", "snat")))
    response = _function("clusters_http")(func.HttpRequest("GET", "/api/clusters", params={"cluster": target},
                                                           body=b""))
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert body["count"] == 1  # one merged report per cluster, whatever the number of families
    causes = {c["id"]: c for c in body["clusters"][0]["causes"]}
    for cause in ("nsg-blocks-10250", "snat-port-exhaustion"):
        assert causes[cause]["status"] == "unknown"
        assert "poison queue" in causes[cause]["reason"]
        assert causes[cause]["checkedAt"] is not None
    assert "not checked yet" in causes["ufw-blocks-10250"]["reason"]


def test_malformed_queue_message_is_dropped_not_acted_on(world: dict[str, Any]) -> None:
    worker = _function("cluster_check_worker")
    worker(func.QueueMessage(id="bad", body=b'{"clusterId": "/subscriptions/x; rm -rf /"}'))
    assert list_findings(world["store"], "all") == []


def _http(name: str, params: dict[str, str] | None = None, route: dict[str, str] | None = None,
          method: str = "GET", body: bytes = b"") -> tuple[int, dict[str, Any], dict[str, str]]:
    request = func.HttpRequest(method, f"/api/{name}", params=params or {}, route_params=route or {}, body=body)
    response = _function(name)(request)
    return response.status_code, json.loads(response.get_body()), dict(response.headers)


def test_http_api_contract(world: dict[str, Any]) -> None:
    emu, monitor = world["emu"], world["monitor"]
    monitor.run_cycle(FAMILIES)
    status, body, _ = _http("findings_http", {"status": "open"})
    assert status == 200
    assert body["count"] == 2
    finding = body["findings"][0]
    status, history, _ = _http("finding_history_http", route={"findingId": finding["findingId"]})
    assert status == 200
    assert [e["event"] for e in history["events"]] == ["detected"]
    status, filtered, _ = _http("findings_http", {"cause": "nsg-blocks-10250"})
    assert [f["cause"] for f in filtered["findings"]] == ["nsg-blocks-10250"]

    status, error, _ = _http("findings_http", {"status": "maybe"})
    assert (status, error["error"]["field"]) == (400, "status")
    status, error, _ = _http("diagnose_http", {"clusterId": "not-an-id"})
    assert (status, error["error"]["field"]) == (400, "clusterId")
    missing = cluster_id(emu, "aks-healthy").rsplit("/", 1)[0] + "/nope"
    status, error, _ = _http("diagnose_http", {"clusterId": missing})
    assert status == 404

    status, report, _ = _http("diagnose_http", {"clusterId": cluster_id(emu, "aks-nsg-deny")})
    assert status == 200
    assert report["verdict"] == "problem"

    status, health, _ = _http("health_http")
    assert status == 200
    assert health["storage"] == "reachable"
    assert health["lastSuccessfulCycle"]["nsg"] is not None


def test_throttled_arm_answers_503_with_retry_after(world: dict[str, Any]) -> None:
    emu = world["emu"]
    emu.faults.add(429, operation="ManagedClusters.Get", count=1000, retry_after=1)
    status, body, headers = _http("diagnose_http", {"clusterId": cluster_id(emu, "aks-healthy")})
    assert status == 503
    assert "Retry-After" in headers
    assert "429" in body["error"]["message"] or "throttl" in body["error"]["message"]


def test_diagnose_with_probes_answers_202_then_the_worker_finishes(world: dict[str, Any]) -> None:
    from shared.monitor.queues import DIAGNOSE_QUEUE, queue_client

    emu = world["emu"]
    status, body, headers = _http("diagnose_http", {"clusterId": cluster_id(emu, "aks-snat"), "probes": "true"})
    assert status == 202
    assert headers["Location"] == body["statusUrl"]
    status, pending, _ = _http("diagnosis_status_http", route={"requestId": body["requestId"]})
    assert (status, pending["status"]) == (202, "pending")
    queue = queue_client(DIAGNOSE_QUEUE)
    mine = [m for m in queue.receive_messages() if body["requestId"] in m.content]
    assert len(mine) == 1
    _function("diagnose_worker")(func.QueueMessage(id=mine[0].id, body=mine[0].content.encode()))
    queue.delete_message(mine[0])
    status, done, _ = _http("diagnosis_status_http", route={"requestId": body["requestId"]})
    assert status == 200
    assert done["report"]["cluster"]["name"] == "aks-snat"


def test_racing_workers_on_one_cluster_directly(world: dict[str, Any]) -> None:
    from shared.azure.collect import Collector

    monitor, emu = world["monitor"], world["emu"]
    member = FleetMember(cluster_id(emu, "aks-snat"), cluster_id(emu, "aks-snat").split("/")[2])
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        monitor.check_cluster(member, ("snat",), Collector(monitor.clients, now=monitor.now))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monitor.deliver_notifications()
    assert [a["event"] for a in alerts(world["receiver"])] == ["detected"]


def test_local_dev_host_serves_the_same_routes(world: dict[str, Any]) -> None:
    import urllib.request

    from devtools.devhost import DevHost

    world["monitor"].run_cycle(FAMILIES)
    host = DevHost(lambda: world["monitor"], 0, timers=False)
    host.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{host.port}/api/findings?status=open", timeout=30) as reply:
            assert reply.status == 200
            assert json.loads(reply.read())["count"] == 2
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{host.port}/api/findings?cause=bogus", timeout=30)
        assert refused.value.code == 400
        assert json.loads(refused.value.read())["error"]["field"] == "cause"
    finally:
        host.stop()


def test_timer_fans_out_one_message_per_cluster(world: dict[str, Any]) -> None:
    from azure.functions.timer import TimerRequest

    from shared.monitor.queues import CHECK_QUEUE, parse_check_message, queue_client

    queue = queue_client(CHECK_QUEUE)
    queue.clear_messages()
    _function("nsg_timer")(TimerRequest(past_due=False))
    messages = [parse_check_message(m.content) for m in queue.receive_messages(max_messages=32)]
    queue.clear_messages()
    assert len(messages) == len(world["emu"].state.fleet.clusters)
    assert {m.families for m in messages} == {("nsg",)}
    assert len({m.cycle_id for m in messages}) == 1


def test_probe_cycle_counts_run_commands_and_finds_node_causes(world: dict[str, Any]) -> None:
    base: Monitor = world["monitor"]
    env = {**base.env, "NODE_PROBES": "all"}
    monitor = Monitor(Settings.from_env(env), world["store"], env=env, now=base.now)
    summary = monitor.run_cycle(("probe",))
    assert summary.run_commands > 0
    assert summary.metrics()["runCommands"] == summary.run_commands
    causes = {f.cause for f in list_findings(world["store"], "open")}
    assert causes <= {"ufw-blocks-10250", "iptables-blocks-10250", "egress-tunnel-port-blocked"}
    assert {"ufw-blocks-10250", "iptables-blocks-10250"} <= causes
