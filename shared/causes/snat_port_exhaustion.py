"""snat-port-exhaustion: failed or nearly exhausted SNAT on the cluster's own outbound path.

Only AKS-managed outbound (load balancer or NAT gateway) is ours to judge; with userDefinedRouting or
`none` SNAT happens on the customer's firewall, and private clusters reach the API server privately.
"""

from __future__ import annotations

from shared.causes.base import Cause
from shared.model import CauseId, CauseResult, Evidence, Status
from shared.netrules.snat import PoolSize, SnatInputs, assess
from shared.snapshot import ClusterSnapshot, SnatMetrics, Unavailable

NAT_GATEWAY_TYPES = ("managedNATGateway", "userAssignedNATGateway")


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
        return _evaluate_nat_gateway(snapshot, metrics)
    return _evaluate_load_balancer(snapshot, metrics)


def _evaluate_load_balancer(snapshot: ClusterSnapshot, metrics: SnatMetrics) -> CauseResult:
    profile = snapshot.load_balancer_profile
    ports = profile.allocated_outbound_ports if profile else 0
    ips = profile.outbound_ip_count if profile else 1
    result = assess(
        SnatInputs(
            pools=tuple(PoolSize(p.name, p.count, p.max_count, p.max_surge) for p in snapshot.pools),
            allocated_outbound_ports=ports,
            outbound_ip_count=ips,
            failed_connections=metrics.failed_connections,
            used_ports=metrics.used_ports,
            allocated_ports=metrics.allocated_ports,
        )
    )
    evidence = tuple(Evidence(metrics.source_id, line) for line in result.arithmetic)
    evidence = (
        Evidence(
            metrics.source_id,
            f"SnatConnectionCount over the last {metrics.window_minutes} min: "
            f"{metrics.failed_connections:g} failed, {metrics.successful_connections:g} succeeded",
        ),
        *evidence,
    )
    if result.state == "ok":
        usage = f"peak usage {result.peak_usage_ratio:.0%}" if result.peak_usage_ratio is not None else "no usage data"
        return CAUSE.result(
            Status.CLEAR,
            f"No failed SNAT connections in the last {metrics.window_minutes} min; {usage} of allocated ports.",
            evidence=evidence,
        )
    remediation = (
        f"az aks update --resource-group {snapshot.resource_group} --name {snapshot.name} "
        f"--load-balancer-outbound-ports {result.recommended_ports} "
        f"--load-balancer-managed-outbound-ip-count {result.recommended_ips}",
        "Reuse connections in the workloads (HTTP keep-alive, connection pools) so each call does not take "
        "a new SNAT port.",
        "For large or bursty egress, move to a NAT gateway (64,512 SNAT ports per public IP, allocated on "
        "demand): az aks update --outbound-type managedNATGateway ... (see the AKS NAT gateway docs).",
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
                        subjects=(metrics.source_id,))


def _evaluate_nat_gateway(snapshot: ClusterSnapshot, metrics: SnatMetrics) -> CauseResult:
    evidence = (
        Evidence(
            metrics.source_id,
            f"SNATConnectionCount over the last {metrics.window_minutes} min: "
            f"{metrics.failed_connections:g} failed, {metrics.successful_connections:g} succeeded; "
            f"PacketDropCount {metrics.packet_drops:g}",
        ),
    )
    if metrics.failed_connections <= 0:
        return CAUSE.result(
            Status.CLEAR,
            f"No failed SNAT connections on the NAT gateway in the last {metrics.window_minutes} min.",
            evidence=evidence,
        )
    remediation = (
        f"az aks update --resource-group {snapshot.resource_group} --name {snapshot.name} "
        "--nat-gateway-managed-outbound-ip-count <current + 1>  (managedNATGateway: each IP adds 64,512 ports)",
        "userAssignedNATGateway: attach more public IPs or a public IP prefix to the NAT gateway "
        "(az network nat gateway update --public-ip-addresses ...).",
        "Reuse connections in the workloads (keep-alive, connection pools) to take fewer SNAT ports.",
    )
    return CAUSE.result(
        Status.DETECTED,
        f"SNAT port exhaustion on the NAT gateway: {metrics.failed_connections:g} failed connections in the "
        f"last {metrics.window_minutes} min.",
        evidence=evidence,
        remediation=remediation,
        subjects=(metrics.source_id,),
    )


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
