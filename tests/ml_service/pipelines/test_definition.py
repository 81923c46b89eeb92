from dataclasses import replace
from pathlib import Path

import pytest

from ml_service.errors import ConfigurationError
from ml_service.pipelines.definition import DataRef, ParameterRef, PipelineDefinition, Step
from ml_service.pipelines.diabetes_regression_pipeline import (EVALUATE_SCRIPT, MODEL_DATA,
                                                               REGISTER_SCRIPT, TRAIN_SCRIPT,
                                                               VALIDATE_SCRIPT, VALIDATED_DATA,
                                                               build_training_pipeline)
from ml_service.util.env_variables import TrainingSettings


def test_training_pipeline_with_evaluation():
    pipeline = build_training_pipeline(TrainingSettings())
    assert pipeline.validate() == []
    assert pipeline.step_names() == ["Validate Data", "Train Model", "Evaluate Model",
                                     "Register Model"]
    assert [s.script for s in pipeline.steps] == [VALIDATE_SCRIPT, TRAIN_SCRIPT,
                                                  EVALUATE_SCRIPT, REGISTER_SCRIPT]
    assert [p.name for p in pipeline.parameters] == [
        "model_name", "dataset_version", "data_file_path", "caller_run_id"]
    validate, train, evaluate, register = pipeline.steps
    # The validate step takes the dataset parameters; the train step only what passed.
    assert list(validate.arguments) == [
        "--model_name", ParameterRef("model_name"), "--dataset_name", "diabetes_ds",
        "--dataset_version", ParameterRef("dataset_version"),
        "--data_file_path", ParameterRef("data_file_path"),
        "--step_output", DataRef(VALIDATED_DATA)]
    assert (validate.inputs, validate.outputs) == ((), (VALIDATED_DATA,))
    assert train.inputs == (VALIDATED_DATA,) and train.outputs == (MODEL_DATA,)
    assert DataRef(VALIDATED_DATA) in train.arguments
    assert not {ParameterRef("dataset_version"), ParameterRef("data_file_path")} \
        & set(train.arguments)
    assert pipeline.data == (VALIDATED_DATA, MODEL_DATA)
    # Evaluate reads the train step's record from the model folder (a reused step logs nothing).
    assert evaluate.inputs == register.inputs == (MODEL_DATA,)
    assert DataRef(MODEL_DATA) in train.arguments and DataRef(MODEL_DATA) in register.arguments
    assert list(evaluate.arguments) == ["--model_name", ParameterRef("model_name"),
                                        "--allow_run_cancel", "true",
                                        "--step_input", DataRef(MODEL_DATA)]


def test_training_pipeline_without_evaluation_and_with_settings():
    settings = TrainingSettings(run_evaluation=False, dataset_name="my_ds",
                                pipeline_name="my-pipeline", model_name="m.pkl")
    pipeline = build_training_pipeline(settings)
    assert pipeline.name == "my-pipeline"
    assert pipeline.step_names() == ["Validate Data", "Train Model", "Register Model"]
    assert "my_ds" in pipeline.steps[0].arguments and "my_ds" in pipeline.steps[1].arguments
    assert pipeline.resolve_parameters()["model_name"] == "m.pkl"


def test_parameters_override_defaults_and_unknown_names_are_refused():
    pipeline = build_training_pipeline(TrainingSettings())
    assert pipeline.resolve_parameters({"dataset_version": 3})["dataset_version"] == "3"
    with pytest.raises(ConfigurationError, match="no parameter\\(s\\) datset_version"):
        pipeline.resolve_parameters({"datset_version": "3"})


def test_validate_lists_every_inconsistency(tmp_path: Path):
    good = build_training_pipeline(TrainingSettings())
    broken = PipelineDefinition(
        name="broken", source_directory=good.source_directory, parameters=good.parameters,
        data=good.data,
        steps=(Step("Register", REGISTER_SCRIPT, ("--step_input", DataRef(MODEL_DATA)),
                    inputs=(MODEL_DATA,)),
               Step("Train", "no/such/script.py",
                    ("--x", ParameterRef("nope"), "--y", DataRef("undeclared"))),
               Step("Train", TRAIN_SCRIPT, ())))
    problems = broken.validate()
    assert any("reads 'pipeline_data' before any earlier step writes it" in p for p in problems)
    assert any("no script" in p for p in problems)
    assert any("unknown parameter 'nope'" in p for p in problems)
    assert any("undeclared data 'undeclared'" in p for p in problems)
    assert "step names are not unique" in problems
    assert replace(good, source_directory=tmp_path).validate()
