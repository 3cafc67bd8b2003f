"""snat-port-exhaustion: failed or nearly exhausted SNAT on the cluster's own outbound path.

Only AKS-managed outbound (load balancer or NAT gateway) is ours to judge; with userDefinedRouting or
`none` SNAT happens on the customer's firewall, and private clusters reach the API server privately.

`clear` needs every piece: connection metrics with data, port metrics with a known allocation, the
public IPs behind the load balancer, and every NAT gateway on the node subnets. A failure seen on one
piece is `detected` even when another piece is missing (that piece is then listed in `unchecked`).

With outboundType loadBalancer, node subnets that carry a NAT gateway leave through it (Azure gives a
subnet's NAT gateway precedence over load balancer outbound rules): those gateways arrive in `also` of
the load balancer's metrics and are judged like NAT-gateway clusters; the two verdicts are combined.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from shared.causes.base import Cause
from shared.causes.snat_remediation import load_balancer_fix, nat_arithmetic, nat_gateway_fix
from shared.model import CauseId, CauseResult, Evidence, Status
from shared.netrules.snat import PoolSize, SnatInputs, assess
from shared.snapshot import ClusterSnapshot, SnatMetrics, Unavailable

NAT_GATEWAY_TYPES = ("managedNATGateway", "userAssignedNATGateway")
REUSE = ("Reuse connections in the workloads (HTTP keep-alive, connection pools) so each call does not take a "
         "new SNAT port.")


def _not_applicable(snapshot: ClusterSnapshot) -> str | None:
    if snapshot.private:
        return "Private cluster: the tunnel reaches the API server over Private Link, not through SNAT."
    if snapshot.outbound_type.lower() in ("userdefinedrouting", "none"):
        return (
            f"outboundType {snapshot.outbound_type}: SNAT happens on your own egress device "
            "(firewall/NVA), outside AKS; check its SNAT capacity there."
        )
    return None


def _evaluate(snapshot: ClusterSnapshot) -> CauseResult:
    metrics = snapshot.snat
    if metrics is None:
        return CAUSE.unknown("SNAT metrics were not collected for this cluster")
    if isinstance(metrics, Unavailable):
        return CAUSE.unknown(metrics.reason)
    if snapshot.outbound_type in NAT_GATEWAY_TYPES or metrics.source_kind == "natGateway":
        return _evaluate_nat_gateways(snapshot, metrics)
    lb_result = _evaluate_load_balancer(snapshot, replace(metrics, also=(), unread={}), extra_gaps=metrics.unread)
    if not metrics.also:
        return lb_result
    gateways = replace(metrics.also[0], also=metrics.also[1:], unread={})
    return _combine(lb_result, _evaluate_nat_gateways(snapshot, gateways))


def _combine(*results: CauseResult) -> CauseResult:
    """The load balancer's and the subnet NAT gateways' verdicts as one: detected if either is, unknown if
    either is (the other then clear), clear only when both are; every gap stays in `unchecked`."""
    evidence = tuple(e for r in results for e in r.evidence)
    unchecked: dict[str, str] = {}
    for r in results:
        unchecked.update(r.unchecked)
        if r.status is Status.UNKNOWN and not r.unchecked:
            unchecked[r.subjects[0] if r.subjects else "snat"] = r.reason or r.summary
    detected = [r for r in results if r.status is Status.DETECTED]
    if detected:
        return CAUSE.result(
            Status.DETECTED, " ".join(r.summary for r in detected), evidence=evidence,
            remediation=tuple(dict.fromkeys(step for r in detected for step in r.remediation)),
            subjects=tuple(dict.fromkeys(s for r in detected for s in r.subjects)), unchecked=unchecked)
    unknown = [r for r in results if r.status is Status.UNKNOWN]
    if unknown:
        return CAUSE.unknown("; ".join(r.reason or r.summary for r in unknown), evidence=evidence,
                             unchecked=unchecked)
    return CAUSE.result(Status.CLEAR, " ".join(r.summary for r in results), evidence=evidence)


# ------------------------------------------------------------------ load balancer


def _evaluate_load_balancer(snapshot: ClusterSnapshot, metrics: SnatMetrics, *,
                            extra_gaps: Mapping[str, str] | None = None) -> CauseResult:
    profile = snapshot.load_balancer_profile
    configured = profile.allocated_outbound_ports if profile else 0
    ips = metrics.outbound_ip_count
    if ips is None and not metrics.outbound_ips_error and (profile is None or profile.kind != "prefixes"):
        ips = profile.outbound_ip_count if profile else 1  # the profile states managed counts and own IPs
    result = assess(
        SnatInputs(
            pools=tuple(PoolSize(p.name, p.count, p.max_count, p.max_surge) for p in snapshot.pools),
            allocated_outbound_ports=configured,
            outbound_ip_count=ips if ips is not None else (profile.outbound_ip_count if profile else 1),
            failed_connections=metrics.failed_connections,
            used_ports=metrics.used_ports,
            allocated_ports=metrics.allocated_ports,
        )
    )
    arithmetic = result.arithmetic
    if ips is None:  # capacity without the real IP count would be a guess: say so instead
        arithmetic = (*(line for line in result.arithmetic if not line.startswith("capacity")),
                      "capacity: unknown, the outbound public IPs could not be counted "
                      f"({metrics.outbound_ips_error or 'public IP prefixes not read'})")
    evidence = (
        Evidence(
            metrics.source_id,
            f"SnatConnectionCount over the last {metrics.window_minutes} min: "
            f"{metrics.failed_connections:g} failed, {metrics.successful_connections:g} succeeded",
        ),
        Evidence(metrics.source_id, _kind_line(snapshot, ips)),
        *(Evidence(metrics.source_id, line) for line in arithmetic),
    )
    gaps = {**_load_balancer_gaps(metrics, configured, ips), **(extra_gaps or {})}
    evidence = (*evidence, *(Evidence(k, f"not checked: {v}") for k, v in (extra_gaps or {}).items()))
    if result.state == "ok":
        if gaps:
            return CAUSE.unknown("; ".join(gaps.values()), evidence=evidence, unchecked=gaps)
        usage = f"peak usage {result.peak_usage_ratio:.0%}" if result.peak_usage_ratio is not None else "no usage data"
        return CAUSE.result(
            Status.CLEAR,
            f"No failed SNAT connections in the last {metrics.window_minutes} min; {usage} of allocated ports.",
            evidence=evidence,
        )
    remediation = (
        *load_balancer_fix(snapshot, profile, ports=result.recommended_ports, current_ips=ips,
                           wanted_ips=result.recommended_ips),
        REUSE,
        "For large or bursty egress, a NAT gateway gives 64,512 SNAT ports per public IP, allocated on demand "
        "(changing the outbound type changes the cluster's egress IPs: update allow-lists first).",
    )
    if result.state == "exhausted":
        summary = (
            f"SNAT port exhaustion: {metrics.failed_connections:g} failed SNAT connections in the last "
            f"{metrics.window_minutes} min on the outbound load balancer."
        )
    else:
        summary = (
            f"SNAT ports nearly exhausted: {result.peak_usage_ratio:.0%} of allocated ports used on "
            f"{result.peak_backend} (warning at 75%)."
        )
    return CAUSE.result(Status.DETECTED, summary, evidence=evidence, remediation=remediation,
                        subjects=(metrics.source_id,), unchecked=gaps)


def _load_balancer_gaps(metrics: SnatMetrics, configured: int, ips: int | None) -> dict[str, str]:
    """Pieces of evidence that are missing or ambiguous: each would make a `clear` unfounded."""
    gaps = {f"{metrics.source_id}#{name}": f"Azure Monitor returned no {name} data for the load balancer "
                                          f"in the last {metrics.window_minutes} min"
            for name in metrics.missing}
    if metrics.outbound_ips_error or ips is None:
        gaps[f"{metrics.source_id}#outboundIPs"] = (
            "the outbound public IPs could not be counted: "
            f"{metrics.outbound_ips_error or 'the public IP prefixes were not read'}")
    if configured == 0:
        empty = sorted(b for b in metrics.used_ports
                       if not any(v > 0 for v in metrics.allocated_ports.get(b, ())))
        empty += sorted(b for b, series in metrics.allocated_ports.items()
                        if b not in metrics.used_ports and series and not any(v > 0 for v in series))
        for backend in empty:
            gaps[backend] = (
                f"backend {backend} reports 0 allocated SNAT ports while allocatedOutboundPorts is 0 (AKS's "
                "default table): the ports it really has cannot be told, and 0 may mean it has none")
    return gaps


def _kind_line(snapshot: ClusterSnapshot, ips: int | None) -> str:
    profile = snapshot.load_balancer_profile
    kind = profile.kind if profile else "managed"
    count = "unknown" if ips is None else str(ips)
    if kind == "ips":
        return f"outbound IPs: the cluster's own public IPs ({count}), kept by the fix"
    if kind == "prefixes":
        assert profile is not None
        return (f"outbound IPs: {count} address(es) from {len(profile.outbound_ip_prefix_ids)} public IP "
                "prefix(es), read from each prefix's allocated range and kept by the fix")
    return f"outbound IPs: {count} AKS-managed public IP(s)"


# ------------------------------------------------------------------ NAT gateways


def _evaluate_nat_gateways(snapshot: ClusterSnapshot, primary: SnatMetrics) -> CauseResult:
    gateways = (primary, *primary.also)
    unchecked: dict[str, str] = dict(primary.unread)
    evidence: list[Evidence] = []
    exhausted: list[SnatMetrics] = []
    for gateway in gateways:
        evidence.append(Evidence(
            gateway.source_id,
            f"SNATConnectionCount over the last {gateway.window_minutes} min: {gateway.failed_connections:g} "
            f"failed, {gateway.successful_connections:g} succeeded; PacketDropCount {gateway.packet_drops:g}",
        ))
        evidence.append(Evidence(gateway.source_id, nat_arithmetic(gateway)))
        if gateway.failed_connections > 0:
            exhausted.append(gateway)
        for name in gateway.missing:
            unchecked[f"{gateway.source_id}#{name}"] = (
                f"Azure Monitor returned no {name} data for NAT gateway {_name(gateway.source_id)}")
        if gateway.outbound_ips_error:
            unchecked[f"{gateway.source_id}#outboundIPs"] = (
                f"the public IPs of NAT gateway {_name(gateway.source_id)} could not be counted: "
                f"{gateway.outbound_ips_error}")
    evidence.extend(Evidence(k, f"not checked: {v}") for k, v in primary.unread.items())
    if not exhausted:
        if unchecked:
            return CAUSE.unknown("; ".join(f"{_name(k)}: {v}" if k in primary.unread else v
                                           for k, v in unchecked.items()),
                                 evidence=tuple(evidence), unchecked=unchecked)
        return CAUSE.result(
            Status.CLEAR,
            f"No failed SNAT connections on the {len(gateways)} NAT gateway(s) of the node subnets in the last "
            f"{primary.window_minutes} min.",
            evidence=tuple(evidence),
        )
    remediation = (*dict.fromkeys(step for g in exhausted for step in nat_gateway_fix(snapshot, g)), REUSE)
    names = ", ".join(f"{_name(g.source_id)} ({g.failed_connections:g} failed)" for g in exhausted)
    return CAUSE.result(
        Status.DETECTED,
        f"SNAT port exhaustion on the NAT gateway(s) {names} in the last {primary.window_minutes} min.",
        evidence=tuple(evidence),
        remediation=remediation,
        subjects=tuple(g.source_id for g in exhausted),
        unchecked=unchecked,
    )


def _name(resource_id: str) -> str:
    return resource_id.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]


CAUSE = Cause(
    id=CauseId.SNAT,
    title="SNAT port exhaustion on the cluster's outbound path",
    description=(
        "Failed SNAT connections (SnatConnectionCount with ConnectionState=failed) or used/allocated SNAT "
        "ports above 75% on the outbound load balancer or NAT gateway."
    ),
    not_applicable=_not_applicable,
    evaluate=_evaluate,
)
