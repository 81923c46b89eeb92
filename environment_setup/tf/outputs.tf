output "resource_group_name" {
  description = "Resource group of the environment."
  value       = local.resource_group_name
}

output "workspace_name" {
  description = "Name of the Azure ML workspace (WORKSPACE_NAME)."
  value       = azurerm_machine_learning_workspace.workspace.name
}

output "workspace_id" {
  description = "Resource id of the Azure ML workspace."
  value       = azurerm_machine_learning_workspace.workspace.id
}

output "storage_account_name" {
  description = "Storage account of the workspace."
  value       = azurerm_storage_account.workspace.name
}

output "key_vault_name" {
  description = "Key vault of the workspace."
  value       = azurerm_key_vault.workspace.name
}

output "application_insights_name" {
  description = "Application Insights of the workspace."
  value       = azurerm_application_insights.workspace.name
}

output "log_analytics_workspace_id" {
  description = "Workspace id of the Log Analytics workspace behind Application Insights (LOG_ANALYTICS_WORKSPACE_ID: the scheduled drift check queries it)."
  value       = azurerm_log_analytics_workspace.workspace.workspace_id
}

output "container_registry_name" {
  description = "Container registry of the workspace."
  value       = azurerm_container_registry.workspace.name
}

output "container_registry_login_server" {
  description = "Login server of the container registry."
  value       = azurerm_container_registry.workspace.login_server
}

output "online_endpoint_identity_id" {
  description = "Resource id of the identity the SDK v2 online endpoints run as (ONLINE_ENDPOINT_IDENTITY)."
  value       = azurerm_user_assigned_identity.endpoints.id
}

output "model_app_name" {
  description = "Name of the web app (MODEL_APP_NAME), or an empty string without it."
  value       = var.deploy_model_app ? azurerm_linux_web_app.model_app[0].name : ""
}

output "model_app_url" {
  description = "URL of the web app, or an empty string without it."
  value       = var.deploy_model_app ? "https://${azurerm_linux_web_app.model_app[0].default_hostname}" : ""
}

output "aks_compute_name" {
  description = "Name of the attached AKS compute, or an empty string without AKS."
  value       = var.deploy_aks ? azurerm_machine_learning_inference_cluster.aks[0].name : ""
}
