"""The whole loop on one machine: dataset, pipeline, deploy, smoke test, stop.

    python -m ml_service.local_loop                     (what `make run` runs)
    python -m ml_service.local_loop --data my.csv       (`make run DATA=my.csv`)

1. registers the model package's sample dataset if the local store lacks it, or, given
   ``--data``, has the validate step check that CSV and register it as a new version;
2. runs the training pipeline (validate data, train, evaluate, register) with the local
   executor;
3. deploys the production model in azureml-inference-server-http;
4. smoke-tests it with the sample from parameters.json, then stops it;
and prints a summary.
"""
import argparse
import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from diabetes_regression.evaluate.evaluate_model import (OUTCOME_TAG, REASON_TAG,
                                                         STEP_RUN_NAME as EVALUATE_RUN_NAME)
from diabetes_regression.evaluate.report import REPORT_FOLDER
from diabetes_regression.parameters import load_parameters
from diabetes_regression.validate.validate_data import SUMMARY_TAG as DATA_CHECK_TAG
from ml_service.backends.local import LocalBackend, file_uri_to_path
from ml_service.errors import ConfigurationError
from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
from ml_service.pipelines.local_executor import execute, make_runner
from ml_service.util.cli import run_cli
from ml_service.util.deploy_local import deploy_production_model
from ml_service.util.env_variables import (BackendSettings, ScoringSettings, TrainingSettings,
                                           load_dotenv_file)
from ml_service.util.sample_dataset import ensure_sample_dataset
from ml_service.util.smoke_test_scoring_service import smoke_test

LOGGER = logging.getLogger(__name__)
# Where `mlflow ui` serves by default.
MLFLOW_UI_URL = "http://127.0.0.1:5000"


@dataclass
class LoopSummary:
    """What one pass of the loop did."""

    run_id: str
    run_status: str
    metrics: Dict[str, float]
    decision: str
    model_name: str
    model_version: int
    scoring_uri: str
    predictions: List[float]
    seconds: float
    tracking_uri: str
    timings: Dict[str, float] = field(default_factory=dict)
    data_check: str = ""
    dataset: str = ""
    report: str = ""
    experiment_name: str = ""

    def lines(self) -> List[str]:
        """The summary as printable lines."""
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items()))
        return [
            "Summary",
            f"  pipeline run   {self.run_id} ({self.run_status})",
            f"  dataset        {self.dataset or 'not recorded'}",
            f"  data check     {self.data_check or 'not recorded'}",
            f"  metrics        {metrics}",
            f"  decision       {self.decision}",
            f"  evaluation     {self.report or 'no report (evaluation off, or not drawn)'}",
            f"  model          {self.model_name} version {self.model_version} (production)",
            f"  scoring URL    {self.scoring_uri} (stopped)",
            f"  smoke test passed: {len(self.predictions)} predictions",
            f"  total time     {self.seconds:.1f} s",
            f"  inspect runs   {mlflow_command()} ui --backend-store-uri {self.tracking_uri}"
            f" (then open {MLFLOW_UI_URL}, experiment {self.experiment_name})",
        ]


def mlflow_command() -> str:
    """The mlflow command of this environment (beside its Python: a virtual environment is
    rarely activated), or plain ``mlflow`` when there is none there."""
    beside = Path(sys.executable).parent / "mlflow"
    return str(beside) if beside.is_file() else "mlflow"


def describe_decision(tags: Dict[str, str], registered_version: Optional[str]) -> str:
    """One line for what the evaluate and register steps decided."""
    outcome, reason = tags.get(OUTCOME_TAG), tags.get(REASON_TAG, "")
    if outcome == "not_registered":
        return f"not registered: {reason}"
    if registered_version:
        return f"registered version {registered_version}" + (f": {reason}" if reason else "")
    return "no model registered"


def describe_dataset(tags: Dict[str, str]) -> str:
    """The dataset version the train step used, as its tags record it."""
    if "dataset_name" not in tags:
        return ""
    return f"{tags['dataset_name']} version {tags.get('dataset_version', '?')}"


def find_report(backend: LocalBackend, pipeline_run_id: str) -> str:
    """Where the evaluate step's report is in the local store, or "" when it wrote none."""
    for step in backend.list_step_runs(pipeline_run_id):
        if step.info.run_name == EVALUATE_RUN_NAME:
            folder = file_uri_to_path(step.info.artifact_uri) / REPORT_FOLDER
            if folder.is_dir():
                return f"{folder}{os.sep}"
    return ""


@contextmanager
def timed(timings: Dict[str, float], name: str) -> Iterator[None]:
    """Record how long the block took under ``name``."""
    started = time.monotonic()
    try:
        yield
    finally:
        timings[name] = time.monotonic() - started


def check_data_file(path: Path) -> Path:
    """The CSV a user passed, as an absolute path; ConfigurationError when it is not a file."""
    if not path.is_file():
        raise ConfigurationError(f"--data {path}: no such file; pass the path of a CSV file "
                                 "with the model's feature columns and its target")
    return path.resolve()


def run_loop(backend: LocalBackend, training: TrainingSettings,
             scoring: ScoringSettings, data_file: Optional[Path] = None) -> LoopSummary:
    """Run the four stages and return the summary; the service is stopped at the end.

    With ``data_file``, the pipeline's validate step checks that file and registers it as
    a new version of the dataset, and the model is trained on it.
    """
    parameters = {"data_file_path": str(check_data_file(data_file))} if data_file else {}
    started = time.monotonic()
    timings: Dict[str, float] = {}
    pipeline = build_training_pipeline(training)
    # Started first, so the step launcher warms up while the dataset is checked.
    runner = make_runner(os.environ, pipeline)
    try:
        sample = load_parameters().scoring.sample
        LOGGER.info("== 1/4 dataset")
        with timed(timings, "dataset"):
            if data_file:
                LOGGER.info("Training on %s: the validate step registers it once it passed",
                            parameters["data_file_path"])
            else:
                ensure_sample_dataset(backend, training.dataset_name)
        LOGGER.info("== 2/4 training pipeline (local executor)")
        tags = training.build_tags()
        with timed(timings, "pipeline"):
            result = execute(pipeline, backend, parameters,
                             tags=tags, runner=runner)
    finally:
        runner.close()
    timings.update({f"step {step.name}": step.seconds for step in result.steps
                    if step.status == "completed"})
    run_tags = backend.get_run_tags(result.run_id)
    LOGGER.info("== 3/4 deploy the production model locally")
    with timed(timings, "deploy"):
        deployment = deploy_production_model(backend, training.model_name,
                                             scoring.service_name)
    try:
        LOGGER.info("== 4/4 smoke test %s", deployment.scoring_uri)
        with timed(timings, "smoke test"):
            predictions = smoke_test(deployment.scoring_uri, sample, total_s=60.0)
    finally:
        with timed(timings, "stop"):
            backend.delete_deployment(scoring.service_name)
    return LoopSummary(
        run_id=result.run_id,
        run_status=result.status,
        metrics=backend.get_run_metrics(result.run_id),
        decision=describe_decision(run_tags, run_tags.get("registered_model_version")),
        model_name=deployment.model_name,
        model_version=deployment.model_version,
        scoring_uri=deployment.scoring_uri,
        predictions=predictions,
        seconds=time.monotonic() - started,
        tracking_uri=backend.tracking_uri,
        timings=timings,
        data_check=run_tags.get(DATA_CHECK_TAG, ""),
        dataset=describe_dataset(run_tags),
        report=find_report(backend, result.run_id),
        experiment_name=training.experiment_name,
    )


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """One option, the data; the settings come from the environment and .env."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        help="CSV file to check, register as a new dataset version and "
                             "train on (default: the latest version, or the sample)")
    return parser.parse_args(argv)


def loop(args: argparse.Namespace) -> int:
    """Read the settings, run the loop, print the summary."""
    load_dotenv_file()
    training = TrainingSettings.from_env()
    scoring = ScoringSettings.from_env()
    backend = LocalBackend(BackendSettings.from_env().root, training.experiment_name,
                           scoring.port)
    summary = run_loop(backend, training, scoring, args.data)
    print("\n".join(summary.lines()))
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of `make run`."""
    args = parse_args(argv)
    return run_cli(lambda: loop(args))


if __name__ == "__main__":
    sys.exit(main())
