"""The batch scoring pipeline: its real Azure ML graph built offline, its settings, and the
run script on the local backend."""
import importlib.metadata
import json
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from azureml.core import Dataset
from azureml.data.abstract_dataset import _DatasetRegistration
from azureml.data.azure_storage_datastore import AzureBlobDatastore
from azureml.pipeline.core.graph import ModuleDef
from packaging.requirements import Requirement

from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.model_files import save_model
from diabetes_regression.training.prediction import RESULT_KEY, predict
from diabetes_regression.training.train import (TARGET_COLUMN, load_sample_data, split_data,
                                                train_model)
from ml_service.errors import ConfigurationError
from ml_service.pipelines import diabetes_regression_build_parallel_batchscore_pipeline as build
from ml_service.pipelines import run_parallel_batchscore_pipeline as run_batchscore
from ml_service.pipelines.diabetes_regression_build_parallel_batchscore_pipeline import (
    BATCH_STEP_NAME, COPY_SCRIPT, COPY_STEP_NAME, ENTRY_SCRIPT, SCORED_ROWS, SCORING_INPUT,
    SCORING_INPUT_FILE, SCORING_OUTPUT, BatchScoringSettings, build_batchscore_pipeline)
from ml_service.util.env_variables import EnvironmentSettings, TrainingSettings
from ml_service.util.manage_environment import build_environment
from tests.azureml_offline import offline_workflow_provider, offline_workspace

NAME = TrainingSettings().model_name
COMPUTE = "cpu-cluster"
DATASET_RUNTIME_WARNING = "ParallelRunStep requires azureml-dataset-runtime"
# The driver ParallelRunStep runs on each node; it imports the entry script.
PARALLEL_RUN_DRIVER = "driver/amlbi_main.py"


@pytest.fixture(scope="module")
def environment():
    """The batch scoring environment, built from its conda file as build_and_publish does."""
    return build_environment(BatchScoringSettings().environment_settings())


@pytest.fixture
def workspace():
    return offline_workspace()


def saved(dataset, workspace, saved_id):
    """The dataset as the service returns it once saved (Dataset.get_by_name does): building
    a Pipeline saves every unsaved dataset input, a service call."""
    dataset._registration = _DatasetRegistration(workspace, saved_id)
    return dataset


@pytest.fixture
def build_pipeline(workspace, environment):
    def build_it(settings=BatchScoringSettings(), model_name=NAME):
        datastore = AzureBlobDatastore(workspace, "workspaceblobstore", "container", "account")
        path = [(datastore, settings.input_path)]
        # validate=False, infer_column_types=False: no service call (types are left as text).
        tabular = Dataset.Tabular.from_delimited_files(path=path, validate=False,
                                                       infer_column_types=False)
        files = Dataset.File.from_files(path=path, validate=False)
        return build_batchscore_pipeline(
            workspace, COMPUTE, environment, saved(tabular, workspace, "tabular-id"),
            saved(files, workspace, "file-id"), datastore, settings, model_name,
            default_datastore=datastore, workflow_provider=offline_workflow_provider())
    return build_it


def nodes(pipeline):
    return {node.name: node for node in pipeline.graph.module_nodes}


def arguments(node):
    # The structured argument list has no public accessor; the module definition holds it.
    return [str(arg) for arg in node.module_def._arguments]


def option(args, name):
    return args[args.index(name) + 1]


def test_a_parallel_run_step_then_the_copy_step_on_the_cluster(build_pipeline):
    pipeline = build_pipeline()
    assert [node.name for node in pipeline.graph.module_nodes] == [BATCH_STEP_NAME,
                                                                   COPY_STEP_NAME]
    batch, copy = nodes(pipeline)[BATCH_STEP_NAME], nodes(pipeline)[COPY_STEP_NAME]
    # ParallelRunStep's node runs Azure ML's driver; the entry script is its argument.
    assert batch.get_param("Script").value == PARALLEL_RUN_DRIVER
    assert option(arguments(batch), "--scoring_module_name") == ENTRY_SCRIPT
    metadata = json.loads(batch.get_param("BatchInferencingMetaData").value)
    assert (metadata["EntryScript"], metadata["OutputAction"], metadata["ComputeName"]) == (
        ENTRY_SCRIPT, "append_row", COMPUTE)
    assert copy.get_param("Script").value == COPY_SCRIPT
    assert {n.get_param("Target").value for n in (batch, copy)} == {COMPUTE}
    assert not batch.module_def.allow_reuse and not copy.module_def.allow_reuse
    assert pipeline.validate() == []


def test_the_scored_rows_flow_from_the_parallel_step_to_the_copy_step(build_pipeline):
    edges = [(e.source_port.node.name, e.source_port.name, e.dest_port.node.name,
              e.dest_port.name) for e in build_pipeline().graph.edges
             if e.source_port.name != ModuleDef.fake_output_name]
    assert sorted(edges) == sorted([
        (SCORING_INPUT, "data", BATCH_STEP_NAME, SCORING_INPUT),
        (BATCH_STEP_NAME, SCORED_ROWS, COPY_STEP_NAME, SCORED_ROWS),
        (SCORING_INPUT_FILE, "data", COPY_STEP_NAME, SCORING_INPUT_FILE),
    ])


def test_pipeline_parameters_choose_the_model_and_the_node_count(build_pipeline):
    pipeline = build_pipeline(BatchScoringSettings(node_count=3), model_name="other.pkl")
    assert {name: p.default_value for name, p in pipeline.graph.params.items()} == {
        "model_name": "other.pkl", "model_version": "production", "node_count": 3}
    batch = nodes(pipeline)[BATCH_STEP_NAME]
    args = arguments(batch)
    assert option(args, "--model_name") == "parameter:model_name"
    assert option(args, "--model_version") == "parameter:model_version"
    assert batch.get_param("NodeCount").value.name == "node_count"
    assert json.loads(batch.get_param("BatchInferencingMetaData").value)["NodeCount"] == 3


def test_mini_batches_and_failures_follow_the_settings(build_pipeline):
    settings = BatchScoringSettings(mini_batch_size="5MB", error_threshold=10,
                                    process_count_per_node=2)
    args = arguments(nodes(build_pipeline(settings))[BATCH_STEP_NAME])
    assert (option(args, "--mini_batch_size"), option(args, "--error_threshold"),
            option(args, "--process_count_per_node"), option(args, "--output_action"),
            option(args, "--output")) == ("5242880", "10", "2", "append_row",
                                          f"DatasetOutputConfig:{SCORED_ROWS}")
    assert option(args, "--input_ds_0") == SCORING_INPUT


def test_the_copy_step_writes_to_the_scoring_output_location(build_pipeline):
    settings = BatchScoringSettings(output_path="scores/out", output_file_name="s.csv")
    copy = nodes(build_pipeline(settings))[COPY_STEP_NAME]
    args = arguments(copy)
    assert option(args, "--output_dir") == f"DatasetOutputConfig:{SCORING_OUTPUT}"
    assert option(args, "--output_file_name") == "s.csv"
    assert option(args, "--scored_rows") == f"DatasetConsumptionConfig:{SCORED_ROWS}"
    output = copy.get_output(SCORING_OUTPUT).dataset_output
    assert (output.destination[1], output.mode) == ("scores/out", "upload")


def test_the_environment_has_what_a_tabular_input_needs(build_pipeline):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=f"\\n{DATASET_RUNTIME_WARNING}")
        build_pipeline()


def test_the_training_environment_would_not_do(environment):
    """Why batch scoring has its own environment: the dataset runtime's tabular extras
    require a pandas that the training environment's lock rules out. (The SDK's own check
    cannot tell: it matches pip names by prefix, and the training environment's locked pip
    list holds azureml-train-automl-client, a prefix match for azureml-train-automl.)"""
    requirements = [Requirement(r) for r in importlib.metadata.requires("azureml-dataset-runtime")]
    needs = [r.specifier for r in requirements
             if r.name == "pandas" and r.marker and r.marker.evaluate({"extra": "pandas"})]
    assert needs, "azureml-dataset-runtime[pandas] no longer asks for pandas"

    def pandas_pin(env):
        pins = [p for p in env.python.conda_dependencies.pip_packages
                if p.startswith("pandas==")]
        assert len(pins) == 1, pins
        return pins[0].split("==")[1].split(";")[0].strip()

    assert not needs[0].contains(pandas_pin(build_environment(EnvironmentSettings())))
    assert needs[0].contains(pandas_pin(environment))


def test_every_step_runs_in_the_environment(build_pipeline, environment):
    for node in build_pipeline().graph.module_nodes:
        assert json.loads(node._runconfig)["environment"]["name"] == environment.name


def test_a_missing_entry_script_fails_while_the_graph_is_built(build_pipeline, monkeypatch):
    monkeypatch.setattr(build, "ENTRY_SCRIPT", "diabetes_regression/scoring/missing.py")
    with pytest.raises(ValueError, match="missing.py"):
        build_pipeline()


def test_settings_are_read_from_the_environment():
    assert BatchScoringSettings.from_env({}) == BatchScoringSettings()
    settings = BatchScoringSettings.from_env({
        "SCORING_PIPELINE_NAME": "p", "SCORING_DATASTORE_INPUT_PATH": "in/x.csv",
        "SCORING_DATASTORE_OUTPUT_PATH": "out", "SCORING_OUTPUT_FILE_NAME": "o.csv",
        "BATCHSCORE_NODE_COUNT": "4", "BATCHSCORE_PROCESS_COUNT_PER_NODE": "2",
        "BATCHSCORE_MINI_BATCH_SIZE": "10MB", "BATCHSCORE_ERROR_THRESHOLD": "-1",
        "BATCHSCORE_RUN_INVOCATION_TIMEOUT": "120"})
    assert settings == BatchScoringSettings("p", "in/x.csv", "out", "o.csv", 4, 2, "10MB", -1,
                                            120)


@pytest.mark.parametrize("name, value", [
    ("BATCHSCORE_NODE_COUNT", "0"), ("BATCHSCORE_NODE_COUNT", "two"),
    ("BATCHSCORE_ERROR_THRESHOLD", "-2"), ("BATCHSCORE_MINI_BATCH_SIZE", "1 MB"),
])
def test_a_bad_setting_is_named(name, value):
    with pytest.raises(ConfigurationError, match=name):
        BatchScoringSettings.from_env({name: value})


@pytest.mark.parametrize("env, message", [
    ({}, "BUILD_BUILDID is not set"),
    ({"BUILD_BUILDID": "42"}, "set MLOPS_BACKEND=azureml"),
])
def test_publishing_needs_a_build_id_and_azure_ml(mlops_root, monkeypatch, caplog, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert build.main([]) == 1
    assert message in caplog.text


# -- the run script ------------------------------------------------------------------
@pytest.fixture
def production_model(backend, tmp_path):
    model = train_model(split_data(load_sample_data()), load_parameters().training)
    path = save_model(model, tmp_path, NAME)
    run_id = backend.start_pipeline_run("test", {})
    backend.set_production_model(NAME, backend.register_model(NAME, path, run_id, {}).version)
    return model


@pytest.mark.process
def test_locally_the_registered_dataset_is_scored_with_the_production_model(
        backend, production_model, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    assert run_batchscore.main([]) == 1
    assert "no dataset 'diabetes_ds' in the local store" in caplog.text
    sample = load_sample_data()
    sample.to_csv(tmp_path / "sample.csv", index=False)
    backend.register_dataset("diabetes_ds", tmp_path / "sample.csv")
    assert run_batchscore.main(["--workers", "2", "--mini_batch_rows", "100"]) == 0
    scored = pd.read_csv("diabetes_scoring_output.csv")
    assert len(scored) == len(sample)
    expected = predict(production_model, sample.drop(columns=TARGET_COLUMN).values)
    assert np.allclose(scored["prediction"], expected[RESULT_KEY])


def test_on_azure_ml_the_pipeline_published_for_the_build_is_run(mlops_root, monkeypatch,
                                                                 caplog):
    monkeypatch.setenv("MLOPS_BACKEND", "azureml")
    assert run_batchscore.main(["--node_count", "2"]) == 1
    assert "BUILD_BUILDID is not set: it names the published batch" in caplog.text
    assert run_batchscore.main(["--node_count", "0"]) == 1
    assert "--node_count must be at least 1" in caplog.text


def test_the_published_pipeline_must_be_unique(backend):
    from ml_service.errors import PipelineNotFoundError

    with pytest.raises(PipelineNotFoundError,
                       match="0 published pipelines named 'p' with version '7'"):
        run_batchscore.find_published_pipeline(backend, "p", "7")
