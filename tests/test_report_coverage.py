"""The report states probe coverage per pool, so a sampled `clear` never reads as the whole cluster."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.report import build_report, coverage_text
from shared.snapshot import ClusterSnapshot, Node, NodeProbe, Unavailable


def _snapshot(probes: dict[str, NodeProbe | Unavailable], mode: str) -> ClusterSnapshot:
    nodes = (*(Node(f"a{i}", "poola", f"10.0.0.{i + 4}", "s") for i in range(5)),
             Node("b0", "poolb", "10.0.1.4", "s"), Node("b1", "poolb", "10.0.1.5", "s", running=False))
    cluster_id = "/subscriptions/x/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/c"
    return ClusterSnapshot(id=cluster_id, name="c", subscription_id="x", resource_group="r", location="westeurope",
                           node_resource_group="mc", private=False, outbound_type="loadBalancer", nodes=nodes,
                           probes=probes, probes_mode=mode)


def test_sample_coverage_counts_probed_of_running_nodes_per_pool() -> None:
    snap = _snapshot({"a0": NodeProbe("a0"), "a3": NodeProbe("a3"), "b0": Unavailable("run-command failed")},
                     "sample")
    report = build_report(snap, [], datetime(2026, 12, 3, tzinfo=UTC))
    assert report["coverage"] == {"probes": "sample", "pools": [
        {"pool": "poola", "probed": 2, "nodes": 5}, {"pool": "poolb", "probed": 0, "nodes": 1}]}
    assert coverage_text(report["coverage"]) == "sample: poola 2/5, poolb 0/1 nodes probed"


def test_probes_off_covers_nothing() -> None:
    report = build_report(_snapshot({}, "off"), [], datetime(2026, 12, 3, tzinfo=UTC))
    assert all(p["probed"] == 0 for p in report["coverage"]["pools"])
    assert report["coverage"]["probes"] == "off"
