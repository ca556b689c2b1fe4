// Image Builder examples: one Linux (Ubuntu 24.04, apt-get update/upgrade) and one Windows (Windows Server
// 2022, Windows Update and a restart) template, each distributing a VHD that galleon ingests, publishes
// and replicates region by region (Image Builder's own SharedImage distribution blocks until every region
// has replicated and fails the run for one region).

@description('Azure region of the templates (an Image Builder region; the build runs there).')
param location string

@description('Resource id of Image Builder\'s user-assigned identity.')
param identityId string

@description('Blob URL of the container the VHDs are distributed to (https://<account>.blob.core.windows.net/<container>/).')
param outputContainerUrl string

@description('Name of the Linux template.')
param linuxTemplateName string = 'ubuntu-2404-monthly'

@description('Name of the Windows template.')
param windowsTemplateName string = 'win2022-monthly'

@description('Size of the build VM.')
param vmSize string = 'Standard_D2ds_v5'

@description('Build network: empty = Image Builder\'s own (default); else the resource id of an existing subnet (see infra/README.md for its Private Link and NSG requirements).')
param subnetId string = ''

@description('Size of the proxy VM Image Builder puts in an existing subnet (empty: Image Builder\'s default).')
param proxyVmSize string = ''

@description('Tags for every resource.')
param tags object = {}

var vnetConfig = empty(subnetId) ? null : union({
  subnetId: subnetId
}, empty(proxyVmSize) ? {} : {
  proxyVmSize: proxyVmSize
})

resource linux 'Microsoft.VirtualMachineImages/imageTemplates@2024-02-01' = {
  name: linuxTemplateName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    buildTimeoutInMinutes: 90
    vmProfile: {
      vmSize: vmSize
      osDiskSizeGB: 30
      vnetConfig: vnetConfig
    }
    source: {
      type: 'PlatformImage'
      publisher: 'Canonical'
      offer: 'ubuntu-24_04-lts'
      sku: 'server'
      version: 'latest'
    }
    customize: [
      {
        type: 'Shell'
        name: 'patch'
        inline: [
          'sudo apt-get update'
          'sudo DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::=--force-confold upgrade'
          'sudo apt-get -y autoremove'
          'sudo apt-get clean'
        ]
      }
    ]
    // A VHD galleon may read: its BlobCreated does not start ingest (the container is not an ingest
    // container); BuildImage follows the run and IngestBuild takes the run output into the chain.
    distribute: [
      {
        type: 'VHD'
        runOutputName: '${linuxTemplateName}-vhd'
        uri: '${outputContainerUrl}${linuxTemplateName}.vhd'
      }
    ]
    errorHandling: {
      onCustomizerError: 'cleanup'
      onValidationError: 'cleanup'
    }
    autoRun: {
      state: 'Disabled'
    }
  }
}

resource windows 'Microsoft.VirtualMachineImages/imageTemplates@2024-02-01' = {
  name: windowsTemplateName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    // Windows builds with updates need well over an hour.
    buildTimeoutInMinutes: 240
    vmProfile: {
      vmSize: vmSize
      osDiskSizeGB: 127
      vnetConfig: vnetConfig
    }
    source: {
      type: 'PlatformImage'
      publisher: 'MicrosoftWindowsServer'
      offer: 'WindowsServer'
      sku: '2022-datacenter-g2'
      version: 'latest'
    }
    customize: [
      {
        type: 'WindowsUpdate'
        name: 'updates'
        searchCriteria: 'IsInstalled=0'
        filters: [
          'exclude:$_.Title -like \'*Preview*\''
          'include:$true'
        ]
        updateLimit: 100
      }
      {
        type: 'WindowsRestart'
        name: 'restart'
        restartTimeout: '15m'
      }
    ]
    distribute: [
      {
        type: 'VHD'
        runOutputName: '${windowsTemplateName}-vhd'
        uri: '${outputContainerUrl}${windowsTemplateName}.vhd'
      }
    ]
    errorHandling: {
      onCustomizerError: 'cleanup'
      onValidationError: 'cleanup'
    }
    autoRun: {
      state: 'Disabled'
    }
  }
}

output linuxTemplateId string = linux.id
output windowsTemplateId string = windows.id
