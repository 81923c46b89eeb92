"""The SDK v2 managed online endpoint and deployment of the scoring service, from the
project's files, built and checked by azure-ai-ml offline.

The deployment configuration file (``deployment_config_online.yml``) holds the keys of SDK
v2's managed online deployment schema plus ``rollout``; the model, the code and the
environment are filled in here: the code is the folder staged from ``inference_config.yml``
exactly as for SDK v1 (score.py, the project modules it imports and its data files), the
environment the project's scoring conda file on the v2 base image. azure-ai-ml's own loaders
check the result against its schemas, so an unknown key or a bad value in the file is refused
with the SDK's message, and the SDK's name check refuses a bad endpoint name.
"""
import io
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, NamedTuple, Optional, Tuple

import yaml

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.util.deployment_configs import (load_config, scoring_source,
                                                staged_scoring_source)
from ml_service.util.online_rollout import RolloutSettings

ENDPOINT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json"
DEPLOYMENT_SCHEMA = ("https://azuremlschemas.azureedge.net/latest/"
                     "managedOnlineDeployment.schema.json")
ROLLOUT_KEY = "rollout"
# Keys the project fills in; in the file they are refused, with the reason.
FILLED_IN = {
    "name": "the deployment is named by the rollout (blue or green)",
    "endpoint_name": "the endpoint is ONLINE_STAGING_ENDPOINT_NAME or ONLINE_ENDPOINT_NAME",
    "model": "the model version is the one being deployed",
    "code_configuration": "the code is staged from inference_config.yml, as for SDK v1",
    "environment": "the environment is the project's scoring conda file",
}


# score.py's collector on a managed online deployment: SDK v2's data collector, which keeps
# what the deployment's data_collector enables (model_inputs, model_outputs).
DEPLOYMENT_VARIABLES = {"MLOPS_COLLECTOR": "mdc"}


class OnlineDeploymentConfig(NamedTuple):
    """The deployment's own settings (SDK v2 schema keys) and the rollout settings."""

    deployment: Dict[str, Any]
    rollout: RolloutSettings


def read_online_config(path: Path) -> OnlineDeploymentConfig:
    """Read the deployment configuration file; refuse keys the project fills in and a bad
    rollout, naming the file."""
    config = load_config(path)
    for key, reason in FILLED_IN.items():
        if key in config:
            raise ConfigurationError(f"{path}: remove {key!r}: {reason}")
    raw = config.pop(ROLLOUT_KEY, None) or {}
    if not isinstance(raw, dict) or set(raw) - {"mirror_percent", "traffic_steps"}:
        raise ConfigurationError(f"{path}: {ROLLOUT_KEY} takes mirror_percent and "
                                 f"traffic_steps, not {raw!r}")
    steps = raw.get("traffic_steps", list(RolloutSettings.traffic_steps))
    mirror = raw.get("mirror_percent", RolloutSettings.mirror_percent)
    if not isinstance(steps, list) or not all(_whole(v) for v in steps) \
            or not _whole(mirror):
        raise ConfigurationError(f"{path}: {ROLLOUT_KEY} takes whole percentages, for example "
                                 "mirror_percent: 20 and traffic_steps: [10, 100]")
    try:
        rollout = RolloutSettings(mirror_percent=mirror, traffic_steps=tuple(steps))
    except ConfigurationError as err:
        raise ConfigurationError(f"{path}: {err}") from err
    return OnlineDeploymentConfig(config, rollout)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def online_endpoint_spec(name: str, identity: str = "") -> Dict[str, Any]:
    """A managed online endpoint with key authentication (the smoke test reads the key
    through the SDK), running as the user-assigned identity whose resource id is
    ``identity`` (the infrastructure templates make it and grant its roles), or as its own
    system-assigned identity when ``identity`` is empty."""
    spec = {"$schema": ENDPOINT_SCHEMA, "name": name, "auth_mode": "key",
            "description": "Scoring service of the production model"}
    if identity:
        spec["identity"] = {"type": "user_assigned",
                            "user_assigned_identities": [{"resource_id": identity}]}
    return spec


def online_deployment_spec(config: Mapping[str, Any], endpoint_name: str, name: str,
                           model_name: str, version: int, code: Path, scoring_script: str,
                           environment: Mapping[str, str],
                           environment_variables: Optional[Mapping[str, str]] = None,
                           ) -> Dict[str, Any]:
    """The YAML form of one deployment: the file's settings and what the project fills in."""
    spec: Dict[str, Any] = {
        "$schema": DEPLOYMENT_SCHEMA,
        "name": name,
        "endpoint_name": endpoint_name,
        "model": f"azureml:{model_name}:{int(version)}",
        "code_configuration": {"code": str(code), "scoring_script": scoring_script},
        "environment": dict(environment),
        **dict(config),
    }
    spec["environment_variables"] = {**DEPLOYMENT_VARIABLES, **dict(environment_variables or {})}
    return spec


def online_deployment(config: OnlineDeploymentConfig, endpoint_name: str, name: str,
                      model_name: str, version: int, code: Path, scoring_script: str,
                      source: str) -> Any:
    """The checked deployment of one model version, in the project's scoring environment on
    the SDK v2 base image (from the settings); ``source`` names the configuration file."""
    from ml_service.util.env_variables import EnvironmentSettings, EnvironmentV2Settings

    environment = EnvironmentSettings.from_env()
    return load_online_deployment(online_deployment_spec(
        config.deployment, endpoint_name, name, model_name, version, code, scoring_script,
        scoring_environment(environment.conda_file, EnvironmentV2Settings.from_env().base_image,
                            environment.name)), source)


def scoring_environment(conda_file: str, image: str, name: str) -> Dict[str, str]:
    """The scoring image: the project's scoring conda file on the base image."""
    path = PROJECT_ROOT / conda_file
    if not path.is_file():
        raise ConfigurationError(f"the scoring conda file {path} does not exist")
    return {"name": name, "image": image, "conda_file": str(path)}


@contextmanager
def staged_code(inference_config: Path) -> Iterator[Tuple[Path, str]]:
    """(the staged scoring folder, score.py's path in it), as SDK v1 stages it; removed after."""
    source = scoring_source(inference_config)
    with staged_scoring_source(source.files) as staged:
        yield staged, source.entry_script


def _load(loader: Any, spec: Mapping[str, Any], what: str, source: str,
          is_deployment: bool) -> Any:
    """Load a spec with an azure-ai-ml loader and the SDK's name check; a refusal becomes a
    ConfigurationError naming what was built and from which file."""
    from azure.ai.ml.entities._endpoint._endpoint_helpers import (
        validate_endpoint_or_deployment_name)
    from azure.ai.ml.exceptions import ValidationException
    from marshmallow.exceptions import ValidationError

    try:
        entity = loader(io.StringIO(yaml.safe_dump(dict(spec), sort_keys=False)))
        validate_endpoint_or_deployment_name(entity.name, is_deployment=is_deployment)
    except (ValidationError, ValidationException) as err:
        message = " ".join(str(err).split())
        raise ConfigurationError(f"azure-ai-ml refuses the {what} built from {source}: "
                                 f"{message}") from err
    return entity


def load_online_endpoint(spec: Mapping[str, Any], source: str = "the settings") -> Any:
    """The ManagedOnlineEndpoint of a spec, loaded (and schema-checked) by azure-ai-ml, its
    name checked as the SDK checks it before sending it."""
    from azure.ai.ml import load_online_endpoint as load

    return _load(load, spec, "online endpoint", source, False)


def load_online_deployment(spec: Mapping[str, Any], source: str) -> Any:
    """The ManagedOnlineDeployment of a spec, loaded (and schema-checked) by azure-ai-ml."""
    from azure.ai.ml import load_online_deployment as load

    return _load(load, spec, "online deployment", source, True)
