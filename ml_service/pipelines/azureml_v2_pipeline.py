"""Translate a platform-neutral PipelineDefinition into Azure ML SDK v2 (azure-ai-ml) entities.

The definition becomes a pipeline component: one command component per step (the same
script and arguments, run from the same code snapshot as on SDK v1, the repository root
with its ``.amlignore``), data edges as ``uri_folder`` outputs bound to the next steps'
inputs, pipeline parameters as the pipeline's string inputs, ``allow_reuse`` as the
component's ``is_deterministic``. The spec is the YAML form that ``az ml component create``
takes, built from the definition alone; azure-ai-ml's own loader turns it into entities
and its own validation checks them. Nothing here calls the service.

SDK v2 orders a pipeline's jobs by their data edges only (there is no ``run_after``). The
definition runs its steps in order, so a step that reads nothing the step before it wrote
(Register after Evaluate, which may cancel the run) gets an ordering edge: the earlier
step declares an extra output and the later one binds it as an input that its command
does not use.
"""
import io
import re
import shlex
from typing import Any, Dict, List, Mapping, Optional

import yaml

from ml_service.errors import ConfigurationError
from ml_service.pipelines.definition import DataRef, ParameterRef, PipelineDefinition, Step

COMPONENT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json"
# The output a step declares when the next step must wait for it without reading its data.
ORDER_OUTPUT = "run_order"


def asset_name(text: str) -> str:
    """An Azure ML name from a display name: lower case letters, digits and underscores,
    starting with a letter ("Validate Data" -> "validate_data")."""
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not name or not name[0].isalpha():
        raise ConfigurationError(f"{text!r} gives no Azure ML name (it needs a letter first); "
                                 "rename the step or pipeline")
    return name


def order_input(previous: Step) -> str:
    """The input through which a step waits for ``previous``."""
    return f"after_{asset_name(previous.name)}"


def needs_order_edge(step: Step, previous: Optional[Step]) -> bool:
    """True when ``step`` reads nothing that ``previous`` writes: only an ordering edge
    keeps the definition's run order on SDK v2."""
    return previous is not None and not set(step.inputs) & set(previous.outputs)


def step_command(step: Step) -> str:
    """The command line of a step's component: its script and arguments, with parameters
    and data edges as ``${{inputs.x}}`` / ``${{outputs.x}}`` bindings."""
    parts = ["python", shlex.quote(step.script)]
    for argument in step.arguments:
        if isinstance(argument, ParameterRef):
            parts.append(f"${{{{inputs.{argument.name}}}}}")
        elif isinstance(argument, DataRef):
            if argument.name in step.inputs:
                parts.append(f"${{{{inputs.{argument.name}}}}}")
            elif argument.name in step.outputs:
                parts.append(f"${{{{outputs.{argument.name}}}}}")
            else:
                raise ConfigurationError(
                    f"step {step.name!r} passes data {argument.name!r} as an argument but "
                    "neither reads nor writes it; add it to the step's inputs or outputs")
        else:
            parts.append(shlex.quote(argument))
    return " ".join(parts)


def _parameters_of(step: Step) -> List[str]:
    """The pipeline parameters a step's arguments use, in order, once each."""
    return list(dict.fromkeys(a.name for a in step.arguments if isinstance(a, ParameterRef)))


def command_component_spec(step: Step, definition: PipelineDefinition,
                           environment: Mapping[str, Any], waits_for: Optional[Step],
                           signals_next: bool) -> Dict[str, Any]:
    """The command component of one step (its YAML form)."""
    inputs: Dict[str, Any] = {name: {"type": "string"} for name in _parameters_of(step)}
    inputs.update({name: {"type": "uri_folder"} for name in step.inputs})
    if waits_for is not None:
        inputs[order_input(waits_for)] = {"type": "uri_folder"}
    outputs: Dict[str, Any] = {name: {"type": "uri_folder"} for name in step.outputs}
    if signals_next:
        outputs[ORDER_OUTPUT] = {"type": "uri_folder"}
    return {
        "name": f"{asset_name(definition.name)}_{asset_name(step.name)}",
        "display_name": step.name,
        "type": "command",
        "command": step_command(step),
        "code": str(definition.source_directory),
        "environment": dict(environment),
        "inputs": inputs,
        "outputs": outputs,
        "is_deterministic": step.allow_reuse,
    }


def pipeline_component_spec(definition: PipelineDefinition, environment: Mapping[str, Any],
                            environment_variables: Optional[Mapping[str, str]] = None,
                            ) -> Dict[str, Any]:
    """The pipeline component of a definition (its YAML form): every step a command
    component node, data edges bound from producer to consumer, parameters as inputs.

    ``environment`` is the steps' environment (``image`` and ``conda_file``);
    ``environment_variables`` are set for every step (what a step reads on the compute).
    """
    problems = definition.validate()
    if problems:
        raise ConfigurationError(f"pipeline {definition.name!r} is not sound: "
                                 + "; ".join(problems))
    producer: Dict[str, str] = {}
    jobs: Dict[str, Any] = {}
    steps = definition.steps
    for index, step in enumerate(steps):
        node = asset_name(step.name)
        previous = steps[index - 1] if index else None
        waits_for = previous if needs_order_edge(step, previous) else None
        following = steps[index + 1] if index + 1 < len(steps) else None
        signals_next = following is not None and needs_order_edge(following, step)
        bindings = {name: f"${{{{parent.inputs.{name}}}}}" for name in _parameters_of(step)}
        bindings.update({name: f"${{{{parent.jobs.{producer[name]}.outputs.{name}}}}}"
                         for name in step.inputs})
        if waits_for is not None:
            bindings[order_input(waits_for)] = (
                f"${{{{parent.jobs.{asset_name(waits_for.name)}.outputs.{ORDER_OUTPUT}}}}}")
        job: Dict[str, Any] = {
            "type": "command",
            "component": command_component_spec(step, definition, environment, waits_for,
                                                signals_next),
            "inputs": bindings,
        }
        if environment_variables:
            job["environment_variables"] = dict(environment_variables)
        jobs[node] = job
        producer.update({name: node for name in step.outputs})
    return {
        "$schema": COMPONENT_SCHEMA,
        "type": "pipeline",
        "name": asset_name(definition.name),
        "display_name": definition.name,
        "inputs": {p.name: {"type": "string", "default": p.default}
                   for p in definition.parameters},
        "jobs": jobs,
    }


def step_environment(image: str, conda_file: str,
                     definition: PipelineDefinition) -> Dict[str, str]:
    """The steps' environment: a base image and the conda file (relative to the source
    directory), which azure-ai-ml reads and inlines when it loads the component."""
    path = definition.source_directory / conda_file
    if not path.is_file():
        raise ConfigurationError(f"the SDK v2 steps' conda file {path} does not exist; set "
                                 "AML_ENV_V2_CONDA_DEP_FILE to a conda file of the project")
    return {"image": image, "conda_file": str(path)}


def load_pipeline_component(spec: Mapping[str, Any], version: Optional[str] = None):
    """The azure-ai-ml PipelineComponent of a spec, loaded by the SDK's own YAML loader
    (which checks it against the component schema and reads the conda file). The spec's
    paths are absolute, so nothing depends on the working directory."""
    from azure.ai.ml import load_component

    text = yaml.safe_dump(dict(spec), sort_keys=False)
    component = load_component(io.StringIO(text))
    if version is not None:
        component.version = version
    return component


def build_pipeline_component(definition: PipelineDefinition, base_image: str, conda_file: str,
                             environment_variables: Mapping[str, str],
                             version: Optional[str] = None) -> Any:
    """The definition as azure-ai-ml's PipelineComponent, loaded and checked by the SDK's
    own validation; ConfigurationError with every problem it finds."""
    spec = pipeline_component_spec(definition, step_environment(base_image, conda_file,
                                                                definition),
                                   environment_variables)
    component = load_pipeline_component(spec, version)
    problems = validation_problems(component)
    if problems:
        raise ConfigurationError(f"azure-ai-ml refuses pipeline {definition.name!r}: "
                                 + "; ".join(problems))
    return component


def pipeline_job(component: Any, parameters: Mapping[str, str], compute: str,
                 experiment_name: str, tags: Optional[Mapping[str, str]] = None):
    """A PipelineJob that runs ``component`` on ``compute`` with these parameter values.

    It runs as the identity that submits it (``user_identity``): the steps' MLClient then
    signs in on the compute on that identity's behalf (AzureMLOnBehalfOfCredential), so the
    cluster needs no identity and no role of its own."""
    from azure.ai.ml.entities import PipelineJob, PipelineJobSettings, UserIdentityConfiguration

    return PipelineJob(component=component, inputs=dict(parameters),
                       settings=PipelineJobSettings(default_compute=compute),
                       experiment_name=experiment_name, tags=dict(tags or {}),
                       identity=UserIdentityConfiguration(),
                       display_name=component.display_name if not isinstance(component, str)
                       else None)


def validation_problems(entity: Any) -> List[str]:
    """What azure-ai-ml's own local validation finds wrong with a component or job
    (``_validate``, pinned with the SDK: MLClient's public validate needs a workspace)."""
    result = entity._validate()
    return [f"{field}: {message}" for field, message in sorted(result.error_messages.items())]
