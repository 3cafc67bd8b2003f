"""ARM reads per cluster for one full cycle of all three check families through the Functions path.

The real registered functions run (indexed from function_app.py through azure-functions): each family's
timer, then every message it put on a real Azurite queue, read back and handed to the queue worker.
The fleet is generated (every fifth cluster has one of the documented problems), probes `sample`, 1 pool
of 3 nodes per cluster. Counted from the emulator's per-operation statistics:

  reads       every ARM call except run-command POSTs, their operation polls and the credential actions
              (those are reported apart: they are the probes and the Kubernetes access, not reads)
  repeated    resources read more than once within one family's cycle (a metric query counts once per
              metric set: the load balancer has two, connections by state and ports by backend)

The baseline, measured in the same run on the same fleet, is the path before issue 9: every message
collected the whole topology, re-read its cluster and read the subscription's Activity Log itself.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, cast

from devtools.emulator.arm import Emulator, with_settings
from devtools.emulator.fleetgen import generate_fleet

TARGET_READS_PER_CLUSTER = 12.0
NOT_READS = ("VirtualMachineScaleSetVMs.RunCommand", "ComputeOperations.Get",
             "ManagedClusters.ListClusterUserCredentials", "ManagedClusters.ListClusterMonitoringUserCredentials")
FAMILY_TIMERS = (("snat", "snat_timer"), ("nsg", "nsg_timer"), ("probe", "probe_timer"))


@contextmanager
def pre_issue_behaviour() -> Iterator[None]:
    """Every family collects everything and reads the Activity Log per message (the baseline)."""
    from shared.azure.collect import ALL_PARTS
    from shared.monitor import families

    specs = cast(MutableMapping[str, families.Family], families.SPECS)
    saved = dict(specs)
    for name, spec in saved.items():
        specs[name] = replace(spec, parts=ALL_PARTS, activity_log=False, after_probes=frozenset())
    try:
        yield
    finally:
        specs.update(saved)


def _function(name: str) -> Any:
    import function_app

    functions = getattr(_function, "cache", None)
    if functions is None:
        functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
        _function.cache = functions  # type: ignore[attr-defined]
    return functions[name]


def _family_cycle(monitor: Any, timer: str, *, embed_cluster: bool) -> int:
    import azure.functions as func
    from azure.functions.timer import TimerRequest

    from shared.monitor.queues import queue_client

    _function(timer)(TimerRequest(past_due=False))
    queue = queue_client(monitor.queues.checks, monitor.env)
    worker = _function("cluster_check_worker")
    handled = 0
    while batch := list(queue.receive_messages(max_messages=32, visibility_timeout=600)):
        for message in batch:
            body = json.loads(message.content)
            if not embed_cluster:
                body.pop("cluster", None)
            worker(func.QueueMessage(id=message.id, body=json.dumps(body).encode()))
            queue.delete_message(message)
            handled += 1
    return handled


def _repeated(calls: dict[tuple[str, str], int]) -> list[tuple[str, str, int]]:
    out = []
    for (operation, resource), count in calls.items():
        if operation in NOT_READS:
            continue
        allowed = 2 if operation == "Metrics.List" else 1
        if count > allowed:
            out.append((operation, resource, count))
    return out


def measure(emu: Emulator, storage: str, clusters: int, *, baseline: bool) -> dict[str, Any]:
    from shared.functions import context
    from shared.monitor.factory import build_monitor
    from shared.monitor.queues import DEFAULT_QUEUES, queue_client
    from shared.store.connection import open_store, settings_from_env, table_service
    from shared.store.tables import DEFAULT_TABLES

    env = {**os.environ, **emu.env(), "NODE_PROBES": "sample", "AzureWebJobsStorage": storage}
    for name in ("MONITOR_SUBSCRIPTIONS", "AZURE_CLIENT_ID", "ALERT_WEBHOOK_URL", "TEAMS_WEBHOOK_URL",
                 "SLACK_WEBHOOK_URL"):
        env.pop(name, None)
    tag = uuid.uuid4().hex[:8]
    store = open_store(env, names=DEFAULT_TABLES.namespaced("B" + tag))
    monitor = build_monitor(env, store=store, queues=DEFAULT_QUEUES.namespaced("b" + tag))
    context.use_monitor(monitor)
    per_family: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    try:
        for family, timer in FAMILY_TIMERS:
            emu.stats.reset()
            if baseline:
                with pre_issue_behaviour():
                    handled = _family_cycle(monitor, timer, embed_cluster=False)
            else:
                handled = _family_cycle(monitor, timer, embed_cluster=True)
            stats = emu.stats.snapshot()
            reads = sum(n for op, n in stats.calls.items() if op not in NOT_READS)
            per_family[family] = {"messages": handled, "reads": reads,
                                  "run_commands": stats.calls.get("VirtualMachineScaleSetVMs.RunCommand", 0),
                                  "not_reads": {op: stats.calls[op] for op in NOT_READS if stats.calls.get(op)},
                                  "repeated": _repeated(stats.calls_by_resource),
                                  "busiest": Counter({op: n for op, n in stats.calls.items()
                                                      if op not in NOT_READS}).most_common(4)}
    finally:
        context.reset()
        service = table_service(settings_from_env(env))
        for name in store.names.all():
            service.delete_table(name)
        queue_client(monitor.queues.checks, env).delete_queue()
        queue_client(monitor.queues.diagnose, env).delete_queue()
    reads = sum(f["reads"] for f in per_family.values())
    return {"families": per_family, "reads": reads, "reads_per_cluster": reads / clusters,
            "wall_s": time.perf_counter() - started}


def main(subscriptions: int = 4, per_subscription: int = 25) -> dict[str, Any]:
    from devtools.demo import azurite

    clusters = subscriptions * per_subscription
    print(f"Functions path, one full cycle of snat + nsg + probe over {clusters} generated clusters in "
          f"{subscriptions} subscriptions (real registered functions, Azurite queues, probes sample)")
    fleet = with_settings(generate_fleet(subscriptions, per_subscription), lro_poll_after=0.02,
                          run_command_latency=0.0)
    with azurite() as storage, Emulator(fleet, prefer_kernel=False) as emu:
        os.environ.update(emu.env())
        base = measure(emu, storage, clusters, baseline=True)
        sized = measure(emu, storage, clusters, baseline=False)
    for label, result in (("baseline (pre-issue: full topology + Activity Log per message)", base),
                          ("family-sized reads", sized)):
        print(f"  {label}: {result['reads_per_cluster']:.2f} ARM reads/cluster ({result['reads']} reads, "
              f"{result['wall_s']:.1f} s)")
        for family, f in result["families"].items():
            print(f"    {family:<5} {f['reads'] / clusters:5.2f} reads/cluster, {len(f['repeated'])} resources read "
                  f"twice in the family's cycle; busiest {f['busiest']}; not reads: {f['not_reads'] or 'none'}")
    ratio = base["reads_per_cluster"] / sized["reads_per_cluster"] if sized["reads_per_cluster"] else float("inf")
    met = "met" if sized["reads_per_cluster"] <= TARGET_READS_PER_CLUSTER else "MISSED"
    repeats = sum(len(f["repeated"]) for f in sized["families"].values())
    print(f"  {ratio:.1f}x fewer reads than the baseline; target <= {TARGET_READS_PER_CLUSTER:.0f} reads/cluster: "
          f"{met}; resources read twice within a family's cycle: {repeats}")
    return {"baseline": base, "sized": sized, "ratio": ratio}


if __name__ == "__main__":
    main()
