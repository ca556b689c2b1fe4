// Monitoring: a Log Analytics workspace and a workspace-based Application Insights component that accepts
// only Entra ID (identity) ingestion; the Functions host sends the handler's stdout/stderr lines and the
// invocations' logs and traces there.

@description('Azure region of the workspace and the component.')
param location string

@description('Name of the Log Analytics workspace.')
param workspaceName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Tags for every resource.')
param tags object = {}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // Telemetry is accepted only with an Entra ID token (the app sends it with its managed identity,
    // APPLICATIONINSIGHTS_AUTHENTICATION_STRING); the instrumentation key alone cannot write.
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
  }
}

output workspaceId string = workspace.id
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
// The connection string is not a secret (it names the ingestion endpoint; with DisableLocalAuth it cannot
// be used to write without a token).
output connectionString string = appInsights.properties.ConnectionString
