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
}

var monitoredScopes = [for id in assignableSubscriptionIds: '/subscriptions/${id}']
// The deployment subscription is included because a role definition is created there.
var assignableScopes = union([subscription().id], monitoredScopes)
var networkActionsGuid = guid(subscription().id, environmentName, 'aks-tunnel-monitor', 'network-actions')
var nodeProbesGuid = guid(subscription().id, environmentName, 'aks-tunnel-monitor', 'node-probes')

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

// Role definition GUIDs to assign in each monitored subscription; node probes only when enabled.
output roleDefinitionGuids array = enableNodeProbes ? [networkActionsGuid, nodeProbesGuid] : [networkActionsGuid]
output roleNames array = enableNodeProbes ? [customRoles['network-actions'].roleName, customRoles['node-probes'].roleName] : [customRoles['network-actions'].roleName]
