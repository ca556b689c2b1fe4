// galleon: every Azure resource the image factory needs, in one resource-group deployment. Routing (the
// Service Bus topic, its subscriptions and rules, the queues, the Event Grid topics and subscriptions) is
// read from events/subscriptions.json, declared once for the local cloud and for Azure.
targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------------------

@description('Azure region of galleon\'s resources (default: the resource group\'s).')
param location string = resourceGroup().location

@description('Prefix of resource names (lowercase letters and digits first, hyphens allowed).')
@minLength(2)
@maxLength(12)
param namePrefix string = 'galleon'

@description('Name of the function app (globally unique). Default: <prefix>-<unique suffix>.')
param functionAppName string = '${namePrefix}-${uniqueString(resourceGroup().id)}'

@description('Hosting plan of the function app. FlexConsumption (default) or ElasticPremium; infra/README.md, "Hosting plan".')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Flex Consumption: most instances the app scales out to.')
param flexMaximumInstanceCount int = 40

@description('Flex Consumption: instance memory in MB (512, 2048, 4096).')
param flexInstanceMemoryMB int = 2048

@description('Flex Consumption: always-ready instances per function or group, e.g. [{"name": "http", "instanceCount": 1}].')
param flexAlwaysReady array = []

@description('Elastic Premium: plan size (EP1, EP2, EP3).')
param premiumSku string = 'EP1'

@description('Elastic Premium: always-ready instances.')
param premiumAlwaysReady int = 1

@description('Subnet for the function app\'s virtual network integration (empty: none). Flex Consumption: delegated to Microsoft.App/environments; Elastic Premium: to Microsoft.Web/serverFarms.')
param functionSubnetId string = ''

@description('Replication of the function app\'s own storage account.')
param storageSku string = 'Standard_ZRS'

@description('Name of the existing storage account VHDs, manifests and build requests are uploaded to (the Event Grid storage system topic\'s source).')
param ingestStorageAccountName string

@description('Resource group of the ingest storage account (this subscription). Default: this resource group.')
param ingestStorageResourceGroup string = resourceGroup().name

@description('Create galleon\'s containers in the ingest account when missing (images, build-requests, the build output container).')
param createIngestContainers bool = true

@description('Container Image Builder distributes VHDs to, in the ingest account (not an ingest container: builds enter the chain through IngestBuild). Empty: none.')
param buildOutputContainer string = 'image-builds'

@description('Grant Storage Blob Data Contributor on the ingest containers, needed only when GALLEON_RETENTION deletes sources (deleteSources).')
param sourceCleanup bool = false

@description('Subscription of the default gallery (GALLEON_SUBSCRIPTION_ID). Default: this subscription.')
param gallerySubscriptionId string = subscription().subscriptionId

@description('Resource group of the default gallery (GALLEON_RESOURCE_GROUP, this subscription). Default: this resource group.')
param galleryResourceGroup string = resourceGroup().name

@description('The default gallery (GALLEON_GALLERY): letters, digits, underscores, periods.')
param galleryName string = 'golden'

@description('Deploy the default gallery here (otherwise galleon creates it on first publish).')
param deployGallery bool = false

@description('Other resource groups of this subscription galleon publishes to or runs Image Builder templates in (galleon-compute is assigned on these and on the gallery\'s). Groups in other subscriptions: infra/README.md.')
param computeResourceGroups array = []

@description('Galleon\'s home region (GALLEON_LOCATION): where versions are made first. Default: location.')
param galleonLocation string = location

@description('GALLEON_TARGET_REGIONS: name[=replicas[:storageAccountType]], comma-separated. Empty: the home region only.')
param targetRegions string = ''

@description('GALLEON_ALLOWED_GALLERIES: subscription/resourceGroup/gallery entries. Empty: only the default gallery.')
param allowedGalleries string = ''

@description('GALLEON_BUILD_SCHEDULE (NCRONTAB with seconds, UTC). Default: the Wednesday after Patch Tuesday, 09:00.')
param buildSchedule string = '0 0 9 9-15 * WED'

@description('GALLEON_LIFECYCLE_SCHEDULE (NCRONTAB with seconds, UTC). Default: daily 02:30.')
param lifecycleSchedule string = '0 30 2 * * *'

@description('More app settings, or overrides of the defaults below (e.g. {"GALLEON_RETENTION": "{...}"}).')
param galleonSettings object = {}

@description('Grant galleon read of platform image versions in this subscription (builds with onlyWhenSourceChanged and a marketplace source).')
param platformImageRead bool = true

@description('Resource group whose Microsoft.Resources.ResourceGroups system topic feeds IngestImage (where Packer writes managed images). Default: this resource group.')
param imageBuildResourceGroup string = resourceGroup().name

@description('Name of the ingest account\'s Event Grid system topic. An account has at most one system topic: if it has one already (for example Defender for Storage\'s), give its name here. Default: <account>-events.')
param storageSystemTopicName string = '${ingestStorageAccountName}-events'

@description('Name of the build resource group\'s system topic (at most one per resource group; give the existing one\'s name if there is one). Default: <group>-events.')
param resourcesSystemTopicName string = '${imageBuildResourceGroup}-events'

@description('Create the Event Grid subscriptions to the functions. The functions must exist first: deploy with false, zip-deploy the package, then deploy again (infra/README.md).')
param createEventSubscriptions bool = true

@description('Optional webhook that receives every public fact of galleon-events (an example subscriber). Empty: none.')
@secure()
param exampleSubscriberEndpoint string = ''

@description('Deploy the example Image Builder templates (Ubuntu 24.04 and Windows Server 2022, VHD distribution) and Image Builder\'s identity.')
param deployImageBuilderExamples bool = false

@description('Image Builder build network: empty = Image Builder\'s own network (default); else the resource id of an existing subnet (infra/README.md, "Build network").')
param imageBuilderSubnetId string = ''

@description('Deploy the Azure Monitor alerts of modules/alerts.bicep (docs/alerts.md): dead letters nothing reads, queues nobody drains, events Event Grid could not deliver.')
param deployAlerts bool = true

@description('Resource id of an existing action group the alerts notify (your on-call routing). Empty: alertEmails, or no notification (the alerts still fire in Azure Monitor).')
param alertActionGroupId string = ''

@description('E-mail addresses the alerts notify through a new action group, when alertActionGroupId is empty.')
param alertEmails array = []

@description('Prefix of the custom roles\' names (unique per tenant).')
param rolePrefix string = 'galleon'

@description('Tags for every resource.')
param tags object = {
  app: 'galleon'
}

// ---------------------------------------------------------------------------------------------------------
// Names and the routing declaration
// ---------------------------------------------------------------------------------------------------------

var routing = loadJsonContent('../events/subscriptions.json')
var suffix = uniqueString(resourceGroup().id)
var compactPrefix = toLower(replace(namePrefix, '-', ''))
var storageAccountName = take('${compactPrefix}${suffix}', 24)
// Must match the request-build subscription's filter in events/subscriptions.json (containers/build-requests/).
var buildRequestContainer = 'build-requests'
// Must match the ingest-blob subscription's filter in events/subscriptions.json (containers/images/).
var ingestContainers = [
  'images'
]
// The container every Event Grid subscription of the routing file dead-letters into.
var deadLetterContainerName = routing.eventGrid.subscriptions[0].deadLetterDestination.properties.blobContainerName
var computeGroups = union([
  galleryResourceGroup
], computeResourceGroups, deployImageBuilderExamples ? [
  resourceGroup().name
] : [])
var armEndpoint = environment().resourceManager
var subnetParts = split(imageBuilderSubnetId, '/')

// ---------------------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------------------

module identity 'modules/identity.bicep' = {
  name: 'galleon-identity'
  params: {
    location: location
    galleonIdentityName: '${namePrefix}-identity'
    createImageBuilderIdentity: deployImageBuilderExamples
    imageBuilderIdentityName: '${namePrefix}-imagebuilder'
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'galleon-monitoring'
  params: {
    location: location
    workspaceName: '${namePrefix}-logs-${suffix}'
    appInsightsName: '${namePrefix}-insights-${suffix}'
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'galleon-storage'
  params: {
    location: location
    accountName: storageAccountName
    skuName: storageSku
    deadLetterContainerName: deadLetterContainerName
    tags: tags
  }
}

// Custom role definitions live at subscription scope.
module subscriptionRoles 'modules/subscription.bicep' = {
  name: 'galleon-subscription-roles'
  scope: subscription()
  params: {
    rolePrefix: rolePrefix
    computeScopes: [for rg in computeGroups: '${subscription().id}/resourceGroups/${rg}']
    ingestScope: '${subscription().id}/resourceGroups/${ingestStorageResourceGroup}'
    galleonPrincipalId: identity.outputs.galleonPrincipalId
    platformImageRead: platformImageRead
    buildNetworkScope: empty(imageBuilderSubnetId) ? '' : '/subscriptions/${subnetParts[2]}/resourceGroups/${subnetParts[4]}'
  }
}

module ingest 'modules/ingest.bicep' = {
  name: 'galleon-ingest'
  scope: resourceGroup(ingestStorageResourceGroup)
  params: {
    accountName: ingestStorageAccountName
    ingestContainers: ingestContainers
    buildRequestContainer: buildRequestContainer
    buildOutputContainer: buildOutputContainer
    createContainers: createIngestContainers
    galleonPrincipalId: identity.outputs.galleonPrincipalId
    imageBuilderPrincipalId: identity.outputs.imageBuilderPrincipalId
    ingestBlobRoleId: subscriptionRoles.outputs.ingestBlobRoleId
    ingestAccountRoleId: subscriptionRoles.outputs.ingestAccountRoleId
    sourceCleanup: sourceCleanup
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'galleon-servicebus'
  params: {
    location: location
    namespaceName: '${namePrefix}-${suffix}'
    routing: routing.serviceBus
    galleonPrincipalId: identity.outputs.galleonPrincipalId
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

module eventTopics 'modules/eventgrid-topics.bicep' = {
  name: 'galleon-eventgrid-topics'
  params: {
    location: location
    topics: routing.eventGrid.topics
    nameSuffix: suffix
    galleonPrincipalId: identity.outputs.galleonPrincipalId
    exampleSubscriberEndpoint: exampleSubscriberEndpoint
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

// Every setting galleon reads, with the default README.md and local.settings.example.json document (an
// empty value means "not set": galleon's default applies). galleonSettings overrides any of them.
var ingestEndpoint = ingest.outputs.blobEndpoint
var defaultSettings = {
  GALLEON_INSTANCE: functionAppName
  GALLEON_SUBSCRIPTION_ID: gallerySubscriptionId
  GALLEON_RESOURCE_GROUP: galleryResourceGroup
  GALLEON_GALLERY: galleryName
  GALLEON_LOCATION: galleonLocation
  GALLEON_TARGET_REGIONS: targetRegions
  GALLEON_ALLOWED_GALLERIES: allowedGalleries
  GALLEON_PUBLISH_FROM: 'vhd'
  GALLEON_PUBLISHER: 'galleon'
  GALLEON_ARM_ENDPOINT: endsWith(armEndpoint, '/') ? substring(armEndpoint, 0, length(armEndpoint) - 1) : armEndpoint
  GALLEON_ARM_AUDIENCE: ''
  GALLEON_STORAGE_AUDIENCE: ''
  GALLEON_SERVICE_BUS_AUDIENCE: ''
  GALLEON_STORAGE_ACCOUNTS: endsWith(ingestEndpoint, '/') ? substring(ingestEndpoint, 0, length(ingestEndpoint) - 1) : ingestEndpoint
  GALLEON_STATE_CONTAINER_URL: '${storage.outputs.blobEndpoint}${storage.outputs.stateContainerName}'
  GALLEON_INGEST_CONTAINERS: join(ingestContainers, ',')
  GALLEON_FACTS_TOPIC: routing.serviceBus.topic
  GALLEON_FOLLOWUP_SECONDS: '30'
  GALLEON_STEP_DEADLINE_MINUTES: '360'
  GALLEON_MAX_ATTEMPTS: '8'
  GALLEON_RUN_DEADLINE_SECONDS: '86400'
  GALLEON_KNOWN_SECONDS: '600'
  GALLEON_ARM_READS_BUDGET: '250/25'
  GALLEON_ARM_WRITES_BUDGET: '200/10'
  GALLEON_BARE_VHD_SETTLE_SECONDS: '60'
  GALLEON_BARE_OS_TYPE: 'Linux'
  GALLEON_MAX_INVOCATION_BYTES: '4194304'
  GALLEON_LOG_FORMAT: 'json'
  GALLEON_KEEP_MANAGED_IMAGES: 'false'
  GALLEON_ARCHITECTURE: ''
  GALLEON_SECURITY_TYPE: ''
  GALLEON_DISK_CONTROLLER_TYPES: ''
  GALLEON_REPLICA_COUNT: ''
  GALLEON_VERSION_LIFETIME_DAYS: ''
  GALLEON_BUILD_SCHEDULE: buildSchedule
  GALLEON_LIFECYCLE_SCHEDULE: lifecycleSchedule
  GALLEON_BUILDS_FILE: ''
  GALLEON_BUILD_TEMPLATES: ''
  GALLEON_BUILD_REQUEST_CONTAINER: buildRequestContainer
  GALLEON_RETENTION: ''
  GALLEON_DISTRIBUTION: ''
  GALLEON_SHARING: ''
  GALLEON_CROSS_TENANT_CLIENT_ID: ''
  GALLEON_TENANT_ID: ''
  RUST_LOG: 'info'
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'galleon-functionapp'
  params: {
    location: location
    appName: functionAppName
    planName: '${namePrefix}-plan-${suffix}'
    hostingPlan: hostingPlan
    flexMaximumInstanceCount: flexMaximumInstanceCount
    flexInstanceMemoryMB: flexInstanceMemoryMB
    flexAlwaysReady: flexAlwaysReady
    premiumSku: premiumSku
    premiumAlwaysReady: premiumAlwaysReady
    identityId: identity.outputs.galleonId
    identityClientId: identity.outputs.galleonClientId
    storageAccountName: storage.outputs.accountName
    storageBlobEndpoint: storage.outputs.blobEndpoint
    packageContainerName: storage.outputs.packageContainerName
    serviceBusNamespace: serviceBus.outputs.fullyQualifiedNamespace
    eventsTopicEndpoint: eventTopics.outputs.topicEndpoint
    appInsightsConnectionString: monitoring.outputs.connectionString
    galleonSettings: union(defaultSettings, galleonSettings)
    subnetId: functionSubnetId
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

// Event Grid: the VHD account's system topic (BlobCreated -> IngestBlob, RequestBuild) and the build
// resource group's (ResourceWriteSuccess of managed images -> IngestImage).
module storageTopic 'modules/eventgrid-systemtopic.bicep' = {
  name: 'galleon-storage-topic'
  scope: resourceGroup(ingestStorageResourceGroup)
  params: {
    name: storageSystemTopicName
    location: ingest.outputs.location
    sourceId: ingest.outputs.accountId
    topicType: 'Microsoft.Storage.StorageAccounts'
    tags: tags
  }
}

module resourcesTopic 'modules/eventgrid-systemtopic.bicep' = {
  name: 'galleon-resources-topic'
  scope: resourceGroup(imageBuildResourceGroup)
  params: {
    name: resourcesSystemTopicName
    location: 'global'
    sourceId: '${subscription().id}/resourceGroups/${imageBuildResourceGroup}'
    topicType: 'Microsoft.Resources.ResourceGroups'
    tags: tags
  }
}

module roles 'modules/roles.bicep' = {
  name: 'galleon-roles'
  params: {
    galleonPrincipalId: identity.outputs.galleonPrincipalId
    storageAccountName: storage.outputs.accountName
    stateContainerName: storage.outputs.stateContainerName
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    deadLetterWriters: [
      storageTopic.outputs.principalId
      resourcesTopic.outputs.principalId
    ]
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

module storageSubscriptions 'modules/eventgrid-subscriptions.bicep' = if (createEventSubscriptions) {
  name: 'galleon-storage-subscriptions'
  scope: resourceGroup(ingestStorageResourceGroup)
  params: {
    systemTopicName: storageTopic.outputs.name
    routingTopic: 'storage'
    subscriptions: routing.eventGrid.subscriptions
    functionAppId: functionApp.outputs.id
    deadLetterAccountId: storage.outputs.accountId
  }
  dependsOn: [
    roles
  ]
}

module resourcesSubscriptions 'modules/eventgrid-subscriptions.bicep' = if (createEventSubscriptions) {
  name: 'galleon-resources-subscriptions'
  scope: resourceGroup(imageBuildResourceGroup)
  params: {
    systemTopicName: resourcesTopic.outputs.name
    routingTopic: 'resources'
    subscriptions: routing.eventGrid.subscriptions
    functionAppId: functionApp.outputs.id
    deadLetterAccountId: storage.outputs.accountId
  }
  dependsOn: [
    roles
  ]
}

// Alerts on every place a message or an event can rest unread (docs/alerts.md).
module alerts 'modules/alerts.bicep' = if (deployAlerts) {
  name: 'galleon-alerts'
  params: {
    namePrefix: namePrefix
    namespaceId: serviceBus.outputs.namespaceId
    queues: routing.serviceBus.queues
    topicName: routing.serviceBus.topic
    systemTopicIds: [
      storageTopic.outputs.id
      resourcesTopic.outputs.id
    ]
    actionGroupId: alertActionGroupId
    alertEmails: alertEmails
    tags: tags
  }
}

// galleon-compute on every allow-listed resource group of this subscription.
module compute 'modules/compute-rg.bicep' = [for rg in computeGroups: {
  name: 'galleon-compute-${uniqueString(rg)}'
  scope: resourceGroup(rg)
  params: {
    galleonPrincipalId: identity.outputs.galleonPrincipalId
    computeRoleId: subscriptionRoles.outputs.computeRoleId
  }
}]

module gallery 'modules/gallery.bicep' = if (deployGallery) {
  name: 'galleon-gallery'
  scope: resourceGroup(galleryResourceGroup)
  params: {
    location: galleonLocation
    galleryName: galleryName
    tags: tags
  }
}

module imageBuilder 'modules/imagebuilder.bicep' = if (deployImageBuilderExamples) {
  name: 'galleon-imagebuilder'
  params: {
    location: location
    identityId: identity.outputs.imageBuilderId
    outputContainerUrl: '${ingestEndpoint}${buildOutputContainer}/'
    subnetId: imageBuilderSubnetId
    tags: tags
  }
  dependsOn: [
    ingest
    imageBuilderNetwork
  ]
}

module imageBuilderNetwork 'modules/imagebuilder-network.bicep' = if (deployImageBuilderExamples && !empty(imageBuilderSubnetId)) {
  name: 'galleon-imagebuilder-network'
  scope: resourceGroup(empty(imageBuilderSubnetId) ? subscription().subscriptionId : subnetParts[2], empty(imageBuilderSubnetId) ? resourceGroup().name : subnetParts[4])
  params: {
    virtualNetworkName: empty(imageBuilderSubnetId) ? 'unused' : subnetParts[8]
    imageBuilderPrincipalId: identity.outputs.imageBuilderPrincipalId
    networkRoleId: subscriptionRoles.outputs.buildNetworkRoleId
  }
}

// ---------------------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------------------

@description('The function app: zip-deploy the package to it.')
output functionAppName string = functionApp.outputs.name

@description('Client id of galleon\'s user-assigned identity (GalleonIdentity__clientId).')
output identityClientId string = identity.outputs.galleonClientId

@description('Principal (object) id of galleon\'s identity, for role assignments made by hand (other subscriptions, cross-tenant).')
output identityPrincipalId string = identity.outputs.galleonPrincipalId

@description('The Service Bus namespace (fully qualified).')
output serviceBusNamespace string = serviceBus.outputs.fullyQualifiedNamespace

@description('Endpoint of galleon\'s public Event Grid topic, for subscribers.')
output eventsTopicEndpoint string = eventTopics.outputs.topicEndpoint

@description('Name of galleon\'s public Event Grid topic.')
output eventsTopicName string = eventTopics.outputs.topicName

@description('The function app\'s storage account (state container, deployment package).')
output storageAccountName string = storage.outputs.accountName

@description('Resource ids of the example Image Builder templates (for the builds file), when deployed.')
output imageBuilderTemplateIds array = deployImageBuilderExamples ? [
  imageBuilder.outputs.linuxTemplateId
  imageBuilder.outputs.windowsTemplateId
] : []
