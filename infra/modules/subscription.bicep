// Subscription: galleon's custom role definitions (they live at subscription scope) and the one
// subscription-wide read galleon needs for builds (the platform image versions list).
targetScope = 'subscription'

@description('Prefix of the custom roles\' names (role names are unique per tenant: give each galleon deployment in a tenant its own prefix).')
param rolePrefix string = 'galleon'

@description('Resource group ids galleon-compute may be assigned on (the allow-listed galleries\' and Image Builder templates\' groups).')
param computeScopes array

@description('Resource group id of the ingest storage account (where the ingest roles are assigned).')
param ingestScope string

@description('Principal id of galleon\'s identity.')
param galleonPrincipalId string

@description('Grant galleon read of platform image versions in this subscription (builds with onlyWhenSourceChanged and a PlatformImage source).')
param platformImageRead bool = false

@description('Resource group id of an existing build virtual network for Image Builder; empty when Image Builder uses its own.')
param buildNetworkScope string = ''

var computeRole = loadJsonContent('../galleon-compute-role.json')

// Exactly the Microsoft.Compute and Microsoft.VirtualMachineImages actions galleon calls (galleon-compute-role.json).
resource compute 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, '${rolePrefix}-compute')
  properties: {
    roleName: '${rolePrefix}-compute'
    description: 'galleon: galleries, image definitions and versions, managed images, Image Builder runs (infra/galleon-compute-role.json)'
    type: 'CustomRole'
    assignableScopes: computeScopes
    permissions: [
      {
        actions: computeRole.actions
        notActions: computeRole.notActions
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

// Blob read plus write (metadata on rejected blobs, a publish request's manifest); no delete.
resource ingestBlob 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, '${rolePrefix}-ingest-blob')
  properties: {
    roleName: '${rolePrefix}-ingest-blob'
    description: 'galleon: read VHDs and manifests, write blob metadata; no delete'
    type: 'CustomRole'
    assignableScopes: [
      ingestScope
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/read'
        ]
        notActions: []
        dataActions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'
        ]
        notDataActions: []
      }
    ]
  }
}

// The ingest account itself: its region (read) and the listKeys Azure Compute Gallery's linked-access check
// asks of the creator of a version or managed image made from a blob.
resource ingestAccount 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, '${rolePrefix}-ingest-account')
  properties: {
    roleName: '${rolePrefix}-ingest-account'
    description: 'galleon: read the ingest storage account; listKeys for Compute Gallery\'s linked-access check on blob sources'
    type: 'CustomRole'
    assignableScopes: [
      ingestScope
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/read'
          'Microsoft.Storage/storageAccounts/listKeys/action'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

// Platform image versions are listed at subscription scope (/subscriptions/{id}/providers/Microsoft.Compute/locations/...).
resource platformImages 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (platformImageRead) {
  name: guid(subscription().id, '${rolePrefix}-platform-images')
  properties: {
    roleName: '${rolePrefix}-platform-images'
    description: 'galleon: list platform (marketplace) image versions to skip builds whose source did not change'
    type: 'CustomRole'
    assignableScopes: [
      subscription().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource platformImagesAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (platformImageRead) {
  name: guid(subscription().id, galleonPrincipalId, '${rolePrefix}-platform-images')
  properties: {
    roleDefinitionId: platformImages.id
    principalId: galleonPrincipalId
    principalType: 'ServicePrincipal'
    description: 'galleon: platform image versions (builds)'
  }
}

// Image Builder joining an existing subnet: read the network, join the subnet (instead of Network Contributor).
resource buildNetwork 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (!empty(buildNetworkScope)) {
  name: guid(subscription().id, '${rolePrefix}-imagebuilder-network')
  properties: {
    roleName: '${rolePrefix}-imagebuilder-network'
    description: 'Image Builder: read the build virtual network and join its subnet'
    type: 'CustomRole'
    assignableScopes: [
      empty(buildNetworkScope) ? subscription().id : buildNetworkScope
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Network/virtualNetworks/read'
          'Microsoft.Network/virtualNetworks/subnets/join/action'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

output computeRoleId string = compute.id
output ingestBlobRoleId string = ingestBlob.id
output ingestAccountRoleId string = ingestAccount.id
output buildNetworkRoleId string = empty(buildNetworkScope) ? '' : buildNetwork.id
