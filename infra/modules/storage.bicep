// Storage: the function app's own account (AzureWebJobsStorage over its identity, the deployment package)
// with galleon's state container galleon-state (handled facts, run journals, dead letters, build memory)
// and the container Event Grid dead-letters undeliverable events into. No shared keys.

@description('Azure region of the account.')
param location string

@description('Name of the storage account (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param accountName string

@description('Replication of the account. The Functions host needs blob (and for some features queue and table) storage; zone-redundant is recommended in production.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_ZRS'

@description('Galleon\'s state container (GALLEON_STATE_CONTAINER_URL).')
param stateContainerName string = 'galleon-state'

@description('Container of the deployment package (Flex Consumption deployment storage, or the package URL on Elastic Premium).')
param packageContainerName string = 'app-package'

@description('Container Event Grid dead-letters events into (deadLetterDestination of events/subscriptions.json).')
param deadLetterContainerName string = 'galleon-deadletters'

@description('Days a deleted blob can be restored.')
param deleteRetentionDays int = 7

@description('Tags for every resource.')
param tags object = {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35:The Functions host (without VNet integration) and galleon reach this account over its public endpoint with Entra ID tokens (shared keys are disabled); deny by default only together with VNet integration and private endpoints for blob, queue and table.
  //checkov:skip=CKV_AZURE_59:Same as CKV_AZURE_35: public network access carries identity-authenticated traffic only (allowSharedKeyAccess false, no anonymous blob access).
  //checkov:skip=CKV_AZURE_206:Zone-redundant (Standard_ZRS) by default, in-region as Microsoft recommends for host storage; geo-replication (Standard_GZRS) is a parameter. The account holds host bookkeeping and galleon's run state, not images.
  //checkov:skip=CKV_AZURE_43:The name is computed (take('<prefix><uniqueString>', 24), lowercase letters and digits) and bounded by @minLength/@maxLength; checkov cannot evaluate it.
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Every client (the Functions host, galleon, Event Grid) authenticates with Entra ID.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
  }
}

resource stateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: stateContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: packageContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

output accountId string = account.id
output accountName string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output stateContainerName string = stateContainer.name
output packageContainerName string = packageContainer.name
output deadLetterContainerName string = deadLetterContainer.name
