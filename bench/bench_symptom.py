"""The symptom check (one pod-log call per node through API server -> tunnel -> kubelet), bounded vs serial.

1. One 300-node cluster, every node asked (`all`), the emulated API server answering each call after
   LATENCY_S (a real API server's tens of milliseconds, more for a log call that crosses the tunnel).
2. A 100-cluster fleet (5 nodes each), the same latency, clusters read concurrently.

Each is measured twice in the same run: as the monitor does it (PER_CLUSTER calls at a time per cluster,
a fleet-wide cap, clusters in parallel) and one call at a time; the ratio is the speed-up. Both runs make
the same calls (the emulator's counters are printed), so the difference is only concurrency.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from devtools.emulator.arm import Emulator
from devtools.emulator.scenario_load import fleet_from_json

LATENCY_S = 0.03
SUB = "5d0c7a1e-8f3b-4c2a-9d6e-1b2c3d4e5f60"


def _fleet(clusters: int, nodes: int) -> dict[str, object]:
    return {"subscriptions": [{"id": SUB, "clusters": [
        {"name": f"aks-{i:03d}", "resourceGroup": f"rg-{i:03d}", "location": "westeurope",
         "agentPools": [{"name": "nodepool1", "count": nodes}]} for i in range(clusters)]}]}


def _reader(emu: Emulator) -> Callable[..., int]:
    from shared.azure.clients import ArmClients
    from shared.azure.collect import Collector
    from shared.kube.collect import KubeOptions, read_cluster
    from shared.settings import Settings

    settings = Settings.from_env({**os.environ, **emu.env(), "NODE_PROBES": "all"})
    clients = ArmClients(settings)
    collector = Collector(clients)
    prepared = [(raw, collector.snapshot(raw, with_instances=False))
                for raw in collector.list_clusters(SUB)]

    def read(*, per_cluster: int, fleet_cap: int, cluster_workers: int) -> int:
        fleet = threading.BoundedSemaphore(fleet_cap)
        options = KubeOptions(mode="all", per_cluster=per_cluster, fleet=fleet, budget_s=3600)
        with ThreadPoolExecutor(max_workers=cluster_workers) as pool:
            done = list(pool.map(lambda item: read_cluster(clients, item[0], item[1], options), prepared))
        return sum(len(s.symptom) for s in done if isinstance(s.symptom, tuple))

    return read


def _compare(title: str, clusters: int, nodes: int, *, cluster_workers: int) -> None:
    with Emulator(fleet_from_json(_fleet(clusters, nodes)), prefer_kernel=False) as emu:
        os.environ.update(emu.env())
        assert emu.kube is not None
        read = _reader(emu)
        emu.kube.latency = LATENCY_S
        runs: dict[str, tuple[float, int, int]] = {}
        for label, kwargs in (("bounded", {"per_cluster": 8, "fleet_cap": 64, "cluster_workers": cluster_workers}),
                              ("one at a time", {"per_cluster": 1, "fleet_cap": 1, "cluster_workers": 1})):
            emu.kube.calls.clear()
            started = time.perf_counter()
            checked = read(**kwargs)
            runs[label] = (time.perf_counter() - started, checked, emu.kube.calls.get("log", 0))
        fast, slow = runs["bounded"], runs["one at a time"]
        print(f"  {title}: {clusters} cluster(s) x {nodes} nodes, {LATENCY_S * 1000:.0f} ms per API call")
        for label, (seconds, checked, logs) in runs.items():
            print(f"    {label:<14} {seconds:7.2f} s  {checked} nodes checked, {logs} log calls")
        print(f"    speed-up {slow[0] / fast[0]:.1f}x (same calls: {fast[2] == slow[2]})")


def main() -> None:
    print("symptom check (pod log per node through the tunnel), bounded vs one call at a time")
    _compare("one large cluster", 1, 300, cluster_workers=1)
    _compare("fleet", 100, 5, cluster_workers=16)


if __name__ == "__main__":
    main()
