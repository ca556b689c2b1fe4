// Event Grid custom topics: galleon's public topic(s) of eventGrid.topics (galleon-events, CloudEvents 1.0,
// identity only), EventGrid Data Sender for galleon, and an optional example webhook subscriber.

@description('Azure region of the topics.')
param location string

@description('The routing declaration\'s eventGrid.topics.')
param topics array

@description('Suffix that makes the topic names unique per region (a topic\'s endpoint is <name>.<region>-1.eventgrid.azure.net).')
param nameSuffix string

@description('Principal id of galleon\'s identity (EventGrid Data Sender).')
param galleonPrincipalId string

@description('Optional: a webhook endpoint that receives every public fact of the first topic (an example subscriber). Empty: none.')
@secure()
param exampleSubscriberEndpoint string = ''

@description('Log Analytics workspace for the topics\' diagnostic logs; empty for none.')
param workspaceId string = ''

@description('Tags for every resource.')
param tags object = {}

var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2024-06-01-preview' = [for t in topics: {
  //checkov:skip=CKV_AZURE_193:Galleon publishes from the function app, which has no private endpoint path to the topic unless VNet-integrated; publishing requires an Entra ID token (disableLocalAuth), so the public endpoint accepts no anonymous or key-based event.
  name: empty(nameSuffix) ? t.name : '${t.name}-${nameSuffix}'
  location: location
  tags: tags
  // For identity-based delivery or dead-lettering of subscribers' subscriptions.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: t.inputSchema
    // Only Entra ID tokens may publish (the output binding uses galleon's identity); no access keys.
    disableLocalAuth: true
    // Subscribers outside any virtual network receive pushes; publishing needs a token either way.
    publicNetworkAccess: 'Enabled'
    minimumTlsVersionAllowed: '1.2'
  }
}]

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (t, i) in topics: {
  name: guid(topic[i].id, galleonPrincipalId, eventGridDataSender)
  scope: topic[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: galleonPrincipalId
    principalType: 'ServicePrincipal'
    description: 'galleon: announce public facts'
  }
}]

// Example subscriber: every public fact type of the first topic, as CloudEvents, to a webhook (Event Grid
// performs the CloudEvents abuse-protection handshake with it when the subscription is created).
resource example 'Microsoft.EventGrid/topics/eventSubscriptions@2024-06-01-preview' = if (!empty(exampleSubscriberEndpoint)) {
  parent: topic[0]
  name: 'example-subscriber'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: exampleSubscriberEndpoint
      }
    }
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    filter: {
      includedEventTypes: topics[0].types
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = [for (t, i) in topics: if (!empty(workspaceId)) {
  name: 'to-log-analytics'
  scope: topic[i]
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}]

output topicIds array = [for (t, i) in topics: topic[i].id]
output topicName string = topic[0].name
output topicEndpoint string = topic[0].properties.endpoint
