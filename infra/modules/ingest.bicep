// Ingest: the existing VHD storage account galleon reads from (deployed at that account's resource group):
// its containers (VHD ingest, build requests, Image Builder VHD outputs) and the least-privilege role
// assignments of galleon's identity (and Image Builder's) on them.

@description('Name of the existing storage account VHDs and manifests are uploaded to.')
param accountName string

@description('Containers galleon ingests VHDs and manifests from (GALLEON_INGEST_CONTAINERS).')
param ingestContainers array

@description('Container of build requests (GALLEON_BUILD_REQUEST_CONTAINER).')
param buildRequestContainer string

@description('Container Image Builder distributes VHDs to (the example templates\' distribute uri). Empty: none.')
param buildOutputContainer string = ''

@description('Create the containers when missing (an existing container is left as it is).')
param createContainers bool = true

@description('Principal (object) id of galleon\'s identity.')
param galleonPrincipalId string

@description('Principal id of Image Builder\'s identity; empty when the example templates are not deployed.')
param imageBuilderPrincipalId string = ''

@description('Resource id of the custom role galleon-ingest-blob (blob read and write, no delete).')
param ingestBlobRoleId string

@description('Resource id of the custom role galleon-ingest-account (read the account, listKeys for Azure\'s linked-access check).')
param ingestAccountRoleId string

@description('Also grant Storage Blob Data Contributor on the ingest containers: needed only when a retention policy deletes sources (deleteSources).')
param sourceCleanup bool = false

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var hasBuildOutput = !empty(buildOutputContainer)
// Containers galleon reads VHDs from and marks (metadata) when it rejects one.
var vhdContainers = hasBuildOutput ? concat(ingestContainers, [buildOutputContainer]) : ingestContainers

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource newVhdContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for name in vhdContainers: if (createContainers) {
  parent: blobService
  name: name
  properties: {
    publicAccess: 'None'
  }
}]

resource newRequestContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (createContainers) {
  parent: blobService
  name: buildRequestContainer
  properties: {
    publicAccess: 'None'
  }
}

resource vhdContainerRefs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [for name in vhdContainers: {
  parent: blobService
  name: name
}]

resource requestContainerRef 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: buildRequestContainer
}

resource outputContainerRef 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = if (hasBuildOutput) {
  parent: blobService
  name: hasBuildOutput ? buildOutputContainer : 'unused'
}

// Control plane: the account's region (checked before any Azure write) and listKeys, which Azure Compute
// Gallery's linked-access check requires of whoever creates an image version (or managed image) from a
// blob in this account. Galleon itself never calls listKeys.
resource accountRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, galleonPrincipalId, ingestAccountRoleId)
  scope: account
  properties: {
    roleDefinitionId: ingestAccountRoleId
    principalId: galleonPrincipalId
    principalType: 'ServicePrincipal'
    description: 'galleon: read the ingest account (region check) and pass Compute Gallery\'s linked-access check'
  }
}

// Data plane on each VHD container: read VHDs and manifests, write metadata on rejected blobs and a
// publish request's manifest. No delete.
resource vhdRead 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (name, i) in vhdContainers: {
  name: guid(vhdContainerRefs[i].id, galleonPrincipalId, ingestBlobRoleId)
  scope: vhdContainerRefs[i]
  properties: {
    roleDefinitionId: ingestBlobRoleId
    principalId: galleonPrincipalId
    principalType: 'ServicePrincipal'
    description: 'galleon: read VHDs and manifests, mark rejected blobs'
  }
  dependsOn: [
    newVhdContainers
  ]
}]

// Source cleanup (retention deleteSources) deletes accepted VHDs: only then Storage Blob Data Contributor.
resource vhdCleanup 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (name, i) in vhdContainers: if (sourceCleanup) {
  name: guid(vhdContainerRefs[i].id, galleonPrincipalId, storageBlobDataContributor)
  scope: vhdContainerRefs[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: galleonPrincipalId
    principalType: 'ServicePrincipal'
    description: 'galleon: delete accepted VHDs after image ready (retention deleteSources)'
  }
  dependsOn: [
    newVhdContainers
  ]
}]

// Build requests are only read (a request blob is never changed or deleted).
resource requestRead 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(requestContainerRef.id, galleonPrincipalId, storageBlobDataReader)
  scope: requestContainerRef
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: galleonPrincipalId
    principalType: 'ServicePrincipal'
    description: 'galleon: read build requests'
  }
  dependsOn: [
    newRequestContainer
  ]
}

// Image Builder writes the VHD it distributes (distribute type VHD, uri in this container).
resource builderWrite 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasBuildOutput && !empty(imageBuilderPrincipalId)) {
  name: guid(outputContainerRef.id, imageBuilderPrincipalId, storageBlobDataContributor)
  scope: outputContainerRef
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: imageBuilderPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Image Builder: write the VHD a build distributes'
  }
  dependsOn: [
    newVhdContainers
  ]
}

output accountId string = account.id
output location string = account.location
output blobEndpoint string = account.properties.primaryEndpoints.blob
