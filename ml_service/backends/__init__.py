"""Backends: where runs, datasets, models and deployments live.

``get_backend()`` picks one from the settings; ``local`` is the default.
"""
from typing import Optional

from ml_service.backends.base import Backend
from ml_service.errors import ConfigurationError
from ml_service.util.env_variables import BackendSettings, ScoringSettings, TrainingSettings

SUPPORTED = ("local", "azureml", "azureml-v2")


def get_backend(backend: Optional[BackendSettings] = None,
                training: Optional[TrainingSettings] = None,
                scoring: Optional[ScoringSettings] = None) -> Backend:
    """Return the backend named by MLOPS_BACKEND: local by default, azureml (SDK v1) inside
    an Azure ML run, azureml-v2 (SDK v2) when chosen (its pipeline's steps choose it)."""
    backend = backend or BackendSettings.from_env()
    training = training or TrainingSettings.from_env()
    scoring = scoring or ScoringSettings.from_env()
    if backend.kind == "local":
        from ml_service.backends.local import LocalBackend

        return LocalBackend(backend.root, training.experiment_name, scoring.port)
    if backend.kind == "azureml":
        from ml_service.backends.azureml import AzureMLBackend

        return AzureMLBackend(training)
    if backend.kind == "azureml-v2":
        from ml_service.backends.azureml_v2 import AzureMLv2Backend

        return AzureMLv2Backend(training)
    raise ConfigurationError(
        f"MLOPS_BACKEND={backend.kind!r} is not a backend here; supported: "
        f"{', '.join(SUPPORTED)}")
