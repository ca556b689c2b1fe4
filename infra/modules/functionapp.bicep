// Function app: the hosting plan and the Linux function app that runs galleon as a custom handler (the
// galleon-handler executable, FUNCTIONS_WORKER_RUNTIME custom), with galleon's user-assigned identity and
// identity-based connections for AzureWebJobsStorage, Service Bus, the Event Grid output and telemetry.

@description('Azure region of the plan and the app.')
param location string

@description('Name of the function app (globally unique host name).')
param appName string

@description('Name of the hosting plan.')
param planName string

@description('Hosting plan: FlexConsumption (FC1, default) or ElasticPremium (EP1-EP3). infra/README.md explains the choice.')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Flex Consumption: most instances the app scales out to (all functions together).')
@minValue(1)
@maxValue(1000)
param flexMaximumInstanceCount int = 40

@description('Flex Consumption: memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param flexInstanceMemoryMB int = 2048

@description('Flex Consumption: always-ready instances, e.g. [{"name": "http", "instanceCount": 1}] or {"name": "function:FollowUp", ...}. Empty: scale to zero.')
param flexAlwaysReady array = []

@description('Elastic Premium: plan size.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param premiumSku string = 'EP1'

@description('Elastic Premium: always-ready instances (at least 1).')
@minValue(1)
@maxValue(20)
param premiumAlwaysReady int = 1

@description('Elastic Premium: most instances the plan bursts to.')
@minValue(1)
@maxValue(100)
param premiumMaximumInstances int = 20

@description('Spread the plan\'s instances over availability zones (billed always-ready instances; see the plan docs).')
param zoneRedundant bool = false

@description('Resource id of galleon\'s user-assigned identity.')
param identityId string

@description('Client id of galleon\'s user-assigned identity.')
param identityClientId string

@description('Name of the function app\'s storage account (AzureWebJobsStorage).')
param storageAccountName string

@description('Blob endpoint of that account (https://<account>.blob.core.windows.net/).')
param storageBlobEndpoint string

@description('Container of the deployment package in that account.')
param packageContainerName string

@description('Blob name of the package (Elastic Premium runs from <container>/<name>; Flex Consumption manages its own).')
param packageBlobName string = 'galleon-package.zip'

@description('Fully qualified Service Bus namespace (<name>.servicebus.windows.net).')
param serviceBusNamespace string

@description('Endpoint of galleon\'s Event Grid topic (https://<topic>.<region>-1.eventgrid.azure.net/api/events).')
param eventsTopicEndpoint string

@description('Application Insights connection string (not a secret).')
param appInsightsConnectionString string

@description('Galleon\'s own app settings (GALLEON_*, RUST_LOG): name to value.')
param galleonSettings object

@description('Subnet for virtual network integration (Flex Consumption: delegated to Microsoft.App/environments; Elastic Premium: to Microsoft.Web/serverFarms). Empty: none.')
param subnetId string = ''

@description('Log Analytics workspace for the app\'s diagnostic logs; empty for none.')
param workspaceId string = ''

@description('Tags for every resource.')
param tags object = {}

var isFlex = hostingPlan == 'FlexConsumption'

// Every connection is identity-based: <connection>__credential = managedidentity with the user-assigned
// identity's client id. No key or connection string is stored (none is needed: galleon has no secret).
var connectionSettings = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  ServiceBusConnection__fullyQualifiedNamespace: serviceBusNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identityClientId
  GalleonEventsTopic__topicEndpointUri: eventsTopicEndpoint
  GalleonEventsTopic__credential: 'managedidentity'
  GalleonEventsTopic__clientId: identityClientId
  GalleonIdentity__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
}

// Elastic Premium only. Flex Consumption rejects these settings: its runtime is functionAppConfig.runtime
// (name custom = FUNCTIONS_WORKER_RUNTIME custom) and it always runs Functions host 4.x
// (FUNCTIONS_EXTENSION_VERSION ~4). On Elastic Premium the app runs from the package blob, read with the
// identity, so no Azure Files content share (which would need a storage key) is created.
var premiumSettings = {
  FUNCTIONS_WORKER_RUNTIME: 'custom'
  FUNCTIONS_EXTENSION_VERSION: '~4'
  WEBSITE_RUN_FROM_PACKAGE: '${storageBlobEndpoint}${packageContainerName}/${packageBlobName}'
  WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: identityId
}

var settings = union(galleonSettings, connectionSettings, isFlex ? {} : premiumSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225:Zone redundancy is the zoneRedundant parameter (off by default): on Flex Consumption it keeps at least two always-ready instances per function group and on Elastic Premium at least three instances, billed around the clock; galleon's runs resume from Service Bus and its state container after a zone failure.
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: premiumSku
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
    maximumElasticWorkerCount: isFlex ? null : premiumMaximumInstances
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222:The HTTP controls (Runs, Versions, the status page; function keys) and Event Grid's AzureFunction deliveries reach the app over its public endpoint; restrict with access restrictions or a private endpoint plus VNet-integrated callers where your network allows.
  //checkov:skip=CKV_AZURE_17:Incoming client certificates do not apply: callers authenticate with function keys, and Event Grid delivers through its AzureFunction destination, which presents no client certificate.
  //checkov:skip=CKV_AZURE_212:Flex Consumption scales to zero by design (always-ready instances are a parameter); on Elastic Premium premiumAlwaysReady keeps at least one instance.
  //checkov:skip=CKV_AZURE_213:No App Service health check: Flex Consumption does not support it, and the Functions host itself restarts the custom handler when its readiness probe (GET /) fails.
  name: appName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    keyVaultReferenceIdentity: identityId
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${packageContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: flexMaximumInstanceCount
        instanceMemoryMB: flexInstanceMemoryMB
        alwaysReady: flexAlwaysReady
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    } : null
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // Elastic Premium only (null = not sent, which Flex Consumption requires). Custom handlers run on the
      // plain Functions host image, so linuxFxVersion stays empty.
      linuxFxVersion: isFlex ? null : ''
      minimumElasticInstanceCount: isFlex ? null : premiumAlwaysReady
      // The host reports Service Bus lengths for scaling itself (needed when the namespace is reachable
      // only through the virtual network).
      functionsRuntimeScaleMonitoringEnabled: isFlex ? null : true
      vnetRouteAllEnabled: isFlex ? null : !empty(subnetId)
    }
  }
}

// Every app setting, as one object (this resource replaces the app's settings on each deployment: the
// template is their source of truth; change them through parameters, not in the portal).
// checkov applies its site-configuration checks to every sites/config resource; this one holds only the
// app settings (the site's configuration is on the site above, where those checks run).
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  //checkov:skip=CKV_AZURE_13:App Service Authentication (EasyAuth) does not fit: the HTTP controls use function keys, Event Grid delivers through the AzureFunction destination, and Flex Consumption does not support EasyAuth.
  //checkov:skip=CKV_AZURE_88:Deliberately no Azure Files: it only works with a storage key; Flex Consumption deploys from a blob container and Elastic Premium runs from the package blob, both read with the managed identity.
  //checkov:skip=CKV_AZURE_63:App Service web-server HTTP logs do not exist for Linux function apps; requests and traces go to Application Insights and FunctionAppLogs to Log Analytics.
  //checkov:skip=CKV_AZURE_65:Detailed error pages are an IIS/web-server feature that does not apply to a Linux function app; errors are logged to Application Insights.
  //checkov:skip=CKV_AZURE_66:Failed request tracing is an IIS feature that does not apply to a Linux function app; failures are in Application Insights.
  //checkov:skip=CKV_AZURE_80:No .NET Framework: the app runs a native custom handler (FUNCTIONS_WORKER_RUNTIME custom).
  //checkov:skip=CKV_AZURE_222:This resource holds app settings only; public network access is set (and its skip explained) on the site.
  parent: site
  name: 'appsettings'
  properties: settings
}

// No FTP or basic-auth deployments: az functionapp deployment uses an Entra ID token.
resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// The host's logs (the handler's stdout/stderr lines included) also go to Log Analytics.
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(workspaceId)) {
  name: 'to-log-analytics'
  scope: site
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
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

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
