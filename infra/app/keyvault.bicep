// Key Vault for the one secret the app has: the WNS client secret. Access is by Azure RBAC only
// (no access policies): the app's identity reads it (Key Vault Secrets User, app/rbac.bicep), and
// the app setting WNS_CLIENT_SECRET is a Key Vault reference to its versionless URI, so a new
// version set with `az keyvault secret set` is picked up without touching the app's settings.

param name string
param location string = resourceGroup().location
param tags object = {}

@description('Name of the secret holding the WNS client secret.')
param secretName string

@secure()
@description('Initial value. Empty: the secret is not created here (set it with az keyvault secret set).')
param secretValue string = ''

@minValue(7)
@maxValue(90)
@description('Days a deleted vault or secret can be recovered. Fixed once the vault exists.')
param softDeleteRetentionInDays int = 7

@description('Purge protection cannot be turned off again once on; leave off for environments you tear down.')
param enablePurgeProtection bool = false

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // The service rejects an explicit false; null leaves it off.
    enablePurgeProtection: enablePurgeProtection ? true : null
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource wnsSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(secretValue)) {
  parent: vault
  name: secretName
  properties: {
    value: secretValue
    contentType: 'text/plain'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
// Versionless: the app follows the newest version of the secret.
output wnsSecretUri string = '${vault.properties.vaultUri}secrets/${secretName}/'
