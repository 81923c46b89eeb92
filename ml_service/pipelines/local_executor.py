"""Run a pipeline definition locally: each step script as its own process, in order.

Data edges are folders under ``<root>/pipeline_runs/<run id>/data``; each step's
output goes to the console and to ``.../logs/<step>.log``. A step that cancels
the pipeline run stops it: the remaining steps are skipped.

    python -m ml_service.pipelines.local_executor [--dataset_version 2]
"""
import argparse
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from ml_service.backends.local import ENV_PIPELINE_RUN_ID, LocalBackend
from ml_service.errors import ConfigurationError, StepFailedError
from ml_service.pipelines.definition import DataRef, ParameterRef, PipelineDefinition, Step
from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import BackendSettings, TrainingSettings, load_dotenv_file

LOGGER = logging.getLogger(__name__)


@dataclass
class StepResult:
    """How one step ended: completed, failed or skipped."""

    name: str
    status: str
    seconds: float = 0.0
    log_path: Optional[Path] = None


@dataclass
class PipelineRunResult:
    """How a pipeline run ended, with its steps."""

    run_id: str
    status: str
    steps: List[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def cancelled(self) -> bool:
        """True when a step cancelled the run."""
        return self.status == "KILLED"


def step_command(step: Step, source_directory: Path, values: Mapping[str, str],
                 data_dirs: Mapping[str, Path]) -> List[str]:
    """The command line of a step, with parameters and data folders filled in."""
    argv = [sys.executable, str(source_directory / step.script)]
    for arg in step.arguments:
        if isinstance(arg, ParameterRef):
            argv.append(values[arg.name])
        elif isinstance(arg, DataRef):
            argv.append(str(data_dirs[arg.name]))
        else:
            argv.append(arg)
    return argv


def run_step_process(argv: List[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> int:
    """Run one step, echoing its output indented and writing it to a log; return its code."""
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace") as process:
        try:
            for line in process.stdout:
                log.write(line)
                sys.stderr.write("    | " + line)
            return process.wait()
        except BaseException:
            process.kill()
            raise


def execute(pipeline: PipelineDefinition, backend: LocalBackend,
            parameters: Optional[Mapping[str, str]] = None,
            tags: Optional[Mapping[str, str]] = None) -> PipelineRunResult:
    """Run every step of the pipeline in order against the local backend.

    Raises StepFailedError (after marking the run FAILED) when a step exits non-zero.
    """
    problems = pipeline.validate()
    if problems:
        raise ConfigurationError(f"pipeline {pipeline.name!r} is not valid: "
                                 + "; ".join(problems))
    values = pipeline.resolve_parameters(parameters)
    started = time.monotonic()
    run_id = backend.start_pipeline_run(pipeline.name, values, tags)
    result = PipelineRunResult(run_id, "RUNNING")
    run_dir = backend.root / "pipeline_runs" / run_id
    data_dirs = {name: run_dir / "data" / name for name in pipeline.data}
    for folder in [*data_dirs.values(), run_dir / "logs"]:
        folder.mkdir(parents=True, exist_ok=True)
    env = step_environment(backend, run_id, pipeline.source_directory)
    LOGGER.info("Pipeline %r run %s: %s", pipeline.name, run_id,
                " -> ".join(pipeline.step_names()))
    total = len(pipeline.steps)
    try:
        for index, step in enumerate(pipeline.steps, start=1):
            if result.status == "KILLED":
                result.steps.append(StepResult(step.name, "skipped"))
                LOGGER.info("[%d/%d] %s: skipped (run cancelled)", index, total, step.name)
                continue
            LOGGER.info("[%d/%d] %s: running %s", index, total, step.name, step.script)
            log_path = run_dir / "logs" / f"{index:02d}_{step.name.replace(' ', '_')}.log"
            step_started = time.monotonic()
            code = run_step_process(step_command(step, pipeline.source_directory, values,
                                                 data_dirs),
                                    pipeline.source_directory, env, log_path)
            seconds = time.monotonic() - step_started
            if code != 0:
                result.steps.append(StepResult(step.name, "failed", seconds, log_path))
                raise StepFailedError(f"step {step.name!r} of run {run_id} failed with exit "
                                      f"code {code}; its log is {log_path}")
            result.steps.append(StepResult(step.name, "completed", seconds, log_path))
            LOGGER.info("[%d/%d] %s: completed in %.1f s", index, total, step.name, seconds)
            if backend.pipeline_run_status(run_id) == "KILLED":
                result.status = "KILLED"
                LOGGER.info("Step %r cancelled the pipeline run", step.name)
    except BaseException:
        backend.end_pipeline_run(run_id, "FAILED")
        raise
    if result.status != "KILLED":
        result.status = "FINISHED"
        backend.end_pipeline_run(run_id, "FINISHED")
    result.seconds = time.monotonic() - started
    return result


def step_environment(backend: LocalBackend, run_id: str, source_directory: Path) -> Dict[str, str]:
    """The environment of a step process: this one plus where the run and store are.

    The source directory goes on PYTHONPATH as Azure ML puts it on sys.path.
    """
    env = dict(os.environ)
    env.update({
        "MLOPS_BACKEND": "local",
        "MLOPS_ROOT": str(backend.root),
        "EXPERIMENT_NAME": backend.experiment_name,
        ENV_PIPELINE_RUN_ID: run_id,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(source_directory),
                                                    env.get("PYTHONPATH")])),
    })
    return env


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the pipeline parameters to override."""
    parser = argparse.ArgumentParser(description="Run the training pipeline locally.")
    parser.add_argument("--model_name", help="pipeline parameter model_name")
    parser.add_argument("--dataset_version", help="pipeline parameter dataset_version")
    parser.add_argument("--data_file_path", help="pipeline parameter data_file_path")
    parser.add_argument("--caller_run_id", help="pipeline parameter caller_run_id")
    return parser.parse_args(argv)


def run_training_pipeline(args: argparse.Namespace) -> int:
    """Build the training pipeline from the settings and run it locally."""
    load_dotenv_file()
    settings = TrainingSettings.from_env()
    backend = LocalBackend(BackendSettings.from_env().root, settings.experiment_name)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    tags = {k: v for k, v in (("BuildId", settings.build_id),
                              ("BuildUri", settings.build_uri)) if v}
    result = execute(build_training_pipeline(settings), backend, overrides, tags)
    LOGGER.info("Pipeline run %s ended %s in %.1f s", result.run_id, result.status,
                result.seconds)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point: run the training pipeline locally."""
    args = parse_args(argv)
    return run_cli(lambda: run_training_pipeline(args))


if __name__ == "__main__":
    sys.exit(main())
