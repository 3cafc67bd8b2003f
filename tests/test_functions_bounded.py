"""Bounded work in the workers: probes stop at a deadline, a redelivered message never doubles a
run-command, and every failure of a worker ends in a stored, visible state (real Azurite, the ARM
emulator, the registered functions)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import azure.functions as func
import pytest

from devtools.emulator.arm import Emulator
from shared.azure.probes import Prober, node_key
from shared.functions import context
from shared.monitor.cycle import Monitor
from shared.monitor.factory import build_monitor
from shared.monitor.queues import CheckMessage
from shared.snapshot import NodeProbe, Unavailable
from shared.store.checkpoints import RUN_COMMAND, TableRunCommandLedger
from shared.store.status import load_diagnosis, save_diagnosis
from tests.azurite import isolated_store
from tests.emulator_fixtures import DEMO_SCENARIO, emulator_fixture  # noqa: F401 (fixture)

RUN_COMMAND_OP = "VirtualMachineScaleSetVMs.RunCommand"


def function(name: str) -> Callable[..., Any]:
    from tests.test_function_app import _indexed

    return next(f for f in _indexed() if f.get_function_name() == name).get_user_function()  # type: ignore[no-any-return]


@pytest.fixture
def world(emulator: Callable[..., Emulator], azurite_connection: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    emu = emulator(DEMO_SCENARIO, run_command_latency=3.0)
    env = {**emu.env(), "NODE_PROBES": "all", "AzureWebJobsStorage": azurite_connection}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with isolated_store(azurite_connection) as store:
        monitor = build_monitor(env, store=store)
        context.use_monitor(monitor)
        try:
            yield {"emu": emu, "monitor": monitor, "env": env, "store": store}
        finally:
            context.reset()


def probe_message(monitor: Monitor, name: str) -> CheckMessage:
    from shared.monitor.pipeline import plan_cycle

    return next(m for m in plan_cycle(monitor, "probe").messages if m.cluster_id.endswith(f"/{name}"))


def cause(report: dict[str, Any], cause_id: str) -> dict[str, Any]:
    return next(c for c in report["causes"] if c["id"] == cause_id)


# ---------------------------------------------------------------- deadline


def test_probe_deadline_leaves_late_nodes_unknown_with_the_reason(world: dict[str, Any]) -> None:
    from shared.azure.collect import Collector

    monitor: Monitor = world["monitor"]
    message = probe_message(monitor, "aks-ufw")
    collector = Collector(monitor.clients, now=monitor.now)
    snapshot = collector.snapshot(message.cluster or {}, with_instances=True)
    started = time.monotonic()
    prober = Prober(monitor.clients, deadline=started + 21.5)  # one run may start (>= 20 s left), none waits long
    probed = prober.probe(snapshot, "all")
    elapsed = time.monotonic() - started
    assert elapsed < 25  # the deadline, not RUN_COMMAND_TIMEOUT_S (300 s), bounded the run
    assert all(isinstance(p, NodeProbe) for p in probed.probes.values())  # 3 s runs fit in the budget

    late = Prober(monitor.clients, deadline=time.monotonic() + 5)  # below MIN_RUN_S: nothing may start
    before = world["emu"].stats.calls(RUN_COMMAND_OP)
    result = late.probe(snapshot, "all")
    assert world["emu"].stats.calls(RUN_COMMAND_OP) == before
    reasons = [p.reason for p in result.probes.values() if isinstance(p, Unavailable)]
    assert reasons
    assert len(reasons) == len(result.probes)
    assert all("time budget ran out" in r for r in reasons)


def test_worker_with_a_spent_budget_reports_nodes_unchecked_not_clear(world: dict[str, Any]) -> None:
    from shared.monitor.pipeline import run_check

    monitor: Monitor = world["monitor"]
    outcome = run_check(monitor, probe_message(monitor, "aks-healthy"), budget_s=5.0)
    ufw = cause(outcome.report, "ufw-blocks-10250")
    assert ufw["status"] == "unknown"
    assert ufw["unchecked"]
    assert all("time budget ran out" in u["reason"] for u in ufw["unchecked"])


def test_run_command_still_running_at_the_deadline_is_unknown_and_keeps_its_slot(
        emulator: Callable[..., Emulator], azurite_connection: str) -> None:
    emu = emulator(DEMO_SCENARIO, run_command_latency=60.0)  # the nodes answer long after the budget
    env = {**emu.env(), "NODE_PROBES": "all", "AzureWebJobsStorage": azurite_connection}
    with isolated_store(azurite_connection) as store:
        monitor = build_monitor(env, store=store)
        _deadline_keeps_slots(monitor, store)


def _deadline_keeps_slots(monitor: Monitor, store: Any) -> None:
    from shared.azure.collect import Collector

    message = probe_message(monitor, "aks-ufw")
    snapshot = Collector(monitor.clients, now=monitor.now).snapshot(message.cluster or {}, with_instances=True)
    ledger = TableRunCommandLedger(store, "slow")
    started = time.monotonic()
    probed = Prober(monitor.clients, deadline=started + 21.0, ledger=ledger).probe(snapshot, "all")
    assert time.monotonic() - started < 30
    reasons = [p.reason for p in probed.probes.values() if isinstance(p, Unavailable)]
    assert len(reasons) == len(probed.probes)
    assert all("did not finish within" in r for r in reasons)
    slots = list(store.checkpoints.query_entities(f"PartitionKey eq '{RUN_COMMAND}'"))
    assert len(slots) == len(probed.probes)  # still running on the nodes: a redelivery must not start more


# ---------------------------------------------------------------- redelivery


def test_redelivered_probe_message_does_not_start_a_second_run_command(world: dict[str, Any]) -> None:
    from shared.monitor.pipeline import run_check

    emu, monitor = world["emu"], world["monitor"]
    message = probe_message(monitor, "aks-ufw")
    nodes = len(next(c for c in emu.state.fleet.clusters if c.name == "aks-ufw").nodes)
    before = emu.stats.calls(RUN_COMMAND_OP)
    first: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: first.update(outcome=run_check(monitor, message, attempt="first")))
    worker.start()
    deadline = time.monotonic() + 20
    while emu.stats.calls(RUN_COMMAND_OP) - before < nodes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emu.stats.calls(RUN_COMMAND_OP) - before == nodes  # the first delivery's run-commands are running

    again = run_check(monitor, message, attempt="redelivered")  # the host redelivers while they still run
    worker.join(timeout=60)
    assert emu.stats.calls(RUN_COMMAND_OP) - before == nodes  # no second run-command on any node
    assert again.run_commands == 0
    ufw = cause(again.report, "ufw-blocks-10250")
    assert ufw["status"] == "unknown"
    assert len(ufw["unchecked"]) == nodes
    assert all("may still be running" in u["reason"] for u in ufw["unchecked"])
    assert cause(first["outcome"].report, "ufw-blocks-10250")["status"] == "detected"
    rows = list(world["store"].checkpoints.query_entities(f"PartitionKey eq '{RUN_COMMAND}'"))
    assert rows == []  # finished run-commands release their slot


def test_ledger_claims_once_takes_over_stale_slots_and_releases_only_its_own(world: dict[str, Any]) -> None:
    store = world["store"]
    key = f"/subscriptions/s/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/x/{uuid.uuid4()}"
    first, second = TableRunCommandLedger(store, "a"), TableRunCommandLedger(store, "b")
    assert first.claim(key) is None
    assert "may still be running" in (second.claim(key) or "")
    second.release(key)  # not its slot: nothing happens
    assert "may still be running" in (second.claim(key) or "")
    stale = TableRunCommandLedger(store, "c", stale_after=timedelta(0))
    assert stale.claim(key) is None  # the first attempt is long gone
    assert first.claim(key) is not None
    stale.release(key)
    assert second.claim(key) is None


def test_node_key_names_the_vmss_vm() -> None:
    from shared.snapshot import Node

    node = Node("n", "p", "10.0.0.4", "s", vmss_id="/subscriptions/S/rg/VMSS/aks-p-1-vmss", instance_id="3")
    assert node_key(node) == "/subscriptions/s/rg/vmss/aks-p-1-vmss/virtualmachines/3"


# ---------------------------------------------------------------- every failure is stored


def test_diagnose_worker_stores_failed_for_an_unexpected_exception(world: dict[str, Any]) -> None:
    """A connection failure (not a CollectionError) used to leave the request pending forever."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens once the socket is closed
    env = {**world["env"], "ARM_ENDPOINT": f"https://127.0.0.1:{closed}"}
    broken = build_monitor(env, store=world["store"])
    context.use_monitor(broken)
    cluster_id = next(str(c.id) for c in world["emu"].state.fleet.clusters if c.name == "aks-healthy")
    request_id = uuid.uuid4().hex
    save_diagnosis(world["store"], request_id, cluster_id, "pending", None)
    body = json.dumps({"requestId": request_id, "clusterId": cluster_id}).encode()
    function("diagnose_worker")(func.QueueMessage(id="d1", body=body))
    stored = load_diagnosis(world["store"], request_id)
    assert stored is not None
    assert stored["status"] == "failed"
    assert "ServiceRequestError" in stored["report"]["error"]["message"]


def test_diagnose_worker_stores_failed_for_a_bad_cluster_id(world: dict[str, Any]) -> None:
    request_id = uuid.uuid4().hex
    save_diagnosis(world["store"], request_id, "nope", "pending", None)
    body = json.dumps({"requestId": request_id, "clusterId": "nope"}).encode()
    function("diagnose_worker")(func.QueueMessage(id="d2", body=body))
    stored = load_diagnosis(world["store"], request_id)
    assert stored is not None
    assert stored["status"] == "failed"
    assert "not a managed cluster resource id" in stored["report"]["error"]["message"]


def test_diagnose_poison_handler_marks_the_request_failed(world: dict[str, Any]) -> None:
    request_id = uuid.uuid4().hex
    cluster_id = next(str(c.id) for c in world["emu"].state.fleet.clusters if c.name == "aks-healthy")
    save_diagnosis(world["store"], request_id, cluster_id, "pending", None)
    body = json.dumps({"requestId": request_id, "clusterId": cluster_id}).encode()
    function("diagnose_poison")(func.QueueMessage(id="d3", body=body))
    stored = load_diagnosis(world["store"], request_id)
    assert stored is not None
    assert stored["status"] == "failed"
    assert "poison queue" in stored["report"]["error"]["message"]


def test_malformed_diagnose_message_is_dropped_without_acting(world: dict[str, Any]) -> None:
    before = sum(world["emu"].stats.snapshot().calls.values())
    for body in (b"not json", b"[]", b'{"requestId": "../../x", "clusterId": "y"}'):
        function("diagnose_worker")(func.QueueMessage(id="bad", body=body))
        function("diagnose_poison")(func.QueueMessage(id="bad", body=body))
    assert sum(world["emu"].stats.snapshot().calls.values()) == before
    assert list(world["store"].diagnoses.list_entities()) == []


def test_ledger_storage_failure_leaves_the_node_unknown_instead_of_failing_the_check(azurite_connection: str) -> None:
    from azure.data.tables import TableServiceClient

    from shared.store.connection import store_from_service
    from shared.store.tables import DEFAULT_TABLES

    service = TableServiceClient.from_connection_string(azurite_connection)
    missing = store_from_service(service, names=DEFAULT_TABLES.namespaced("Gone" + uuid.uuid4().hex[:8]),
                                 create=False)  # its tables do not exist: every storage call fails
    ledger = TableRunCommandLedger(missing, "a")
    reason = ledger.claim("/subscriptions/s/x/virtualmachines/0")
    assert reason is not None
    assert "could not record the run-command in storage" in reason
    ledger.release("/subscriptions/s/x/virtualmachines/0")  # best effort, never raises
