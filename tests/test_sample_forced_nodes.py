"""A rotating sample never leaves an open finding's nodes unchecked: the nodes an open node-level finding
lists are probed (run-command) and asked through the API server whatever the rotation, so a sampled run can
only resolve a finding on nodes it actually looked at (real Azurite, the ARM and Kubernetes emulator)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from devtools.emulator.arm import Emulator
from shared.model import CauseId, CauseResult, Status
from shared.monitor.cycle import FleetMember, Monitor
from shared.monitor.pipeline import plan_cycle
from shared.notify.message import ClusterRef
from shared.settings import Settings
from shared.store.lifecycle import reconcile
from tests.azurite import isolated_store
from tests.emulator_fixtures import emulator_fixture  # noqa: F401 (fixture)
from tests.kube_scenarios import cluster, fleet, node_names

NODES = 6


@pytest.fixture
def world(emulator: Callable[..., Emulator], azurite_connection: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    emu = emulator(fleet(cluster("aks-big", count=NODES)))
    with isolated_store(azurite_connection) as store:
        env = {**emu.env(), "NODE_PROBES": "sample", "PROBE_SAMPLE_PER_POOL": "2",
               "AzureWebJobsStorage": azurite_connection}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield {"emu": emu, "store": store, "monitor": Monitor(Settings.from_env(env), store, env=env)}


def outside_this_rotation(names: list[str]) -> str:
    """A node neither the probes' nor the API read's rotating sample of 2 picks in this half hour."""
    start = int(time.time() // 1800) % len(names)
    ordered = sorted(names)  # the API read rotates over names sorted; the probes over scale-set order
    picked = {names[start], names[(start + 1) % len(names)], ordered[start], ordered[(start + 1) % len(names)]}
    return next(n for n in names if n not in picked)


@pytest.mark.azurite
def test_an_open_findings_node_is_probed_and_asked_whatever_the_sample(world: dict[str, Any]) -> None:
    emu, store, monitor = world["emu"], world["store"], world["monitor"]
    names = node_names(emu, "aks-big")
    forced = outside_this_rotation(names)
    (message,) = plan_cycle(monitor, "probe").messages
    rule = f"ufw: DENY IN 10250/tcp on {forced}"
    # Stored in another case than the scale set's computer name: the match must not depend on it.
    seeded = CauseResult(CauseId.UFW, Status.DETECTED, "ufw", "seeded", subjects=(rule,),
                         affected={rule: (forced.upper(),)})
    ref = ClusterRef(id=message.cluster_id, name="aks-big", subscription_id=message.subscription_id)
    reconcile(store, ref, [seeded], datetime.now(UTC))

    from shared.azure.collect import Collector

    outcome = monitor.check_cluster(FleetMember(message.cluster_id, message.subscription_id, message.cluster),
                                    ("probe",), Collector(monitor.clients))
    coverage = outcome.report["coverage"]
    assert coverage["probes"] == "sample"
    assert [(p["probed"], p["nodes"]) for p in coverage["pools"]] == [(3, NODES)]  # 2 sampled + the forced one
    asked = {n["node"] for n in outcome.report["symptom"]["nodes"]}
    assert forced in asked
    assert len(asked) == 3
