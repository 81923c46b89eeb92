"""The SDK v2 translation builds azure-ai-ml's own pipeline component and job from the one
definition, offline, and the SDK's own loader and validation accept them (AZUREML_OFFLINE.md).

Every expectation is read from the definition, so a new step or edge is checked without a
change here.
"""
import shlex
from dataclasses import replace

import pytest
import yaml

from ml_service.errors import ConfigurationError
from ml_service.pipelines import azureml_v2_pipeline as v2
from ml_service.pipelines.definition import DataRef, ParameterRef, Step
from ml_service.pipelines.diabetes_regression_pipeline import (MODEL_DATA,
                                                               build_training_pipeline)
from ml_service.paths import PROJECT_ROOT
from ml_service.util.env_variables import EnvironmentV2Settings, TrainingSettings

COMPUTE = "azureml:cpu-cluster"
VARIABLES = {"MLOPS_BACKEND": "azureml-v2"}


def build(definition, version="42", parameters=None):
    """(pipeline component, pipeline job, the job's YAML form) for a definition."""
    settings = EnvironmentV2Settings()
    environment = v2.step_environment(settings.base_image, settings.conda_file, definition)
    spec = v2.pipeline_component_spec(definition, environment, VARIABLES)
    component = v2.load_pipeline_component(spec, version)
    job = v2.pipeline_job(component, parameters or {}, COMPUTE, "experiment",
                          {"BuildId": version})
    return component, job, job._to_dict()


@pytest.fixture(scope="module")
def definition():
    return build_training_pipeline(TrainingSettings())


@pytest.fixture(scope="module")
def built(definition):
    return build(definition)


def expected_command(step):
    """The step's command line as the definition says it, with v2's bindings."""
    def token(argument):
        if isinstance(argument, ParameterRef):
            return "${{inputs.%s}}" % argument.name
        if isinstance(argument, DataRef):
            side = "inputs" if argument.name in step.inputs else "outputs"
            return "${{%s.%s}}" % (side, argument.name)
        return argument
    return ["python", step.script] + [token(a) for a in step.arguments]


def test_the_sdk_loads_and_validates_the_component_and_the_job(built):
    component, job, _ = built
    assert v2.validation_problems(component) == []
    assert v2.validation_problems(job) == []
    assert component.version == "42"
    # The REST form the service would receive serialises without a workspace.
    rest = job._to_rest_object().as_dict()
    assert rest["properties"]["tags"] == {"BuildId": "42"}
    assert rest["properties"]["settings"]["default_compute"] == COMPUTE


def test_each_step_is_a_command_component_running_its_script_with_its_arguments(
        definition, built):
    jobs = built[2]["jobs"]
    assert list(jobs) == [v2.asset_name(step.name) for step in definition.steps]
    for step in definition.steps:
        node = jobs[v2.asset_name(step.name)]
        component = node["component"]
        assert component["display_name"] == step.name
        assert shlex.split(component["command"]) == expected_command(step)
        assert component["code"] == str(definition.source_directory)
        assert component.get("is_deterministic", True) is step.allow_reuse
        assert node["environment_variables"] == VARIABLES


def test_data_edges_bind_each_consumer_to_its_producer(definition, built):
    jobs = built[2]["jobs"]
    producer = {}
    for step in definition.steps:
        node = jobs[v2.asset_name(step.name)]
        for name in step.outputs:
            assert node["component"]["outputs"][name]["type"] == "uri_folder"
            producer[name] = v2.asset_name(step.name)
        for name in step.inputs:
            assert node["component"]["inputs"][name]["type"] == "uri_folder"
            assert node["inputs"][name]["path"] == (
                "${{parent.jobs.%s.outputs.%s}}" % (producer[name], name))


def test_parameters_are_pipeline_inputs_with_their_defaults(definition, built):
    component, job, form = built
    assert {name: value.default for name, value in component.inputs.items()} == {
        p.name: p.default for p in definition.parameters}
    for step in definition.steps:
        node = form["jobs"][v2.asset_name(step.name)]
        for argument in step.arguments:
            if isinstance(argument, ParameterRef):
                assert node["inputs"][argument.name]["path"] == (
                    "${{parent.inputs.%s}}" % argument.name)


def test_the_steps_run_in_the_definitions_order(definition, built):
    """Each step after the first reads an output of the step before it: a data edge of the
    definition, or the ordering edge the translation adds (v2 has no run_after)."""
    jobs = built[2]["jobs"]
    for previous, step in zip(definition.steps, definition.steps[1:]):
        before = v2.asset_name(previous.name)
        bound = [binding["path"] for binding in jobs[v2.asset_name(step.name)]["inputs"].values()]
        assert any(path.startswith("${{parent.jobs.%s.outputs." % before) for path in bound), (
            step.name, bound)


def test_register_waits_for_evaluate_only_through_an_edge_its_command_ignores(built):
    jobs = built[2]["jobs"]
    register = jobs["register_model"]
    assert register["inputs"]["after_evaluate_model"]["path"] == (
        "${{parent.jobs.evaluate_model.outputs.%s}}" % v2.ORDER_OUTPUT)
    assert "after_evaluate_model" not in register["component"]["command"]
    assert v2.ORDER_OUTPUT in jobs["evaluate_model"]["component"]["outputs"]


def test_without_evaluation_register_follows_train_through_the_model_edge():
    form = build(build_training_pipeline(TrainingSettings(run_evaluation=False)))[2]
    assert list(form["jobs"]) == ["validate_data", "train_model", "register_model"]
    assert set(form["jobs"]["register_model"]["inputs"]) == {"model_name", MODEL_DATA}
    assert all(v2.ORDER_OUTPUT not in node["component"].get("outputs", {})
               for node in form["jobs"].values())


def test_the_environment_is_the_v2_conda_file_on_the_base_image(built):
    settings = EnvironmentV2Settings()
    conda = yaml.safe_load((PROJECT_ROOT / settings.conda_file).read_text())
    for node in built[2]["jobs"].values():
        environment = node["component"]["environment"]
        assert environment["image"] == settings.base_image
        assert environment["conda_file"] == conda


def test_parameter_values_given_at_submission_override_the_defaults(definition):
    job = build(definition, parameters={"model_name": "other.pkl"})[1]
    assert job.inputs["model_name"]._data == "other.pkl"


def test_a_new_step_and_edge_in_the_definition_reach_the_job_without_v2_edits(definition):
    explain = Step(name="Explain Model", script=definition.steps[-1].script,
                   arguments=("--step_input", DataRef(MODEL_DATA),
                              "--explanations", DataRef("explanations")),
                   inputs=(MODEL_DATA,), outputs=("explanations",))
    changed = replace(definition, data=definition.data + ("explanations",),
                      steps=definition.steps + (explain,))
    component, job, form = build(changed)
    assert v2.validation_problems(job) == []
    node = form["jobs"]["explain_model"]
    assert shlex.split(node["component"]["command"]) == expected_command(explain)
    assert node["inputs"][MODEL_DATA]["path"] == "${{parent.jobs.train_model.outputs.%s}}" % (
        MODEL_DATA)
    # It reads nothing Register writes, so it waits for Register through an ordering edge.
    assert node["inputs"]["after_register_model"]["path"] == (
        "${{parent.jobs.register_model.outputs.%s}}" % v2.ORDER_OUTPUT)


def test_a_job_without_compute_fails_the_sdks_validation(built):
    component = built[0]
    job = v2.pipeline_job(component, {}, COMPUTE, "experiment")
    job.settings.default_compute = None
    problems = v2.validation_problems(job)
    assert problems and all("Compute not set" in p for p in problems), problems


def test_an_unsound_definition_is_refused_with_the_reason(definition):
    reads_too_early = replace(definition, steps=definition.steps[1:])
    with pytest.raises(ConfigurationError, match="reads 'validated_data' before any earlier"):
        build(reads_too_early)


def test_an_argument_naming_data_the_step_does_not_declare_is_refused(definition):
    first = definition.steps[0]
    broken = replace(first, arguments=first.arguments + ("--extra", DataRef(MODEL_DATA)))
    with pytest.raises(ConfigurationError, match="neither reads nor writes it"):
        v2.step_command(broken)


def test_a_missing_conda_file_names_the_variable(definition):
    with pytest.raises(ConfigurationError, match="AML_ENV_V2_CONDA_DEP_FILE"):
        v2.step_environment("image", "no/such.yml", definition)


@pytest.mark.parametrize("text, name", [("Validate Data", "validate_data"),
                                        ("Model-Training-Pipeline",
                                         "model_training_pipeline")])
def test_asset_names_are_lower_case_with_underscores(text, name):
    assert v2.asset_name(text) == name


@pytest.mark.parametrize("text", ["", "42 steps", "--"])
def test_a_name_without_a_leading_letter_is_refused(text):
    with pytest.raises(ConfigurationError, match="needs a letter first"):
        v2.asset_name(text)
