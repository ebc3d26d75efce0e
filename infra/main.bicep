// The push backend in Azure: one resource group holding a Flex Consumption (FC1) Linux function app
// that reaches storage, Key Vault and Application Insights through one user-assigned managed
// identity. No account key, connection string or publishing password exists anywhere.
//
// Shape follows Azure-Samples/functions-quickstart-python-http-azd (infra/main.bicep +
// infra/app/{api,rbac}.bicep), with plain resources instead of registry modules so every property
// is visible here. Deploy with `azd up` or `az deployment group create` (docs/deploy.md).
//
// Scope is the resource group (the sample creates its own at subscription scope): the deployer
// then needs rights on one resource group only, and both azd and the plain CLI can target it.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd env name); with the resource group it seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer Flex Consumption: az functionapp list-flexconsumption-locations.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string = resourceGroup().location

@description('Object id of the person or pipeline deploying (azd fills AZURE_PRINCIPAL_ID). When set, and deployerDataAccess is true, it gets queue and table data access (for pushctl) and may set the WNS secret. Empty: no human access.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
@description('Kind of principal principalId is: User for a laptop, ServicePrincipal for a CI pipeline.')
param principalType string = 'User'

@description('Give principalId the data roles pushctl needs (queue send, table read/write, Key Vault secret set). Turn off for production environments operated only through pipelines.')
param deployerDataAccess bool = true

// ---- Scale (Flex Consumption) ----

@allowed([
  512
  2048
  4096
])
@description('Memory of each instance in MB. CPU and network bandwidth scale with it.')
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
@description('Upper bound on instances the app scales out to (all functions together); it also bounds the bill and the load on WNS.')
param maximumInstanceCount int = 100

// ---- WNS credentials (contract section 6) ----

@allowed([
  'entra'
  'live'
])
@description('WNS_AUTH: entra (Windows App SDK, an Entra app registration) or live (Package SID + secret from Partner Center).')
param wnsAuth string = 'entra'

@description('WNS_TENANT_ID: tenant of the Entra app registration used for WNS. Empty means the tenant of this subscription (entra only).')
param wnsTenantId string = ''

@description('WNS_CLIENT_ID: application (client) id of the app registration, or the Package SID for live.')
param wnsClientId string = ''

@secure()
@description('WNS client secret. Stored only in Key Vault. Leave empty to set it later with az keyvault secret set (recommended: it then never passes through deployment parameters).')
param wnsClientSecret string = ''

@description('WNS_TOKEN_URL: token endpoint override (sovereign clouds). Empty uses the default for wnsAuth.')
param wnsTokenUrl string = ''

@description('WNS_CHANNEL_HOSTS: comma-separated host suffixes a channel URI may use.')
param wnsChannelHosts string = 'notify.windows.com'

// ---- App behaviour (contract section 6) ----

@minValue(1)
@maxValue(365)
@description('CHANNEL_TTL_DAYS: days before an unrefreshed registration expires.')
param channelTtlDays int = 30

@description('EXPIRE_SCHEDULE: NCRONTAB (six fields, UTC) of the expiry sweep.')
param expireSchedule string = '0 30 3 * * *'

@description('Turn on App Service Authentication (Entra ID) and PUSH_AUTH=platform: the signed-in user of a registration comes from the validated token. Anonymous calls still reach the app unless requireUser is true.')
param enableAuth bool = false

@description('Application (client) id of the Entra app registration that represents this API (the audience of the tokens Windows apps send). Required when enableAuth is true.')
param authClientId string = ''

@description('Tenant that issues those tokens. Empty means the tenant of this subscription.')
param authTenantId string = ''

@description('PUSH_REQUIRE_USER: with enableAuth, refuse registrations without a signed-in user (401).')
param requireUser bool = false

// ---- Names (empty: generated) ----

param functionAppName string = ''
param appServicePlanName string = ''
param storageAccountName string = ''
param keyVaultName string = ''
param identityName string = ''
param logAnalyticsName string = ''
param applicationInsightsName string = ''

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

var appName = !empty(functionAppName) ? functionAppName : '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${take(appName, 32)}-${take(toLower(uniqueString(appName, resourceToken)), 7)}'

// What the app keeps in storage. Names must match shared/settings.py defaults and host.json
// (the queue trigger moves a message to '<queue>-poison' after maxDequeueCount failures).
var pushJobsQueue = 'push-jobs'
var queueNames = [
  pushJobsQueue
  '${pushJobsQueue}-poison'
]
var tableNames = [
  'channels'
  'channelindex'
  'pushjobs'
  'pushoutcomes'
]
var wnsSecretName = 'wns-client-secret'

// The one identity the app uses for everything: storage (host and code), deployment package,
// Key Vault references and Application Insights. Its roles are in app/rbac.bicep.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: !empty(identityName) ? identityName : '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
  location: location
  tags: tags
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    logAnalyticsName: !empty(logAnalyticsName) ? logAnalyticsName : '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: !empty(applicationInsightsName) ? applicationInsightsName : '${abbrs.insightsComponents}${resourceToken}'
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    name: !empty(storageAccountName) ? storageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'
    deploymentContainerName: deploymentContainerName
    queueNames: queueNames
    tableNames: tableNames
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: tags
    name: !empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}'
    secretName: wnsSecretName
    secretValue: wnsClientSecret
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    appPrincipalId: identity.properties.principalId
    deployerPrincipalId: deployerDataAccess ? principalId : ''
    deployerPrincipalType: principalType
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  // Roles first, so the host's first start can already read storage and the Key Vault reference.
  dependsOn: [
    rbac
  ]
  params: {
    name: appName
    location: location
    tags: tags
    planName: !empty(appServicePlanName) ? appServicePlanName : '${abbrs.webServerFarms}${resourceToken}'
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    wnsAuth: wnsAuth
    wnsTenantId: !empty(wnsTenantId) ? wnsTenantId : (wnsAuth == 'entra' ? tenant().tenantId : '')
    wnsClientId: wnsClientId
    wnsSecretUri: keyVault.outputs.wnsSecretUri
    wnsTokenUrl: wnsTokenUrl
    wnsChannelHosts: wnsChannelHosts
    channelTtlDays: channelTtlDays
    pushJobsQueue: pushJobsQueue
    expireSchedule: expireSchedule
    enableAuth: enableAuth
    authClientId: authClientId
    authTenantId: !empty(authTenantId) ? authTenantId : tenant().tenantId
    requireUser: requireUser
  }
}

// azd reads these into the environment (azd env get-values); docs/deploy.md uses them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output AZURE_FUNCTION_URL string = api.outputs.url
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output AZURE_STORAGE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_ENDPOINT string = keyVault.outputs.uri
output WNS_SECRET_NAME string = wnsSecretName
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output PUSH_JOBS_QUEUE string = pushJobsQueue
