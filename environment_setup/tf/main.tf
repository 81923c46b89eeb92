# The Azure ML environment of the project: a storage account, a key vault,
# Application Insights on a Log Analytics workspace, a container registry and
# the Azure ML workspace wired to them; with deploy_aks = true an AKS cluster
# attached to the workspace as an inference compute. Same resources and names
# as environment_setup/bicep/main.bicep and the ARM template.
#
# The key vault authorises with Azure RBAC and the workspace's managed identity is
# its Key Vault Administrator, so no access policy list can replace the workspace's
# access. The SDK v2 online endpoints run as a user-assigned identity made here, with
# AcrPull on the registry and Storage Blob Data Contributor on the workspace storage
# (model files, and the data collector's writes). Applying needs Microsoft.Authorization/roleAssignments/write on the
# resource group (Owner, User Access Administrator or Role Based Access Control
# Administrator).

terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.74"
    }
  }

  # Remote state in an Azure storage account. The settings are given to
  # `terraform init -backend-config=...` by the IaC pipeline; use
  # `terraform init -backend=false` to work without state.
  backend "azurerm" {}
}

# azurerm 4 needs the subscription: ARM_SUBSCRIPTION_ID, which the IaC pipeline sets
# with the service connection's credentials (or `az login` and `az account set` by hand).
provider "azurerm" {
  features {
    key_vault {
      # The workspace's key vault is soft-deleted with the resource group;
      # keep it recoverable rather than purging it on destroy.
      purge_soft_delete_on_destroy = false
    }
  }
}

data "azurerm_client_config" "current" {}

resource "azurerm_resource_group" "environment" {
  count = var.create_resource_group ? 1 : 0

  name     = var.resource_group_name
  location = var.location
  tags     = var.tags
}

data "azurerm_resource_group" "existing" {
  count = var.create_resource_group ? 0 : 1

  name = var.resource_group_name
}

locals {
  name                = lower(var.base_name)
  resource_group_name = var.create_resource_group ? azurerm_resource_group.environment[0].name : data.azurerm_resource_group.existing[0].name
  workspace_name      = var.workspace_name != "" ? var.workspace_name : "mlw-${local.name}"
  # Built-in role "Key Vault Administrator": all data-plane operations on an RBAC vault.
  key_vault_administrator_role_id = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
  # Built-in roles "AcrPull" (pull images) and "Storage Blob Data Contributor".
  acr_pull_role_id                      = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
  storage_blob_data_contributor_role_id = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
  # Built-in role "Key Vault Secrets User": the web app's Key Vault reference reads the key.
  key_vault_secrets_user_role_id = "4633458b-17de-408a-b874-0445c86b69e6"
  # The secret the CD pipeline writes the scoring endpoint's key to.
  scoring_key_secret_name = "model-app-scoring-key"
  role_definitions        = "/subscriptions/${data.azurerm_client_config.current.subscription_id}/providers/Microsoft.Authorization/roleDefinitions"
}

resource "azurerm_storage_account" "workspace" {
  name                            = "st${local.name}"
  resource_group_name             = local.resource_group_name
  location                        = var.location
  account_tier                    = "Standard"
  account_replication_type        = var.storage_replication_type
  account_kind                    = "StorageV2"
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  tags                            = var.tags
}

resource "azurerm_key_vault" "workspace" {
  name                = "kv-${local.name}"
  resource_group_name = local.resource_group_name
  location            = var.location
  tenant_id           = data.azurerm_client_config.current.tenant_id
  sku_name            = var.key_vault_sku
  tags                = var.tags

  # Access through role assignments, never access policies. (azurerm 4.x deprecates the
  # old name of this argument, enable_rbac_authorization; 5.0 removes it.)
  rbac_authorization_enabled = true
}

resource "azurerm_log_analytics_workspace" "workspace" {
  name                = "log-${local.name}"
  resource_group_name = local.resource_group_name
  location            = var.location
  sku                 = "PerGB2018"
  retention_in_days   = 30
  tags                = var.tags
}

resource "azurerm_application_insights" "workspace" {
  name                = "appi-${local.name}"
  resource_group_name = local.resource_group_name
  location            = var.location
  workspace_id        = azurerm_log_analytics_workspace.workspace.id
  application_type    = "web"
  tags                = var.tags
}

resource "azurerm_container_registry" "workspace" {
  name                = "cr${local.name}"
  resource_group_name = local.resource_group_name
  location            = var.location
  sku                 = var.container_registry_sku
  # Azure ML SDK v1 image builds and ACI deployments pull with the admin credentials.
  admin_enabled = true
  tags          = var.tags
}

resource "azurerm_machine_learning_workspace" "workspace" {
  name                    = local.workspace_name
  friendly_name           = local.workspace_name
  resource_group_name     = local.resource_group_name
  location                = var.location
  storage_account_id      = azurerm_storage_account.workspace.id
  key_vault_id            = azurerm_key_vault.workspace.id
  application_insights_id = azurerm_application_insights.workspace.id
  container_registry_id   = azurerm_container_registry.workspace.id
  sku_name                = "Basic"
  tags                    = var.tags

  identity {
    type = "SystemAssigned"
  }
}

# The workspace's access to its key vault.
resource "azurerm_role_assignment" "workspace_key_vault_administrator" {
  scope              = azurerm_key_vault.workspace.id
  role_definition_id = "/subscriptions/${data.azurerm_client_config.current.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/${local.key_vault_administrator_role_id}"
  principal_id       = azurerm_machine_learning_workspace.workspace.identity[0].principal_id
  principal_type     = "ServicePrincipal"
}

# The identity of the SDK v2 online endpoints (ONLINE_ENDPOINT_IDENTITY), and its roles.
resource "azurerm_user_assigned_identity" "endpoints" {
  name                = "id-${local.name}-endpoints"
  resource_group_name = local.resource_group_name
  location            = var.location
  tags                = var.tags
}

resource "azurerm_role_assignment" "endpoints_image_pull" {
  scope              = azurerm_container_registry.workspace.id
  role_definition_id = "${local.role_definitions}/${local.acr_pull_role_id}"
  principal_id       = azurerm_user_assigned_identity.endpoints.principal_id
  principal_type     = "ServicePrincipal"
}

resource "azurerm_role_assignment" "endpoints_storage_access" {
  scope              = azurerm_storage_account.workspace.id
  role_definition_id = "${local.role_definitions}/${local.storage_blob_data_contributor_role_id}"
  principal_id       = azurerm_user_assigned_identity.endpoints.principal_id
  principal_type     = "ServicePrincipal"
}

# The web app (ml_service/webapp), packaged and deployed by the CD pipeline.
resource "azurerm_service_plan" "model_app" {
  count = var.deploy_model_app ? 1 : 0

  name                = "plan-${local.name}"
  resource_group_name = local.resource_group_name
  location            = var.location
  os_type             = "Linux"
  sku_name            = var.model_app_sku
  tags                = var.tags
}

resource "azurerm_linux_web_app" "model_app" {
  count = var.deploy_model_app ? 1 : 0

  name                = "app-${local.name}"
  resource_group_name = local.resource_group_name
  location            = var.location
  service_plan_id     = azurerm_service_plan.model_app[0].id
  https_only          = true
  tags                = var.tags

  identity {
    type = "SystemAssigned"
  }

  site_config {
    app_command_line    = "gunicorn --bind=0.0.0.0 --timeout 120 \"ml_service.webapp.app:create_app()\""
    minimum_tls_version = "1.2"
    ftps_state          = "Disabled"

    application_stack {
      python_version = "3.11"
    }
  }

  app_settings = {
    SCM_DO_BUILD_DURING_DEPLOYMENT = "true"
    WEBAPP_MODEL_CARD              = "model_card"
    WEBAPP_SCORING_KEY             = "@Microsoft.KeyVault(VaultName=${azurerm_key_vault.workspace.name};SecretName=${local.scoring_key_secret_name})"
  }
}

resource "azurerm_role_assignment" "model_app_secrets_user" {
  count = var.deploy_model_app ? 1 : 0

  scope              = azurerm_key_vault.workspace.id
  role_definition_id = "${local.role_definitions}/${local.key_vault_secrets_user_role_id}"
  principal_id       = azurerm_linux_web_app.model_app[0].identity[0].principal_id
  principal_type     = "ServicePrincipal"
}

resource "azurerm_kubernetes_cluster" "inference" {
  count = var.deploy_aks ? 1 : 0

  name                = "aks-${local.name}"
  resource_group_name = local.resource_group_name
  location            = var.location
  dns_prefix          = "aks-${local.name}"
  tags                = var.tags

  default_node_pool {
    name       = "agentpool"
    node_count = var.aks_node_count
    vm_size    = var.aks_vm_size
  }

  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_machine_learning_inference_cluster" "aks" {
  count = var.deploy_aks ? 1 : 0

  name                          = var.aks_compute_name
  location                      = var.location
  machine_learning_workspace_id = azurerm_machine_learning_workspace.workspace.id
  kubernetes_cluster_id         = azurerm_kubernetes_cluster.inference[0].id
  cluster_purpose               = var.aks_cluster_purpose
  tags                          = var.tags
}
