"""SNAT port arithmetic for AKS outbound load balancers, following Microsoft's documented rules.

The numbers matter more than the wording: on-call engineers paste the recommended `az aks update` as is,
so the ports must be a multiple of 8 and the IP count must actually cover the autoscaler maximum plus the
upgrade surge nodes, or AKS rejects the update (or, worse, new nodes get no SNAT ports).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PORTS_PER_IP = 64_000
WARNING_RATIO = 0.75
MAX_PORTS_PER_NODE = 64_000

# AKS's allocation when allocatedOutboundPorts is 0: (max nodes in the pool set, ports per node).
DEFAULT_ALLOCATION: tuple[tuple[int, int], ...] = (
    (50, 1024),
    (100, 512),
    (200, 256),
    (400, 128),
    (800, 64),
    (1000, 32),
)


def default_ports_per_node(node_count: int) -> int:
    """Ports AKS hands each node by default for a backend pool of `node_count` nodes."""
    for limit, ports in DEFAULT_ALLOCATION:
        if node_count <= limit:
            return ports
    return DEFAULT_ALLOCATION[-1][1]


def round_up_to_8(value: float) -> int:
    return max(8, math.ceil(value / 8) * 8)


@dataclass(frozen=True)
class PoolSize:
    """A node pool as SNAT sees it: the most nodes it can have, and the extra nodes an upgrade adds."""

    name: str
    count: int
    max_count: int | None = None
    max_surge: int = 1

    @property
    def peak_nodes(self) -> int:
        return max(self.count, self.max_count or 0) + self.max_surge


@dataclass(frozen=True)
class SnatInputs:
    pools: tuple[PoolSize, ...]
    allocated_outbound_ports: int  # 0 = AKS default table
    outbound_ip_count: int
    failed_connections: float
    used_ports: Mapping[str, Sequence[float]]
    allocated_ports: Mapping[str, Sequence[float]]
    source_kind: str = "loadBalancer"  # or natGateway
    packet_drops: float = 0.0


@dataclass(frozen=True)
class SnatAssessment:
    state: str  # "exhausted" | "warning" | "ok"
    peak_nodes: int
    ports_per_node: int
    peak_usage_ratio: float | None
    peak_backend: str | None
    recommended_ports: int
    recommended_ips: int
    arithmetic: tuple[str, ...]


def peak_usage(
    used: Mapping[str, Sequence[float]], allocated: Mapping[str, Sequence[float]], fallback_allocated: int
) -> tuple[float | None, str | None, float]:
    """Highest used/allocated ratio over all backends and intervals, with the backend and ports used."""
    best: tuple[float | None, str | None, float] = (None, None, 0.0)
    for backend, series in used.items():
        alloc_series = list(allocated.get(backend, ()))
        for i, used_value in enumerate(series):
            alloc = alloc_series[i] if i < len(alloc_series) and alloc_series[i] > 0 else fallback_allocated
            if alloc <= 0:
                continue
            ratio = used_value / alloc
            if best[0] is None or ratio > best[0]:
                best = (ratio, backend, used_value)
    return best


def assess(inputs: SnatInputs) -> SnatAssessment:
    peak_nodes = sum(p.peak_nodes for p in inputs.pools)
    configured = inputs.allocated_outbound_ports
    ports = configured if configured > 0 else default_ports_per_node(peak_nodes)
    ratio, backend, peak_used = peak_usage(inputs.used_ports, inputs.allocated_ports, ports)
    per_pool = " + ".join(f"{p.name}: max({p.count}, {p.max_count or 0}) + surge {p.max_surge}" for p in inputs.pools)
    lines = [
        f"peak nodes = {per_pool or '0'} = {peak_nodes}",
        (
            f"ports per node = {ports} (allocatedOutboundPorts={configured})"
            if configured > 0
            else f"ports per node = {ports} (AKS default for up to {peak_nodes} nodes; allocatedOutboundPorts=0)"
        ),
        f"capacity = {PORTS_PER_IP:,} x {inputs.outbound_ip_count} IP(s) / {ports} = "
        f"{PORTS_PER_IP * inputs.outbound_ip_count // ports} nodes",
    ]
    if ratio is not None:
        lines.append(f"peak used/allocated = {peak_used:g} / {peak_used / ratio:g} = {ratio:.0%} on {backend}")
    if inputs.failed_connections > 0:
        state = "exhausted"
        lines.append(f"failed SNAT connections in window = {inputs.failed_connections:g} (> 0)")
    elif ratio is not None and ratio >= WARNING_RATIO:
        state = "warning"
    else:
        state = "ok"
    # Aim for headroom: at least double today's allocation, and the observed peak at most half of it.
    wanted = max(ports * 2, (peak_used / 0.5) if ratio is not None else 0)
    recommended_ports = min(MAX_PORTS_PER_NODE, round_up_to_8(wanted))
    needed_ips = math.ceil(recommended_ports * max(peak_nodes, 1) / PORTS_PER_IP)
    recommended_ips = max(inputs.outbound_ip_count, needed_ips)
    lines.append(
        f"recommended: {recommended_ports} ports/node (multiple of 8) x {peak_nodes} nodes = "
        f"{recommended_ports * peak_nodes:,} ports -> ceil(/ {PORTS_PER_IP:,}) = {needed_ips} IP(s); "
        f"using {recommended_ips}"
    )
    return SnatAssessment(
        state=state,
        peak_nodes=peak_nodes,
        ports_per_node=ports,
        peak_usage_ratio=ratio,
        peak_backend=backend,
        recommended_ports=recommended_ports,
        recommended_ips=recommended_ips,
        arithmetic=tuple(lines),
    )
