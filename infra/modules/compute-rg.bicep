// Compute roles (one allow-listed resource group): galleon-compute for galleon's identity, on a resource
// group of GALLEON_ALLOWED_GALLERIES or of the Image Builder templates galleon runs.

@description('Principal id of galleon\'s identity.')
param galleonPrincipalId string

@description('Resource id of the custom role galleon-compute.')
param computeRoleId string

resource compute 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, galleonPrincipalId, computeRoleId)
  properties: {
    roleDefinitionId: computeRoleId
    principalId: galleonPrincipalId
    principalType: 'ServicePrincipal'
    description: 'galleon: galleries, versions, managed images, Image Builder runs in this resource group'
  }
}
