"""Every Azure operation the monitor calls, with the RBAC action that authorises it: the one list.

The infrastructure test checks that each action is granted by a role the Bicep assigns, so adding a
call here without granting it fails CI instead of failing in a customer's subscription.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    name: str
    action: str
    sdk_call: str
    role: str  # "Reader" | "Monitoring Reader" | custom role key ("network-actions" | "node-probes")


OPERATIONS: tuple[Operation, ...] = (
    Operation("subscriptions list", "Microsoft.Resources/subscriptions/read",
              "SubscriptionClient.subscriptions.list", "Reader"),
    Operation("managed clusters list/get", "Microsoft.ContainerService/managedClusters/read",
              "ContainerServiceClient.managed_clusters.list/get", "Reader"),
    Operation("VMSS list", "Microsoft.Compute/virtualMachineScaleSets/read",
              "ComputeManagementClient.virtual_machine_scale_sets.list", "Reader"),
    Operation("VMSS VM list", "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read",
              "ComputeManagementClient.virtual_machine_scale_set_vms.list", "Reader"),
    Operation("VMSS network interfaces list",
              "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/networkInterfaces/read",
              "NetworkManagementClient.network_interfaces.list_virtual_machine_scale_set_network_interfaces",
              "Reader"),
    Operation("virtual network get", "Microsoft.Network/virtualNetworks/read",
              "NetworkManagementClient.virtual_networks.get", "Reader"),
    Operation("NSG get", "Microsoft.Network/networkSecurityGroups/read",
              "NetworkManagementClient.network_security_groups.get", "Reader"),
    Operation("route table get", "Microsoft.Network/routeTables/read",
              "NetworkManagementClient.route_tables.get", "Reader"),
    Operation("Azure Firewall get", "Microsoft.Network/azureFirewalls/read",
              "NetworkManagementClient.azure_firewalls.get", "Reader"),
    Operation("AVNM effective security admin rules",
              "Microsoft.Network/virtualNetworks/listNetworkManagerEffectiveSecurityAdminRules/action",
              "NetworkManagementClient.list_network_manager_effective_security_admin_rules", "network-actions"),
    Operation("managed cluster user credential (Entra ID clusters: API server URL and CA)",
              "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
              "ContainerServiceClient.managed_clusters.list_cluster_user_credentials", "network-actions"),
    Operation("managed cluster monitoring user credential (local-account clusters)",
              "Microsoft.ContainerService/managedClusters/listClusterMonitoringUserCredential/action",
              "ContainerServiceClient.managed_clusters.list_cluster_monitoring_user_credentials", "network-actions"),
    Operation("metrics list", "Microsoft.Insights/metrics/read",
              "MonitorManagementClient.metrics.list", "Monitoring Reader"),
    Operation("activity log list", "Microsoft.Insights/eventtypes/values/read",
              "MonitorManagementClient.activity_logs.list", "Monitoring Reader"),
    Operation("VMSS VM run-command", "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action",
              "ComputeManagementClient.virtual_machine_scale_set_vms.begin_run_command", "node-probes"),
    Operation("run-command operation status", "Microsoft.Compute/locations/operations/read",
              "LROPoller polling of the run-command", "node-probes"),
)

CUSTOM_ROLES: dict[str, str] = {
    "network-actions": "AKS tunnel monitor: read actions beyond Reader (AVNM effective admin rules, AKS "
                       "cluster user and monitoring user kubeconfigs)",
    "node-probes": "AKS tunnel monitor: node probes (VMSS run-command)",
}
