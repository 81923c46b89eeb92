"""Sign in to the Azure ML workspace named by the settings.

With TENANT_ID, SP_APP_ID and SP_APP_SECRET set, that service principal signs in. Otherwise
the token comes from whoever signed the Azure CLI in: a developer's ``az login``, an
``AzureCLI@2`` task in Azure DevOps (any kind of service connection) or ``azure/login`` in
GitHub Actions. The ``az`` executable on PATH is run in a subprocess (``az account
get-access-token``), so the CLI may live in a Python of its own, as it does on build agents;
azureml-core's AzureCliAuthentication would need the azure-cli package in this Python.
"""
import logging
import threading
import time
from typing import TYPE_CHECKING, Dict, Tuple

from ml_service.errors import ConfigurationError
from ml_service.util.env_variables import WorkspaceSettings

if TYPE_CHECKING:  # azureml is slow to import: only the functions below import it
    from azureml.core import Workspace
    from azureml.core.authentication import AbstractAuthentication

LOGGER = logging.getLogger(__name__)
# A cached token is used until this many seconds before it expires.
REFRESH_MARGIN_SECONDS = 300
# Seconds `az account get-access-token` may take (azure-identity's default is 10; a cold CLI
# on a busy build agent can need longer).
CLI_TIMEOUT_SECONDS = 30
HOW_TO_SIGN_IN = ("run `az login` (on a workstation), run the step in an AzureCLI@2 task "
                  "(Azure DevOps) or after azure/login (GitHub Actions), or set TENANT_ID, "
                  "SP_APP_ID and SP_APP_SECRET to sign in as a service principal")


def resource_to_scope(resource: str) -> str:
    """The token scope of a resource URL, as azure-identity credentials expect it."""
    # Always "<resource>/.default", even after a trailing slash: ARM's resource id
    # "https://management.core.windows.net/" has the scope "...windows.net//.default", and
    # AzureCliCredential strips exactly "/.default" to get back the resource it passes to az.
    return f"{resource}/.default"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class AzureCliTokens:
    """Access tokens from the signed-in Azure CLI, one per resource, reused until shortly
    before they expire (each new token runs ``az``, which takes about a second)."""

    def __init__(self, timeout: int = CLI_TIMEOUT_SECONDS) -> None:
        from azure.identity import AzureCliCredential

        self._credential = AzureCliCredential(process_timeout=timeout)
        self._tokens: Dict[str, Tuple[str, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, resource: str) -> str:
        """An access token for the resource (the audience azureml-core asks for)."""
        with self._lock:
            token, expires_on = self._tokens.get(resource, ("", 0))
            if expires_on - time.time() <= REFRESH_MARGIN_SECONDS:
                token, expires_on = self._request(resource)
                self._tokens[resource] = (token, expires_on)
            return token

    def _request(self, resource: str) -> Tuple[str, int]:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import CredentialUnavailableError

        LOGGER.debug("Asking the Azure CLI for a token for %s", resource)
        try:
            access = self._credential.get_token(resource_to_scope(resource))
        except CredentialUnavailableError as err:  # no az, or az is not signed in
            raise ConfigurationError(
                "cannot sign in to Azure ML through the Azure CLI: "
                f"{_one_line(err.message)}; {HOW_TO_SIGN_IN}") from err
        except ClientAuthenticationError as err:  # az ran but gave no token
            raise ConfigurationError(
                f"the Azure CLI gave no token for {resource}: {_one_line(err.message)}; check "
                f"the signed-in account with `az account show`, or {HOW_TO_SIGN_IN}") from err
        return access.token, access.expires_on


def build_authentication(settings: WorkspaceSettings) -> "AbstractAuthentication":
    """The service principal's authentication when one is configured, else the Azure CLI's."""
    from azureml.core.authentication import (ServicePrincipalAuthentication,
                                             TokenAuthentication)

    if settings.uses_service_principal:
        LOGGER.info("Signing in to Azure ML as the service principal %s", settings.sp_app_id)
        return ServicePrincipalAuthentication(
            tenant_id=settings.tenant_id, service_principal_id=settings.sp_app_id,
            service_principal_password=settings.sp_app_secret)
    LOGGER.info("Signing in to Azure ML as the Azure CLI's account (az account "
                "get-access-token)")
    return TokenAuthentication(AzureCliTokens())


def get_workspace(settings: WorkspaceSettings) -> "Workspace":
    """Return the workspace named by the settings, signed in by build_authentication."""
    from azureml.core import Workspace

    return Workspace.get(name=settings.workspace_name, subscription_id=settings.subscription_id,
                         resource_group=settings.resource_group,
                         auth=build_authentication(settings))
