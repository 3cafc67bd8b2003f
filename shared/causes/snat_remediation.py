"""SNAT fixes that keep the cluster's outbound IP kind.

AKS has three mutually exclusive ways to give the outbound load balancer its public IPs: a managed count,
the user's own public IPs, or the user's public IP prefixes. Passing the flag of another kind to
`az aks update` switches kinds, and the cluster's egress IPs change under every allow-list that trusts
them. So each fix uses the flag of the kind in use, keeps every existing IP or prefix, and adds to it.
NAT gateways get more IPs (or a prefix) on the gateway itself; a managed NAT gateway through AKS.
"""

from __future__ import annotations

import math

from shared.azure.ids import last_name, segment
from shared.snapshot import ClusterSnapshot, LoadBalancerProfile, SnatMetrics

NAT_PORTS_PER_IP = 64_512
NAT_MAX_IPS = 16
MAX_MANAGED_LB_IPS = 100  # az aks update accepts 1-100 managed outbound IPs
MAX_PREFIX_ADDRESSES = 16  # a public IP prefix is /28 at most (16 addresses) unless a quota raise allows more


def load_balancer_fix(snapshot: ClusterSnapshot, profile: LoadBalancerProfile | None, *, ports: int,
                      current_ips: int | None, wanted_ips: int) -> tuple[str, ...]:
    """Commands that set `ports` per node and bring the outbound IPs to `wanted_ips`, in the kind in use."""
    aks = f"az aks update --resource-group {snapshot.resource_group} --name {snapshot.name}"
    kind = profile.kind if profile else "managed"
    if kind == "managed":
        if wanted_ips > MAX_MANAGED_LB_IPS:
            return (f"{wanted_ips} outbound IPs would be needed for {ports} ports per node, above AKS's limit of "
                    f"{MAX_MANAGED_LB_IPS} managed outbound IPs: lower the ports per node, spread the workloads, or "
                    "plan a NAT gateway (its egress IPs differ: update allow-lists first).",)
        return (f"{aks} --load-balancer-managed-outbound-ip-count {wanted_ips} "
                f"--load-balancer-outbound-ports {ports}",)
    if current_ips is None:
        return (f"The outbound {'IPs' if kind == 'ips' else 'IP prefixes'} could not all be read, so the IPs "
                f"needed for {ports} ports per node cannot be computed: read them, add public "
                f"{'IPs' if kind == 'ips' else 'IP prefixes'} until 64,000 x IPs >= {ports} x peak nodes, then "
                f"{aks} --load-balancer-outbound-ports {ports}",)
    assert profile is not None
    extra = max(0, wanted_ips - current_ips)
    if kind == "ips":
        if extra == 0:
            return (f"{aks} --load-balancer-outbound-ports {ports}",)
        group = _group_of(profile.outbound_ip_ids, snapshot.node_resource_group)
        sub = _subscription_of(profile.outbound_ip_ids, snapshot.subscription_id)
        names = [f"{snapshot.name}-outbound-ip-{current_ips + i + 1}" for i in range(extra)]
        create = [f"az network public-ip create --resource-group {group} --name {name} --location "
                  f"{snapshot.location} --sku Standard --allocation-method Static --version IPv4" for name in names]
        ids = [*profile.outbound_ip_ids, *(_ip_id(sub, group, "publicIPAddresses", n) for n in names)]
        return (*create, f"{aks} --load-balancer-outbound-ips {','.join(ids)} --load-balancer-outbound-ports {ports}")
    if extra == 0:
        return (f"{aks} --load-balancer-outbound-ports {ports}",)
    group = _group_of(profile.outbound_ip_prefix_ids, snapshot.node_resource_group)
    sub = _subscription_of(profile.outbound_ip_prefix_ids, snapshot.subscription_id)
    lengths = prefix_lengths_for(extra)
    names = [f"{snapshot.name}-outbound-prefix-{len(profile.outbound_ip_prefix_ids) + i + 1}"
             for i in range(len(lengths))]
    create = [f"az network public-ip prefix create --resource-group {group} --name {name} --location "
              f"{snapshot.location} --length {length} --version IPv4"
              for name, length in zip(names, lengths, strict=True)]
    ids = [*profile.outbound_ip_prefix_ids, *(_ip_id(sub, group, "publicIPPrefixes", n) for n in names)]
    return (*create, f"{aks} --load-balancer-outbound-ip-prefixes {','.join(ids)} "
                     f"--load-balancer-outbound-ports {ports}")


def prefix_lengths_for(addresses: int) -> list[int]:
    """IPv4 prefix lengths whose sizes add up to at least `addresses`, largest first, /28 at most each."""
    lengths: list[int] = []
    left = addresses
    while left > 0:
        size = min(MAX_PREFIX_ADDRESSES, 1 << max(0, math.ceil(math.log2(left))))
        size = max(size, 2)  # /31 is the smallest public IP prefix
        lengths.append(32 - int(math.log2(size)))
        left -= size
    return lengths


def nat_gateway_fix(snapshot: ClusterSnapshot, gateway: SnatMetrics) -> tuple[str, ...]:
    """One more public IP (64,512 ports) on the gateway, the way its IPs are managed."""
    current = gateway.outbound_ip_count
    if snapshot.outbound_type == "managedNATGateway":
        count = len(gateway.public_ip_ids) or current
        if count is None:
            return ("Read the managed NAT gateway's outbound IP count, then "
                    f"az aks update --resource-group {snapshot.resource_group} --name {snapshot.name} "
                    "--nat-gateway-managed-outbound-ip-count <current + 1>",)
        wanted = min(NAT_MAX_IPS, count + 1)
        return (f"az aks update --resource-group {snapshot.resource_group} --name {snapshot.name} "
                f"--nat-gateway-managed-outbound-ip-count {wanted}",)
    group = segment(gateway.source_id, "resourceGroups") or snapshot.node_resource_group
    sub = segment(gateway.source_id, "subscriptions") or snapshot.subscription_id
    name = last_name(gateway.source_id)
    if current is not None and current >= NAT_MAX_IPS:
        return (f"NAT gateway {name} already has {current} public IPs (the maximum, {NAT_MAX_IPS}): spread the "
                "node pools over more subnets, each with its own NAT gateway, or reuse connections.",)
    if gateway.public_ip_prefix_ids and not gateway.public_ip_ids:
        new = f"{name}-prefix-{len(gateway.public_ip_prefix_ids) + 1}"
        ids = [*gateway.public_ip_prefix_ids, _ip_id(sub, group, "publicIPPrefixes", new)]
        return (f"az network public-ip prefix create --resource-group {group} --name {new} --location "
                f"{snapshot.location} --length 31 --version IPv4",
                f"az network nat gateway update --resource-group {group} --name {name} "
                f"--public-ip-prefixes {' '.join(ids)}")
    new = f"{name}-pip-{len(gateway.public_ip_ids) + 1}"
    ids = [*gateway.public_ip_ids, _ip_id(sub, group, "publicIPAddresses", new)]
    return (f"az network public-ip create --resource-group {group} --name {new} --location {snapshot.location} "
            "--sku Standard --allocation-method Static --version IPv4",
            f"az network nat gateway update --resource-group {group} --name {name} "
            f"--public-ip-addresses {' '.join(ids)}")


def nat_arithmetic(gateway: SnatMetrics) -> str:
    if gateway.outbound_ip_count is None:
        return f"public IPs behind the gateway: unknown ({gateway.outbound_ips_error or 'not read'})"
    ips = gateway.outbound_ip_count
    return (f"capacity = {NAT_PORTS_PER_IP:,} ports x {ips} IP(s) = {NAT_PORTS_PER_IP * ips:,} SNAT ports; "
            f"one more IP adds {NAT_PORTS_PER_IP:,}")


def _group_of(resource_ids: tuple[str, ...], default: str) -> str:
    return next((g for i in resource_ids if (g := segment(i, "resourceGroups"))), default)


def _subscription_of(resource_ids: tuple[str, ...], default: str) -> str:
    return next((s for i in resource_ids if (s := segment(i, "subscriptions"))), default)


def _ip_id(subscription: str, group: str, kind: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network/{kind}/{name}"
