// Service Bus subscription: one subscription of the facts topic from events/subscriptions.json, its
// settings, and one correlation-filter rule per fact type (on the application property typeProperty).

@description('Service Bus namespace name.')
param namespaceName string

@description('Topic name.')
param topicName string

@description('One entry of serviceBus.subscriptions: name, function, types, and ARM settings when present.')
param subscription object

@description('Application property the rules filter on (serviceBus.typeProperty).')
param typeProperty string

// ARM settings the routing file may carry; what it leaves out keeps Azure's default.
var settingNames = [
  'maxDeliveryCount'
  'lockDuration'
  'forwardDeadLetteredMessagesTo'
  'deadLetteringOnMessageExpiration'
  'defaultMessageTimeToLive'
]
var settings = union(
  contains(subscription, settingNames[0]) ? { maxDeliveryCount: subscription.maxDeliveryCount } : {},
  contains(subscription, settingNames[1]) ? { lockDuration: subscription.lockDuration } : {},
  contains(subscription, settingNames[2]) ? { forwardDeadLetteredMessagesTo: subscription.forwardDeadLetteredMessagesTo } : {},
  contains(subscription, settingNames[3]) ? { deadLetteringOnMessageExpiration: subscription.deadLetteringOnMessageExpiration } : {},
  contains(subscription, settingNames[4]) ? { defaultMessageTimeToLive: subscription.defaultMessageTimeToLive } : {}
)

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: namespaceName
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' existing = {
  parent: namespace
  name: topicName
}

resource sub 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' = {
  parent: topic
  name: subscription.name
  properties: settings
}

// Service Bus gives every new subscription a $Default rule (TrueFilter: every message). Resource Manager
// cannot delete a rule, so $Default is replaced by a rule that matches nothing ("1=0", what the SDKs call
// FalseFilter); the subscription then receives exactly the types below.
resource defaultRule 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2022-10-01-preview' = {
  parent: sub
  name: '$Default'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: '1=0'
    }
  }
}

// One rule per type, named by the type (letters, digits, '.', '-' are allowed; at most 50 characters).
resource typeRules 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2022-10-01-preview' = [for t in subscription.types: {
  parent: sub
  name: t
  properties: {
    filterType: 'CorrelationFilter'
    correlationFilter: {
      properties: {
        '${typeProperty}': t
      }
    }
  }
}]

output name string = sub.name
