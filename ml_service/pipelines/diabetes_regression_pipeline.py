"""The training pipeline of the example model, declared once for every executor."""
from typing import Optional

from ml_service.backends.base import ServiceSpec
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines.definition import (DataRef, ParameterRef, PipelineDefinition,
                                             PipelineParameter, Step)
from ml_service.util.env_variables import TrainingSettings

VALIDATE_SCRIPT = "diabetes_regression/validate/validate_data.py"
TRAIN_SCRIPT = "diabetes_regression/training/train_aml.py"
EVALUATE_SCRIPT = "diabetes_regression/evaluate/evaluate_model.py"
REGISTER_SCRIPT = "diabetes_regression/register/register_model.py"
SCORE_SCRIPT = "diabetes_regression/scoring/score.py"
INFERENCE_CONFIG = "diabetes_regression/scoring/inference_config.yml"
DEPLOYMENT_CONFIGS = {"ACI": "diabetes_regression/scoring/deployment_config_aci.yml",
                      "AKS": "diabetes_regression/scoring/deployment_config_aks.yml"}
MODEL_DATA = "pipeline_data"
# Which dataset version passed the validate step: the train step trains on that one.
VALIDATED_DATA = "validated_data"


def build_training_pipeline(settings: TrainingSettings) -> PipelineDefinition:
    """Validate, train, (evaluate,) register: the steps, their arguments and data edges."""
    model_name = ParameterRef("model_name")
    # Never reused: the checks depend on the production model and on what "latest" is now.
    validate = Step(
        name="Validate Data",
        script=VALIDATE_SCRIPT,
        arguments=("--model_name", model_name,
                   "--dataset_name", settings.dataset_name,
                   "--dataset_version", ParameterRef("dataset_version"),
                   "--data_file_path", ParameterRef("data_file_path"),
                   "--step_output", DataRef(VALIDATED_DATA)),
        outputs=(VALIDATED_DATA,),
    )
    train = Step(
        name="Train Model",
        script=TRAIN_SCRIPT,
        arguments=("--model_name", model_name,
                   "--step_output", DataRef(MODEL_DATA),
                   "--validated_data", DataRef(VALIDATED_DATA),
                   "--caller_run_id", ParameterRef("caller_run_id"),
                   "--dataset_name", settings.dataset_name),
        inputs=(VALIDATED_DATA,),
        outputs=(MODEL_DATA,),
        allow_reuse=True,
    )
    evaluate = Step(
        name="Evaluate Model",
        script=EVALUATE_SCRIPT,
        arguments=("--model_name", model_name,
                   "--allow_run_cancel", str(settings.allow_run_cancel).lower(),
                   "--step_input", DataRef(MODEL_DATA)),
        inputs=(MODEL_DATA,),
    )
    register = Step(
        name="Register Model",
        script=REGISTER_SCRIPT,
        arguments=("--model_name", model_name, "--step_input", DataRef(MODEL_DATA)),
        inputs=(MODEL_DATA,),
    )
    steps = ((validate, train, evaluate, register) if settings.run_evaluation
             else (validate, train, register))
    return PipelineDefinition(
        name=settings.pipeline_name,
        source_directory=PROJECT_ROOT,
        parameters=(PipelineParameter("model_name", settings.model_name),
                    PipelineParameter("dataset_version", "latest"),
                    PipelineParameter("data_file_path", "none"),
                    PipelineParameter("caller_run_id", "none")),
        data=(VALIDATED_DATA, MODEL_DATA),
        steps=steps,
    )


def scoring_service_spec(target: Optional[str] = None) -> ServiceSpec:
    """The scoring service of the model: local, or on Azure ML with ``target`` ACI or AKS."""
    deployment_config = PROJECT_ROOT / DEPLOYMENT_CONFIGS[target] if target else None
    return ServiceSpec(entry_script=PROJECT_ROOT / SCORE_SCRIPT,
                       inference_config=PROJECT_ROOT / INFERENCE_CONFIG,
                       deployment_config=deployment_config)
