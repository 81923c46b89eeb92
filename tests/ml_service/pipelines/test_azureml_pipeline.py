"""The Azure ML translation builds the real SDK v1 Pipeline graph, offline (AZUREML_OFFLINE.md)."""
import json
from dataclasses import replace

import pytest
from azureml.core import Environment, Workspace
from azureml.data.azure_storage_datastore import AzureBlobDatastore
from azureml.pipeline.core.graph import ModuleDef

from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines.azureml_pipeline import build_run_configuration, translate_pipeline
from ml_service.pipelines.definition import DataRef, ParameterRef
from ml_service.pipelines.diabetes_regression_pipeline import (EVALUATE_SCRIPT, MODEL_DATA,
                                                               REGISTER_SCRIPT, TRAIN_SCRIPT,
                                                               VALIDATE_SCRIPT, VALIDATED_DATA,
                                                               build_training_pipeline)
from ml_service.util.env_variables import (AzureScoringSettings, EnvironmentSettings,
                                           TrainingSettings)
from tests.azureml_offline import offline_workflow_provider, offline_workspace

COMPUTE = ("cpu-cluster", "AmlCompute")
DATASTORE = "pipelineblob"
WITH_EVALUATION = TrainingSettings()
WITHOUT_EVALUATION = TrainingSettings(run_evaluation=False)


@pytest.fixture(scope="module")
def environment() -> Environment:
    settings = EnvironmentSettings()
    return Environment.from_conda_specification(settings.name,
                                                str(PROJECT_ROOT / settings.conda_file))


@pytest.fixture
def workspace() -> Workspace:
    return offline_workspace()


@pytest.fixture
def build(workspace, environment):
    """Translate the training pipeline built from some settings; returns the real Pipeline."""
    def translate(settings=WITH_EVALUATION, definition=None, variables=None):
        definition = definition or build_training_pipeline(settings)
        datastore = AzureBlobDatastore(workspace, DATASTORE, "container", "account")
        return translate_pipeline(workspace, definition, COMPUTE,
                                  build_run_configuration(environment, variables),
                                  default_datastore=datastore,
                                  workflow_provider=offline_workflow_provider())
    return translate


def node_names(pipeline):
    return [node.name for node in pipeline.graph.module_nodes]


def edges(pipeline, run_after):
    """(source node, source port, destination node, destination port) of data or run-after
    edges; the SDK makes run_after an edge between its own sequencing ports."""
    found = [(e.source_port.node.name, e.source_port.name, e.dest_port.node.name,
              e.dest_port.name) for e in pipeline.graph.edges]
    return [edge for edge in found if (edge[1] == ModuleDef.fake_output_name) == run_after]


@pytest.mark.parametrize("settings, steps, scripts", [
    (WITH_EVALUATION, ["Validate Data", "Train Model", "Evaluate Model", "Register Model"],
     [VALIDATE_SCRIPT, TRAIN_SCRIPT, EVALUATE_SCRIPT, REGISTER_SCRIPT]),
    (WITHOUT_EVALUATION, ["Validate Data", "Train Model", "Register Model"],
     [VALIDATE_SCRIPT, TRAIN_SCRIPT, REGISTER_SCRIPT]),
])
def test_one_script_node_per_step_in_run_order_on_the_compute(build, settings, steps, scripts):
    pipeline = build(settings)
    assert node_names(pipeline) == steps == build_training_pipeline(settings).step_names()
    nodes = list(pipeline.graph.module_nodes)
    assert [node.get_param("Script").value for node in nodes] == scripts
    assert {node.get_param("Target").value for node in nodes} == {"cpu-cluster"}
    assert {node.get_param("MLCComputeType").value for node in nodes} == {"AmlCompute"}
    assert pipeline.validate() == []


@pytest.mark.parametrize("settings, readers, order", [
    (WITH_EVALUATION, ["Evaluate Model", "Register Model"],
     [("Validate Data", "Train Model"), ("Train Model", "Evaluate Model"),
      ("Evaluate Model", "Register Model")]),
    (WITHOUT_EVALUATION, ["Register Model"],
     [("Validate Data", "Train Model"), ("Train Model", "Register Model")]),
])
def test_data_flows_from_validate_to_train_to_the_later_steps_in_order(build, settings, readers,
                                                                       order):
    pipeline = build(settings)
    assert sorted(edges(pipeline, run_after=False)) == sorted(
        [("Validate Data", VALIDATED_DATA, "Train Model", VALIDATED_DATA)]
        + [("Train Model", MODEL_DATA, reader, MODEL_DATA) for reader in readers])
    assert [(source, dest) for source, _, dest, _ in edges(pipeline, run_after=True)] == order


def test_both_data_edges_are_written_to_the_default_datastore(build):
    validate, train = list(build().graph.module_nodes)[:2]
    assert validate.get_output(VALIDATED_DATA).datastore_name == DATASTORE
    assert train.get_output(MODEL_DATA).datastore_name == DATASTORE


@pytest.mark.parametrize("settings", [WITH_EVALUATION, WITHOUT_EVALUATION])
def test_pipeline_parameters_have_the_definition_defaults(build, settings):
    params = build(settings).graph.params
    assert {name: param.default_value for name, param in params.items()} == {
        "model_name": "diabetes_regression_model.pkl", "dataset_version": "latest",
        "data_file_path": "none", "caller_run_id": "none"}


def test_model_name_default_follows_the_settings(build):
    params = build(TrainingSettings(model_name="other.pkl")).graph.params
    assert params["model_name"].default_value == "other.pkl"


def test_arguments_refer_to_pipeline_parameters_and_data(build):
    definition = build_training_pipeline(WITH_EVALUATION)

    def annotated(step):
        """How the SDK writes each argument: text, parameter:NAME, input:NAME, output:NAME."""
        for arg in step.arguments:
            if isinstance(arg, ParameterRef):
                yield f"parameter:{arg.name}"
            elif isinstance(arg, DataRef):
                yield f"{'output' if arg.name in step.outputs else 'input'}:{arg.name}"
            else:
                yield arg

    nodes = list(build(definition=definition).graph.module_nodes)
    # The structured argument list has no public accessor; the module definition holds it.
    assert [[str(arg) for arg in node.module_def._arguments] for node in nodes] == [
        list(annotated(step)) for step in definition.steps]
    assert [str(arg) for arg in nodes[-1].module_def._arguments] == [
        "--model_name", "parameter:model_name", "--step_input", f"input:{MODEL_DATA}"]
    assert [str(arg) for arg in nodes[0].module_def._arguments] == [
        "--model_name", "parameter:model_name", "--dataset_name", "diabetes_ds",
        "--dataset_version", "parameter:dataset_version",
        "--data_file_path", "parameter:data_file_path", "--step_output",
        f"output:{VALIDATED_DATA}"]
    assert f"input:{VALIDATED_DATA}" in [str(arg) for arg in nodes[1].module_def._arguments]


def test_only_the_train_step_may_be_reused(build):
    nodes = build().graph.module_nodes
    assert [node.module_def.allow_reuse for node in nodes] == [False, True, False, False]


def test_every_step_runs_in_the_environment(build, environment):
    run_config = build_run_configuration(environment)
    assert run_config.environment is environment
    nodes = build().graph.module_nodes
    # The node keeps the serialised run configuration it will submit.
    assert {json.loads(node._runconfig)["environment"]["name"] for node in nodes} == {
        environment.name}


@pytest.mark.parametrize("env, expected", [
    ({}, {}),
    ({"DATASTORE_NAME": "training_data"}, {"DATASTORE_NAME": "training_data"}),
])
def test_the_settings_a_step_reads_on_the_compute_reach_every_step(build, env, expected):
    variables = AzureScoringSettings.from_env(env).step_environment()
    for node in build(variables=variables).graph.module_nodes:
        assert json.loads(node._runconfig)["environmentVariables"] == expected


def test_a_missing_script_fails_while_the_graph_is_built(build):
    definition = build_training_pipeline(WITH_EVALUATION)
    broken = replace(definition.steps[2], script="diabetes_regression/evaluate/missing.py")
    definition = replace(definition, steps=definition.steps[:2] + (broken,)
                         + definition.steps[3:])
    with pytest.raises(ValueError, match="missing.py"):
        build(definition=definition)


@pytest.mark.parametrize("reference, message", [
    (ParameterRef("no_such_parameter"), "unknown pipeline parameter 'no_such_parameter'"),
    (DataRef("no_such_data"), "undeclared data edge 'no_such_data'"),
])
def test_an_unknown_reference_names_the_step(build, reference, message):
    definition = build_training_pipeline(WITH_EVALUATION)
    validate, train = definition.steps[:2]
    broken = replace(train, arguments=train.arguments + ("--extra", reference))
    definition = replace(definition, steps=(validate, broken) + definition.steps[2:])
    with pytest.raises(ValueError, match=f"step 'Train Model': {message}"):
        build(definition=definition)
