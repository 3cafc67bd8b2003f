"""SNAT arithmetic against Microsoft's documented numbers."""

import pytest

from shared.netrules.snat import PoolSize, SnatInputs, assess, default_ports_per_node, round_up_to_8


@pytest.mark.parametrize(
    ("nodes", "ports"),
    [(1, 1024), (50, 1024), (51, 512), (100, 512), (101, 256), (200, 256), (201, 128), (400, 128),
     (401, 64), (800, 64), (801, 32), (1000, 32)],
)
def test_default_allocation_table(nodes: int, ports: int) -> None:
    assert default_ports_per_node(nodes) == ports


def test_round_up_to_multiple_of_8() -> None:
    assert [round_up_to_8(v) for v in (1, 8, 9, 1000, 1001)] == [8, 8, 16, 1000, 1008]


def _inputs(**overrides: object) -> SnatInputs:
    base: dict[str, object] = {
        "pools": (PoolSize("system", 3, None, 1), PoolSize("user", 10, 40, 1)),
        "allocated_outbound_ports": 0,
        "outbound_ip_count": 1,
        "failed_connections": 0.0,
        "used_ports": {"10.224.0.4": (100.0, 200.0)},
        "allocated_ports": {"10.224.0.4": (1024.0, 1024.0)},
    }
    base.update(overrides)
    return SnatInputs(**base)  # type: ignore[arg-type]


def test_peak_nodes_counts_autoscaler_max_and_surge() -> None:
    result = assess(_inputs())
    # system: max(3, 0) + 1 surge; user: max(10, 40) + 1 surge
    assert result.peak_nodes == 4 + 41
    assert result.ports_per_node == 1024  # 45 nodes -> AKS default 1,024


def test_failed_connections_mean_exhaustion_and_recommendation_covers_peak() -> None:
    result = assess(_inputs(failed_connections=12.0))
    assert result.state == "exhausted"
    assert result.recommended_ports % 8 == 0
    assert result.recommended_ports >= 2 * 1024
    # the recommended IPs must cover every node at the recommended ports
    assert result.recommended_ips * 64_000 >= result.recommended_ports * result.peak_nodes
    assert any("failed SNAT connections" in line for line in result.arithmetic)


def test_usage_at_75_percent_is_a_warning_below_is_ok() -> None:
    warn = assess(_inputs(used_ports={"n1": (768.0,)}, allocated_ports={"n1": (1024.0,)}))
    assert warn.state == "warning"
    assert warn.peak_backend == "n1"
    ok = assess(_inputs(used_ports={"n1": (767.0,)}, allocated_ports={"n1": (1024.0,)}))
    assert ok.state == "ok"


def test_explicit_allocation_is_used_when_set() -> None:
    result = assess(_inputs(allocated_outbound_ports=4000, outbound_ip_count=2, failed_connections=1.0))
    assert result.ports_per_node == 4000
    assert result.recommended_ports == 8000
    assert result.recommended_ips == 6  # ceil(8000 * 45 / 64000) = 6


def test_recommendation_never_exceeds_64000_ports_per_node() -> None:
    result = assess(_inputs(allocated_outbound_ports=60_000, failed_connections=1.0))
    assert result.recommended_ports == 64_000
