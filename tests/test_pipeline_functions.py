"""The deployed path and `scan` are one pipeline: the real registered functions (indexed through
azure-functions), their messages on real Azurite queues, the workers fed those messages, against the ARM
emulator's demo fleet, end with the same findings, alerts, merged reports and checkpoints as `scan`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from devtools.emulator.arm import Emulator
from shared.functions import context
from shared.monitor.cycle import Monitor
from shared.monitor.factory import build_monitor
from shared.monitor.queues import DEFAULT_QUEUES, queue_client
from shared.notify.generic import verify
from shared.store.checkpoints import cycle_progress, get_activity_events, get_activity_log_cursor
from shared.store.findings import list_findings
from tests.azurite import isolated_store
from tests.emulator_fixtures import DEMO_DEV_SUBSCRIPTION, DEMO_SCENARIO, DEMO_SUBSCRIPTION, emulator_fixture  # noqa: F401
from tests.https_receiver import HttpsReceiver

SECRET = "pipeline-test-secret"
TIMERS = ("snat_timer", "nsg_timer", "probe_timer")


def function(name: str) -> Callable[..., Any]:
    from tests.test_function_app import _indexed

    return next(f for f in _indexed() if f.get_function_name() == name).get_user_function()  # type: ignore[no-any-return]


@pytest.fixture
def two_worlds(emulator: Callable[..., Emulator], azurite_connection: str, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """One emulated fleet, one webhook receiver; two monitors on separate tables and queues."""
    emu = emulator(DEMO_SCENARIO)
    with ExitStack() as stack:
        receiver = stack.enter_context(HttpsReceiver())
        bundle = tmp_path / "ca.pem"
        bundle.write_text(Path(emu.ca_bundle).read_text() + Path(receiver.ca_path).read_text())
        env = {**emu.env(), "REQUESTS_CA_BUNDLE": str(bundle), "SSL_CERT_FILE": str(bundle), "NODE_PROBES": "all",
               "AzureWebJobsStorage": azurite_connection, "ALERT_WEBHOOK_URL": receiver.url("/alerts"),
               "ALERT_WEBHOOK_SECRET": SECRET, "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monitors = []
        for _ in range(2):
            store = stack.enter_context(isolated_store(azurite_connection, channels=("webhook",)))
            queues = DEFAULT_QUEUES.namespaced("t" + uuid.uuid4().hex[:8])
            monitors.append(build_monitor(env, store=store, queues=queues))
        try:
            yield {"emu": emu, "receiver": receiver, "functions": monitors[0], "scan": monitors[1]}
        finally:
            context.reset()
            for monitor in monitors:
                queue_client(monitor.queues.checks, env).delete_queue()
                queue_client(monitor.queues.diagnose, env).delete_queue()


def drive_functions(monitor: Monitor) -> int:
    """Timers, then every message they queued, read back from Azurite and handed to the real worker."""
    context.use_monitor(monitor)
    for name in TIMERS:
        function(name)(TimerRequest(past_due=False))
    queue = queue_client(monitor.queues.checks, monitor.env)
    worker = function("cluster_check_worker")
    handled = 0
    while batch := list(queue.receive_messages(max_messages=32, visibility_timeout=300)):
        for message in batch:
            worker(func.QueueMessage(id=message.id, body=message.content.encode(), pop_receipt=message.pop_receipt))
            queue.delete_message(message)
            handled += 1
    return handled


def alerts(receiver: HttpsReceiver, start: int = 0) -> list[tuple[str, str, str, str]]:
    out = []
    for request in receiver.requests[start:]:
        assert verify(SECRET, request.headers, request.body, now=datetime.now(UTC))
        body = json.loads(request.body)
        out.append((body["event"], body["cause"]["id"], body["cluster"]["name"], body["subject"].lower()))
    return sorted(out)


def findings(monitor: Monitor) -> list[tuple[str, str, str, str]]:
    rows = list_findings(monitor.store, "all")
    return sorted((f.cluster_id.lower(), f.cause, f.subject.lower(), f.status) for f in rows)


def http(name: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    response = function(name)(func.HttpRequest("GET", f"/api/{name}", params=params or {}, body=b""))
    assert response.status_code == 200
    return json.loads(response.get_body())  # type: ignore[no-any-return]


def statuses(reports: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, str]]]:
    return {r["cluster"]["id"].lower(): (r["verdict"], {c["id"]: c["status"] for c in r["causes"]}) for r in reports}


def test_registered_functions_and_scan_end_in_the_same_state(two_worlds: dict[str, Any]) -> None:
    emu, receiver = two_worlds["emu"], two_worlds["receiver"]
    via_functions, via_scan = two_worlds["functions"], two_worlds["scan"]
    clusters = len(emu.state.fleet.clusters)

    handled = drive_functions(via_functions)
    assert handled == 3 * clusters  # one message per cluster and family
    functions_alerts = alerts(receiver)
    functions_clusters = http("clusters_http")
    functions_health = http("health_http")

    seen = len(receiver.requests)
    summary = via_scan.run_cycle()
    assert summary.clusters == clusters
    context.use_monitor(via_scan)
    scan_clusters = http("clusters_http")
    scan_health = http("health_http")

    # Same findings, same alerts (one per finding transition), both non-trivial.
    assert findings(via_functions) == findings(via_scan)
    assert {f[1] for f in findings(via_scan)} >= {"nsg-blocks-10250", "snat-port-exhaustion", "ufw-blocks-10250",
                                                   "iptables-blocks-10250"}
    assert functions_alerts == alerts(receiver, seen)
    assert functions_alerts
    assert all(a[0] == "detected" for a in functions_alerts)

    # Node-level findings carry the probes' coverage of the run that wrote them, on both paths.
    for monitor in (via_functions, via_scan):
        probed = [f for f in list_findings(monitor.store, "all")
                  if f.cause in ("ufw-blocks-10250", "iptables-blocks-10250")]
        assert probed
        assert all("nodes probed" in (f.coverage or "") for f in probed), [f.coverage for f in probed]

    # One merged report per cluster, the same in both, equal to what `scan --json` prints.
    assert functions_clusters["count"] == scan_clusters["count"] == clusters
    assert statuses(functions_clusters["clusters"]) == statuses(scan_clusters["clusters"])
    assert statuses(summary.reports) == statuses(scan_clusters["clusters"])
    for report in functions_clusters["clusters"]:
        assert [c["id"] for c in report["causes"]] == [c["id"] for c in scan_clusters["clusters"][0]["causes"]]
        assert set(report["families"]) == {"snat", "nsg", "probe"}
        for cause in report["causes"]:
            assert cause["checkedAt"] is not None, (report["cluster"]["name"], cause)
            assert cause.get("reason") != "not checked by this check family"

    # The workers' completions advanced the checkpoints exactly as scan's did.
    for health in (functions_health, scan_health):
        assert all(health["lastSuccessfulCycle"][f] is not None for f in ("snat", "nsg", "probe")), health
        for family in ("snat", "nsg", "probe"):
            assert health["cycles"][family]["done"] == health["cycles"][family]["clusters"] == clusters
    for monitor in (via_functions, via_scan):
        for sub in (DEMO_SUBSCRIPTION, DEMO_DEV_SUBSCRIPTION):
            assert get_activity_log_cursor(monitor.store, sub) is not None
            events, _ = get_activity_events(monitor.store, sub)
            assert isinstance(events, tuple)


def test_worker_logs_and_stores_its_own_family_verdict(two_worlds: dict[str, Any]) -> None:
    """A healthy cluster's SNAT check is `healthy` on its own, not `inconclusive` for causes it never owns."""
    from shared.monitor.pipeline import plan_cycle, run_check

    monitor = two_worlds["functions"]
    plan = plan_cycle(monitor, "snat")
    healthy = next(m for m in plan.messages if m.cluster_id.endswith("/aks-healthy"))
    outcome = run_check(monitor, healthy)
    assert outcome.report["family"] == "snat"
    assert [c["id"] for c in outcome.report["causes"]] == ["snat-port-exhaustion"]
    assert outcome.report["verdict"] == "healthy"
    progress = cycle_progress(monitor.store, "snat")
    assert progress is not None
    assert (progress.done, progress.complete) == (1, False)  # one of the fleet's clusters reported so far


def test_poison_check_completes_the_cycle_as_failed_and_health_says_so(two_worlds: dict[str, Any]) -> None:
    from shared.monitor.pipeline import plan_cycle

    monitor = two_worlds["functions"]
    context.use_monitor(monitor)
    plan = plan_cycle(monitor, "snat")
    worker, poison = function("cluster_check_worker"), function("cluster_check_poison")
    for message in plan.messages[1:]:
        worker(func.QueueMessage(id="m", body=json.dumps(message.to_json()).encode()))
    poison(func.QueueMessage(id="p", body=json.dumps(plan.messages[0].to_json()).encode()))
    health = http("health_http")
    assert health["cycles"]["snat"]["complete"] is True
    assert health["cycles"]["snat"]["failed"] == 1
    assert health["lastSuccessfulCycle"]["snat"] is None  # a cycle with a failed cluster is not a success
    report = http("clusters_http", {"cluster": plan.messages[0].cluster_id})["clusters"][0]
    snat = next(c for c in report["causes"] if c["id"] == "snat-port-exhaustion")
    assert snat["status"] == "unknown"
    assert "poison queue" in snat["reason"]


def test_merged_report_of_a_healthy_cluster_is_healthy(two_worlds: dict[str, Any]) -> None:
    monitor = two_worlds["functions"]
    drive_functions(monitor)
    reports = {r["cluster"]["name"]: r for r in http("clusters_http")["clusters"]}
    healthy = reports["aks-healthy"]
    assert {c["id"]: c["status"] for c in healthy["causes"] if c["status"] == "unknown"} == {}
    assert healthy["verdict"] == "healthy"
    assert reports["aks-nsg-deny"]["verdict"] == "problem"


def test_failed_discovery_is_recorded_on_the_cycle_not_a_silent_success(two_worlds: dict[str, Any]) -> None:
    emu, monitor = two_worlds["emu"], two_worlds["functions"]
    emu.faults.add(403, operation="Subscriptions.List", count=10)
    context.use_monitor(monitor)
    function("snat_timer")(TimerRequest(past_due=False))
    health = http("health_http")
    snat = health["cycles"]["snat"]
    assert snat["clusters"] == 0
    assert snat["errors"]
    assert "403" in snat["errors"][0]
    assert health["lastSuccessfulCycle"]["snat"] is None
