// Service Bus: the namespace (Standard: topics need it), the facts topic, every subscription of
// events/subscriptions.json with one correlation-filter rule per fact type, and the queues. Identity only
// (local SAS auth disabled).

@description('Azure region of the namespace.')
param location string

@description('Name of the Service Bus namespace (globally unique).')
param namespaceName string

@description('The routing declaration, events/subscriptions.json (its serviceBus member).')
param routing object

@description('Principal id of galleon\'s identity (Data Sender and Data Receiver on the namespace).')
param galleonPrincipalId string

@description('Log Analytics workspace for the namespace\'s diagnostic logs; empty for none.')
param workspaceId string = ''

@description('Tags for every resource.')
param tags object = {}

var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

// Duplicate detection is fixed when the topic is created (Service Bus cannot change it later).
resource topic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' = {
  parent: namespace
  name: routing.topic
  properties: routing.topicProperties
}

// The dead-letter queue (and any queue without forwarding) first: subscriptions and other queues forward
// their dead letters to it, and Service Bus refuses a forward to an entity that does not exist.
resource plainQueues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [for q in routing.queues: if (!contains(q, 'forwardDeadLetteredMessagesTo')) {
  parent: namespace
  name: q.name
  properties: {
    maxDeliveryCount: q.maxDeliveryCount
    lockDuration: q.lockDuration
  }
}]

resource forwardingQueues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [for q in routing.queues: if (contains(q, 'forwardDeadLetteredMessagesTo')) {
  parent: namespace
  name: q.name
  properties: {
    maxDeliveryCount: q.maxDeliveryCount
    lockDuration: q.lockDuration
    forwardDeadLetteredMessagesTo: contains(q, 'forwardDeadLetteredMessagesTo') ? q.forwardDeadLetteredMessagesTo : null
  }
  dependsOn: [
    plainQueues
  ]
}]

// One module per subscription: a subscription and its rules (Bicep has no nested resource loops).
module subscriptions 'servicebus-subscription.bicep' = [for s in routing.subscriptions: {
  name: 'sb-sub-${s.name}'
  params: {
    namespaceName: namespace.name
    topicName: topic.name
    subscription: s
    typeProperty: routing.typeProperty
  }
  dependsOn: [
    plainQueues
    forwardingQueues
  ]
}]

// The topic, its subscriptions and the queues all need send and receive: galleon sends facts to the topic,
// schedules follow-ups on it, receives on subscriptions and queues, and resubmits dead letters.
resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, galleonPrincipalId, serviceBusDataSender)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: galleonPrincipalId
    principalType: 'ServicePrincipal'
    description: 'galleon: send facts, follow-ups and resubmissions'
  }
}

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, galleonPrincipalId, serviceBusDataReceiver)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
    principalId: galleonPrincipalId
    principalType: 'ServicePrincipal'
    description: 'galleon: the Functions host receives from subscriptions and queues'
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(workspaceId)) {
  name: 'to-log-analytics'
  scope: namespace
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
}

output namespaceName string = namespace.name
output namespaceId string = namespace.id
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output topicName string = topic.name
