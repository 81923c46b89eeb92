"""A platform-neutral pipeline definition: steps, arguments, data edges, parameters, order.

The local executor runs it as processes; the Azure ML build script translates
the same object into PythonScriptSteps joined by PipelineData.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ml_service.errors import ConfigurationError


@dataclass(frozen=True)
class PipelineParameter:
    """A value chosen when the pipeline is submitted (PipelineParameter on Azure ML)."""

    name: str
    default: str


@dataclass(frozen=True)
class ParameterRef:
    """An argument filled with a pipeline parameter's value."""

    name: str


@dataclass(frozen=True)
class DataRef:
    """An argument filled with a data edge's folder (PipelineData on Azure ML)."""

    name: str


Argument = Union[str, ParameterRef, DataRef]


@dataclass(frozen=True)
class Step:
    """One step: a script, its arguments, and the data edges it reads and writes."""

    name: str
    script: str
    arguments: Tuple[Argument, ...]
    inputs: Tuple[str, ...] = ()
    outputs: Tuple[str, ...] = ()
    allow_reuse: bool = False


@dataclass(frozen=True)
class PipelineDefinition:
    """A whole pipeline; ``steps`` are in run order, each after the one before."""

    name: str
    source_directory: Path
    parameters: Tuple[PipelineParameter, ...]
    data: Tuple[str, ...]
    steps: Tuple[Step, ...]

    def step_names(self) -> List[str]:
        """The step names in run order."""
        return [step.name for step in self.steps]

    def resolve_parameters(self, values: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """Defaults overridden by ``values``; an unknown parameter name is an error."""
        resolved = {p.name: p.default for p in self.parameters}
        unknown = sorted(set(values or {}) - set(resolved))
        if unknown:
            raise ConfigurationError(
                f"pipeline {self.name!r} has no parameter(s) {', '.join(unknown)}; "
                f"it has: {', '.join(resolved)}")
        resolved.update({k: str(v) for k, v in (values or {}).items()})
        return resolved

    def validate(self) -> List[str]:
        """Return every inconsistency in the definition (empty when it is sound)."""
        problems = []
        parameter_names = {p.name for p in self.parameters}
        produced = set()
        for step in self.steps:
            script = self.source_directory / step.script
            if not script.is_file():
                problems.append(f"step {step.name!r}: no script {script}")
            for arg in step.arguments:
                if isinstance(arg, ParameterRef) and arg.name not in parameter_names:
                    problems.append(f"step {step.name!r}: unknown parameter {arg.name!r}")
                if isinstance(arg, DataRef) and arg.name not in self.data:
                    problems.append(f"step {step.name!r}: undeclared data {arg.name!r}")
            for name in step.inputs:
                if name not in produced:
                    problems.append(f"step {step.name!r} reads {name!r} "
                                    "before any earlier step writes it")
            produced.update(step.outputs)
        names = self.step_names()
        if len(set(names)) != len(names):
            problems.append("step names are not unique")
        return problems


def definition_to_dict(definition: PipelineDefinition) -> Dict[str, Any]:
    """A JSON-ready form of a definition (how the local backend publishes it)."""
    def argument(arg: Argument) -> Any:
        if isinstance(arg, ParameterRef):
            return {"parameter": arg.name}
        if isinstance(arg, DataRef):
            return {"data": arg.name}
        return arg

    return {
        "name": definition.name,
        "source_directory": str(definition.source_directory),
        "parameters": [{"name": p.name, "default": p.default} for p in definition.parameters],
        "data": list(definition.data),
        "steps": [{"name": s.name, "script": s.script,
                   "arguments": [argument(a) for a in s.arguments],
                   "inputs": list(s.inputs), "outputs": list(s.outputs),
                   "allow_reuse": s.allow_reuse} for s in definition.steps],
    }


def definition_from_dict(raw: Mapping[str, Any]) -> PipelineDefinition:
    """Rebuild a definition from definition_to_dict's form."""
    def argument(arg: Any) -> Argument:
        if isinstance(arg, dict):
            return ParameterRef(arg["parameter"]) if "parameter" in arg else DataRef(arg["data"])
        return str(arg)

    try:
        return PipelineDefinition(
            name=raw["name"],
            source_directory=Path(raw["source_directory"]),
            parameters=tuple(PipelineParameter(p["name"], p["default"])
                             for p in raw["parameters"]),
            data=tuple(raw["data"]),
            steps=tuple(Step(s["name"], s["script"], tuple(argument(a) for a in s["arguments"]),
                             tuple(s["inputs"]), tuple(s["outputs"]), bool(s["allow_reuse"]))
                        for s in raw["steps"]),
        )
    except (KeyError, TypeError) as err:
        raise ConfigurationError(f"not a pipeline definition: missing or bad {err}") from err
