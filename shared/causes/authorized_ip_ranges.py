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

from shared.azure.egress_ips import default_route
from shared.azure.ids import last_name
from shared.causes.base import Cause
from shared.model import CauseId, CauseResult, Evidence, Status
from shared.snapshot import ClusterSnapshot, EgressAddress, EgressIps, Unavailable

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
    errors = {**egress.errors, **unseen_egress(snapshot, egress)}
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


def unseen_egress(snapshot: ClusterSnapshot, egress: EgressIps) -> dict[str, str]:
    """Egress paths of the node subnets that the collected addresses do not cover, by resource -> why.

    A second guard over collection, which picks the addresses from the outbound type and what it could
    read: a node VNet it could not read hides a NAT gateway (which takes over egress) or a route table, and
    a default route to a firewall or gateway overrides the outbound type whatever it says. So every node
    subnet is checked here: it must have been read, and a default route (0.0.0.0/0) that leaves through an
    appliance must lead to a firewall whose public IPs were collected; one to a VPN/ExpressRoute gateway
    leaves the egress addresses beyond it unknown. Paths collection already reported unread are not repeated.
    """
    if isinstance(snapshot.nodes, Unavailable):
        return {snapshot.id: f"the nodes could not be read: {snapshot.nodes.reason}"}
    seen = {a.source.lower() for a in egress.addresses} | {k.lower() for k in egress.errors}

    def reported(resource: str) -> bool:
        return any(k.lower().startswith(resource.lower()) for k in egress.errors)

    managed_nat = snapshot.outbound_type.lower() == "managednatgateway"
    out: dict[str, str] = {}
    for subnet_id in sorted({n.subnet_id for n in snapshot.nodes if n.subnet_id}, key=str.lower):
        if reported(subnet_id):
            continue
        subnet = snapshot.subnets.get(subnet_id.lower()) or snapshot.subnets.get(subnet_id)
        if subnet is None:
            if not managed_nat:  # AKS's own NAT gateway is named by the cluster; any other needs the subnet
                out[subnet_id] = (f"node subnet {last_name(subnet_id)} could not be read, so a NAT gateway or "
                                  "route table on it (which would decide the egress) is unknown")
            continue
        if not subnet.route_table_id:
            continue
        table_key = subnet.route_table_id.lower()
        if reported(subnet.route_table_id):
            continue
        if table_key in snapshot.unreadable_route_tables:
            out[subnet.route_table_id] = (f"route table {last_name(subnet.route_table_id)} of node subnet "
                                          f"{last_name(subnet_id)} could not be read: "
                                          f"{snapshot.unreadable_route_tables[table_key]}")
            continue
        table = snapshot.route_tables.get(table_key) or snapshot.route_tables.get(subnet.route_table_id)
        if table is None:
            out[subnet.route_table_id] = (f"route table {last_name(subnet.route_table_id)} of node subnet "
                                          f"{last_name(subnet_id)} was not collected")
            continue
        default = default_route(table)
        hop = default.next_hop_type.lower() if default is not None else "internet"
        if hop in ("internet", "none"):  # the outbound type decides, or nothing leaves at all
            continue
        assert default is not None
        if hop != "virtualappliance":
            out[table.id] = (f"node subnet {last_name(subnet_id)} sends 0.0.0.0/0 to {default.next_hop_type}: the "
                             "addresses its traffic leaves from beyond it are unknown")
            continue
        appliance = snapshot.appliances.get(default.next_hop_ip or "")
        if appliance is None:
            out[table.id] = (f"node subnet {last_name(subnet_id)} sends 0.0.0.0/0 to the virtual appliance "
                             f"{default.next_hop_ip}, which was not read")
        elif isinstance(appliance, Unavailable):
            out[table.id] = appliance.reason
        elif not appliance.public_ip_ids:
            out[appliance.id] = f"Azure Firewall {last_name(appliance.id)} lists no public IP configuration"
        elif unread := [i for i in appliance.public_ip_ids if i.lower() not in seen]:
            out[appliance.id] = (f"node subnet {last_name(subnet_id)} leaves through Azure Firewall "
                                 f"{last_name(appliance.id)}, whose public IP(s) "
                                 f"{', '.join(last_name(i) for i in unread)} were not collected as egress")
    return out


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
