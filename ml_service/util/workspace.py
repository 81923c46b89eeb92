"""Sign in to the Azure ML workspace named by the settings (a service call)."""
from typing import Any

from ml_service.util.env_variables import WorkspaceSettings


def get_workspace(settings: WorkspaceSettings) -> Any:
    """Return the workspace, signed in with the service principal when one is configured.

    Without one, the Azure CLI's login is used (``az login``), as on a developer machine.
    """
    from azureml.core import Workspace
    from azureml.core.authentication import (AzureCliAuthentication,
                                             ServicePrincipalAuthentication)

    if settings.uses_service_principal:
        auth = ServicePrincipalAuthentication(
            tenant_id=settings.tenant_id, service_principal_id=settings.sp_app_id,
            service_principal_password=settings.sp_app_secret)
    else:
        auth = AzureCliAuthentication()
    return Workspace.get(name=settings.workspace_name, subscription_id=settings.subscription_id,
                         resource_group=settings.resource_group, auth=auth)
