// Flex Consumption Function App (Python 3.11) running as the user-assigned identity. Every app setting
// the code reads is set here: `monitorSettings` (behaviour, from main.bicep parameters), `secretSettings`
// (Key Vault references, present only for configured channels) and the platform settings below.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param blobEndpoint string
param queueEndpoint string
param tableEndpoint string
param deploymentContainerName string
param appInsightsConnectionString string
param maximumInstanceCount int
param monitorSettings object
param secretSettings object

@description('Put Entra ID sign-in (App Service Authentication) in front of every HTTP route: the fleet page and the API. Timers and queue workers are not affected. The function key is still required as well.')
param enableEntraSignIn bool = false

@description('Application (client) id of the Entra ID app registration users sign in to; required when enableEntraSignIn.')
param entraClientId string = ''

@description('Tenant whose users may sign in (default: the deployment tenant).')
param entraTenantId string = tenant().tenantId

@description('Name of the app setting holding the registration\'s client secret (empty: sign-in with ID tokens only, no secret).')
param entraClientSecretSettingName string = ''

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// azd deploys with Entra ID tokens; publishing with basic (user/password) credentials stays off.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

var platformSettings = {
  // Identity-based host storage (shared/store/connection.py reads the same names).
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  // DefaultAzureCredential picks the user-assigned identity for ARM calls.
  AZURE_CLIENT_ID: identityClientId
  // Entra ID telemetry: App Insights local auth is disabled.
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(monitorSettings, secretSettings, platformSettings)
}

// Optional Entra ID sign-in for the fleet page and the API. With it, a browser is sent to the tenant's login page
// and a script presents a bearer token for the app registration; the page and API stay GET-only reads either way.
var entraRegistration = union({
  openIdIssuer: '${environment().authentication.loginEndpoint}${entraTenantId}/v2.0'
  clientId: entraClientId
}, empty(entraClientSecretSettingName) ? {} : {
  clientSecretSettingName: entraClientSecretSettingName
})

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (enableEntraSignIn) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: entraRegistration
        validation: {
          allowedAudiences: [
            'api://${entraClientId}'
            entraClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: true
      }
    }
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
