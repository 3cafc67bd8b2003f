"""authorized-ip-ranges-exclude-egress: the API server only accepts its authorized IP ranges, and the
cluster's own egress addresses are not all among them, so agents cannot reach the API server.

The tunnel agents (and kubelets) of a public cluster dial the API server's public endpoint from the
cluster's egress addresses: the outbound load balancer's public IPs or prefixes, the NAT gateway's, or
the hub firewall's under userDefinedRouting. An outbound prefix counts only when the whole prefix is
inside the ranges, since AKS may use any address of it. The thing to fix is the cluster's
`apiServerAccessProfile.authorizedIpRanges`, so the cluster itself is the finding's subject.

Partial input is never clear: an egress source that could not be read leaves the cause unknown unless
another address is already known to be missing (then detected, with the unread source in `unchecked`).
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterable, Sequence

from shared.causes.base import Cause
from shared.model import CauseId, CauseResult, Evidence, Status
from shared.snapshot import ClusterSnapshot, EgressAddress, Unavailable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _not_applicable(snapshot: ClusterSnapshot) -> str | None:
    if snapshot.private:
        return "Private cluster: agents reach the API server over Private Link; authorized IP ranges do not apply."
    if snapshot.api_server_vnet_integration:
        return ("API Server VNet Integration: nodes reach the API server on its internal load balancer IP in the "
                "VNet, so authorized IP ranges never filter their traffic.")
    if not snapshot.authorized_ip_ranges:
        return "No API server authorized IP ranges are set: the API server accepts the cluster's egress IPs."
    return None


def network_of(text: str) -> Network | None:
    """An address or CIDR as a network (a bare IP is a /32 or /128); None when it is not one."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def uncovered(address: Network, ranges: Sequence[Network]) -> list[Network]:
    """The parts of `address` that no range contains (empty: fully inside the union of the ranges)."""
    remaining: list[Network] = [address]
    for allowed in ranges:
        left: list[Network] = []
        for part in remaining:
            if part.version != allowed.version:
                left.append(part)
            elif part.subnet_of(allowed):  # type: ignore[arg-type]
                continue
            elif allowed.subnet_of(part):  # type: ignore[arg-type]
                left.extend(part.address_exclude(allowed))  # type: ignore[arg-type]
            else:
                left.append(part)
        remaining = left
        if not remaining:
            break
    v4 = [n for n in remaining if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in remaining if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def _evaluate(snapshot: ClusterSnapshot) -> CauseResult:
    egress = snapshot.egress_ips
    if egress is None and isinstance(snapshot.nodes, Unavailable):
        return CAUSE.unknown(f"the node subnets (where a NAT gateway would take over egress) could not be read: "
                             f"{snapshot.nodes.reason}")
    if egress is None:
        return CAUSE.unknown("the cluster's egress IPs were not collected in this run")
    if isinstance(egress, Unavailable):
        return CAUSE.unknown(egress.reason)
    ranges = [n for r in snapshot.authorized_ip_ranges if (n := network_of(r)) is not None]
    unparsed = [r for r in snapshot.authorized_ip_ranges if network_of(r) is None]
    missing: list[tuple[EgressAddress, list[Network]]] = []
    inside: list[EgressAddress] = []
    errors = dict(egress.errors)
    for item in egress.addresses:
        address = network_of(item.address)
        if address is None:
            errors[item.source] = f"{item.source} reported {item.address!r}, which is not an IP address or prefix"
            continue
        outside = uncovered(address, ranges)
        (missing.append((item, outside)) if outside else inside.append(item))
    if missing and unparsed:
        return CAUSE.unknown(f"authorized IP range(s) {', '.join(unparsed)} could not be parsed, so whether they "
                             f"cover {', '.join(m.address for m, _ in missing)} is unknown")
    if missing:
        return _detected(snapshot, missing, inside, errors)
    if errors:
        return CAUSE.unknown("egress IP(s) could not be read: " + "; ".join(dict.fromkeys(errors.values())),
                             evidence=tuple(Evidence(k, v) for k, v in errors.items()), unchecked=errors)
    if not inside:
        return CAUSE.unknown("no egress IP was found for the cluster, so the authorized ranges cannot be judged")
    return CAUSE.result(
        Status.CLEAR,
        f"All {len(inside)} egress address(es) are inside the API server's {len(ranges)} authorized IP range(s).",
        evidence=tuple(Evidence(i.source, f"egress {_describe(i)} is inside the authorized IP ranges")
                       for i in inside),
    )


def _detected(snapshot: ClusterSnapshot, missing: Sequence[tuple[EgressAddress, list[Network]]],
              inside: Sequence[EgressAddress], errors: dict[str, str]) -> CauseResult:
    names = [m.address for m, _ in missing]
    evidence = [Evidence(item.source, f"egress {_describe(item)} is not inside the authorized IP ranges"
                         + (f" ({', '.join(str(p) for p in parts)} outside)" if "/" in item.address else ""))
                for item, parts in missing]
    evidence.append(Evidence(snapshot.id, "apiServerAccessProfile.authorizedIpRanges: "
                                          + ", ".join(snapshot.authorized_ip_ranges)))
    if any("/loadbalancers/" in m.via.lower() or "load balancer" in m.via.lower() for m, _ in missing):
        evidence.append(Evidence(snapshot.id, "Microsoft documents that AKS also allows the Standard load balancer's "
                                              "outbound public IPs (and the IPs/prefixes given with "
                                              "--load-balancer-outbound-ips/-prefixes) besides the listed ranges; "
                                              "where that applies, these addresses get through anyway. Listing them "
                                              "explicitly (the command below) is safe either way"))
    evidence.extend(Evidence(i.source, f"egress {_describe(i)} is inside the authorized IP ranges") for i in inside)
    evidence.extend(Evidence(k, f"could not be read: {v}") for k, v in errors.items())
    return CAUSE.result(
        Status.DETECTED,
        f"The API server's authorized IP ranges exclude the cluster's egress address(es) {', '.join(names)}: "
        "agents cannot reach the API server from them.",
        evidence=tuple(evidence),
        remediation=(update_command(snapshot, [m for m, _ in missing]),),
        subjects=(snapshot.id,),
        affected={snapshot.id: tuple(names)},
        unchecked=errors,
    )


def _describe(item: EgressAddress) -> str:
    kind = "prefix" if "/" in item.address else "IP"
    via = item.via.rsplit("/", 1)[-1] if item.via.startswith("/") else item.via
    return f"{kind} {item.address} (from {item.source.rsplit('/', 1)[-1]}, used by {via})"


def update_command(snapshot: ClusterSnapshot, missing: Iterable[EgressAddress]) -> str:
    """`az aks update` with the current ranges plus the missing egress addresses (IPs as /32)."""
    ranges = list(dict.fromkeys([*snapshot.authorized_ip_ranges,
                                 *(m.address if "/" in m.address else f"{m.address}/32" for m in missing)]))
    return (f"az aks update -g {shlex.quote(snapshot.resource_group)} -n {shlex.quote(snapshot.name)} "
            f"--api-server-authorized-ip-ranges {shlex.quote(','.join(ranges))}")


CAUSE = Cause(
    id=CauseId.AUTHORIZED_IP_RANGES,
    title="API server authorized IP ranges exclude the cluster's egress IPs",
    description=(
        "apiServerAccessProfile.authorizedIpRanges is set and the cluster's egress addresses (load balancer "
        "outbound IPs or prefixes, NAT gateway IPs or prefixes, the firewall's public IPs under "
        "userDefinedRouting) are not all inside it, so the tunnel agents cannot reach the API server."
    ),
    not_applicable=_not_applicable,
    evaluate=_evaluate,
)
