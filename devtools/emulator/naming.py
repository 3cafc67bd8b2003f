"""AKS naming conventions and ARM id builders, so every emulated resource is named the way AKS names it.

The monitor recognises nodes by names such as `aks-nodepool1-12345678-vmss000000` and finds resources
through ids it reads from other resources, so these must stay consistent across the whole emulator.
"""

from __future__ import annotations

import hashlib

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def cluster_hash(cluster_id: str) -> str:
    """The 8-digit suffix AKS puts in VMSS/NSG/VNet names; stable per cluster so reruns match."""
    digest = hashlib.sha256(cluster_id.lower().encode()).hexdigest()
    return str(int(digest[:12], 16) % 100_000_000).zfill(8)


def node_resource_group(resource_group: str, cluster: str, location: str) -> str:
    return f"MC_{resource_group}_{cluster}_{location}"


def vmss_name(pool: str, hash8: str) -> str:
    return f"aks-{pool}-{hash8}-vmss"


def computer_name(pool: str, hash8: str, instance_id: int) -> str:
    """Node (host) name: VMSS computer-name prefix plus the instance id in 6 base-36 digits."""
    digits = ""
    value = instance_id
    while True:
        value, rest = divmod(value, 36)
        digits = _BASE36[rest] + digits
        if value == 0:
            break
    return f"{vmss_name(pool, hash8)}{digits.zfill(6)}"


def vm_name(pool: str, hash8: str, instance_id: int) -> str:
    """Scale-set VM resource name (`<vmss>_<instanceId>`), which is what Compute error messages quote."""
    return f"{vmss_name(pool, hash8)}_{instance_id}"


def rg_id(subscription_id: str, resource_group: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"


def resource_id(subscription_id: str, resource_group: str, provider_type: str, name: str) -> str:
    """`provider_type` is e.g. `Microsoft.Network/networkSecurityGroups`."""
    return f"{rg_id(subscription_id, resource_group)}/providers/{provider_type}/{name}"


def cluster_id(subscription_id: str, resource_group: str, name: str) -> str:
    """AKS ids use lower-case `resourcegroups`, exactly as the official examples show."""
    return (f"/subscriptions/{subscription_id}/resourcegroups/{resource_group}"
            f"/providers/Microsoft.ContainerService/managedClusters/{name}")


def subnet_id(subscription_id: str, resource_group: str, vnet: str, subnet: str) -> str:
    return resource_id(subscription_id, resource_group, "Microsoft.Network/virtualNetworks", vnet) + \
        f"/subnets/{subnet}"


def same_id(left: str, right: str) -> bool:
    """ARM ids compare case-insensitively (`resourcegroups` vs `resourceGroups` are the same thing)."""
    return left.rstrip("/").lower() == right.rstrip("/").lower()
