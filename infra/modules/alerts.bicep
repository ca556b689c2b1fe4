// Alerts: Azure Monitor metric alerts on every place where a message or an event can come to rest with
// nothing to read it, and on a backlog nobody drains. docs/alerts.md says what each one means and what to do.
// Everything else galleon announces itself (step.failed, image.partially-ready) to its subscribers.

@description('Prefix of the alert names.')
param namePrefix string

@description('Resource id of the Service Bus namespace.')
param namespaceId string

@description('The queues of events/subscriptions.json (serviceBus.queues): a queue that forwards no dead letters keeps them in its own dead-letter queue, which nothing reads.')
param queues array

@description('Name of the facts topic (serviceBus.topic of events/subscriptions.json).')
param topicName string

@description('Resource ids of the Event Grid system topics galleon subscribes to: an event they cannot deliver is dead-lettered into a blob container (or dropped), and no function is triggered.')
param systemTopicIds array

@description('Facts waiting on the topic for an hour (active, not scheduled) above which the backlog alert fires.')
@minValue(1)
param backlogThreshold int = 500

@description('Resource id of an existing action group to notify; empty to use alertEmails (or no action).')
param actionGroupId string = ''

@description('E-mail addresses to notify through a new action group, when actionGroupId is empty.')
param alertEmails array = []

@description('Tags for every resource.')
param tags object = {}

var newGroup = empty(actionGroupId) && !empty(alertEmails)

resource emailGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (newGroup) {
  name: '${namePrefix}-alerts'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'galleon'
    enabled: true
    emailReceivers: [for (address, i) in alertEmails: {
      name: 'email-${i}'
      emailAddress: address
      useCommonAlertSchema: true
    }]
  }
}

var actions = !empty(actionGroupId) ? [
  {
    actionGroupId: actionGroupId
  }
] : (newGroup ? [
  {
    actionGroupId: emailGroup.id
  }
] : [])

// A queue without forwarding is where every other entity's dead letters go (galleon-deadletters): what
// its own function could not handle, delivery after delivery, rests in its dead-letter queue.
resource strandedDeadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = [for q in queues: if (!contains(q, 'forwardDeadLetteredMessagesTo')) {
  name: '${namePrefix}-${q.name}-stranded'
  location: 'global'
  tags: tags
  properties: {
    description: '${q.function} could not handle messages of ${q.name} in ${q.maxDeliveryCount} deliveries: they rest in ${q.name}/$DeadLetterQueue, which nothing reads, and their runs are ended by the run deadline without their cause. See docs/alerts.md.'
    severity: 1
    enabled: true
    scopes: [
      namespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'stranded'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                q.name
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
        }
      ]
    }
    actions: actions
  }
}]

// A queue whose messages are not taken for an hour: its function is not running (the app is stopped, its
// identity lost its Service Bus role, or the host cannot start the handler).
resource undrainedQueues 'Microsoft.Insights/metricAlerts@2018-03-01' = [for q in queues: {
  name: '${namePrefix}-${q.name}-undrained'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages have waited in ${q.name} for an hour: ${q.function} is not taking them. Is the function app running, and can its identity receive from Service Bus? See docs/alerts.md.'
    severity: 2
    enabled: true
    scopes: [
      namespaceId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'undrained'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'ActiveMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                q.name
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Minimum'
        }
      ]
    }
    actions: actions
  }
}]

// Facts piling up on the topic (scheduled follow-ups are not active until due, so they do not count).
resource factsBacklog 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-${topicName}-backlog'
  location: 'global'
  tags: tags
  properties: {
    description: 'More than ${backlogThreshold} facts have waited on ${topicName} for an hour: the functions are not keeping up or not running. See docs/alerts.md.'
    severity: 2
    enabled: true
    scopes: [
      namespaceId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'backlog'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'ActiveMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                topicName
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: backlogThreshold
          timeAggregation: 'Minimum'
        }
      ]
    }
    actions: actions
  }
}

// An event a system topic could not deliver after its retries: a VHD or manifest upload (or a build
// request, or a Packer image) that no galleon function ever saw.
resource eventsDeadLettered 'Microsoft.Insights/metricAlerts@2018-03-01' = [for id in systemTopicIds: {
  name: '${namePrefix}-${last(split(id, '/'))}-dead-lettered'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid could not deliver events of ${last(split(id, '/'))} to galleon and dead-lettered them into the galleon-deadletters container: those uploads were never seen. See docs/alerts.md.'
    severity: 1
    enabled: true
    scopes: [
      id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'deadLettered'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DeadLetteredCount'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    actions: actions
  }
}]

// An event dropped: undeliverable and its dead-lettering failed too (or the subscription has none).
resource eventsDropped 'Microsoft.Insights/metricAlerts@2018-03-01' = [for id in systemTopicIds: {
  name: '${namePrefix}-${last(split(id, '/'))}-dropped'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid dropped events of ${last(split(id, '/'))}: undeliverable to galleon and not dead-lettered (can the topic\'s identity write to the galleon-deadletters container?). Those uploads are lost to galleon. See docs/alerts.md.'
    severity: 1
    enabled: true
    scopes: [
      id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dropped'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DroppedEventCount'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    actions: actions
  }
}]

output actionGroupId string = !empty(actionGroupId) ? actionGroupId : (newGroup ? emailGroup.id : '')
