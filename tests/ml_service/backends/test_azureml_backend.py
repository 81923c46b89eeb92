"""Choosing the Azure ML backend, offline. Its service calls are not tested here
(docs/azure-ml.md)."""
import pytest

from ml_service.backends import get_backend
from ml_service.backends.azureml import AzureMLBackend, latest_metrics
from ml_service.errors import ConfigurationError
from ml_service.util.env_variables import BackendSettings, TrainingSettings, WorkspaceSettings


def test_chosen_by_mlops_backend_without_touching_the_service():
    backend = get_backend(BackendSettings.from_env({"MLOPS_BACKEND": "azureml"}),
                          TrainingSettings())
    assert isinstance(backend, AzureMLBackend) and backend.name == "azureml"
    assert backend._workspace is None


def test_chosen_automatically_inside_an_azure_ml_run():
    assert BackendSettings.from_env({"AZUREML_RUN_ID": "run_1"}).kind == "azureml"
    assert BackendSettings.from_env({"AZUREML_RUN_ID": "run_1",
                                     "MLOPS_BACKEND": "local"}).kind == "local"


def test_a_missing_workspace_variable_is_named(monkeypatch):
    for name in ("SUBSCRIPTION_ID", "RESOURCE_GROUP", "WORKSPACE_NAME"):
        monkeypatch.delenv(name, raising=False)
    backend = AzureMLBackend(TrainingSettings())
    with pytest.raises(ConfigurationError, match="SUBSCRIPTION_ID is not set"):
        backend.workspace


def test_service_principal_needs_all_three_and_its_secret_never_shows():
    base = {"SUBSCRIPTION_ID": "sub", "RESOURCE_GROUP": "rg", "WORKSPACE_NAME": "ws"}
    with pytest.raises(ConfigurationError, match="missing: SP_APP_SECRET"):
        WorkspaceSettings.from_env({**base, "TENANT_ID": "t", "SP_APP_ID": "app"})
    settings = WorkspaceSettings.from_env({**base, "TENANT_ID": "t", "SP_APP_ID": "app",
                                           "SP_APP_SECRET": "s3cr3t-value"})
    assert settings.uses_service_principal
    assert "s3cr3t-value" not in repr(settings) and "s3cr3t-value" not in str(settings)
    assert not WorkspaceSettings.from_env(base).uses_service_principal


def test_latest_metrics_takes_the_last_number():
    assert latest_metrics({"loss": [3.0, 2.0], "quality": 0.5, "note": "x", "flag": True,
                           "empty": []}) == {"loss": 2.0, "quality": 0.5}
