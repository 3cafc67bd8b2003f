// Webhook URLs and the webhook signing secret: they grant whoever holds them the right to post into a
// channel (or to forge signed alerts), so they live in Key Vault and reach the app as Key Vault
// references, never as plain app settings. A secret is written only when a value was given.
param name string
param location string
param tags object
param readerPrincipalId string

@secure()
param teamsWebhookUrl string
@secure()
param slackWebhookUrl string
@secure()
param alertWebhookUrl string
@secure()
param alertWebhookSecret string

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // App Service resolves Key Vault references over the public endpoint unless the app is VNet
      // integrated; access is RBAC-only (see infra/.checkov.yaml).
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource teams 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(teamsWebhookUrl)) {
  parent: vault
  name: 'teams-webhook-url'
  properties: {
    value: teamsWebhookUrl
    contentType: 'text/plain'
  }
}

resource slack 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(slackWebhookUrl)) {
  parent: vault
  name: 'slack-webhook-url'
  properties: {
    value: slackWebhookUrl
    contentType: 'text/plain'
  }
}

resource webhook 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(alertWebhookUrl)) {
  parent: vault
  name: 'alert-webhook-url'
  properties: {
    value: alertWebhookUrl
    contentType: 'text/plain'
  }
}

resource webhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(alertWebhookSecret)) {
  parent: vault
  name: 'alert-webhook-secret'
  properties: {
    value: alertWebhookSecret
    contentType: 'text/plain'
  }
}

resource secretsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, readerPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
