// Roles (this resource group): galleon's identity on its own storage (host storage, state container) and on
// Application Insights, and the Event Grid system topics' identities on the dead-letter container. The
// Service Bus, Event Grid topic, ingest storage and compute assignments live next to their resources.

@description('Principal id of galleon\'s identity.')
param galleonPrincipalId string

@description('Name of the function app\'s storage account.')
param storageAccountName string

@description('Galleon\'s state container.')
param stateContainerName string

@description('Container Event Grid dead-letters into.')
param deadLetterContainerName string

@description('Principal ids of the Event Grid system topics that dead-letter into the container.')
param deadLetterWriters array

@description('Name of the Application Insights component.')
param appInsightsName string

var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource stateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: stateContainerName
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// AzureWebJobsStorage over an identity: Microsoft documents Storage Blob Data Owner for the host's own use
// (function keys, timer and singleton locks, the Flex Consumption deployment package). Galleon has no blob
// or queue trigger and no Durable Functions, so no queue or table role is needed.
resource hostStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, galleonPrincipalId, storageBlobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: galleonPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Functions host: AzureWebJobsStorage with identity, deployment package'
  }
}

// Galleon's journal, ledger, dead letters and build memory (stated separately so that moving the state
// container to another account keeps the right it needs).
resource state 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(stateContainer.id, galleonPrincipalId, storageBlobDataContributor)
  scope: stateContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: galleonPrincipalId
    principalType: 'ServicePrincipal'
    description: 'galleon: state container (ledger, journals, dead letters, builds)'
  }
}

// Identity-based telemetry (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
resource telemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, galleonPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: galleonPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Functions host: send telemetry with Entra ID'
  }
}

resource deadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for p in deadLetterWriters: {
  name: guid(deadLetterContainer.id, p, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: p
    principalType: 'ServicePrincipal'
    description: 'Event Grid system topic: dead-letter undeliverable events'
  }
}]
