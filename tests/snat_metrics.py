"""Azure Monitor metric series, as the emulator serves them, for SNAT tests: a Standard load balancer's
per-backend-IP SNAT metrics and a NAT gateway's connection and drop counts (two samples each)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def lb_series(ips: Sequence[str], failed: float, *, used: float = 1000.0,
              allocated: float = 4000.0) -> list[dict[str, Any]]:
    series: list[dict[str, Any]] = []
    for ip in ips:
        series += [
            {"name": "SnatConnectionCount", "dimensions": {"BackendIPAddress": ip, "ConnectionState": "successful"},
             "values": [100, 100]},
            {"name": "SnatConnectionCount", "dimensions": {"BackendIPAddress": ip, "ConnectionState": "failed"},
             "values": [failed, failed]},
            {"name": "AllocatedSnatPorts", "dimensions": {"BackendIPAddress": ip}, "values": [allocated, allocated]},
            {"name": "UsedSnatPorts", "dimensions": {"BackendIPAddress": ip}, "values": [used, used]},
        ]
    return series


def nat_series(failed: float, *, dropped: float = 0.0) -> list[dict[str, Any]]:
    return [
        {"name": "SNATConnectionCount", "dimensions": {"ConnectionState": "Successful", "Protocol": "TCP"},
         "values": [300, 300]},
        {"name": "SNATConnectionCount", "dimensions": {"ConnectionState": "Failed", "Protocol": "TCP"},
         "values": [failed, failed]},
        {"name": "PacketDropCount", "dimensions": {}, "values": [dropped, dropped]},
    ]
