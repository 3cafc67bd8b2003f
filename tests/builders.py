"""Small builders for hand-written cluster snapshots in cause tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from shared.netrules.nsg_types import AddressContext, NetworkSecurityGroup, SecurityRule
from shared.snapshot import AgentPool, ClusterSnapshot, LoadBalancerProfile, Node, NodeProbe, Subnet

SUB = "00000000-0000-0000-0000-000000000001"
NRG = "MC_rg_aks1_westeurope"
VNET = f"/subscriptions/{SUB}/resourceGroups/{NRG}/providers/Microsoft.Network/virtualNetworks/aks-vnet-1"
SUBNET = f"{VNET}/subnets/aks-subnet"
NSG_ID = f"/subscriptions/{SUB}/resourceGroups/{NRG}/providers/Microsoft.Network/networkSecurityGroups/agentpool-nsg"
NIC_NSG_ID = f"/subscriptions/{SUB}/resourceGroups/{NRG}/providers/Microsoft.Network/networkSecurityGroups/nic-nsg"
CLUSTER_ID = f"/subscriptions/{SUB}/resourcegroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1"


def rule(name: str, priority: int, access: str, port: str = "10250", *, direction: str = "Inbound",
         source: str = "*", protocol: str = "Tcp", nsg_id: str = NSG_ID) -> SecurityRule:
    return SecurityRule(name=name, priority=priority, direction=direction, access=access,  # type: ignore[arg-type]
                        protocol=protocol, source_prefixes=(source,), destination_ports=(port,),
                        id=f"{nsg_id}/securityRules/{name}")


def nodes(count: int = 3, nic_nsg: str | None = None) -> tuple[Node, ...]:
    return tuple(
        Node(name=f"aks-nodepool1-1-vmss00000{i}", pool="nodepool1", private_ip=f"10.224.0.{4 + i}",
             subnet_id=SUBNET, vmss_id=f"/subscriptions/{SUB}/x/virtualMachineScaleSets/aks-nodepool1-1-vmss",
             instance_id=str(i), nic_nsg_id=nic_nsg)
        for i in range(count)
    )


def snapshot(*, subnet_rules: tuple[SecurityRule, ...] = (), nic_rules: tuple[SecurityRule, ...] | None = None,
             **overrides: Any) -> ClusterSnapshot:
    nsgs = {NSG_ID: NetworkSecurityGroup(NSG_ID, "agentpool-nsg", subnet_rules)}
    if nic_rules is not None:
        nsgs[NIC_NSG_ID] = NetworkSecurityGroup(NIC_NSG_ID, "nic-nsg", nic_rules)
    base = ClusterSnapshot(
        id=CLUSTER_ID, name="aks1", subscription_id=SUB, resource_group="rg", location="westeurope",
        node_resource_group=NRG, private=False, outbound_type="loadBalancer", tunnel="konnectivity",
        fqdn="aks1-abc.hcp.westeurope.azmk8s.io",
        load_balancer_profile=LoadBalancerProfile(0, 1),
        pools=(AgentPool("nodepool1", SUBNET, 3),),
        nodes=nodes(3, NIC_NSG_ID if nic_rules is not None else None),
        subnets={SUBNET.lower(): Subnet(SUBNET, ("10.224.0.0/16",), NSG_ID)},
        nsgs=nsgs,
        address_context=AddressContext(vnet_prefixes=("10.224.0.0/12",)),
    )
    return replace(base, **overrides)


def probe(node: str, **fields: Any) -> NodeProbe:
    defaults: dict[str, Any] = {
        "containers": ("konnectivity-agent",), "egress": {"tcp/443": "ok"}, "api_server_ip": "20.50.2.10",
        "iptables_save": "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", "ufw_status": None,
    }
    defaults.update(fields)
    return NodeProbe(node=node, **defaults)


RT_ID = f"/subscriptions/{SUB}/resourceGroups/{NRG}/providers/Microsoft.Network/routeTables/rt-aks"


def routed_snapshot(firewall: Any, *, next_hop: str = "10.0.1.4", **overrides: Any) -> ClusterSnapshot:
    """A snapshot whose node subnet sends 0.0.0.0/0 to a virtual appliance (`firewall`: the Firewall or
    Unavailable behind it, keyed by the next hop), as a userDefinedRouting cluster does."""
    from shared.snapshot import Route, RouteTable

    base = snapshot(**overrides)
    subnet = replace(base.subnets[SUBNET.lower()], route_table_id=RT_ID)
    table = RouteTable(RT_ID, (Route("default-via-fw", "0.0.0.0/0", "VirtualAppliance", next_hop),))
    return replace(base, outbound_type="userDefinedRouting", subnets={SUBNET.lower(): subnet},
                   route_tables={RT_ID.lower(): table}, appliances={next_hop: firewall},
                   firewall=firewall)
