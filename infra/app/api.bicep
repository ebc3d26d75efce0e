// The function app: Flex Consumption (FC1, Linux), Python 3.11, one user-assigned identity for
// storage, the deployment package, Key Vault references and Application Insights. Every app
// setting the code reads (contract section 6) is set here; docs/deploy.md explains each knob.

param name string
param location string = resourceGroup().location
param tags object = {}
param serviceName string = 'api'
param planName string

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity (AzureWebJobsStorage__clientId etc.).')
param identityClientId string

param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string

param instanceMemoryMB int = 2048
param maximumInstanceCount int = 100

param wnsAuth string
param wnsTenantId string
param wnsClientId string

@description('Versionless URI of the Key Vault secret holding the WNS client secret.')
param wnsSecretUri string

param wnsTokenUrl string = ''
param wnsChannelHosts string = 'notify.windows.com'
param channelTtlDays int = 30
param pushJobsQueue string = 'push-jobs'
param expireSchedule string = '0 30 3 * * *'

param enableAuth bool = false
param authClientId string = ''
param authTenantId string = ''
param requireUser bool = false

resource stg 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Identity-based connection for the host and for shared/settings.py: no connection string.
// The host uses blob (locks, timer status), queue (trigger, poison queue); the code uses table
// and queue. A plain AzureWebJobsStorage setting must NOT exist, or it would win.
var appSettings = {
  AzureWebJobsStorage__accountName: stg.name
  AzureWebJobsStorage__blobServiceUri: stg.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: stg.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: stg.properties.primaryEndpoints.table
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId

  // Application Insights with Entra auth (local auth is disabled on the component).
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'

  // WNS. The secret is resolved by the platform through keyVaultReferenceIdentity below.
  WNS_AUTH: wnsAuth
  WNS_TENANT_ID: wnsTenantId
  WNS_CLIENT_ID: wnsClientId
  WNS_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${wnsSecretUri})'
  WNS_TOKEN_URL: wnsTokenUrl
  WNS_CHANNEL_HOSTS: wnsChannelHosts

  CHANNEL_TTL_DAYS: string(channelTtlDays)
  PUSH_AUTH: enableAuth ? 'platform' : 'none'
  PUSH_REQUIRE_USER: (enableAuth && requireUser) ? 'true' : 'false'
  PUSH_JOBS_QUEUE: pushJobsQueue
  EXPIRE_SCHEDULE: expireSchedule
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
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
    // Key Vault references resolve with this identity (the default would be a system-assigned
    // identity, which this app does not have).
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${stg.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: appSettings
}

// Publishing with a username/password is off: azd and Core Tools publish with the deployer's
// Entra sign-in.
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

// App Service Authentication (Entra ID), only with enableAuth. It validates bearer tokens issued
// for authClientId and passes the caller's object id as X-MS-CLIENT-PRINCIPAL-ID (which it strips
// from incoming requests). Unauthenticated calls are let through on purpose: an app registers
// its channel before anyone signs in, and the app itself decides (PUSH_REQUIRE_USER).
resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (enableAuth) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${authTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'
