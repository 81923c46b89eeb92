"""The SDK v2 online endpoint and deployment, built from the repository's files and loaded by
azure-ai-ml's own loaders, offline; their serialised form as the service would receive it."""
from pathlib import Path

import pytest
import yaml

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines.diabetes_regression_pipeline import INFERENCE_CONFIG
from ml_service.util import online_configs as online
from ml_service.util.deployment_configs import scoring_source
from ml_service.util.env_variables import (EnvironmentSettings, EnvironmentV2Settings,
                                           OnlineEndpointSettings)
from ml_service.util.online_rollout import RolloutSettings

SETTINGS = OnlineEndpointSettings()
CONFIG_FILE = PROJECT_ROOT / SETTINGS.deployment_config


def environment():
    settings = EnvironmentSettings()
    return online.scoring_environment(settings.conda_file, EnvironmentV2Settings().base_image,
                                      settings.name)


@pytest.fixture(scope="module")
def built():
    """(the deployment, its REST form, the staged files) from the repository's files."""
    config = online.read_online_config(CONFIG_FILE)
    with online.staged_code(PROJECT_ROOT / INFERENCE_CONFIG) as (code, script):
        spec = online.online_deployment_spec(config.deployment, SETTINGS.endpoint_name, "blue",
                                             "model.pkl", 4, code, script, environment(),
                                             {"MLOPS_COLLECTOR": "log"})
        deployment = online.load_online_deployment(spec, str(CONFIG_FILE))
        files = sorted(p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file())
        rest = deployment._to_rest_object(location="westeurope").as_dict()
    return deployment, rest, files


def test_the_deployment_serves_the_model_with_score_py_staged_as_for_v1(built):
    deployment, rest, files = built
    assert type(deployment).__name__ == "ManagedOnlineDeployment"
    assert (deployment.name, deployment.endpoint_name) == ("blue", SETTINGS.endpoint_name)
    assert rest["properties"]["model"] == "model.pkl:4"
    source = scoring_source(PROJECT_ROOT / INFERENCE_CONFIG)
    assert rest["properties"]["codeConfiguration"]["scoringScript"] == source.entry_script
    assert files == sorted(source.files)
    assert rest["properties"]["environmentVariables"] == {"MLOPS_COLLECTOR": "log"}
    conda = yaml.safe_load((PROJECT_ROOT / EnvironmentSettings().conda_file).read_text())
    assert deployment.environment.conda_file == conda


def test_the_serialised_deployment_carries_the_files_settings(built):
    rest = built[1]["properties"]
    config = yaml.safe_load(CONFIG_FILE.read_text())
    assert rest["instanceType"] == config["instance_type"]
    assert built[1]["sku"]["capacity"] == config["instance_count"]
    assert rest["requestSettings"]["requestTimeout"] == "PT5S"
    assert rest["requestSettings"]["maxConcurrentRequestsPerInstance"] == (
        config["request_settings"]["max_concurrent_requests_per_instance"])
    for probe in ("livenessProbe", "readinessProbe"):
        assert rest[probe]["failureThreshold"] == config["liveness_probe"]["failure_threshold"]
    assert rest["appInsightsEnabled"] is True
    assert rest["dataCollector"]["collections"] == {
        "model_inputs": {"dataCollectionMode": "enabled"},
        "model_outputs": {"dataCollectionMode": "enabled"}}


def test_score_py_collects_with_the_sdk_v2_collector_unless_told_otherwise():
    config = online.read_online_config(CONFIG_FILE)
    spec = online.online_deployment_spec(config.deployment, "e", "blue", "m", 1, Path("."),
                                         "score.py", {})
    assert spec["environment_variables"] == {"MLOPS_COLLECTOR": "mdc"}


def test_the_rollout_settings_come_from_the_file():
    assert online.read_online_config(CONFIG_FILE).rollout == RolloutSettings(20, (10, 100))


def test_the_endpoint_uses_keys_and_serialises_its_traffic():
    endpoint = online.load_online_endpoint(online.online_endpoint_spec(SETTINGS.endpoint_name))
    assert (endpoint.name, endpoint.auth_mode) == (SETTINGS.endpoint_name, "key")
    endpoint.traffic, endpoint.mirror_traffic = {"blue": 90, "green": 10}, {}
    rest = endpoint._to_rest_online_endpoint(location="westeurope").as_dict()["properties"]
    assert (rest["authMode"], rest["traffic"]) == ("Key", {"blue": 90, "green": 10})


def test_without_an_identity_the_endpoint_runs_as_its_own():
    endpoint = online.load_online_endpoint(online.online_endpoint_spec(SETTINGS.endpoint_name))
    rest = endpoint._to_rest_online_endpoint(location="westeurope").as_dict()
    assert rest["identity"]["type"] == "SystemAssigned"


@pytest.mark.parametrize("value", [
    "id-mlops-endpoints",
    "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
], ids=["a name", "another resource"])
def test_an_identity_that_is_not_a_user_assigned_ones_resource_id_is_refused(value):
    with pytest.raises(ConfigurationError, match="ONLINE_ENDPOINT_IDENTITY=.*onlineEndpoint"):
        OnlineEndpointSettings.from_env({"ONLINE_ENDPOINT_IDENTITY": value})


def write_config(tmp_path: Path, change) -> Path:
    config = yaml.safe_load(CONFIG_FILE.read_text())
    change(config)
    path = tmp_path / "online.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(model="azureml:x:1"), "remove 'model': the model version"),
    (lambda c: c.update(rollout={"traffic_steps": [10, 50]}), "ending at 100"),
    (lambda c: c.update(rollout={"traffic_steps": ["10", 100]}), "whole percentages"),
    (lambda c: c.update(rollout={"canary": 5}), "takes mirror_percent and traffic_steps"),
], ids=["filled-in key", "steps not ending at 100", "text step", "unknown rollout key"])
def test_a_bad_file_is_refused_naming_it(tmp_path, change, message):
    path = write_config(tmp_path, change)
    with pytest.raises(ConfigurationError, match=message) as caught:
        online.read_online_config(path)
    assert str(path) in str(caught.value)


def test_the_sdks_schema_refuses_an_unknown_key_naming_the_file(tmp_path):
    path = write_config(tmp_path, lambda c: c.update(instance_sku="Standard_DS2_v2"))
    config = online.read_online_config(path)
    with online.staged_code(PROJECT_ROOT / INFERENCE_CONFIG) as (code, script):
        spec = online.online_deployment_spec(config.deployment, SETTINGS.endpoint_name, "blue",
                                             "model.pkl", 1, code, script, environment())
        with pytest.raises(ConfigurationError, match=f"built from {path}.*instance_sku"):
            online.load_online_deployment(spec, str(path))


def test_the_sdks_name_check_refuses_a_bad_endpoint_name():
    with pytest.raises(ConfigurationError, match="at least 3 and at most 32 characters"):
        online.load_online_endpoint(online.online_endpoint_spec("ab"))
