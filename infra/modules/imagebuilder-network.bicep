// Image Builder network role: Image Builder's identity may read the existing build virtual network and join
// its subnet (deployed at the network's resource group).

@description('Name of the existing virtual network.')
param virtualNetworkName string

@description('Principal id of Image Builder\'s identity.')
param imageBuilderPrincipalId string

@description('Resource id of the custom role <prefix>-imagebuilder-network.')
param networkRoleId string

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' existing = {
  name: virtualNetworkName
}

resource join 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vnet.id, imageBuilderPrincipalId, networkRoleId)
  scope: vnet
  properties: {
    roleDefinitionId: networkRoleId
    principalId: imageBuilderPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Image Builder: place build and proxy VMs in the existing subnet'
  }
}
