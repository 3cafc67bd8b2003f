"""Plausible SNAT metric series for clusters whose scenario says nothing about metrics.

Every load balancer and NAT gateway in Azure reports these series, so a "healthy" default must exist
(no failed connections, ports well below their allocation) rather than an empty answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from devtools.emulator.scenario import MetricSeries, NodeSpec

POINTS = 6  # default series length; replayed cyclically over any requested window


def aks_default_ports_per_node(backend_size: int) -> int:
    """Azure LB default allocation when allocatedOutboundPorts is 0 (by backend pool size)."""
    for limit, ports in ((50, 1024), (100, 512), (200, 256), (400, 128), (800, 64), (1000, 32)):
        if backend_size <= limit:
            return ports
    return 16


def default_lb_metrics(nodes: Sequence[NodeSpec], allocated: int) -> tuple[MetricSeries, ...]:
    ports = allocated or aks_default_ports_per_node(len(nodes))
    series: list[MetricSeries] = []
    for node in nodes:
        backend = {"BackendIPAddress": node.ip}
        series.append(MetricSeries("SnatConnectionCount", {**backend, "ConnectionState": "successful"},
                                   (120.0,) * POINTS))
        series.append(MetricSeries("SnatConnectionCount", {**backend, "ConnectionState": "failed"}, (0.0,) * POINTS))
        series.append(MetricSeries("AllocatedSnatPorts", {**backend, "ProtocolType": "TCP"}, (float(ports),) * POINTS))
        series.append(MetricSeries("UsedSnatPorts", {**backend, "ProtocolType": "TCP"}, (24.0,) * POINTS))
    return tuple(series)


def default_nat_metrics() -> tuple[MetricSeries, ...]:
    return (
        MetricSeries("SNATConnectionCount", {"ConnectionState": "Successful", "Protocol": "TCP"}, (300.0,) * POINTS),
        MetricSeries("SNATConnectionCount", {"ConnectionState": "Failed", "Protocol": "TCP"}, (0.0,) * POINTS),
        MetricSeries("PacketDropCount", {}, (0.0,) * POINTS),
        MetricSeries("TotalConnectionCount", {"Protocol": "TCP"}, (300.0,) * POINTS),
    )
