// The Azure ML environment of the project, deployed to one resource group:
// a storage account, a key vault, Application Insights on a Log Analytics
// workspace, a container registry, and the Azure ML workspace wired to them.
// With deployAks=true, an AKS cluster is created too and attached to the
// workspace as an inference compute (AKS_COMPUTE_NAME in the variable group).
//
// The key vault authorises with Azure RBAC: the workspace's managed identity is made
// Key Vault Administrator on it by a role assignment deployed with it. A vault with access
// policies would lose the one the workspace adds itself each time this file is redeployed
// (the IaC pipeline redeploys it on every change), breaking image builds and deployments.
// The SDK v2 online endpoints run as one user-assigned identity made here, with the roles
// their deployments need: AcrPull on the registry (the scoring image) and Storage Blob Data
// Contributor on the workspace storage (the model files, and the data collector's writes).
// ONLINE_ENDPOINT_IDENTITY in the variable group is its resource id (output
// onlineEndpointIdentityId).
// Deploying it therefore needs Microsoft.Authorization/roleAssignments/write on the
// resource group (Owner, User Access Administrator or Role Based Access Control Administrator).
//
// Deploy with:
//   az deployment group create --resource-group RG \
//     --template-file environment_setup/bicep/main.bicep \
//     --parameters environment_setup/bicep/main.parameters.json baseName=NAME
// environment_setup/arm-templates/cloud-environment.json and environment_setup/tf/
// deploy the same resources with the same names.
targetScope = 'resourceGroup'

@description('Prefix of every resource name: 3 to 10 lowercase letters or digits. Storage account, key vault and registry names are global, so pick one nobody else uses.')
@minLength(3)
@maxLength(10)
param baseName string

@description('Region of every resource.')
param location string = resourceGroup().location

@description('Name of the Azure ML workspace (WORKSPACE_NAME in the variable group).')
@minLength(3)
@maxLength(33)
param workspaceName string = 'mlw-${baseName}'

@description('Replication of the workspace storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param storageSku string = 'Standard_LRS'

@description('Key vault tier.')
@allowed([
  'standard'
  'premium'
])
param keyVaultSku string = 'standard'

@description('Container registry tier; the registry holds the scoring images.')
@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param containerRegistrySku string = 'Basic'

@description('Create an AKS cluster and attach it to the workspace as an inference compute.')
param deployAks bool = false

@description('Name of the AKS compute in the workspace (AKS_COMPUTE_NAME).')
@minLength(2)
@maxLength(16)
param aksComputeName string = 'aks'

@description('Node count of the AKS cluster: Azure ML wants 12 vCPUs or more unless aksClusterPurpose is DevTest.')
@minValue(1)
@maxValue(10)
param aksNodeCount int = 3

@description('VM size of the AKS nodes.')
param aksVmSize string = 'Standard_D3_v2'

@description('Intended use of the AKS compute: DevTest allows a small cluster.')
@allowed([
  'DevTest'
  'FastProd'
  'DenseProd'
])
param aksClusterPurpose string = 'DevTest'

@description('Create the web app people use the model through: App Service (Linux, Python 3.11) with a managed identity that reads the endpoint key from the key vault.')
param deployModelApp bool = false

@description('Tier of the web app\'s App Service plan.')
param modelAppSku string = 'B1'

@description('Tags set on every resource.')
param tags object = {}

var name = toLower(baseName)
var storageAccountName = 'st${name}'
var keyVaultName = 'kv-${name}'
var logAnalyticsName = 'log-${name}'
var applicationInsightsName = 'appi-${name}'
var containerRegistryName = 'cr${name}'
var aksClusterName = 'aks-${name}'
// Built-in role "Key Vault Administrator": all data-plane operations on an RBAC vault.
var keyVaultAdministratorRoleId = '00482a5a-887f-4fb3-b363-3b7fe8e74483'
var endpointIdentityName = 'id-${name}-endpoints'
// Built-in role "AcrPull": pull images from the registry.
var acrPullRoleId = '7f951dda-4ed3-4680-a7ca-43fe172d538d'
// Built-in role "Storage Blob Data Contributor": read and write blobs.
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var modelAppPlanName = 'plan-${name}'
var modelAppName = 'app-${name}'
// Built-in role "Key Vault Secrets User": read secrets (the web app's Key Vault reference).
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'
// The secret the CD pipeline writes the scoring endpoint's key to.
var scoringKeySecretName = 'model-app-scoring-key'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  sku: {
    name: storageSku
  }
  kind: 'StorageV2'
  properties: {
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
  }
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: keyVaultSku
    }
    // No access policies: a redeployed policy list would replace the workspace's access.
    enableRbacAuthorization: true
    enableSoftDelete: true
  }
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
  }
}

resource containerRegistry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: containerRegistryName
  location: location
  tags: tags
  sku: {
    name: containerRegistrySku
  }
  properties: {
    // Azure ML SDK v1 image builds and ACI deployments pull with the admin credentials.
    adminUserEnabled: true
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' = {
  name: workspaceName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  sku: {
    name: 'Basic'
    tier: 'Basic'
  }
  properties: {
    friendlyName: workspaceName
    storageAccount: storage.id
    keyVault: keyVault.id
    applicationInsights: applicationInsights.id
    containerRegistry: containerRegistry.id
  }
}

// The workspace's access to its key vault, restored by every redeployment. The name is a
// guid() of the vault, the workspace and the role, so a redeployment updates, not duplicates.
resource workspaceKeyVaultAdministrator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, workspace.id, keyVaultAdministratorRoleId)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultAdministratorRoleId)
    principalId: workspace.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The identity of the SDK v2 online endpoints, and its two roles (guid() names, as above).
resource endpointIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: endpointIdentityName
  location: location
  tags: tags
}

resource endpointImagePull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(containerRegistry.id, endpointIdentity.id, acrPullRoleId)
  scope: containerRegistry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
    principalId: endpointIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource endpointStorageAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, endpointIdentity.id, storageBlobDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: endpointIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The web app (ml_service/webapp), packaged and deployed by the CD pipeline. It reads the
// endpoint's key through a Key Vault reference, resolved with its own identity.
resource modelAppPlan 'Microsoft.Web/serverfarms@2023-12-01' = if (deployModelApp) {
  name: modelAppPlanName
  location: location
  tags: tags
  kind: 'linux'
  sku: {
    name: modelAppSku
  }
  properties: {
    reserved: true
  }
}

resource modelApp 'Microsoft.Web/sites@2023-12-01' = if (deployModelApp) {
  name: modelAppName
  location: location
  tags: tags
  kind: 'app,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: modelAppPlan.id
    httpsOnly: true
    siteConfig: {
      linuxFxVersion: 'PYTHON|3.11'
      appCommandLine: 'gunicorn --bind=0.0.0.0 --timeout 120 "ml_service.webapp.app:create_app()"'
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: [
        {
          name: 'SCM_DO_BUILD_DURING_DEPLOYMENT'
          value: 'true'
        }
        {
          name: 'WEBAPP_MODEL_CARD'
          value: 'model_card'
        }
        {
          name: 'WEBAPP_SCORING_KEY'
          value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${scoringKeySecretName})'
        }
      ]
    }
  }
}

resource modelAppSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployModelApp) {
  name: guid(keyVault.id, modelApp.id, keyVaultSecretsUserRoleId)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: modelApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource aksCluster 'Microsoft.ContainerService/managedClusters@2024-02-01' = if (deployAks) {
  name: aksClusterName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    dnsPrefix: aksClusterName
    agentPoolProfiles: [
      {
        name: 'agentpool'
        mode: 'System'
        osType: 'Linux'
        count: aksNodeCount
        vmSize: aksVmSize
      }
    ]
  }
}

resource aksCompute 'Microsoft.MachineLearningServices/workspaces/computes@2024-04-01' = if (deployAks) {
  parent: workspace
  name: aksComputeName
  location: location
  properties: {
    computeType: 'AKS'
    computeLocation: location
    resourceId: aksCluster.id
    properties: {
      clusterPurpose: aksClusterPurpose
    }
  }
}

output workspaceName string = workspace.name
output workspaceId string = workspace.id
output storageAccountName string = storage.name
output keyVaultName string = keyVault.name
output applicationInsightsName string = applicationInsights.name
// LOG_ANALYTICS_WORKSPACE_ID of the variable group: the scheduled drift check queries it.
output logAnalyticsWorkspaceId string = logAnalytics.properties.customerId
output containerRegistryName string = containerRegistry.name
output containerRegistryLoginServer string = containerRegistry.properties.loginServer
// ONLINE_ENDPOINT_IDENTITY of the variable group: the SDK v2 online endpoints run as it.
output onlineEndpointIdentityId string = endpointIdentity.id
// MODEL_APP_NAME of the variable group: the CD pipeline deploys the web app to it.
output modelAppName string = deployModelApp ? modelApp.name : ''
output modelAppUrl string = deployModelApp ? 'https://${modelApp.properties.defaultHostName}' : ''
output aksComputeName string = deployAks ? aksComputeName : ''
