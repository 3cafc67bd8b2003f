// The whole monitor in one `azd up`: a resource group with the Function App and what it needs, plus the
// read access its identity needs on every monitored subscription. Subscription scope (as the
// Azure-Samples functions-quickstart-python-azd-* templates) because the monitored-subscription grants and
// the custom role definitions live outside any one resource group.
targetScope = 'subscription'

// ------------------------------------------------------------------ where and what

@minLength(1)
@maxLength(64)
@description('azd environment name; seeds every resource name so two environments never collide.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create or reuse. Empty = rg-<environmentName>.')
param resourceGroupName string = ''

// ------------------------------------------------------------------ which subscriptions to watch

@description('Subscription ids the monitor watches. Each one gets Reader, Monitoring Reader and the monitor custom roles for the monitor identity. Empty (with monitoredSubscriptionIdsCsv also empty) = only the subscription this is deployed to.')
param monitoredSubscriptionIds array = []

@description('The same list as a comma-separated string, for `azd env set MONITORED_SUBSCRIPTION_IDS id1,id2` (azd env values are strings). Merged with monitoredSubscriptionIds.')
param monitoredSubscriptionIdsCsv string = ''

// ------------------------------------------------------------------ monitor behaviour (DESIGN.md settings)

@allowed([
  'off'
  'sample'
  'all'
])
@description('NODE_PROBES: off, sample (a few nodes per pool each cycle, rotating) or all.')
param nodeProbes string = 'sample'

@description('Grant the custom "node probes" role (VMSS VM run-command). false also forces NODE_PROBES=off, so the monitor never calls what it may not.')
param enableNodeProbes bool = true

@description('NCRONTAB schedule of the SNAT check timer (SNAT_SCHEDULE).')
param snatSchedule string = '0 */5 * * * *'

@description('NCRONTAB schedule of the NSG check timer (NSG_SCHEDULE).')
param nsgSchedule string = '0 */10 * * * *'

@description('NCRONTAB schedule of the node-probe timer (PROBE_SCHEDULE).')
param probeSchedule string = '0 */30 * * * *'

@description('NCRONTAB schedule of the notification retry timer (OUTBOX_SCHEDULE).')
param outboxSchedule string = '30 */2 * * * *'

@minValue(1)
@maxValue(1440)
@description('SNAT_WINDOW_MINUTES: how far back SNAT metrics are read.')
param snatWindowMinutes int = 15

@minValue(1)
@maxValue(2160)
@description('ACTIVITY_WINDOW_HOURS: how far back the Activity Log is read for NSG changes.')
param activityWindowHours int = 24

@minValue(1)
@maxValue(720)
@description('REMINDER_HOURS: how often a still-open finding is re-notified.')
param reminderHours int = 24

@minValue(1)
@maxValue(3650)
@description('OUTBOX_RETENTION_DAYS: delivered and dead notification rows are purged this many days after they finished.')
param outboxRetentionDays int = 7

@minValue(1)
@maxValue(90)
@description('SNAT_SAMPLE_RETENTION_DAYS: how long the fleet page keeps per-check SNAT samples for its chart.')
param snatSampleRetentionDays int = 7

@description('Put Entra ID sign-in (App Service Authentication, authsettingsV2) in front of the fleet page and the API, on top of the function key. Off by default.')
param enableEntraSignIn bool = false

@description('Application (client) id of the Entra ID app registration users sign in to (required with enableEntraSignIn).')
param entraClientId string = ''

@description('Name of an app setting that holds the registration\'s client secret; empty = ID-token sign-in without a secret.')
param entraClientSecretSettingName string = ''

@minValue(1)
@maxValue(100)
@description('PROBE_SAMPLE_PER_POOL: nodes probed per pool and cycle when NODE_PROBES=sample.')
param probeSamplePerPool int = 2

@minValue(1)
@maxValue(1000)
@description('ARM_READS_PER_SECOND: client-side pace of ARM reads per subscription and process (ARM refills about 25/s).')
param armReadsPerSecond int = 20

@minValue(1)
@maxValue(10000)
@description('ARM_READ_BURST: client-side burst of ARM reads per subscription and process (ARM allows about 250).')
param armReadBurst int = 200

// ------------------------------------------------------------------ notifications

@secure()
@description('TEAMS_WEBHOOK_URL (Teams Workflows webhook). Stored in Key Vault; empty = Teams off.')
param teamsWebhookUrl string = ''

@secure()
@description('SLACK_WEBHOOK_URL (Slack incoming webhook). Stored in Key Vault; empty = Slack off.')
param slackWebhookUrl string = ''

@secure()
@description('ALERT_WEBHOOK_URL (generic JSON webhook). Stored in Key Vault; empty = off. Needs alertWebhookSecret.')
param alertWebhookUrl string = ''

@secure()
@description('ALERT_WEBHOOK_SECRET: HMAC-SHA256 key receivers verify the generic webhook with. Stored in Key Vault.')
param alertWebhookSecret string = ''

@description('WEBHOOK_ALLOWED_HOSTS: extra comma-separated hosts a webhook may point to (Teams/Slack/Logic Apps hosts are allowed already).')
param webhookAllowedHosts string = ''

// ------------------------------------------------------------------ watching the watcher

@description('E-mail address alerted when the monitor stops completing cycles. Empty = the alert only shows in Azure Monitor (or use existingActionGroupId).')
param alertEmail string = ''

@description('Resource id of an existing action group to notify as well (e.g. your on-call rotation). Empty = none.')
param existingActionGroupId string = ''

@allowed([
  'PT30M'
  'PT1H'
  'PT2H'
  'PT3H'
  'PT6H'
])
@description('The alert fires when no check completed for this long. Keep it at least twice the slowest schedule (PROBE_SCHEDULE, 30 min by default).')
param stalledWindow string = 'PT1H'

@minValue(1)
@maxValue(1000)
@description('Flex Consumption instance ceiling. Every instance paces ARM reads on its own, so fewer instances = fewer 429s on very large fleets.')
param maximumInstanceCount int = 40

// ------------------------------------------------------------------ names

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-tunnelmon-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var csvIds = empty(trim(monitoredSubscriptionIdsCsv)) ? [] : split(replace(monitoredSubscriptionIdsCsv, ' ', ''), ',')
var loweredIds = [for id in concat(monitoredSubscriptionIds, csvIds): toLower(id)]
var requestedIds = union(loweredIds, [])
var monitoredIds = empty(requestedIds) ? [subscription().subscriptionId] : requestedIds
var grantNodeProbes = enableNodeProbes && nodeProbes != 'off'
var keyVaultName = 'kv-tm-${resourceToken}'

// Webhook settings exist only when a value was given: an unset setting is how the code turns a channel
// off. Values are Key Vault references (versionless, so a rotated secret is picked up without a deploy).
var teamsSetting = empty(teamsWebhookUrl) ? {} : {
  TEAMS_WEBHOOK_URL: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=teams-webhook-url)'
}
var slackSetting = empty(slackWebhookUrl) ? {} : {
  SLACK_WEBHOOK_URL: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=slack-webhook-url)'
}
var webhookSetting = empty(alertWebhookUrl) ? {} : {
  ALERT_WEBHOOK_URL: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=alert-webhook-url)'
}
var webhookSecretSetting = empty(alertWebhookSecret) ? {} : {
  ALERT_WEBHOOK_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=alert-webhook-secret)'
}
var secretSettings = union(teamsSetting, slackSetting, webhookSetting, webhookSecretSetting)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

// ------------------------------------------------------------------ host resources

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-tunnelmon-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'sttunnelmon${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-tunnelmon-${resourceToken}'
    appInsightsName: 'appi-tunnelmon-${resourceToken}'
    location: location
    tags: tags
  }
}

module hostAccess 'modules/host-rbac.bicep' = {
  name: 'host-rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    principalId: identity.outputs.principalId
  }
}

module secrets 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: tags
    readerPrincipalId: identity.outputs.principalId
    teamsWebhookUrl: teamsWebhookUrl
    slackWebhookUrl: slackWebhookUrl
    alertWebhookUrl: alertWebhookUrl
    alertWebhookSecret: alertWebhookSecret
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  dependsOn: [
    hostAccess
    secrets
  ]
  params: {
    name: functionAppName
    planName: 'plan-tunnelmon-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: maximumInstanceCount
    enableEntraSignIn: enableEntraSignIn
    entraClientId: entraClientId
    entraClientSecretSettingName: entraClientSecretSettingName
    monitorSettings: {
      MONITOR_SUBSCRIPTIONS: join(monitoredIds, ',')
      ARM_ENDPOINT: armEndpoint
      ARM_SCOPE: '${armEndpoint}/.default'
      NODE_PROBES: grantNodeProbes ? nodeProbes : 'off'
      SNAT_SCHEDULE: snatSchedule
      NSG_SCHEDULE: nsgSchedule
      PROBE_SCHEDULE: probeSchedule
      OUTBOX_SCHEDULE: outboxSchedule
      SNAT_WINDOW_MINUTES: string(snatWindowMinutes)
      ACTIVITY_WINDOW_HOURS: string(activityWindowHours)
      REMINDER_HOURS: string(reminderHours)
      OUTBOX_RETENTION_DAYS: string(outboxRetentionDays)
      SNAT_SAMPLE_RETENTION_DAYS: string(snatSampleRetentionDays)
      PROBE_SAMPLE_PER_POOL: string(probeSamplePerPool)
      ARM_READS_PER_SECOND: string(armReadsPerSecond)
      ARM_READ_BURST: string(armReadBurst)
      WEBHOOK_ALLOWED_HOSTS: webhookAllowedHosts
    }
    secretSettings: secretSettings
  }
}

// environment().resourceManager ends in '/'; the code strips it too, but the scope must not get '//'.
var armEndpoint = substring(environment().resourceManager, 0, length(environment().resourceManager) - 1)

module stalledAlert 'modules/alert.bicep' = {
  name: 'alert'
  scope: rg
  params: {
    name: 'alert-tunnelmon-stalled-${resourceToken}'
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    windowSize: stalledWindow
    alertEmail: alertEmail
    existingActionGroupId: existingActionGroupId
  }
}

// ------------------------------------------------------------------ access to the monitored subscriptions

module customRoles 'modules/custom-roles.bicep' = {
  name: 'custom-roles-${resourceToken}'
  params: {
    environmentName: environmentName
    assignableSubscriptionIds: monitoredIds
    enableNodeProbes: grantNodeProbes
  }
}

module subscriptionAccess 'modules/subscription-access.bicep' = [for subscriptionId in monitoredIds: {
  name: 'tunnelmon-access-${take(uniqueString(subscriptionId, resourceToken), 8)}'
  scope: subscription(subscriptionId)
  params: {
    principalId: identity.outputs.principalId
    customRoleDefinitionGuids: customRoles.outputs.roleDefinitionGuids
  }
}]

// ------------------------------------------------------------------ outputs azd stores in .azure/<env>/.env

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output MONITOR_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output MONITOR_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output MONITORED_SUBSCRIPTIONS string = join(monitoredIds, ',')
output CUSTOM_ROLE_NAMES array = customRoles.outputs.roleNames
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
