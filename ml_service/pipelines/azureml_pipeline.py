"""Translate a platform-neutral PipelineDefinition into an Azure ML SDK v1 Pipeline.

Pure translation: nothing here calls the service. Building the Pipeline needs the
workspace only for endpoint discovery, so the caller (or a test) can hand in an offline
workspace, an explicit default datastore and a compute target given as the tuple
``(name, type)``, which PythonScriptStep accepts without looking the compute up.
"""
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from azureml.core import Environment, Workspace
from azureml.core.compute import ComputeTarget
from azureml.core.runconfig import RunConfiguration
from azureml.data.abstract_datastore import AbstractDatastore
from azureml.pipeline.core import Pipeline, PipelineData
from azureml.pipeline.core import PipelineParameter as AzurePipelineParameter
from azureml.pipeline.steps import PythonScriptStep

from ml_service.pipelines.definition import Argument, DataRef, ParameterRef, PipelineDefinition

# A ComputeTarget object, or ("cpu-cluster", "AmlCompute"): the tuple avoids a service lookup.
ComputeTargetSpec = Union[ComputeTarget, Tuple[str, str]]


def build_run_configuration(environment: Environment,
                            variables: Optional[Mapping[str, str]] = None) -> RunConfiguration:
    """A RunConfiguration that runs every step in ``environment`` with these environment
    variables set (the settings a step reads on the compute, where the agent's are absent)."""
    run_config = RunConfiguration()
    run_config.environment = environment
    run_config.environment_variables = dict(variables or {})
    return run_config


def _resolve_argument(argument: Argument, step_name: str,
                      parameters: Dict[str, AzurePipelineParameter],
                      data: Dict[str, PipelineData]) -> Any:
    """The SDK object (or plain string) that stands for one definition argument."""
    if isinstance(argument, ParameterRef):
        if argument.name not in parameters:
            raise ValueError(f"step {step_name!r}: unknown pipeline parameter {argument.name!r}")
        return parameters[argument.name]
    if isinstance(argument, DataRef):
        if argument.name not in data:
            raise ValueError(f"step {step_name!r}: undeclared data edge {argument.name!r}")
        return data[argument.name]
    return argument


def _data_objects(names: Tuple[str, ...], step_name: str,
                  data: Dict[str, PipelineData]) -> List[PipelineData]:
    """The PipelineData objects for a step's inputs or outputs."""
    return [_resolve_argument(DataRef(name), step_name, {}, data) for name in names]


def build_steps(definition: PipelineDefinition, compute_target: ComputeTargetSpec,
                run_config: RunConfiguration,
                default_datastore: Optional[AbstractDatastore] = None
                ) -> List[PythonScriptStep]:
    """One PythonScriptStep per step of ``definition``, in order, joined by PipelineData and
    each after the one before. Needs no workspace (the compute given as a tuple)."""
    parameters = {p.name: AzurePipelineParameter(name=p.name, default_value=p.default)
                  for p in definition.parameters}
    data = {name: PipelineData(name, datastore=default_datastore) for name in definition.data}
    source_directory = str(definition.source_directory)

    steps: List[PythonScriptStep] = []
    for step in definition.steps:
        script_step = PythonScriptStep(
            name=step.name,
            script_name=step.script,
            source_directory=source_directory,
            arguments=[_resolve_argument(arg, step.name, parameters, data)
                       for arg in step.arguments],
            inputs=_data_objects(step.inputs, step.name, data),
            outputs=_data_objects(step.outputs, step.name, data),
            compute_target=compute_target,
            runconfig=run_config,
            allow_reuse=step.allow_reuse,
        )
        if steps:
            # Definition order is run order, also for steps that share no data edge.
            script_step.run_after(steps[-1])
        steps.append(script_step)
    return steps


def translate_pipeline(workspace: Workspace, definition: PipelineDefinition,
                       compute_target: ComputeTargetSpec, run_config: RunConfiguration,
                       default_datastore: Optional[AbstractDatastore] = None,
                       workflow_provider: Optional[Any] = None) -> Pipeline:
    """Build the Azure ML Pipeline for ``definition``: one PythonScriptStep per step, in order."""
    steps = build_steps(definition, compute_target, run_config, default_datastore)
    options: Dict[str, Any] = {}
    if workflow_provider is not None:
        options["_workflow_provider"] = workflow_provider
    return Pipeline(workspace=workspace, steps=steps, default_datastore=default_datastore,
                    **options)
