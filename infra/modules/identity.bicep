// Identity: galleon's user-assigned managed identity (every token the host and the handler ask for) and,
// optionally, the separate identity Azure VM Image Builder runs the example templates with.

@description('Azure region of the identities.')
param location string

@description('Name of galleon\'s user-assigned managed identity.')
param galleonIdentityName string

@description('Create the Image Builder identity (only needed with the example templates).')
param createImageBuilderIdentity bool = false

@description('Name of the Image Builder user-assigned managed identity.')
param imageBuilderIdentityName string

@description('Tags for every resource.')
param tags object = {}

resource galleon 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: galleonIdentityName
  location: location
  tags: tags
}

// Image Builder gets its own identity so that a template (which runs customizer scripts on a build VM)
// never holds galleon's rights, and galleon never holds the build's.
resource imageBuilder 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (createImageBuilderIdentity) {
  name: imageBuilderIdentityName
  location: location
  tags: tags
}

output galleonId string = galleon.id
output galleonClientId string = galleon.properties.clientId
output galleonPrincipalId string = galleon.properties.principalId
output imageBuilderId string = createImageBuilderIdentity ? imageBuilder.id : ''
output imageBuilderPrincipalId string = createImageBuilderIdentity ? imageBuilder.properties.principalId : ''
