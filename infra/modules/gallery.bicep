// Gallery (optional): galleon's default Azure Compute Gallery (GALLEON_GALLERY). Galleon creates it on first
// publish when missing; deploying it here lets you choose its description and manage it as code.

@description('Azure region of the gallery (galleon\'s home region, GALLEON_LOCATION).')
param location string

@description('Name of the gallery: letters, digits, underscores and periods; no hyphens.')
param galleryName string

@description('Tags for every resource.')
param tags object = {}

resource gallery 'Microsoft.Compute/galleries@2023-07-03' = {
  name: galleryName
  location: location
  tags: tags
  properties: {
    description: 'Golden images published and replicated by galleon'
  }
}

output id string = gallery.id
