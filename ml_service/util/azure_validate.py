"""Build and validate every Azure ML object of the project offline, on SDK v1 and v2.

    python -m ml_service.util.azure_validate        (make azure-validate)

Each object is built from the project's own definition, settings and files with the SDKs'
own classes, and checked by what the SDK checks locally: the pipeline definition; on SDK v1
the environment, the PythonScriptSteps and their data edges, the inference configuration
and the ACI and AKS deployment configurations; on SDK v2 the pipeline component (its
command components), the pipeline job, the batch endpoint and its deployment, and the
online endpoints and their deployment. One line
per object; exit 0 when all pass, else 1 with the reason of each failure. Nothing here
reaches a workspace, so it needs no Azure account (what only the service checks, such as
quotas, names already taken or the compute's existence, is not checked).
"""
import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines.definition import PipelineDefinition
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import (BatchScoringSettings, ComputeSettings,
                                           EnvironmentSettings, EnvironmentV2Settings,
                                           TrainingSettings)

LOGGER = logging.getLogger(__name__)
# What the v2 steps are told on the compute; the workspace variables are added at publish.
STEP_VARIABLES = {"MLOPS_BACKEND": "azureml-v2"}


@dataclass(frozen=True)
class Check:
    """One object to build and validate: a label and a function that returns what it built
    (a short description) or raises with the reason."""

    label: str
    run: Callable[[], str]
    reads_definition: bool = False


def check_definition(definition: PipelineDefinition) -> str:
    """The definition itself: scripts exist, parameters and data edges are declared."""
    problems = definition.validate()
    if problems:
        raise ConfigurationError("; ".join(problems))
    return f"{len(definition.steps)} steps, {len(definition.data)} data edges"


def check_v1_steps(definition: PipelineDefinition) -> str:
    """SDK v1: the environment from its conda file and one PythonScriptStep per step, each
    reading the PipelineData object its producer writes."""
    from ml_service.pipelines.azureml_pipeline import build_run_configuration, build_steps
    from ml_service.util.manage_environment import build_environment

    environment = build_environment(EnvironmentSettings.from_env())
    steps = build_steps(definition, (ComputeSettings.from_env().cluster_name, "AmlCompute"),
                        build_run_configuration(environment))
    written = {}
    for step, built in zip(definition.steps, steps):
        for data in built._inputs:
            if written.get(data.name) is not data:
                raise ConfigurationError(f"step {step.name!r} reads {data.name!r}, which no "
                                         "earlier step writes")
        written.update({data.name: data for data in built._outputs})
    return f"{len(steps)} PythonScriptSteps in environment {environment.name}"


def check_v1_scoring(target: str) -> Callable[[], str]:
    """SDK v1: an ACI or AKS deployment configuration from its YAML file."""
    def check() -> str:
        from ml_service.pipelines.diabetes_regression_pipeline import scoring_service_spec
        from ml_service.util.deployment_configs import (aci_deployment_config,
                                                        aks_deployment_config)

        path = scoring_service_spec(target).deployment_config
        build = aci_deployment_config if target == "ACI" else aks_deployment_config
        build(path)
        return str(path.relative_to(PROJECT_ROOT))
    return check


def check_v1_inference() -> str:
    """SDK v1: the inference configuration's entry script and the files it needs."""
    from ml_service.pipelines.diabetes_regression_pipeline import scoring_service_spec
    from ml_service.util.deployment_configs import scoring_source

    source = scoring_source(scoring_service_spec().inference_config)
    return f"entry script {source.entry_script}, {len(source.files)} files"


def v2_component(definition: PipelineDefinition) -> Any:
    """SDK v2: the pipeline component of the definition, loaded and validated by azure-ai-ml
    as the backend publishes it."""
    from ml_service.pipelines.azureml_v2_pipeline import build_pipeline_component

    settings = EnvironmentV2Settings.from_env()
    return build_pipeline_component(definition, settings.base_image, settings.conda_file,
                                    STEP_VARIABLES, "0")


def refuse(problems: Sequence[str]) -> None:
    """Raise with every problem the SDK's validation found."""
    if problems:
        raise ConfigurationError("; ".join(problems))


def check_v2_component(definition: PipelineDefinition) -> str:
    """SDK v2: the pipeline component passes azure-ai-ml's validation."""
    component = v2_component(definition)
    return f"{component.name}: {len(component.jobs)} command components"


def check_v2_job(definition: PipelineDefinition) -> str:
    """SDK v2: the pipeline job that run_train_pipeline submits passes its validation."""
    from ml_service.pipelines.azureml_v2_pipeline import pipeline_job, validation_problems

    compute = f"azureml:{ComputeSettings.from_env().cluster_name}"
    job = pipeline_job(v2_component(definition), {}, compute,
                       TrainingSettings.from_env().experiment_name, {"BuildId": "0"})
    refuse(validation_problems(job))
    return f"{len(job.jobs)} jobs on {compute}"


def check_v2_batch_endpoint() -> str:
    """SDK v2: the batch endpoint, loaded by azure-ai-ml."""
    from ml_service.pipelines import azureml_v2_batch_endpoint as batch

    endpoint = batch.load_batch_endpoint(batch.batch_endpoint_spec(
        BatchScoringSettings.from_env()))
    return f"{endpoint.name} ({endpoint.auth_mode})"


def check_v2_batch_deployment() -> str:
    """SDK v2: the batch deployment (of a model version 1 stand-in), loaded and validated."""
    from ml_service.pipelines.azureml_v2_batch_endpoint import batch_deployment

    deployment = batch_deployment(BatchScoringSettings.from_env(),
                                  TrainingSettings.from_env().model_name, 1)
    return f"{deployment.name} runs {deployment.code_configuration.scoring_script}"


def check_v2_online_endpoint() -> str:
    """SDK v2: the staging and the production managed online endpoints."""
    from ml_service.util.env_variables import OnlineEndpointSettings
    from ml_service.util.online_configs import load_online_endpoint, online_endpoint_spec

    settings = OnlineEndpointSettings.from_env()
    names = [load_online_endpoint(online_endpoint_spec(name, settings.identity)).name
             for name in (settings.staging_endpoint_name, settings.endpoint_name)]
    identity = ("user-assigned identity " + settings.identity.rsplit("/", 1)[-1]
                if settings.identity else "system-assigned identity")
    return f"{' then '.join(names)} (key auth, {identity})"


def check_v2_online_deployment() -> str:
    """SDK v2: a deployment from the deployment configuration file and the staged score.py."""
    from ml_service.pipelines.diabetes_regression_pipeline import INFERENCE_CONFIG
    from ml_service.util.env_variables import OnlineEndpointSettings
    from ml_service.util.online_configs import online_deployment, read_online_config, staged_code

    settings = OnlineEndpointSettings.from_env()
    path = PROJECT_ROOT / settings.deployment_config
    config = read_online_config(path)
    with staged_code(PROJECT_ROOT / INFERENCE_CONFIG) as (code, script):
        deployment = online_deployment(config, settings.endpoint_name, "blue",
                                       TrainingSettings.from_env().model_name, 1, code, script,
                                       str(path))
    return (f"{deployment.instance_count} x {deployment.instance_type} runs {script}; "
            f"rollout mirror {config.rollout.mirror_percent} %, traffic steps "
            f"{', '.join(f'{p} %' for p in config.rollout.traffic_steps)}")


def checks(definition: PipelineDefinition) -> List[Check]:
    """Every object, in the order a user meets them."""
    return [
        Check("pipeline definition", lambda: check_definition(definition), True),
        Check("v1 training steps", lambda: check_v1_steps(definition), True),
        Check("v1 inference configuration", check_v1_inference),
        Check("v1 ACI deployment configuration", check_v1_scoring("ACI")),
        Check("v1 AKS deployment configuration", check_v1_scoring("AKS")),
        Check("v2 pipeline component", lambda: check_v2_component(definition), True),
        Check("v2 pipeline job", lambda: check_v2_job(definition), True),
        Check("v2 batch endpoint", check_v2_batch_endpoint),
        Check("v2 batch deployment", check_v2_batch_deployment),
        Check("v2 online endpoints", check_v2_online_endpoint),
        Check("v2 online deployment", check_v2_online_deployment),
    ]


def run_checks(definition: PipelineDefinition) -> int:
    """Run every check; print one line each; 0 when all pass, else 1."""
    failed = 0
    for check in checks(definition):
        try:
            built = check.run()
        except Exception as err:  # every SDK raises its own kinds; each is a failed check
            failed += 1
            print(f"FAILED {check.label}: {type(err).__name__}: {err}")
            continue
        print(f"ok     {check.label}: {built}")
    print(f"azure_validate: {len(checks(definition)) - failed} of "
          f"{len(checks(definition))} Azure ML objects built and validated offline")
    return 1 if failed else 0


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """No options: what it checks comes from the project and the environment variables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    return parser.parse_args(argv)


def main(argv: Optional[list] = None) -> int:
    """Entry point of make azure-validate."""
    parse_args(argv)

    def validate() -> int:
        from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline

        return run_checks(build_training_pipeline(TrainingSettings.from_env()))
    return run_cli(validate)


if __name__ == "__main__":
    sys.exit(main())
