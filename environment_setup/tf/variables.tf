# Inputs of the Azure ML environment. The IaC pipeline sets them from the
# variable group devopsforai-aml-vg through TF_VAR_* environment variables.

variable "base_name" {
  description = "Prefix of every resource name: 3 to 10 lowercase letters or digits (BASE_NAME). Storage account, key vault and registry names are global, so pick one nobody else uses."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]{3,10}$", var.base_name))
    error_message = "base_name must be 3 to 10 lowercase letters or digits."
  }
}

variable "location" {
  description = "Region of the resource group and of every resource (LOCATION)."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the environment (RESOURCE_GROUP)."
  type        = string
}

variable "create_resource_group" {
  description = "Create the resource group; false uses an existing one."
  type        = bool
  default     = true
}

variable "workspace_name" {
  description = "Name of the Azure ML workspace (WORKSPACE_NAME); empty means mlw-<base_name>."
  type        = string
  default     = ""
}

variable "storage_replication_type" {
  description = "Replication of the workspace storage account."
  type        = string
  default     = "LRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS"], var.storage_replication_type)
    error_message = "storage_replication_type must be LRS, ZRS, GRS or RAGRS."
  }
}

variable "key_vault_sku" {
  description = "Key vault tier."
  type        = string
  default     = "standard"

  validation {
    condition     = contains(["standard", "premium"], var.key_vault_sku)
    error_message = "key_vault_sku must be standard or premium."
  }
}

variable "container_registry_sku" {
  description = "Container registry tier; the registry holds the scoring images."
  type        = string
  default     = "Basic"

  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.container_registry_sku)
    error_message = "container_registry_sku must be Basic, Standard or Premium."
  }
}

variable "deploy_aks" {
  description = "Create an AKS cluster and attach it to the workspace as an inference compute."
  type        = bool
  default     = false
}

variable "aks_compute_name" {
  description = "Name of the AKS compute in the workspace (AKS_COMPUTE_NAME)."
  type        = string
  default     = "aks"

  validation {
    condition     = length(var.aks_compute_name) >= 2 && length(var.aks_compute_name) <= 16
    error_message = "aks_compute_name must be 2 to 16 characters long."
  }
}

variable "aks_node_count" {
  description = "Node count of the AKS cluster: Azure ML wants 12 vCPUs or more unless aks_cluster_purpose is DevTest."
  type        = number
  default     = 3
}

variable "aks_vm_size" {
  description = "VM size of the AKS nodes."
  type        = string
  default     = "Standard_D3_v2"
}

variable "aks_cluster_purpose" {
  description = "Intended use of the AKS compute: DevTest allows a small cluster."
  type        = string
  default     = "DevTest"

  validation {
    condition     = contains(["DevTest", "FastProd", "DenseProd"], var.aks_cluster_purpose)
    error_message = "aks_cluster_purpose must be DevTest, FastProd or DenseProd."
  }
}

variable "deploy_model_app" {
  description = "Create the web app people use the model through: App Service (Linux, Python 3.11) with a managed identity that reads the endpoint key from the key vault."
  type        = bool
  default     = false
}

variable "model_app_sku" {
  description = "Tier of the web app's App Service plan."
  type        = string
  default     = "B1"
}

variable "tags" {
  description = "Tags set on every resource."
  type        = map(string)
  default     = {}
}
