"""Fleet scan at scale: 1,000 clusters in 100 subscriptions, and 300 in 3, against the emulator.

ARM is emulated with 50 ms per call and its per-subscription token bucket (250 reads burst, 25/s refill,
429 with Retry-After when empty); probes are off. Storage is a real Azurite. Reported: wall time, ARM
reads per cluster, throttled calls, resources read more than once, clusters lost. The baseline measured
in the same run is the same cycle with one cluster worker (what a naive sequential scan would do), on a
10-cluster slice, extrapolated per cluster.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from devtools.emulator.arm import Emulator, with_settings
from devtools.emulator.fleetgen import generate_fleet
from devtools.emulator.throttle import BucketConfig

TARGET_SECONDS_1000 = 60.0
TARGET_READS_PER_CLUSTER = 10.0
LATENCY_S = 0.05


def _scan(subscriptions: int, per_subscription: int, *, workers: int | None = None) -> dict[str, Any]:
    from devtools.demo import azurite
    from shared.monitor import cycle
    from shared.monitor.cycle import Monitor
    from shared.settings import Settings
    from shared.store.connection import open_store, settings_from_env, table_service
    from shared.store.tables import DEFAULT_TABLES

    fleet = with_settings(generate_fleet(subscriptions, per_subscription), lro_poll_after=0.05)
    with azurite() as storage, Emulator(fleet, prefer_kernel=False) as emu:
        emu.faults.set_latency(LATENCY_S)
        emu.throttle.enable(reads=BucketConfig(250, 25))
        env = {**os.environ, **emu.env(), "NODE_PROBES": "off", "AzureWebJobsStorage": storage}
        for name in ("MONITOR_SUBSCRIPTIONS", "AZURE_CLIENT_ID"):
            env.pop(name, None)
        os.environ.update(emu.env())
        tag = f"b{int(time.time())}{subscriptions}"
        store = open_store(env, names=DEFAULT_TABLES.namespaced(tag))
        monitor = Monitor(Settings.from_env(env), store, env=env)
        saved = cycle.CLUSTER_WORKERS
        if workers is not None:
            cycle.CLUSTER_WORKERS = workers
        try:
            started = time.perf_counter()
            summary = monitor.run_cycle()
            wall = time.perf_counter() - started
        finally:
            cycle.CLUSTER_WORKERS = saved
            service = table_service(settings_from_env(env))
            for name in store.names.all():  # the benchmark's private tables
                service.delete_table(name)
        stats = emu.stats.snapshot().to_json()
    reads = [c for c in stats["callsByResource"] if not c["operation"].endswith(".RunCommand")]
    # Metrics.List runs two different queries per outbound resource; list calls page; any other resource
    # read more than once in the cycle is a repeat.
    repeated = [c for c in reads if (c["operation"] == "Metrics.List" and c["count"] > 2)
                or (not c["operation"].endswith(".List") and c["count"] > 1)]
    clusters = subscriptions * per_subscription
    return {
        "clusters": clusters,
        "checked": len(summary.reports),
        "lost": clusters - len(summary.reports),
        "errors": summary.errors[:3],
        "wall_s": wall,
        "arm_calls": stats["total"],
        "reads_per_cluster": stats["total"] / clusters,
        "throttled": stats["throttled"],
        "repeated_resources": len(repeated),
        "by_operation": Counter(stats["calls"]).most_common(6),
    }


def main() -> None:
    print("fleet scan benchmark (50 ms per ARM call, ARM token bucket 250/25 per subscription, probes off)")
    base = _scan(1, 10, workers=1)
    per_cluster_seq = base["wall_s"] / base["clusters"]
    print(f"  baseline: sequential scan of 10 clusters: {base['wall_s']:.1f} s = {per_cluster_seq:.2f} s/cluster")
    for subs, per_sub in ((100, 10), (3, 100)):
        r = _scan(subs, per_sub)
        naive = per_cluster_seq * r["clusters"]
        print(f"  {r['clusters']} clusters in {subs} subscriptions: {r['wall_s']:.1f} s "
              f"(sequential estimate {naive:.0f} s, {naive / r['wall_s']:.1f}x faster); "
              f"{r['reads_per_cluster']:.2f} ARM calls/cluster; {r['throttled']} throttled; "
              f"{r['repeated_resources']} resources read twice; {r['lost']} clusters lost")
        if r["errors"]:
            print(f"    errors: {r['errors']}")
        print(f"    busiest operations: {r['by_operation']}")
        if r["clusters"] == 1000:
            fast = "met" if r["wall_s"] <= TARGET_SECONDS_1000 else "MISSED"
            frugal = "met" if r["reads_per_cluster"] <= TARGET_READS_PER_CLUSTER else "MISSED"
            print(f"    target <= {TARGET_SECONDS_1000:.0f} s: {fast}; "
                  f"target <= {TARGET_READS_PER_CLUSTER:.0f} calls/cluster: {frugal}")


if __name__ == "__main__":
    main()
