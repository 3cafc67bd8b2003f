"""SNAT evidence: metrics of the outbound load balancer, or of EVERY NAT gateway on the node subnets, and
the public IPs behind them.

Which of them: a NAT gateway on a subnet takes over that subnet's outbound traffic, whatever the outbound
type. So with outboundType loadBalancer, the NAT gateways on node subnets are read too (and alone when
every node subnet has one: the load balancer then carries no outbound traffic of the nodes); a node
subnet that could not be read may hide one, so it is recorded as unread.

Why every NAT gateway: each node subnet may have its own gateway, and the one with exhausted ports is
not necessarily the first by id. Why the IPs: the fix must fit how the outbound IPs were chosen (a
managed count, the user's own IPs, prefixes), and a prefix's size must be read, not assumed.
Anything that could not be read is recorded (unread gateways, missing metrics, unreadable prefixes) so
that the cause answers `unknown` rather than `clear` on partial evidence.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

from shared.azure import rest
from shared.azure.clients import to_rest
from shared.azure.ids import last_name, norm
from shared.snapshot import LoadBalancerProfile, SnatMetrics, Unavailable

T = TypeVar("T")
NAT_GATEWAY_TYPES = ("managedNATGateway", "userAssignedNATGateway")


class _Reads(Protocol):
    """What the SNAT reads need from the collector: guarded calls, memoised GETs, the monitor client."""

    def safe(self, what: str, fetch: Callable[[], T]) -> T | Unavailable: ...

    def get(self, resource_id: str, operations: str, convert: Callable[[Any], T]) -> T: ...

    def monitor(self) -> Any: ...


@dataclass(frozen=True)
class SnatQuery:
    """The window asked of Azure Monitor, and how many backends to ask series for."""

    window_minutes: int
    end: datetime
    node_count: int

    @property
    def timespan(self) -> str:
        start = self.end - timedelta(minutes=self.window_minutes)
        return f"{_arm_time(start)}/{_arm_time(self.end)}"


def collect_snat(reads: _Reads, facts: rest.ClusterFacts, query: SnatQuery, *, nat_by_subnet: Mapping[str, str],
                 subnet_ids: set[str], lb_ids: set[str],
                 unread_subnets: Mapping[str, str] | None = None) -> SnatMetrics | Unavailable | None:
    """SNAT evidence for the cluster's outbound path (None where SNAT is not AKS's: private, UDR, none).

    `unread_subnets`: node subnet id -> why it could not be read (a NAT gateway on it would be unseen).
    With outboundType loadBalancer the result is the load balancer's metrics with the node subnets' NAT
    gateways in `also` and anything unread in `unread`, or the NAT gateways alone when every node subnet
    has one.
    """
    if facts.private or facts.outbound_type.lower() in ("userdefinedrouting", "none"):
        return None
    nat_ids = sorted({g for s in subnet_ids if (g := nat_by_subnet.get(norm(s)))}, key=str.lower)
    if facts.outbound_type in NAT_GATEWAY_TYPES:
        if not nat_ids:
            return Unavailable("no NAT gateway is attached to the node subnets")
        return _nat_gateways(reads, nat_ids, query)
    unread = {s: f"node subnet {last_name(s)} could not be read, so a NAT gateway on it (which would take over its "
                 f"outbound traffic) is unknown: {why}" for s, why in (unread_subnets or {}).items()}
    unread_keys = {norm(s) for s in unread}
    via_lb = [s for s in subnet_ids if not nat_by_subnet.get(norm(s)) and norm(s) not in unread_keys]
    if nat_ids and not via_lb:  # every node subnet leaves through a NAT gateway: the load balancer is not used
        gateways = _nat_gateways(reads, nat_ids, query)
        if isinstance(gateways, Unavailable) or not unread:
            return gateways
        return replace(gateways, unread={**gateways.unread, **unread})
    if not lb_ids:
        return Unavailable("no load balancer backend pool on the node NICs; cannot find the outbound load balancer")
    lb_id = sorted(lb_ids, key=lambda i: (last_name(i).lower() != "kubernetes", i))[0]
    got = reads.safe("load balancer SNAT metrics", partial(_lb_metrics, reads, lb_id, query))
    if isinstance(got, Unavailable):
        return got
    count, error = _lb_outbound_ips(reads, facts.load_balancer_profile)
    got = replace(got, outbound_ip_count=count, outbound_ips_error=error)
    if nat_ids:  # the pools on subnets with a NAT gateway leave through it: its exhaustion counts as well
        gateways = _nat_gateways(reads, nat_ids, query)
        if isinstance(gateways, Unavailable):
            unread.update(dict.fromkeys(nat_ids, gateways.reason))
        else:
            unread.update(gateways.unread)
            got = replace(got, also=(replace(gateways, also=(), unread={}), *gateways.also))
    return replace(got, unread=unread) if unread else got


# ------------------------------------------------------------------ load balancer


def _lb_metrics(reads: _Reads, lb_id: str, query: SnatQuery) -> SnatMetrics:
    monitor = reads.monitor()
    conns = to_rest(monitor.metrics.list(lb_id, timespan=query.timespan, interval="PT1M",
                                         metricnames="SnatConnectionCount", aggregation="Total",
                                         filter="ConnectionState eq '*'"))
    # Azure returns only `top` (default 10) series per metric once a $filter splits them: ask for one per
    # node, or clusters above 10 nodes would hide their busiest backends.
    ports = to_rest(monitor.metrics.list(lb_id, timespan=query.timespan, interval="PT1M",
                                         metricnames="AllocatedSnatPorts,UsedSnatPorts", aggregation="Maximum",
                                         filter="BackendIPAddress eq '*'", top=max(10, query.node_count)))
    by_state = rest.metric_series(conns, "SnatConnectionCount", "ConnectionState")
    used = rest.metric_series(ports, "UsedSnatPorts", "BackendIPAddress")
    allocated = rest.metric_series(ports, "AllocatedSnatPorts", "BackendIPAddress")
    missing = tuple(name for name, series in (("SnatConnectionCount", by_state), ("UsedSnatPorts", used),
                                              ("AllocatedSnatPorts", allocated)) if not _has_points(series))
    return SnatMetrics(
        source_id=lb_id, source_kind="loadBalancer", window_minutes=query.window_minutes,
        failed_connections=sum(by_state.get("failed", [])),
        successful_connections=sum(by_state.get("successful", [])),
        used_ports={k: tuple(v) for k, v in used.items()},
        allocated_ports={k: tuple(v) for k, v in allocated.items()},
        missing=missing,
    )


def _lb_outbound_ips(reads: _Reads, profile: LoadBalancerProfile | None) -> tuple[int | None, str | None]:
    """How many public IPs the load balancer has for outbound: prefixes are read for their length."""
    if profile is None:
        return None, "the cluster has no loadBalancerProfile, so its outbound IPs are not known"
    if profile.kind != "prefixes":
        return profile.outbound_ip_count, None
    return _prefix_addresses(reads, profile.outbound_ip_prefix_ids, 0)


def _prefix_addresses(reads: _Reads, prefix_ids: tuple[str, ...], start: int) -> tuple[int | None, str | None]:
    """`start` plus the addresses of each prefix, read from Azure (see prefix_size)."""
    total = start
    for prefix_id in prefix_ids:
        size = reads.safe(f"public IP prefix {last_name(prefix_id)}",
                          partial(reads.get, prefix_id, "public_ip_prefixes", prefix_size))
        if isinstance(size, Unavailable):
            return None, size.reason
        if size is None:
            return None, f"public IP prefix {last_name(prefix_id)} states neither prefixLength nor ipPrefix"
        total += size
    return total, None


def prefix_size(prefix: Mapping[str, Any]) -> int | None:
    """Addresses in a public IP prefix: from `prefixLength` (set from creation on), else from the allocated
    `ipPrefix`; None when neither says (a size is never assumed, /28 or otherwise)."""
    p = rest.props(prefix)
    version = 6 if str(p.get("publicIPAddressVersion") or "IPv4").lower() == "ipv6" else 4
    width = 32 if version == 4 else 128
    length: Any = p.get("prefixLength")
    if length is None and p.get("ipPrefix"):
        try:
            return ipaddress.ip_network(str(p["ipPrefix"]), strict=False).num_addresses
        except ValueError:
            return None
    try:
        bits = int(str(length))
    except ValueError:
        return None
    return 2 ** (width - bits) if 0 <= bits <= width else None


# ------------------------------------------------------------------ NAT gateways


def _nat_gateways(reads: _Reads, nat_ids: list[str], query: SnatQuery) -> SnatMetrics | Unavailable:
    """Every gateway: the one with the most failures leads, the others ride along, unread ones are named."""
    read: list[SnatMetrics] = []
    unread: dict[str, str] = {}
    for nat_id in nat_ids:
        name = last_name(nat_id)
        addresses = reads.safe(f"NAT gateway {name}",
                               partial(reads.get, nat_id, "nat_gateways", rest.nat_gateway_public_ips))
        if isinstance(addresses, Unavailable):
            unread[nat_id] = addresses.reason
            continue
        metrics = reads.safe(f"SNAT metrics of NAT gateway {name}", partial(_nat_metrics, reads, nat_id, query))
        if isinstance(metrics, Unavailable):
            unread[nat_id] = metrics.reason
            continue
        ip_ids, prefix_ids = addresses
        count, error = _prefix_addresses(reads, prefix_ids, len(ip_ids))
        read.append(replace(metrics, public_ip_ids=ip_ids, public_ip_prefix_ids=prefix_ids,
                            outbound_ip_count=count, outbound_ips_error=error))
    if not read:
        return Unavailable("; ".join(f"{last_name(k)}: {v}" for k, v in unread.items()))
    read.sort(key=lambda m: -m.failed_connections)
    return replace(read[0], also=tuple(read[1:]), unread=unread)


def _nat_metrics(reads: _Reads, nat_id: str, query: SnatQuery) -> SnatMetrics:
    monitor = reads.monitor()
    conns = to_rest(monitor.metrics.list(nat_id, timespan=query.timespan, interval="PT1M",
                                         metricnames="SNATConnectionCount", aggregation="Total",
                                         filter="ConnectionState eq '*'"))
    drops = to_rest(monitor.metrics.list(nat_id, timespan=query.timespan, interval="PT1M",
                                         metricnames="PacketDropCount", aggregation="Total"))
    by_state = rest.metric_series(conns, "SNATConnectionCount", "ConnectionState")
    dropped = rest.metric_series(drops, "PacketDropCount", None)
    return SnatMetrics(
        source_id=nat_id, source_kind="natGateway", window_minutes=query.window_minutes,
        failed_connections=sum(by_state.get("failed", [])),
        successful_connections=sum(by_state.get("successful", [])),
        packet_drops=sum(v for s in dropped.values() for v in s),
        missing=("SNATConnectionCount",) if not _has_points(by_state) else (),
    )


def _has_points(series: Mapping[str, list[float]]) -> bool:
    """Data split by the asked dimension. Points under "" came back without that dimension (a name this
    reader did not recognise): summing them as "not failed" would be a silent clear, so they do not count."""
    return any(values for key, values in series.items() if key)


def _arm_time(moment: datetime) -> str:
    from datetime import UTC

    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
