// Event Grid subscriptions of one system topic: the entries of eventGrid.subscriptions whose topic is this
// one, delivered to galleon's functions (AzureFunction destination) with the routing file's filter, retry
// policy and delivery schema, dead-lettering into galleon's storage with the topic's identity.

@description('Name of the system topic (in this deployment\'s resource group).')
param systemTopicName string

@description('Which routing topic this is: storage or resources (the topic member of eventGrid.subscriptions).')
param routingTopic string

@description('The routing declaration\'s eventGrid.subscriptions.')
param subscriptions array

@description('Resource id of galleon\'s function app.')
param functionAppId string

@description('Resource id of the storage account holding the dead-letter container.')
param deadLetterAccountId string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' existing = {
  name: systemTopicName
}

resource sub 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2024-06-01-preview' = [for s in subscriptions: if (s.topic == routingTopic) {
  parent: systemTopic
  name: s.name
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        // The function must exist (the package deployed) before Event Grid accepts the subscription.
        resourceId: '${functionAppId}/functions/${s.function}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: s.eventDeliverySchema
    // s['filter'], not s.filter: checkov's Bicep parser (pycep) reads .filter as the filter() function.
    filter: s['filter']
    retryPolicy: s.retryPolicy
    // The routing file names the container; infra adds the account. The topic's own identity writes there
    // (Storage Blob Data Contributor on that container), so no key or SAS is involved.
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: union(s.deadLetterDestination, {
        properties: union(s.deadLetterDestination.properties, {
          resourceId: deadLetterAccountId
        })
      })
    }
  }
}]
