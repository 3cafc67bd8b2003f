"""Reads sized to the family, on the ARM emulator's demo fleet and real Azurite: each family reads only what
its causes need, the Activity Log once per subscription per cycle from a stored cursor, no resource twice."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.emulator.arm import Emulator
from shared.monitor.cycle import Monitor
from shared.monitor.factory import build_monitor
from shared.monitor.pipeline import plan_cycle, run_check
from shared.store.checkpoints import get_activity_events, get_activity_log_cursor
from tests.azurite import isolated_store
from tests.emulator_fixtures import DEMO_SCENARIO, DEMO_SUBSCRIPTION, emulator_fixture  # noqa: F401 (fixture)

NOT_READS = {"VirtualMachineScaleSetVMs.RunCommand", "ComputeOperations.Get",
             "ManagedClusters.ListClusterUserCredentials", "ManagedClusters.ListClusterMonitoringUserCredentials"}


@pytest.fixture
def world(emulator: Callable[..., Emulator], azurite_connection: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    emu = emulator(DEMO_SCENARIO)
    env = {**emu.env(), "NODE_PROBES": "all", "AzureWebJobsStorage": azurite_connection}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with isolated_store(azurite_connection) as store:
        yield {"emu": emu, "monitor": build_monitor(env, store=store)}


def family_cycle(monitor: Monitor, emu: Emulator, family: str) -> dict[tuple[str, str], int]:
    emu.stats.reset()
    for message in plan_cycle(monitor, family).messages:
        run_check(monitor, message, attempt=uuid.uuid4().hex)
    return {k: n for k, n in emu.stats.snapshot().calls_by_resource.items() if k[0] not in NOT_READS}


def operations(calls: dict[tuple[str, str], int]) -> set[str]:
    return {op for op, _ in calls}


def test_each_family_reads_only_what_its_causes_need(world: dict[str, Any]) -> None:
    emu, monitor = world["emu"], world["monitor"]
    snat = family_cycle(monitor, emu, "snat")
    assert operations(snat) <= {"Subscriptions.List", "ManagedClusters.List", "Metrics.List",
                                "VirtualMachineScaleSets.List", "VirtualNetworks.Get", "NatGateways.Get",
                                "PublicIPAddresses.Get", "PublicIPPrefixes.Get", "LoadBalancers.Get"}
    assert "Metrics.List" in operations(snat)
    nsg = family_cycle(monitor, emu, "nsg")
    assert {"NetworkSecurityGroups.Get", "ActivityLogs.List"} <= operations(nsg)
    assert not operations(nsg) & {"Metrics.List", "RouteTables.Get", "AzureFirewalls.Get", "ManagedClusters.Get"}
    probe = family_cycle(monitor, emu, "probe")
    assert not operations(probe) & {"Metrics.List", "ActivityLogs.List", "ManagedClusters.Get"}
    assert "VirtualMachineScaleSetVMs.List" in operations(probe)
    for family, calls in (("snat", snat), ("nsg", nsg), ("probe", probe)):
        # Metric queries: two metric sets per load balancer; anything else at most once per family cycle.
        twice = {k: n for k, n in calls.items() if n > (2 if k[0] == "Metrics.List" else 1)}
        assert twice == {}, family


def test_activity_log_is_read_once_per_subscription_per_cycle_from_a_cursor(world: dict[str, Any]) -> None:
    emu, monitor = world["emu"], world["monitor"]
    subscriptions = {str(c.id).split("/")[2].lower() for c in emu.state.fleet.clusters}
    first = family_cycle(monitor, emu, "nsg")
    reads = {res: n for (op, res), n in first.items() if op == "ActivityLogs.List"}
    assert {r.split("/")[2] for r in reads} == subscriptions
    assert set(reads.values()) == {1}
    cursor = get_activity_log_cursor(monitor.store, DEMO_SUBSCRIPTION)
    assert cursor is not None
    events, _ = get_activity_events(monitor.store, DEMO_SUBSCRIPTION)
    assert isinstance(events, tuple)
    assert any("deny-kubelet" in e.resource_id for e in events)  # the demo's NSG change, kept for the workers

    second = family_cycle(monitor, emu, "nsg")
    assert sum(n for (op, _), n in second.items() if op == "ActivityLogs.List") == len(subscriptions)
    moved = get_activity_log_cursor(monitor.store, DEMO_SUBSCRIPTION)
    assert moved is not None
    assert moved >= cursor
    kept, _ = get_activity_events(monitor.store, DEMO_SUBSCRIPTION)
    assert isinstance(kept, tuple)
    assert any("deny-kubelet" in e.resource_id for e in kept)  # earlier events stay within the window


def test_nsg_finding_names_the_change_from_the_stored_activity_log(world: dict[str, Any]) -> None:
    """The evidence the per-cluster Activity Log read used to give still arrives, from the timer's read."""
    from shared.store.findings import list_findings

    emu, monitor = world["emu"], world["monitor"]
    family_cycle(monitor, emu, "nsg")
    nsg = [f for f in list_findings(monitor.store, "open") if f.cause == "nsg-blocks-10250"]
    assert nsg
    assert any("introduced by" in e.detail for f in nsg for e in f.evidence)


def test_unreadable_activity_log_is_stored_as_a_reason_not_an_empty_history(world: dict[str, Any]) -> None:
    emu, monitor = world["emu"], world["monitor"]
    emu.faults.add(403, operation="ActivityLogs.List", count=100)
    family_cycle(monitor, emu, "nsg")
    events, _ = get_activity_events(monitor.store, DEMO_SUBSCRIPTION)
    assert not isinstance(events, tuple)
    assert "403" in events.reason
    assert get_activity_log_cursor(monitor.store, DEMO_SUBSCRIPTION) is None  # the cursor did not move


def test_scan_shares_one_collector_per_cluster_across_families(world: dict[str, Any]) -> None:
    # `scan` runs one cluster's families in one thread with one collector: what the nsg check read, the
    # probe check does not read again (in Azure each family is its own message, on its own schedule).
    emu, monitor = world["emu"], world["monitor"]
    emu.stats.reset()
    summary = monitor.run_cycle()
    assert not summary.errors, summary.errors
    calls = {k: n for k, n in emu.stats.snapshot().calls_by_resource.items() if k[0] not in NOT_READS}
    twice = {k: n for k, n in calls.items() if n > (2 if k[0] == "Metrics.List" else 1)}
    assert twice == {}
