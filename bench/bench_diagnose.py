"""One diagnosis: ARM reads for a control-plane-only run, and wall time with node probes.

1. Every demo cluster is diagnosed with probes off; reads per diagnosis (target <= 12) and resources
   fetched more than once (target: none) come from the emulator's own call counters.
2. A 3-pool, 30-node cluster is diagnosed with NODE_PROBES=all and ~20 s per run-command (emulated
   latency, node simulation by the in-process responder). The baseline, measured in the same run, is one
   run-command on one node; run-commands that did not overlap would take 30 x that.
"""

from __future__ import annotations

import os
import time

from devtools.emulator.arm import Emulator, with_settings
from devtools.emulator.fleetgen import generate_fleet
from devtools.emulator.scenario_load import load_scenario

RUN_COMMAND_LATENCY_S = 20.0
TARGET_READS = 12


def _diagnose(emu: Emulator, cluster_id: str, probes: str) -> float:
    from shared.azure.clients import ArmClients
    from shared.diagnose import diagnose
    from shared.settings import Settings

    settings = Settings.from_env({**os.environ, **emu.env(), "NODE_PROBES": probes})
    clients = ArmClients(settings)
    started = time.perf_counter()
    try:
        diagnose(cluster_id, settings=settings, clients=clients, probes=probes != "off")
    finally:
        clients.close()
    return time.perf_counter() - started


def control_plane_reads() -> None:
    from importlib import resources

    scenario = load_scenario(str(resources.files("devtools.emulator") / "scenarios" / "demo.json"))
    with Emulator(scenario, prefer_kernel=False) as emu:
        os.environ.update(emu.env())
        worst = 0
        for cluster in emu.state.fleet.clusters:
            emu.stats.reset()
            _diagnose(emu, cluster.id, "off")
            stats = emu.stats.snapshot().to_json()
            # Metrics.List runs two different queries on the same load balancer / NAT gateway.
            repeated = [c for c in stats["callsByResource"]
                        if c["count"] > (2 if c["operation"] == "Metrics.List" else 1)]
            worst = max(worst, stats["total"])
            print(f"  {cluster.name:<16} {stats['total']:>3} ARM calls, {len(repeated)} resources read twice")
        print(f"  most calls for one control-plane diagnosis: {worst} (target <= {TARGET_READS}: "
              f"{'met' if worst <= TARGET_READS else 'MISSED'})")


def probed_cluster_wall_time() -> None:
    fleet = with_settings(generate_fleet(1, 1, nodes_per_pool=10, pools_per_cluster=3, problem_every=10_000),
                          run_command_latency=RUN_COMMAND_LATENCY_S, lro_poll_after=1.0)
    with Emulator(fleet, prefer_kernel=False) as emu:
        os.environ.update(emu.env())
        cluster = emu.state.fleet.clusters[0]
        nodes = sum(len(p.nodes) for p in cluster.pools)
        one = _single_run_command(emu, cluster.id)
        wall = _diagnose(emu, cluster.id, "all")
        serial = one * nodes
        print(f"  one run-command alone: {one:.1f} s (baseline)")
        print(f"  {len(cluster.pools)} pools, {nodes} nodes, NODE_PROBES=all: {wall:.1f} s; one after another would "
              f"take {serial:.0f} s -> {serial / wall:.1f}x from overlapping")


def _single_run_command(emu: Emulator, cluster_id: str) -> float:
    from shared.azure.clients import ArmClients
    from shared.azure.collect import Collector
    from shared.azure.ids import parse_cluster_id
    from shared.azure.probes import ProbePlan, Prober
    from shared.settings import Settings
    from shared.snapshot import Unavailable

    clients = ArmClients(Settings.from_env({**os.environ, **emu.env()}))
    collector = Collector(clients)
    snapshot = collector.snapshot(collector.managed_cluster(parse_cluster_id(cluster_id)), with_instances=True)
    nodes = snapshot.nodes
    if isinstance(nodes, Unavailable) or not nodes:
        raise SystemExit(f"benchmark cluster has no nodes: {nodes}")
    node = nodes[0]
    started = time.perf_counter()
    Prober(clients).run_on(snapshot, ProbePlan(node, (node.private_ip or "",)))
    clients.close()
    return time.perf_counter() - started


def main() -> None:
    print("diagnose benchmark")
    control_plane_reads()
    probed_cluster_wall_time()


if __name__ == "__main__":
    main()
