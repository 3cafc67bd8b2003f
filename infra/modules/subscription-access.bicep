// What the monitor identity may do in ONE monitored subscription: read (Reader), read metrics and the
// Activity Log (Monitoring Reader), and the custom roles (AVNM effective rules; VMSS run-command when
// node probes are on). Deployed once per subscription in main.bicep's monitoredSubscriptionIds.
// Names are guid(subscription, principal, role), so re-running `azd up` never duplicates a grant.
targetScope = 'subscription'

param principalId string
@description('GUIDs of the custom role definitions (from custom-roles.bicep) to assign here.')
param customRoleDefinitionGuids array

var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
var monitoringReader = '43d0d8ad-25c7-4714-9337-8ba259a9fe05'
var builtInRoles = [
  reader
  monitoringReader
]

resource builtIn 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in builtInRoles: {
  name: guid(subscription().id, principalId, roleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource custom 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in customRoleDefinitionGuids: {
  name: guid(subscription().id, principalId, roleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'AKS tunnel monitor custom role'
  }
}]
