"""Signing in to Azure ML, built for real in this venv, which has no azure-cli package.

The Azure CLI path runs a fake ``az`` (a shell script first on PATH) that answers
``az account get-access-token`` as the real CLI does, or fails as it does when nobody is
signed in; no token is ever requested from a service.
"""
import importlib.util
import time
from datetime import datetime
from pathlib import Path

import pytest
from azure.identity import CredentialUnavailableError
from azureml.core import Workspace
from azureml.core.authentication import (Audience, ServicePrincipalAuthentication,
                                         TokenAuthentication)

from ml_service.errors import ConfigurationError
from ml_service.util.env_variables import WorkspaceSettings
from ml_service.util.workspace import (REFRESH_MARGIN_SECONDS, build_authentication,
                                       get_workspace, resource_to_scope)

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
WORKSPACE = {"SUBSCRIPTION_ID": SUBSCRIPTION, "RESOURCE_GROUP": "rg-mlops",
             "WORKSPACE_NAME": "mlw-mlops"}
SERVICE_PRINCIPAL = {"TENANT_ID": "11111111-1111-1111-1111-111111111111",
                     "SP_APP_ID": "22222222-2222-2222-2222-222222222222",
                     "SP_APP_SECRET": "not-a-real-secret"}
# The resources azureml-core asks tokens for in the public cloud, and the fake CLI's answers.
ARM_RESOURCE = "https://management.core.windows.net/"
AML_RESOURCE = "https://ml.azure.com"
TOKENS = {ARM_RESOURCE: "fake-arm-token", AML_RESOURCE: "fake-aml-token"}
# What `az account get-access-token` prints on stderr, exit code 1, when nobody signed in.
NOT_SIGNED_IN = "ERROR: Please run 'az login' to setup account."


def signed_in_az(log: Path, expires_in: int) -> str:
    """A fake az that logs its arguments and prints a token for the two known resources."""
    expires_on = int(time.time()) + expires_in
    local_time = datetime.fromtimestamp(expires_on).strftime("%Y-%m-%d %H:%M:%S.%f")
    cases = "".join(f'    "{resource}") token={token} ;;\n' for resource, token in TOKENS.items())
    return (f'echo "$*" >> "{log}"\n'
            'resource=\n'
            'while [ "$#" -gt 0 ]; do\n'
            '    if [ "$1" = --resource ]; then resource="$2"; fi\n'
            '    shift\n'
            'done\n'
            'case "$resource" in\n'
            f'{cases}'
            '    *) echo "ERROR: unexpected resource $resource" >&2; exit 2 ;;\n'
            'esac\n'
            'cat <<JSON\n'
            '{\n'
            '  "accessToken": "$token",\n'
            f'  "expiresOn": "{local_time}",\n'
            f'  "expires_on": {expires_on},\n'
            f'  "subscription": "{SUBSCRIPTION}",\n'
            f'  "tenant": "{SERVICE_PRINCIPAL["TENANT_ID"]}",\n'
            '  "tokenType": "Bearer"\n'
            '}\n'
            'JSON\n')


@pytest.fixture
def fake_az(tmp_path: Path, monkeypatch):
    """Install a fake az, first on PATH, with the given script body; return its call log."""
    def install(body: str = "", expires_in: int = 3600) -> Path:
        folder = tmp_path / "bin"
        folder.mkdir()
        log = tmp_path / "az-calls.log"
        log.touch()
        script = folder / "az"
        script.write_text("#!/bin/sh\n" + (body or signed_in_az(log, expires_in)))
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
        return log
    return install


@pytest.fixture
def no_az(tmp_path: Path, monkeypatch) -> None:
    """A PATH with no az on it."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def az_calls(log: Path) -> list:
    """The argument lists the fake az was called with."""
    return log.read_text().splitlines()


def token_request(resource: str) -> str:
    return f"account get-access-token --output json --resource {resource}"


def test_this_venv_has_no_azure_cli_package():
    # The CI situation: az lives in a Python of its own, not beside the project's packages.
    assert importlib.util.find_spec("azure.cli") is None


def test_without_a_service_principal_the_azure_cli_signs_in(fake_az):
    log = fake_az()
    auth = build_authentication(WorkspaceSettings.from_env(WORKSPACE))
    assert isinstance(auth, TokenAuthentication)
    assert az_calls(log) == []  # no token until the first service call
    assert auth.get_authentication_header() == {"Authorization": "Bearer fake-arm-token"}
    assert az_calls(log) == [token_request(ARM_RESOURCE)]


@pytest.mark.parametrize("audience, resource", [(Audience.ARM, ARM_RESOURCE),
                                                (Audience.AZUREML, AML_RESOURCE)],
                         ids=["ARM", "AML"])
def test_each_audience_gets_a_token_for_its_resource(fake_az, audience, resource):
    log = fake_az()
    auth = build_authentication(WorkspaceSettings.from_env(WORKSPACE))
    assert auth.get_token(audience) == TOKENS[resource]
    assert az_calls(log) == [token_request(resource)]


def test_a_token_is_reused_until_it_nearly_expires(fake_az):
    log = fake_az()
    auth = build_authentication(WorkspaceSettings.from_env(WORKSPACE))
    for _ in range(3):
        auth.get_token(Audience.ARM)
        auth.get_token(Audience.AZUREML)
    assert az_calls(log) == [token_request(ARM_RESOURCE), token_request(AML_RESOURCE)]


def test_a_token_about_to_expire_is_asked_for_again(fake_az):
    log = fake_az(expires_in=REFRESH_MARGIN_SECONDS // 2)
    auth = build_authentication(WorkspaceSettings.from_env(WORKSPACE))
    auth.get_authentication_header()
    auth.get_authentication_header()
    assert az_calls(log) == [token_request(ARM_RESOURCE)] * 2


@pytest.mark.parametrize("resource, scope", [
    (ARM_RESOURCE, "https://management.core.windows.net//.default"),
    (AML_RESOURCE, "https://ml.azure.com/.default"),
])
def test_a_resource_becomes_the_scope_azure_identity_turns_back_into_it(resource, scope):
    assert resource_to_scope(resource) == scope


def assert_says_how_to_sign_in(message: str) -> None:
    assert "\n" not in message
    for advice in ("az login", "AzureCLI@2", "azure/login", "TENANT_ID, SP_APP_ID and "
                                                            "SP_APP_SECRET"):
        assert advice in message, message


def test_a_cli_nobody_signed_in_to_says_how_to_sign_in(fake_az):
    fake_az(f'echo "{NOT_SIGNED_IN}" >&2\nexit 1\n')
    auth = build_authentication(WorkspaceSettings.from_env(WORKSPACE))
    with pytest.raises(ConfigurationError, match="Please run 'az login'") as caught:
        auth.get_authentication_header()
    assert_says_how_to_sign_in(str(caught.value))
    assert isinstance(caught.value.__cause__, CredentialUnavailableError)


def test_no_cli_on_path_says_how_to_sign_in(no_az):
    auth = build_authentication(WorkspaceSettings.from_env(WORKSPACE))
    with pytest.raises(ConfigurationError, match="Azure CLI not found on path") as caught:
        auth.get_authentication_header()
    assert_says_how_to_sign_in(str(caught.value))


@pytest.mark.parametrize("body, detail", [
    ('echo "ERROR: AADSTS700024: Client assertion is not within its valid time range." >&2\n'
     "exit 1\n", "AADSTS700024"),
    ('echo "{\\"accessToken\\": \\"secret-token\\"}"\n', "Unexpected output from Azure CLI"),
], ids=["refused-by-entra-id", "no-expiry-in-output"])
def test_a_cli_that_gives_no_token_names_the_resource_and_the_reason(fake_az, body, detail):
    fake_az(body)
    auth = build_authentication(WorkspaceSettings.from_env(WORKSPACE))
    with pytest.raises(ConfigurationError, match=detail) as caught:
        auth.get_authentication_header()
    message = str(caught.value)
    assert ARM_RESOURCE in message and "az account show" in message, message
    assert "secret-token" not in message
    assert_says_how_to_sign_in(message)


def test_get_workspace_without_a_signed_in_cli_fails_before_any_service_call(fake_az):
    fake_az(f'echo "{NOT_SIGNED_IN}" >&2\nexit 1\n')
    with pytest.raises(ConfigurationError, match="az login"):
        get_workspace(WorkspaceSettings.from_env(WORKSPACE))


def test_with_a_service_principal_it_signs_in(fake_az):
    log = fake_az()
    auth = build_authentication(WorkspaceSettings.from_env({**WORKSPACE, **SERVICE_PRINCIPAL}))
    assert isinstance(auth, ServicePrincipalAuthentication)
    assert auth._tenant_id == SERVICE_PRINCIPAL["TENANT_ID"]
    assert auth._service_principal_id == SERVICE_PRINCIPAL["SP_APP_ID"]
    assert auth._service_principal_password == SERVICE_PRINCIPAL["SP_APP_SECRET"]
    assert auth._cached_arm_token is None  # built, not signed in: no token was requested
    assert az_calls(log) == []


@pytest.mark.parametrize("variables", [WORKSPACE, {**WORKSPACE, **SERVICE_PRINCIPAL}],
                         ids=["azure-cli", "service-principal"])
def test_an_offline_workspace_accepts_the_authentication(fake_az, variables):
    log = fake_az()
    settings = WorkspaceSettings.from_env(variables)
    auth = build_authentication(settings)
    workspace = Workspace(settings.subscription_id, settings.resource_group,
                          settings.workspace_name, auth=auth, _disable_service_check=True)
    assert workspace._auth_object is auth
    assert (workspace.subscription_id, workspace.resource_group, workspace.name) == (
        SUBSCRIPTION, "rg-mlops", "mlw-mlops")
    assert az_calls(log) == []
