"""The SDK v2 batch endpoint and its model deployment, built from the real settings and
loaded by azure-ai-ml's own loaders (schema-checked), offline."""
from dataclasses import replace

import marshmallow
import pytest
import yaml

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines import azureml_v2_batch_endpoint as batch
from ml_service.pipelines.diabetes_regression_build_parallel_batchscore_pipeline import (
    ENTRY_SCRIPT)
from ml_service.util.env_variables import BatchScoringSettings, EnvironmentV2Settings

SETTINGS = BatchScoringSettings.from_env({"BATCHSCORE_NODE_COUNT": "2",
                                          "BATCHSCORE_PROCESS_COUNT_PER_NODE": "3",
                                          "BATCHSCORE_FILES_PER_MINI_BATCH": "5"})
IMAGE = EnvironmentV2Settings().base_image


@pytest.fixture(scope="module")
def deployment():
    return batch.load_batch_deployment(
        batch.batch_deployment_spec(SETTINGS, "model.pkl", 7, "cpu-cluster", IMAGE))


def test_the_deployment_runs_the_batch_scoring_script_on_a_registered_version(deployment):
    form = deployment._to_dict()
    assert type(deployment).__name__ == "ModelBatchDeployment"
    assert (form["name"], form["endpoint_name"], form["type"]) == (
        "model-7", SETTINGS.endpoint_name, "model")
    assert form["model"] == "azureml:model.pkl:7"
    assert form["code_configuration"] == {"code": str(PROJECT_ROOT),
                                          "scoring_script": ENTRY_SCRIPT}
    assert (PROJECT_ROOT / ENTRY_SCRIPT).is_file()
    assert form["compute"] == "azureml:cpu-cluster"


def test_the_deployment_uses_the_batch_environment_and_the_settings(deployment):
    form = deployment._to_dict()
    environment = form["environment"]
    assert environment["image"] == IMAGE
    assert environment["conda_file"] == yaml.safe_load(
        (PROJECT_ROOT / SETTINGS.conda_file).read_text())
    assert form["resources"]["instance_count"] == 2
    settings = form["settings"]
    assert (settings["max_concurrency_per_instance"], settings["mini_batch_size"]) == (3, 5)
    assert (settings["output_action"], settings["output_file_name"]) == (
        "append_row", SETTINGS.output_file_name)
    assert settings["retry_settings"] == {"max_retries": batch.MAX_RETRIES,
                                          "timeout": SETTINGS.run_invocation_timeout}
    assert settings["error_threshold"] == SETTINGS.error_threshold


def test_the_endpoint_is_named_by_the_settings_with_token_auth():
    endpoint = batch.load_batch_endpoint(batch.batch_endpoint_spec(SETTINGS))
    assert (endpoint.name, endpoint.auth_mode) == (SETTINGS.endpoint_name, "aad_token")


def test_the_sdks_schema_refuses_a_bad_setting():
    spec = batch.batch_deployment_spec(SETTINGS, "model.pkl", 7, "cpu-cluster", IMAGE)
    spec["settings"]["output_action"] = "write_everything"
    with pytest.raises(marshmallow.ValidationError, match="output_action"):
        batch.load_batch_deployment(spec)


def test_the_sdks_name_check_refuses_a_bad_endpoint_name():
    from azure.ai.ml.exceptions import ValidationException

    bad = replace(SETTINGS, endpoint_name="x")
    with pytest.raises(ValidationException, match="at least 3 and at most 32 characters"):
        batch.load_batch_endpoint(batch.batch_endpoint_spec(bad))


def test_a_missing_conda_file_is_named():
    broken = replace(SETTINGS, conda_file="no/such.yml")
    with pytest.raises(ConfigurationError, match="no/such.yml does not exist"):
        batch.batch_deployment_spec(broken, "model.pkl", 1, "cpu", IMAGE)


@pytest.mark.parametrize("path, uri", [
    ("scoring/input/", "azureml://datastores/store/paths/scoring/input"),
    ("azureml://datastores/other/paths/x", "azureml://datastores/other/paths/x"),
])
def test_the_input_is_a_folder_on_the_datastore(path, uri):
    found = batch.scoring_input(path, "store")
    assert (found.type, found.path) == ("uri_folder", uri)


def test_by_default_it_scores_the_folder_of_the_v1_input_file():
    settings = BatchScoringSettings()
    assert batch.input_folder(settings) == settings.input_path.rsplit("/", 1)[0]


def test_each_command_has_its_options():
    assert batch.parse_args(["deploy"]).model_version == "production"
    assert batch.parse_args(["score", "--input", "x", "--wait"]).wait
    with pytest.raises(SystemExit):
        batch.parse_args([])
