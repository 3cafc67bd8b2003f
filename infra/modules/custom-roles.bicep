// The monitor's custom roles: exactly the actions shared/azure/operations.py OPERATIONS attributes to
// each custom role key, nothing more (tests/test_infra.py compares them). Defined once per environment
// in the deployment subscription and made assignable in every monitored subscription.
targetScope = 'subscription'

param environmentName string
param assignableSubscriptionIds array
@description('false = the node-probes role (VMSS VM run-command) is not even defined.')
param enableNodeProbes bool

var customRoles = {
  'network-actions': {
    roleName: 'AKS tunnel monitor network reads (${environmentName})'
    description: 'AKS tunnel monitor: read actions beyond Reader (AVNM effective admin rules, AKS cluster user and monitoring user kubeconfigs)'
    actions: [
      'Microsoft.Network/virtualNetworks/listNetworkManagerEffectiveSecurityAdminRules/action'
      'Microsoft.ContainerService/managedClusters/listClusterUserCredential/action'
      'Microsoft.ContainerService/managedClusters/listClusterMonitoringUserCredential/action'
    ]
  }
  'node-probes': {
    roleName: 'AKS tunnel monitor node probes (${environmentName})'
    description: 'AKS tunnel monitor: node probes (VMSS run-command)'
    actions: [
      'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action'
      'Microsoft.Compute/locations/operations/read'
    ]
  }
  // Azure RBAC for Kubernetes authorization: exactly the Kubernetes reads the monitor makes. The built-in
  // "Azure Kubernetes Service RBAC Reader" (7f6c6a51-bcf8-42ba-9220-52d62157d7db) grants neither nodes/read
  // nor pods/log/read, and the next built-ins up (RBAC Writer, Admin, Cluster Admin) write or read Secrets.
  'kubernetes-reads': {
    roleName: 'AKS tunnel monitor Kubernetes reads (${environmentName})'
    description: 'AKS tunnel monitor: read-only Kubernetes API on Azure RBAC clusters (nodes; pods, pod logs, events, configmaps, deployments, daemonsets)'
    dataActions: [
      'Microsoft.ContainerService/managedClusters/nodes/read'
      'Microsoft.ContainerService/managedClusters/pods/read'
      'Microsoft.ContainerService/managedClusters/pods/log/read'
      'Microsoft.ContainerService/managedClusters/events/read'
      'Microsoft.ContainerService/managedClusters/configmaps/read'
      'Microsoft.ContainerService/managedClusters/apps/deployments/read'
      'Microsoft.ContainerService/managedClusters/apps/daemonsets/read'
    ]
  }
}

var monitoredScopes = [for id in assignableSubscriptionIds: '/subscriptions/${id}']
// The deployment subscription is included because a role definition is created there.
var assignableScopes = union([subscription().id], monitoredScopes)
var networkActionsGuid = guid(subscription().id, environmentName, 'aks-tunnel-monitor', 'network-actions')
var nodeProbesGuid = guid(subscription().id, environmentName, 'aks-tunnel-monitor', 'node-probes')
var kubernetesReadsGuid = guid(subscription().id, environmentName, 'aks-tunnel-monitor', 'kubernetes-reads')

resource networkActions 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: networkActionsGuid
  properties: {
    roleName: customRoles['network-actions'].roleName
    description: customRoles['network-actions'].description
    type: 'CustomRole'
    permissions: [
      {
        actions: customRoles['network-actions'].actions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

resource nodeProbes 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (enableNodeProbes) {
  name: nodeProbesGuid
  properties: {
    roleName: customRoles['node-probes'].roleName
    description: customRoles['node-probes'].description
    type: 'CustomRole'
    permissions: [
      {
        actions: customRoles['node-probes'].actions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

resource kubernetesReads 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: kubernetesReadsGuid
  properties: {
    roleName: customRoles['kubernetes-reads'].roleName
    description: customRoles['kubernetes-reads'].description
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: customRoles['kubernetes-reads'].dataActions
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

// Role definition GUIDs to assign in each monitored subscription; node probes only when enabled.
output roleDefinitionGuids array = enableNodeProbes ? [networkActionsGuid, kubernetesReadsGuid, nodeProbesGuid] : [networkActionsGuid, kubernetesReadsGuid]
output roleNames array = enableNodeProbes ? [customRoles['network-actions'].roleName, customRoles['kubernetes-reads'].roleName, customRoles['node-probes'].roleName] : [customRoles['network-actions'].roleName, customRoles['kubernetes-reads'].roleName]
