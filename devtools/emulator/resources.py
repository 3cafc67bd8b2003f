"""ARM JSON builders: one function per resource type, shaped like the official REST examples.

The field names, nesting and casing follow tests/fixtures/azure-rest-api-specs (for instance
`resourcegroups` in AKS ids, `Microsoft.ContainerService/ManagedClusters` as the AKS type, rules under
`properties`). Real responses carry more fields than the examples; we add the ones AKS really sets and
the monitor could reasonably read (instanceId, osProfile.computerName, vnetSubnetID...).
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from devtools.emulator import naming
from devtools.emulator.scenario import (
    ActivityEventSpec,
    ClusterSpec,
    FirewallPolicySpec,
    FirewallSpec,
    Fleet,
    IpGroupSpec,
    JsonDict,
    LoadBalancerSpec,
    NatGatewaySpec,
    NodeSpec,
    NsgSpec,
    PoolSpec,
    PublicIpPrefixSpec,
    PublicIpSpec,
    RouteTableSpec,
    SubnetSpec,
    SubscriptionSpec,
    VnetSpec,
)

Json = dict[str, Any]

_DEFAULT_RULES: tuple[tuple[str, str, str, str, str, int, str], ...] = (
    ("AllowVnetInBound", "Allow inbound traffic from all VMs in VNET", "VirtualNetwork", "VirtualNetwork",
     "Allow", 65000, "Inbound"),
    ("AllowAzureLoadBalancerInBound", "Allow inbound traffic from azure load balancer", "AzureLoadBalancer", "*",
     "Allow", 65001, "Inbound"),
    ("DenyAllInBound", "Deny all inbound traffic", "*", "*", "Deny", 65500, "Inbound"),
    ("AllowVnetOutBound", "Allow outbound traffic from all VMs to all VMs in VNET", "VirtualNetwork",
     "VirtualNetwork", "Allow", 65000, "Outbound"),
    ("AllowInternetOutBound", "Allow outbound traffic from all VMs to Internet", "*", "Internet", "Allow", 65001,
     "Outbound"),
    ("DenyAllOutBound", "Deny all outbound traffic", "*", "*", "Deny", 65500, "Outbound"),
)


def stable_guid(*parts: str) -> str:
    """Deterministic GUIDs (vmId, etags, event ids) so two runs of a scenario answer identically."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts).lower()))


def etag(resource: str) -> str:
    return f'W/"{stable_guid("etag", resource)}"'


def ref(resource: str) -> Json:
    return {"id": resource}


# --- Resources / Subscriptions -------------------------------------------------------------------------


def subscription_json(sub: SubscriptionSpec) -> Json:
    return {
        "id": f"/subscriptions/{sub.id}", "subscriptionId": sub.id, "tenantId": sub.tenant_id,
        "displayName": sub.display_name, "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                 "spendingLimit": "Off"},
        "authorizationSource": "RoleBased", "managedByTenants": [], "tags": {},
    }


# --- ContainerService ----------------------------------------------------------------------------------


def cluster_json(cluster: ClusterSpec) -> Json:
    network: Json = {
        "networkPlugin": cluster.network_plugin, "loadBalancerSku": "standard",
        "outboundType": cluster.outbound_type, "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.0.0.10",
        "serviceCidrs": ["10.0.0.0/16"], "ipFamilies": ["IPv4"],
    }
    if cluster.load_balancer is not None:
        lb = cluster.load_balancer
        network["loadBalancerProfile"] = {
            "managedOutboundIPs": {"count": cluster.managed_outbound_ip_count},
            "effectiveOutboundIPs": [ref(_pip_of_frontend(cluster, f)) for f in lb.frontend_ip_ids],
            "allocatedOutboundPorts": cluster.allocated_outbound_ports,
            "idleTimeoutInMinutes": cluster.idle_timeout_minutes,
            "backendPoolType": "NodeIPConfiguration",
        }
        if cluster.outbound_ip_ids or cluster.outbound_ip_prefix_ids:  # the user's own IPs replace managed ones
            profile = network["loadBalancerProfile"]
            del profile["managedOutboundIPs"]
            profile["effectiveOutboundIPs"] = [ref(i) for i in (*cluster.outbound_ip_ids,
                                                                 *cluster.outbound_ip_prefix_ids)]
            if cluster.outbound_ip_ids:
                profile["outboundIPs"] = {"publicIPs": [ref(i) for i in cluster.outbound_ip_ids]}
            if cluster.outbound_ip_prefix_ids:
                profile["outboundIPPrefixes"] = {"publicIPPrefixes": [ref(i) for i in cluster.outbound_ip_prefix_ids]}
    if cluster.network_plugin_mode:
        network["networkPluginMode"] = cluster.network_plugin_mode
    if cluster.outbound_type == "managedNATGateway" and cluster.nat_gateway_id:
        network["natGatewayProfile"] = {"managedOutboundIPProfile": {"count": 1}, "idleTimeoutInMinutes": 4,
                                        "effectiveOutboundIPs": []}
    props: Json = {
        "provisioningState": "Succeeded", "powerState": {"code": "Running"},
        "kubernetesVersion": cluster.kubernetes_version, "currentKubernetesVersion": cluster.kubernetes_version,
        "dnsPrefix": cluster.dns_prefix, "fqdn": cluster.api_server.fqdn,
        "azurePortalFQDN": cluster.api_server.fqdn.replace(".hcp.", ".portal.hcp."),
        "agentPoolProfiles": [_pool_profile(cluster, p) for p in cluster.pools],
        "linuxProfile": {"adminUsername": "azureuser", "ssh": {"publicKeys": [{"keyData": "ssh-rsa AAAA..."}]}},
        "servicePrincipalProfile": {"clientId": "msi"},
        "nodeResourceGroup": cluster.node_resource_group, "enableRBAC": True,
        "networkProfile": network,
        "apiServerAccessProfile": {"enablePrivateCluster": cluster.private},
    }
    if cluster.kube.get("aad", True):  # Entra ID integration (the AKS-managed kind)
        props["aadProfile"] = {"managed": True, "enableAzureRBAC": False, "tenantID": cluster.kube.get(
            "tenantId", stable_guid("tenant", cluster.subscription_id)), "adminGroupObjectIDs": []}
    if cluster.authorized_ip_ranges:
        props["apiServerAccessProfile"]["authorizedIPRanges"] = list(cluster.authorized_ip_ranges)
    if cluster.api_server_vnet_integration:
        props["apiServerAccessProfile"]["enableVnetIntegration"] = True
        if cluster.api_server_subnet_id:
            props["apiServerAccessProfile"]["subnetId"] = cluster.api_server_subnet_id
    if cluster.private:
        props["privateFQDN"] = cluster.api_server.private_fqdn
        props["apiServerAccessProfile"]["privateDNSZone"] = "system"
        props["apiServerAccessProfile"]["enablePrivateClusterPublicFQDN"] = True
    return {
        "id": cluster.id, "location": cluster.location, "name": cluster.name, "tags": {},
        "type": "Microsoft.ContainerService/ManagedClusters", "eTag": stable_guid("etag", cluster.id)[:8],
        "identity": {"type": "SystemAssigned", "principalId": stable_guid("principal", cluster.id),
                     "tenantId": stable_guid("tenant", cluster.subscription_id)},
        "sku": {"name": "Base", "tier": "Free"}, "properties": props,
    }


def _pool_profile(cluster: ClusterSpec, pool: PoolSpec) -> Json:
    profile: Json = {
        "name": pool.name, "count": pool.count, "vmSize": pool.vm_size, "maxPods": 30, "osType": "Linux",
        "osSKU": "Ubuntu", "type": pool.type, "mode": pool.mode, "vnetSubnetID": pool.subnet_id,
        "provisioningState": "Succeeded", "powerState": {"code": "Running"},
        "orchestratorVersion": cluster.kubernetes_version, "currentOrchestratorVersion": cluster.kubernetes_version,
        "enableAutoScaling": pool.autoscaling, "nodeImageVersion": "AKSUbuntu-2204gen2containerd-202411.12.0",
        "upgradeSettings": {"maxSurge": pool.max_surge},
    }
    if pool.autoscaling:
        profile["minCount"] = pool.min_count if pool.min_count is not None else 1
        profile["maxCount"] = pool.max_count
    return profile


def egress_resource_ids(cluster: ClusterSpec, fleet: Fleet) -> tuple[str, ...]:
    """Public IP / prefix ids the cluster's outbound traffic leaves from, as Azure would route it, node subnet
    by node subnet: a NAT gateway on a subnet wins over the load balancer for that subnet only;
    userDefinedRouting leaves through the firewall its subnet's default route points at."""
    node_subnets = {n.subnet_id.lower() for n in cluster.nodes}
    found: list[str] = []
    for subnet in cluster.vnet.subnets:
        if subnet.id.lower() in node_subnets:
            found.extend(i for i in _subnet_egress(cluster, fleet, subnet) if i not in found)
    return tuple(found)


def _subnet_egress(cluster: ClusterSpec, fleet: Fleet, subnet: SubnetSpec) -> tuple[str, ...]:
    nat = next((n for n in fleet.nat_gateways if n.id.lower() == (subnet.nat_gateway_id or "").lower()), None)
    if nat is not None:
        return tuple(nat.public_ip_ids)
    if cluster.outbound_type == "loadBalancer" and cluster.load_balancer is not None:
        own = (*cluster.outbound_ip_ids, *cluster.outbound_ip_prefix_ids)
        return own or tuple(_pip_of_frontend(cluster, f) for f in cluster.load_balancer.frontend_ip_ids)
    if cluster.outbound_type == "userDefinedRouting":
        table = next((t for t in fleet.route_tables if t.id.lower() == (subnet.route_table_id or "").lower()), None)
        routes = [r.get("properties", r) for r in (table.routes if table is not None else ())]
        hop = next((r.get("nextHopIpAddress") for r in routes if r.get("addressPrefix") == "0.0.0.0/0"), None)
        fw = next((f for f in fleet.firewalls if f.private_ip == hop), None)
        if fw is None and cluster.firewall_id:  # no routed firewall found: the cluster's declared one
            fw = next((f for f in fleet.firewalls if f.id.lower() == cluster.firewall_id.lower()), None)
        return (firewall_pip_id(fw),) if fw is not None else ()
    return ()


def firewall_pip_id(fw: FirewallSpec) -> str:
    return f"{fw.id.rsplit('/', 2)[0]}/publicIPAddresses/{fw.name}-pip"


def public_ip_json(pip: PublicIpSpec) -> Json:
    return {"name": pip.name, "id": pip.id, "etag": etag(pip.id), "location": pip.location,
            "type": "Microsoft.Network/publicIPAddresses", "sku": {"name": "Standard", "tier": "Regional"},
            "properties": {"provisioningState": "Succeeded", "resourceGuid": stable_guid("pip", pip.id),
                           "ipAddress": pip.ip_address, "publicIPAddressVersion": "IPv4",
                           "publicIPAllocationMethod": "Static", "idleTimeoutInMinutes": 4, "ipTags": []}}


def public_ip_prefix_json(prefix: PublicIpPrefixSpec) -> Json:
    length = int(prefix.ip_prefix.rsplit("/", 1)[-1])
    return {"name": prefix.name, "id": prefix.id, "etag": etag(prefix.id), "location": prefix.location,
            "type": "Microsoft.Network/publicIPPrefixes", "sku": {"name": "Standard", "tier": "Regional"},
            "properties": {"provisioningState": "Succeeded", "resourceGuid": stable_guid("prefix", prefix.id),
                           "prefixLength": length, "publicIPAddressVersion": "IPv4", "ipPrefix": prefix.ip_prefix,
                           "ipTags": [], "publicIPAddresses": []}}


def _pip_of_frontend(cluster: ClusterSpec, frontend_id: str) -> str:
    name = frontend_id.rsplit("/", 1)[-1]
    return naming.resource_id(cluster.subscription_id, cluster.node_resource_group,
                              "Microsoft.Network/publicIPAddresses", name)


# --- Compute -------------------------------------------------------------------------------------------


def vmss_id(cluster: ClusterSpec, pool: PoolSpec) -> str:
    return naming.resource_id(cluster.subscription_id, cluster.node_resource_group,
                              "Microsoft.Compute/virtualMachineScaleSets", pool.vmss_name)


def vm_id(cluster: ClusterSpec, pool: PoolSpec, node: NodeSpec) -> str:
    return f"{vmss_id(cluster, pool)}/virtualMachines/{node.instance_id}"


def _nic_config(cluster: ClusterSpec, pool: PoolSpec) -> Json:
    ip_props: Json = {"subnet": ref(pool.subnet_id), "primary": True, "privateIPAddressVersion": "IPv4"}
    if cluster.load_balancer is not None:
        ip_props["loadBalancerBackendAddressPools"] = [ref(cluster.load_balancer.backend_pool_id)]
    if pool.asg_ids:
        ip_props["applicationSecurityGroups"] = [ref(a) for a in pool.asg_ids]
    props: Json = {"primary": True, "enableAcceleratedNetworking": True, "enableIPForwarding": True,
                   "dnsSettings": {"dnsServers": []},
                   "ipConfigurations": [{"name": "ipconfig1", "properties": ip_props}]}
    if cluster.nic_nsg_id:
        props["networkSecurityGroup"] = ref(cluster.nic_nsg_id)
    return {"name": pool.vmss_name, "properties": props}


def vmss_json(cluster: ClusterSpec, pool: PoolSpec) -> Json:
    resource = vmss_id(cluster, pool)
    return {
        "id": resource, "name": pool.vmss_name, "type": "Microsoft.Compute/virtualMachineScaleSets",
        "location": cluster.location,
        "tags": {"aks-managed-poolName": pool.name,
                 "aks-managed-orchestrator": f"Kubernetes:{cluster.kubernetes_version}",
                 "aks-managed-kubeletIdentityClientID": stable_guid("kubelet", cluster.id)},
        "sku": {"name": pool.vm_size, "tier": "Standard", "capacity": pool.count},
        "properties": {
            "singlePlacementGroup": False, "orchestrationMode": "Uniform", "upgradePolicy": {"mode": "Manual"},
            "virtualMachineProfile": {
                "osProfile": {"computerNamePrefix": pool.vmss_name, "adminUsername": "azureuser",
                              "linuxConfiguration": {"disablePasswordAuthentication": True,
                                                     "provisionVMAgent": True}},
                "storageProfile": {"osDisk": {"osType": "Linux", "createOption": "FromImage", "caching": "ReadOnly",
                                              "managedDisk": {"storageAccountType": "Premium_LRS"},
                                              "diskSizeGB": 128}},
                "networkProfile": {"networkInterfaceConfigurations": [_nic_config(cluster, pool)]},
            },
            "provisioningState": "Succeeded", "overprovision": False,
            "uniqueId": stable_guid("vmss", resource),
        },
    }


def vmss_vm_json(cluster: ClusterSpec, pool: PoolSpec, node: NodeSpec, *, instance_view: bool) -> Json:
    resource = vm_id(cluster, pool, node)
    props: Json = {
        "latestModelApplied": True, "modelDefinitionApplied": "VirtualMachineScaleSet",
        "vmId": stable_guid("vm", resource),
        "osProfile": {"computerName": node.name, "adminUsername": "azureuser",
                      "linuxConfiguration": {"disablePasswordAuthentication": True, "provisionVMAgent": True},
                      "secrets": [], "allowExtensionOperations": True, "requireGuestProvisionSignal": True},
        "networkProfile": {"networkInterfaces": [ref(f"{resource}/networkInterfaces/{pool.vmss_name}")]},
        "networkProfileConfiguration": {"networkInterfaceConfigurations": [_nic_config(cluster, pool)]},
        "provisioningState": "Succeeded",
    }
    if instance_view:
        props["instanceView"] = instance_view_json(node)
    body: Json = {
        "name": naming.vm_name(pool.name, cluster.hash8, node.instance_id), "id": resource,
        "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines", "location": cluster.location,
        "instanceId": str(node.instance_id), "sku": {"name": pool.vm_size, "tier": "Standard"},
        "tags": {"aks-managed-poolName": pool.name}, "etag": f'"{node.instance_id + 1}"', "properties": props,
    }
    if node.zone:
        body["zones"] = [node.zone]
    return body


_POWER = {"running": "VM running", "deallocated": "VM deallocated", "stopped": "VM stopped",
          "starting": "VM starting", "deallocating": "VM deallocating"}


def instance_view_json(node: NodeSpec) -> Json:
    return {
        "computerName": node.name, "osName": "ubuntu", "osVersion": "22.04",
        "vmAgent": {"vmAgentVersion": "2.12.0.2",
                    "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready",
                                  "message": "Guest Agent is running"}]},
        "statuses": [
            {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"},
            {"code": f"PowerState/{node.power_state}", "level": "Info",
             "displayStatus": _POWER.get(node.power_state, node.power_state)},
        ],
    }


# --- Network -------------------------------------------------------------------------------------------


def vmss_nic_json(cluster: ClusterSpec, pool: PoolSpec, node: NodeSpec) -> Json:
    vm = vm_id(cluster, pool, node)
    nic = f"{vm}/networkInterfaces/{pool.vmss_name}"
    ip_props: Json = {
        "provisioningState": "Succeeded", "privateIPAddress": node.ip, "privateIPAllocationMethod": "Dynamic",
        "subnet": ref(node.subnet_id), "primary": True, "privateIPAddressVersion": "IPv4",
    }
    if cluster.load_balancer is not None:
        ip_props["loadBalancerBackendAddressPools"] = [ref(cluster.load_balancer.backend_pool_id)]
    if pool.asg_ids:
        ip_props["applicationSecurityGroups"] = [ref(a) for a in pool.asg_ids]
    props: Json = {
        "provisioningState": "Succeeded",
        "ipConfigurations": [{"name": "ipconfig1", "id": f"{nic}/ipConfigurations/ipconfig1",
                              "properties": ip_props}],
        "dnsSettings": {"dnsServers": [], "appliedDnsServers": []},
        "macAddress": _mac(node.ip), "enableAcceleratedNetworking": True, "enableIPForwarding": True,
        "primary": True, "virtualMachine": ref(vm),
    }
    if cluster.nic_nsg_id:
        props["networkSecurityGroup"] = ref(cluster.nic_nsg_id)
    return {"name": pool.vmss_name, "id": nic, "etag": etag(nic), "properties": props}


def _mac(ip: str) -> str:
    octets = [int(o) for o in ip.split(".")]
    return "-".join(f"{b:02X}" for b in [0x00, 0x0D, *octets])


def subnet_json(vnet: VnetSpec, subnet: SubnetSpec) -> Json:
    props: Json = {"provisioningState": "Succeeded", "addressPrefix": subnet.prefix,
                   "privateEndpointNetworkPolicies": "Disabled", "privateLinkServiceNetworkPolicies": "Enabled"}
    if subnet.nsg_id:
        props["networkSecurityGroup"] = ref(subnet.nsg_id)
    if subnet.route_table_id:
        props["routeTable"] = ref(subnet.route_table_id)
    if subnet.nat_gateway_id:
        props["natGateway"] = ref(subnet.nat_gateway_id)
    if subnet.delegations:
        props["delegations"] = [{"name": f"delegation-{i}", "id": f"{subnet.id}/delegations/delegation-{i}",
                                 "type": "Microsoft.Network/virtualNetworks/subnets/delegations",
                                 "properties": {"serviceName": service, "provisioningState": "Succeeded",
                                                "actions": ["Microsoft.Network/virtualNetworks/subnets/join/action"]}}
                                for i, service in enumerate(subnet.delegations)]
    return {"id": subnet.id, "name": subnet.name, "etag": etag(subnet.id),
            "type": "Microsoft.Network/virtualNetworks/subnets", "properties": props}


def _remote_vnet_id(vnet: VnetSpec, name: str, prefixes: Sequence[str], firewalls: Sequence[FirewallSpec]) -> str:
    """A peering points at the hub that holds a scenario firewall inside its address space, if any."""
    for fw in firewalls:
        ip = ipaddress.ip_address(fw.private_ip)
        if any(ip in ipaddress.ip_network(p, strict=False) for p in prefixes):
            return fw.subnet_id.split("/subnets/")[0]
    return f"{vnet.id.rsplit('/', 1)[0]}/{name}-remote"


def hub_vnet_json(fw: FirewallSpec) -> Json:
    """The hub VNet of a firewall: its AzureFirewallSubnet references the firewall's ip configuration."""
    vnet_id = fw.subnet_id.split("/subnets/")[0]
    ip_config = f"{fw.id}/azureFirewallIpConfigurations/azureFirewallIpConfiguration"
    network = ipaddress.ip_network(f"{fw.private_ip}/26", strict=False)
    return {
        "id": vnet_id, "name": vnet_id.rsplit("/", 1)[-1], "type": "Microsoft.Network/virtualNetworks",
        "location": fw.location, "etag": etag(vnet_id),
        "properties": {"provisioningState": "Succeeded", "resourceGuid": stable_guid("vnet", vnet_id),
                       "addressSpace": {"addressPrefixes": [str(network.supernet(new_prefix=16))]},
                       "subnets": [{"id": fw.subnet_id, "name": "AzureFirewallSubnet", "etag": etag(fw.subnet_id),
                                    "type": "Microsoft.Network/virtualNetworks/subnets",
                                    "properties": {"provisioningState": "Succeeded", "addressPrefix": str(network),
                                                   "ipConfigurations": [ref(ip_config)]}}],
                       "virtualNetworkPeerings": [], "enableDdosProtection": False},
    }


def vnet_json(vnet: VnetSpec, firewalls: Sequence[FirewallSpec] = ()) -> Json:
    peerings = [{
        "name": name, "id": f"{vnet.id}/virtualNetworkPeerings/{name}", "etag": etag(f"{vnet.id}/{name}"),
        "type": "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
        "properties": {"provisioningState": "Succeeded", "peeringState": "Connected", "peeringSyncLevel": "FullyInSync",
                       "remoteVirtualNetwork": ref(_remote_vnet_id(vnet, name, prefixes, firewalls)),
                       "remoteAddressSpace": {"addressPrefixes": list(prefixes)},
                       "remoteVirtualNetworkAddressSpace": {"addressPrefixes": list(prefixes)},
                       "allowVirtualNetworkAccess": True, "allowForwardedTraffic": True,
                       "allowGatewayTransit": False, "useRemoteGateways": False},
    } for name, prefixes in vnet.peerings]
    return {
        "id": vnet.id, "name": vnet.name, "type": "Microsoft.Network/virtualNetworks", "location": vnet.location,
        "etag": etag(vnet.id),
        "properties": {"provisioningState": "Succeeded", "resourceGuid": stable_guid("vnet", vnet.id),
                       "addressSpace": {"addressPrefixes": list(vnet.address_space)},
                       "subnets": [subnet_json(vnet, s) for s in vnet.subnets],
                       "virtualNetworkPeerings": peerings, "enableDdosProtection": False},
    }


def security_rule_json(nsg_id: str, rule: JsonDict, *, default: bool = False) -> Json:
    """Accepts Azure's rule either flat or with `properties`; fills the defaults Azure would echo back."""
    props = dict(rule.get("properties", {k: v for k, v in rule.items() if k not in {"name", "id"}}))
    for plural, singular in (("sourceAddressPrefixes", "sourceAddressPrefix"),
                             ("destinationAddressPrefixes", "destinationAddressPrefix"),
                             ("sourcePortRanges", "sourcePortRange"),
                             ("destinationPortRanges", "destinationPortRange")):
        if not props.get(plural) and singular not in props and not _uses_asg(props, singular):
            props[singular] = "*"
    props.setdefault("protocol", "*")
    props.setdefault("direction", "Inbound")
    props["provisioningState"] = "Succeeded"
    kind = "defaultSecurityRules" if default else "securityRules"
    return {"name": rule["name"], "id": f"{nsg_id}/{kind}/{rule['name']}", "etag": etag(f"{nsg_id}/{rule['name']}"),
            "type": f"Microsoft.Network/networkSecurityGroups/{kind}", "properties": props}


def _uses_asg(props: Mapping[str, Any], singular: str) -> bool:
    if singular == "sourceAddressPrefix":
        return bool(props.get("sourceApplicationSecurityGroups"))
    if singular == "destinationAddressPrefix":
        return bool(props.get("destinationApplicationSecurityGroups"))
    return False


def nsg_json(nsg: NsgSpec, *, subnet_ids: Sequence[str] = (), nic_ids: Sequence[str] = ()) -> Json:
    defaults = [security_rule_json(nsg.id, {
        "name": name, "description": description, "protocol": "*", "sourcePortRange": "*",
        "destinationPortRange": "*", "sourceAddressPrefix": src, "destinationAddressPrefix": dst,
        "access": access, "priority": priority, "direction": direction}, default=True)
        for name, description, src, dst, access, priority, direction in _DEFAULT_RULES]
    props: Json = {"provisioningState": "Succeeded", "resourceGuid": stable_guid("nsg", nsg.id),
                   "securityRules": [security_rule_json(nsg.id, r) for r in nsg.rules],
                   "defaultSecurityRules": defaults}
    if subnet_ids:
        props["subnets"] = [ref(s) for s in subnet_ids]
    if nic_ids:
        props["networkInterfaces"] = [ref(n) for n in nic_ids]
    return {"name": nsg.name, "id": nsg.id, "etag": etag(nsg.id), "type": "Microsoft.Network/networkSecurityGroups",
            "location": nsg.location, "properties": props}


def route_table_json(table: RouteTableSpec, *, subnet_ids: Sequence[str] = ()) -> Json:
    routes = []
    for route in table.routes:
        props = dict(route.get("properties", {k: v for k, v in route.items() if k not in {"name", "id"}}))
        props["provisioningState"] = "Succeeded"
        routes.append({"name": route["name"], "id": f"{table.id}/routes/{route['name']}",
                       "etag": etag(f"{table.id}/{route['name']}"), "type": "Microsoft.Network/routeTables/routes",
                       "properties": props})
    props_out: Json = {"provisioningState": "Succeeded", "disableBgpRoutePropagation": False, "routes": routes,
                       "resourceGuid": stable_guid("rt", table.id)}
    if subnet_ids:
        props_out["subnets"] = [ref(s) for s in subnet_ids]
    return {"name": table.name, "id": table.id, "etag": etag(table.id), "type": "Microsoft.Network/routeTables",
            "location": table.location, "properties": props_out}


def load_balancer_json(lb: LoadBalancerSpec, cluster: ClusterSpec) -> Json:
    frontends = [{
        "name": f.rsplit("/", 1)[-1], "id": f, "etag": etag(f),
        "type": "Microsoft.Network/loadBalancers/frontendIPConfigurations",
        "properties": {"provisioningState": "Succeeded", "privateIPAllocationMethod": "Dynamic",
                       "publicIPAddress": ref(_pip_of_frontend(cluster, f)),
                       "outboundRules": [ref(f"{lb.id}/outboundRules/aksOutboundRule")]},
    } for f in lb.frontend_ip_ids]
    pools = [{
        "name": pool_id.rsplit("/", 1)[-1], "id": pool_id, "etag": etag(pool_id),
        "type": "Microsoft.Network/loadBalancers/backendAddressPools",
        "properties": {"provisioningState": "Succeeded",
                       "outboundRules": [ref(f"{lb.id}/outboundRules/aksOutboundRule")]},
    } for pool_id in (lb.backend_pool_id, f"{lb.id}/backendAddressPools/kubernetes")]
    outbound = [{
        "name": "aksOutboundRule", "id": f"{lb.id}/outboundRules/aksOutboundRule",
        "etag": etag(f"{lb.id}/aksOutboundRule"), "type": "Microsoft.Network/loadBalancers/outboundRules",
        "properties": {"provisioningState": "Succeeded", "allocatedOutboundPorts": lb.allocated_outbound_ports,
                       "protocol": "All", "enableTcpReset": True, "idleTimeoutInMinutes": lb.idle_timeout_minutes,
                       "backendAddressPool": ref(lb.backend_pool_id),
                       "frontendIPConfigurations": [ref(f) for f in lb.frontend_ip_ids]},
    }]
    return {"name": lb.name, "id": lb.id, "type": "Microsoft.Network/loadBalancers", "etag": etag(lb.id),
            "location": lb.location, "sku": {"name": "Standard", "tier": "Regional"},
            "properties": {"provisioningState": "Succeeded", "resourceGuid": stable_guid("lb", lb.id),
                           "frontendIPConfigurations": frontends, "backendAddressPools": pools,
                           "loadBalancingRules": [], "probes": [], "inboundNatRules": [],
                           "outboundRules": outbound}}


def nat_gateway_json(nat: NatGatewaySpec) -> Json:
    return {"name": nat.name, "sku": {"name": "Standard"}, "id": nat.id, "location": nat.location,
            "etag": etag(nat.id), "type": "Microsoft.Network/natGateways",
            "properties": {"idleTimeoutInMinutes": nat.idle_timeout_minutes, "provisioningState": "Succeeded",
                           "resourceGuid": stable_guid("nat", nat.id),
                           "publicIpAddresses": [ref(p) for p in nat.public_ip_ids],
                           "publicIpPrefixes": [ref(p) for p in nat.public_ip_prefix_ids],
                           "subnets": [ref(s) for s in nat.subnet_ids]}}


def firewall_json(fw: FirewallSpec) -> Json:
    def collections(kind: str, raw: Sequence[JsonDict]) -> list[Json]:
        out = []
        for coll in raw:
            props = dict(coll.get("properties", {k: v for k, v in coll.items() if k not in {"name", "id"}}))
            if isinstance(props.get("action"), str):
                props["action"] = {"type": props["action"]}
            props["provisioningState"] = "Succeeded"
            out.append({"name": coll["name"], "id": f"{fw.id}/{kind}/{coll['name']}", "etag": etag(fw.id),
                        "properties": props})
        return out

    ip_config = f"{fw.id}/ipConfigurations/azureFirewallIpConfiguration"
    return {
        "name": fw.name, "id": fw.id, "type": "Microsoft.Network/azureFirewalls", "etag": etag(fw.id),
        "location": fw.location, "zones": [], "tags": {},
        "properties": {
            "provisioningState": "Succeeded", "sku": {"name": "AZFW_VNet", "tier": "Standard"},
            "threatIntelMode": fw.threat_intel_mode,
            "ipConfigurations": [{"name": "azureFirewallIpConfiguration", "id": ip_config, "etag": etag(ip_config),
                                  "properties": {"provisioningState": "Succeeded", "privateIPAddress": fw.private_ip,
                                                 "subnet": ref(fw.subnet_id),
                                                 "publicIPAddress": ref(firewall_pip_id(fw))}}],
            "applicationRuleCollections": collections("applicationRuleCollections", fw.application_rule_collections),
            "natRuleCollections": [],
            "networkRuleCollections": collections("networkRuleCollections", fw.network_rule_collections),
            "ipGroups": [], "additionalProperties": {},
            # With a policy, ARM returns the classic collections empty and names the policy instead.
            **({"firewallPolicy": ref(fw.firewall_policy_id), "applicationRuleCollections": [],
                "networkRuleCollections": []} if fw.firewall_policy_id else {}),
        },
    }


def firewall_policy_json(policy: FirewallPolicySpec, *, firewall_ids: Sequence[str] = (),
                         child_ids: Sequence[str] = ()) -> Json:
    """Shape of the official FirewallPolicyGet example: rule collection groups are references only."""
    props: Json = {
        "provisioningState": "Succeeded", "threatIntelMode": policy.threat_intel_mode,
        "ruleCollectionGroups": [ref(rule_collection_group_id(policy, g)) for g in policy.rule_collection_groups],
        "firewalls": [ref(f) for f in firewall_ids], "childPolicies": [ref(c) for c in child_ids],
        "dnsSettings": {"servers": [], "enableProxy": policy.dns_proxy},
        "sku": {"tier": policy.sku_tier},
    }
    if policy.base_policy_id:
        props["basePolicy"] = ref(policy.base_policy_id)
    return {"name": policy.name, "id": policy.id, "type": "Microsoft.Network/firewallPolicies",
            "etag": etag(policy.id), "location": policy.location, "properties": props}


def rule_collection_group_id(policy: FirewallPolicySpec, group: JsonDict) -> str:
    return f"{policy.id}/ruleCollectionGroups/{group['name']}"


def rule_collection_group_json(policy: FirewallPolicySpec, group: JsonDict) -> Json:
    """A rule collection group as ARM returns it: discriminators (ruleCollectionType, ruleType) always set."""
    props = dict(group.get("properties", {k: v for k, v in group.items() if k not in {"name", "id"}}))
    collections = []
    for coll in props.get("ruleCollections", ()):
        coll_out = dict(coll)
        if isinstance(coll_out.get("action"), str):
            coll_out["action"] = {"type": coll_out["action"]}
        nat = str(coll_out.get("action", {}).get("type", "")).upper() == "DNAT"
        coll_out.setdefault("ruleCollectionType",
                            "FirewallPolicyNatRuleCollection" if nat else "FirewallPolicyFilterRuleCollection")
        coll_out["rules"] = [_policy_rule(r, nat) for r in coll_out.get("rules", ())]
        collections.append(coll_out)
    gid = rule_collection_group_id(policy, group)
    return {"name": group["name"], "id": gid, "etag": etag(gid),
            "type": "Microsoft.Network/FirewallPolicies/RuleCollectionGroups",
            "properties": {"provisioningState": "Succeeded", "priority": int(props.get("priority", 100)),
                           "ruleCollections": collections}}


def _policy_rule(rule: JsonDict, nat: bool) -> Json:
    out = dict(rule)
    if "ruleType" not in out:
        app = any(k in out for k in ("targetFqdns", "fqdnTags", "webCategories", "targetUrls")) or any(
            isinstance(p, dict) for p in out.get("protocols", ()))
        out["ruleType"] = "NatRule" if nat else ("ApplicationRule" if app else "NetworkRule")
    return out


def ip_group_json(group: IpGroupSpec, *, firewall_policy_ids: Sequence[str] = ()) -> Json:
    return {"name": group.name, "id": group.id, "type": "Microsoft.Network/ipGroups", "location": group.location,
            "etag": etag(group.id),
            "properties": {"provisioningState": "Succeeded", "ipAddresses": list(group.ip_addresses),
                           "firewalls": [], "firewallPolicies": [ref(p) for p in firewall_policy_ids]}}


# --- Insights / AVNM -----------------------------------------------------------------------------------


def event_json(event: ActivityEventSpec, subscription_id: str, tenant_id: str) -> Json:
    parts = event.resource_id.split("/")
    lowered = [p.lower() for p in parts]
    rg = parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered else ""
    provider = parts[lowered.index("providers") + 1] if "providers" in lowered else ""
    resource_type = event.operation.rsplit("/", 1)[0]
    data_id = stable_guid("event", event.resource_id, event.timestamp, event.operation)
    ticks = _ticks(event.timestamp)
    status = {"value": event.status, "localizedValue": event.status}
    return {
        "authorization": {"action": event.operation, "scope": event.resource_id},
        "caller": event.caller, "channels": "Operation",
        "claims": {"aud": "https://management.core.windows.net/", "name": event.caller,
                   "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": event.caller},
        "correlationId": stable_guid("corr", data_id), "description": "", "eventDataId": data_id,
        "eventName": {"value": "EndRequest", "localizedValue": "End request"},
        "category": {"value": "Administrative", "localizedValue": "Administrative"},
        "httpRequest": {"clientRequestId": stable_guid("client", data_id), "clientIpAddress": "203.0.113.10",
                        "method": "DELETE" if event.operation.endswith("/delete") else "PUT"},
        "id": f"{event.resource_id}/events/{data_id}/ticks/{ticks}",
        "level": "Informational", "resourceGroupName": rg,
        "resourceProviderName": {"value": provider, "localizedValue": provider},
        "resourceId": event.resource_id,
        "resourceType": {"value": resource_type, "localizedValue": resource_type},
        "operationId": stable_guid("op", data_id),
        "operationName": {"value": event.operation, "localizedValue": event.operation},
        "properties": {"statusCode": "OK" if event.status == "Succeeded" else "Accepted"},
        "status": status, "subStatus": {"value": "", "localizedValue": ""},
        "eventTimestamp": event.timestamp, "submissionTimestamp": event.timestamp,
        "subscriptionId": subscription_id, "tenantId": tenant_id,
    }


def _ticks(timestamp: str) -> int:
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    epoch = datetime(1, 1, 1, tzinfo=UTC)
    return int((moment - epoch).total_seconds() * 10_000_000)


def admin_rule_json(rule: JsonDict, cluster: ClusterSpec) -> Json:
    manager = rule.get("networkManagerId") or naming.resource_id(
        cluster.subscription_id, "rg-avnm", "Microsoft.Network/networkManagers", "avnm-central")
    config = rule.get("configuration", "security-admin")
    collection = rule.get("ruleCollection", "baseline")
    group = f"{manager}/networkGroups/{rule.get('networkGroup', 'aks-vnets')}"

    def addresses(key: str) -> list[Json]:
        values = rule.get(key, ["*"])
        return [dict(v) if isinstance(v, Mapping) else
                {"addressPrefixType": "ServiceTag" if v[:1].isalpha() else "IPPrefix", "addressPrefix": v}
                for v in values]

    return {
        "id": f"{manager}/securityAdminConfigurations/{config}/ruleCollections/{collection}/rules/{rule['name']}",
        "configurationDescription": rule.get("configurationDescription", ""),
        "ruleCollectionDescription": rule.get("ruleCollectionDescription", ""),
        "ruleCollectionAppliesToGroups": [{"networkGroupId": group}],
        "kind": "Custom",
        "properties": {
            "description": rule.get("description", ""), "protocol": rule.get("protocol", "Tcp"),
            "sources": addresses("sources"), "destinations": addresses("destinations"),
            "sourcePortRanges": list(rule.get("sourcePortRanges", ["0-65535"])),
            "destinationPortRanges": list(rule.get("destinationPortRanges", ["0-65535"])),
            "direction": rule.get("direction", "Inbound"), "access": rule.get("access", "Deny"),
            "priority": int(rule.get("priority", 100)), "provisioningState": "Succeeded",
        },
        "ruleGroups": [{"id": group, "properties": {"description": "", "provisioningState": "Succeeded"}}],
    }
