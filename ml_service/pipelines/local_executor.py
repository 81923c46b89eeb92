"""Run a pipeline definition locally: each step script as its own process, in order.

Data edges are folders under ``<root>/pipeline_runs/<run id>/data``; each step's
output goes to the console and to ``.../logs/<step>.log``. A step that cancels
the pipeline run stops it: the remaining steps are skipped.

    python -m ml_service.pipelines.local_executor [--dataset_version 2]
"""
import argparse
import functools
import gc
import json
import logging
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from ml_service.errors import ConfigurationError, StepFailedError
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines.definition import DataRef, ParameterRef, PipelineDefinition, Step
from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
from ml_service.pipelines.step_launcher import end_with_parent
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import BackendSettings, TrainingSettings, load_dotenv_file

# Nothing imported above loads pandas or MLflow: the command starts the step launcher
# first, and the launcher's warm-up overlaps this process's own imports (the backend's).
if TYPE_CHECKING:
    from ml_service.backends.local import LocalBackend

LOGGER = logging.getLogger(__name__)
STEP_LAUNCHER_VARIABLE = "MLOPS_STEP_LAUNCHER"
# For docs/configuration.md: (name, kind, default, effect).
DESCRIBED_VARIABLES = (
    (STEP_LAUNCHER_VARIABLE, "fork or process", "fork",
     "How the local executor starts each step: forked from a warm launcher, or as a plain "
     "`python script.py` process (also where the platform cannot fork)"),
)


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


class ProcessRunner:
    """Starts each step as ``python script.py``: the plainest way, and the slowest."""

    def run(self, argv: List[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> int:
        """Run one step, echoing its output and writing it to a log; return its exit code."""
        with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
                argv, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True, errors="replace",
                preexec_fn=functools.partial(end_with_parent, os.getpid())) as process:
            try:
                for line in process.stdout:
                    log.write(line)
                    echo(line)
                return process.wait()
            except BaseException:
                process.kill()
                raise

    def close(self) -> None:
        """Nothing to release."""


class ForkRunner:
    """Starts each step as a child of a warm launcher (see step_launcher)."""

    def __init__(self, env: Mapping[str, str],
                 pipeline: Optional[PipelineDefinition] = None) -> None:
        """Start the launcher; with ``pipeline``, it also warms the libraries its step
        scripts import."""
        command = [sys.executable, "-m", "ml_service.pipelines.step_launcher"]
        if pipeline is not None:
            command += ["--source_directory", str(pipeline.source_directory),
                        *(str(pipeline.source_directory / step.script)
                          for step in pipeline.steps)]
        self._launcher = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(env),
            cwd=PROJECT_ROOT)
        self._ready = False

    def _reply(self) -> dict:
        line = self._launcher.stdout.readline()
        if not line:
            raise StepFailedError(f"the step launcher exited with code {self._launcher.wait()}; "
                                  "set MLOPS_STEP_LAUNCHER=process to run steps without it")
        return json.loads(line)

    def run(self, argv: List[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> int:
        """Have the launcher fork the step; echo its log while it runs; return its exit code."""
        if not self._ready:
            self._reply()
            self._ready = True
        request = {"argv": argv[1:], "cwd": str(cwd), "env": dict(env), "log": str(log_path)}
        self._launcher.stdin.write(json.dumps(request) + "\n")
        self._launcher.stdin.flush()
        with LogFollower(log_path) as follower:
            while not select.select([self._launcher.stdout], [], [], 0.1)[0]:
                follower.echo_new_lines()
            reply = self._reply()
            follower.echo_new_lines(final=True)
        return int(reply["code"])

    def close(self) -> None:
        """Let the launcher exit (it ends when its input closes)."""
        if self._launcher.stdin:
            self._launcher.stdin.close()
        try:
            self._launcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._launcher.kill()
            self._launcher.wait()
        if self._launcher.stdout:
            self._launcher.stdout.close()


class LogFollower:
    """Echo the lines a step appends to its log file, as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = None
        self._partial = ""

    def __enter__(self) -> "LogFollower":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def echo_new_lines(self, final: bool = False) -> None:
        """Echo every complete new line (and, at the end, any unfinished one)."""
        if self._file is None:
            if not self.path.exists():
                return
            self._file = open(self.path, encoding="utf-8", errors="replace")
        text = self._partial + self._file.read()
        lines = text.split("\n")
        self._partial = "" if final else lines.pop()
        for line in lines:
            if line or not final:
                echo(line + "\n")


def echo(line: str) -> None:
    """Show a line of a step's output, indented under the executor's own lines."""
    sys.stderr.write("    | " + line)


def make_runner(env: Mapping[str, str], pipeline: Optional[PipelineDefinition] = None):
    """The fork-based runner where the platform can fork, unless MLOPS_STEP_LAUNCHER=process;
    ``pipeline``, the one it will run, tells the launcher what its steps import."""
    choice = env.get(STEP_LAUNCHER_VARIABLE, "fork").strip().lower() or "fork"
    if choice not in ("fork", "process"):
        raise ConfigurationError(f"{STEP_LAUNCHER_VARIABLE}={choice!r}: use fork or process")
    if choice == "fork" and hasattr(os, "fork"):
        return ForkRunner(env, pipeline)
    return ProcessRunner()


def execute(pipeline: PipelineDefinition, backend: "LocalBackend",
            parameters: Optional[Mapping[str, str]] = None,
            tags: Optional[Mapping[str, str]] = None, runner: Any = None) -> PipelineRunResult:
    """Run every step of the pipeline in order against the local backend.

    ``runner`` starts the step processes (default: make_runner(), closed at the end).
    Raises StepFailedError (after marking the run FAILED) when a step exits non-zero.
    """
    problems = pipeline.validate()
    if problems:
        raise ConfigurationError(f"pipeline {pipeline.name!r} is not valid: "
                                 + "; ".join(problems))
    values = pipeline.resolve_parameters(parameters)
    started = time.monotonic()
    own_runner = runner is None
    # Started first: the launcher warms up while this process sets the run up.
    runner = runner or make_runner(os.environ, pipeline)
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
            code = runner.run(step_command(step, pipeline.source_directory, values, data_dirs),
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
    finally:
        if own_runner:
            runner.close()
    if result.status != "KILLED":
        result.status = "FINISHED"
        backend.end_pipeline_run(run_id, "FINISHED")
    result.seconds = time.monotonic() - started
    return result


def step_environment(backend: "LocalBackend", run_id: str,
                     source_directory: Path) -> Dict[str, str]:
    """The environment of a step process: this one plus where the run and store are.

    The source directory goes on PYTHONPATH as Azure ML puts it on sys.path.
    """
    from ml_service.backends.local import ENV_PIPELINE_RUN_ID

    env = dict(os.environ)
    env.update({
        "MLOPS_BACKEND": "local",
        "MLOPS_ROOT": str(backend.root),
        "EXPERIMENT_NAME": backend.experiment_name,
        ENV_PIPELINE_RUN_ID: run_id,
        # Step output reaches the console and the log as it is written.
        "PYTHONUNBUFFERED": "1",
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
    pipeline = build_training_pipeline(settings)
    # Before the backend (pandas, MLflow) is imported: the launcher warms up meanwhile.
    runner = make_runner(os.environ, pipeline)
    try:
        from ml_service.backends.local import LocalBackend

        backend = LocalBackend(BackendSettings.from_env().root, settings.experiment_name)
        overrides = {k: v for k, v in vars(args).items() if v is not None}
        result = execute(pipeline, backend, overrides, settings.build_tags(), runner=runner)
    finally:
        runner.close()
    LOGGER.info("Pipeline run %s ended %s in %.1f s", result.run_id, result.status,
                result.seconds)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point: run the training pipeline locally."""
    args = parse_args(argv)
    return run_cli(lambda: run_training_pipeline(args))


if __name__ == "__main__":
    exit_code = main()
    # No step's code ran in this process, and nothing it holds needs finalising: spare the
    # interpreter's last search of everything MLflow and pandas made (about a second).
    gc.freeze()
    sys.exit(exit_code)
