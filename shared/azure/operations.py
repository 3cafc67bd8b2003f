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
    role: str  # "Reader" | "Monitoring Reader" | custom role key (CUSTOM_ROLES)
    # A Kubernetes data-plane read, authorised by Azure RBAC for Kubernetes on Azure RBAC clusters (a role's
    # dataActions) and by docs/kubernetes-rbac.md's Role/ClusterRole on clusters that use Kubernetes RBAC.
    data_action: bool = False


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
    Operation("Firewall Policy get", "Microsoft.Network/firewallPolicies/read",
              "NetworkManagementClient.firewall_policies.get", "Reader"),
    Operation("Firewall Policy rule collection groups list",
              "Microsoft.Network/firewallPolicies/ruleCollectionGroups/read",
              "NetworkManagementClient.firewall_policy_rule_collection_groups.list", "Reader"),
    Operation("IP group get", "Microsoft.Network/ipGroups/read", "NetworkManagementClient.ip_groups.get", "Reader"),
    Operation("public IP address get (egress IPs vs. authorized IP ranges)", "Microsoft.Network/publicIPAddresses/read",
              "NetworkManagementClient.public_ip_addresses.get", "Reader"),
    Operation("public IP prefix get (outbound prefixes vs. authorized IP ranges)",
              "Microsoft.Network/publicIPPrefixes/read", "NetworkManagementClient.public_ip_prefixes.get", "Reader"),
    Operation("NAT gateway get (its public IPs and prefixes)", "Microsoft.Network/natGateways/read",
              "NetworkManagementClient.nat_gateways.get", "Reader"),
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
    *(Operation(f"Kubernetes {what}", f"Microsoft.ContainerService/managedClusters/{resource}", call,
                "kubernetes-reads", data_action=True) for what, resource, call in (
        ("nodes list", "nodes/read", "CoreV1Api.list_node"),
        ("pods list (kube-system)", "pods/read", "CoreV1Api.list_namespaced_pod"),
        ("pod log read (kube-system, tailLines=1)", "pods/log/read", "CoreV1Api.read_namespaced_pod_log"),
        ("events list (kube-system)", "events/read", "CoreV1Api.list_namespaced_event"),
        ("configmap get (kube-system)", "configmaps/read", "CoreV1Api.read_namespaced_config_map"),
        ("deployment get (kube-system)", "apps/deployments/read", "AppsV1Api.read_namespaced_deployment"),
        ("daemonsets list (kube-system)", "apps/daemonsets/read", "AppsV1Api.list_namespaced_daemon_set"),
    )),
)

CUSTOM_ROLES: dict[str, str] = {
    "network-actions": "AKS tunnel monitor: read actions beyond Reader (AVNM effective admin rules, AKS "
                       "cluster user and monitoring user kubeconfigs)",
    "node-probes": "AKS tunnel monitor: node probes (VMSS run-command)",
    "kubernetes-reads": "AKS tunnel monitor: read-only Kubernetes API on Azure RBAC clusters (nodes; pods, pod "
                        "logs, events, configmaps, deployments, daemonsets)",
}
