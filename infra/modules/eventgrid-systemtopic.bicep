// Event Grid system topic: the topic of an Azure source (the VHD storage account, a resource group) with a
// system-assigned identity, which dead-letters undeliverable events into galleon's storage.

@description('Name of the system topic.')
param name string

@description('Region of the system topic: the storage account\'s region, or global for a resource group.')
param location string

@description('Resource id of the source (storage account or resource group).')
param sourceId string

@description('Topic type: Microsoft.Storage.StorageAccounts or Microsoft.Resources.ResourceGroups.')
@allowed([
  'Microsoft.Storage.StorageAccounts'
  'Microsoft.Resources.ResourceGroups'
])
param topicType string

@description('Tags for every resource.')
param tags object = {}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: sourceId
    topicType: topicType
  }
}

output name string = systemTopic.name
output principalId string = systemTopic.identity.principalId
output id string = systemTopic.id
