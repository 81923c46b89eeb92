"""Batch-score with the production model: locally across all cores, or on Azure ML.

    python -m ml_service.pipelines.run_parallel_batchscore_pipeline \\
        [--input data.csv] [--output scored.csv] [--workers N] [--mini_batch_rows N]
        [--model_name NAME] [--model_version N|production]
    MLOPS_BACKEND=azureml BUILD_BUILDID=42 \\
        python -m ml_service.pipelines.run_parallel_batchscore_pipeline [--node_count N] [--wait]

With the local backend it scores a CSV file (default: the latest version of the
training dataset in the local store) with the local batch scorer, which runs the
ParallelRunStep's entry script in worker processes, and writes one output file
(default: diabetes_scoring_output.csv in the working directory). With the azureml
backend it finds the batch scoring pipeline published for the build (exactly one,
by SCORING_PIPELINE_NAME and BUILD_BUILDID or --version) and submits it with the
model name and version, tagged with BuildId / BuildUri.
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

from diabetes_regression.scoring.batchscore_copy_output import DEFAULT_OUTPUT_FILE_NAME
from diabetes_regression.scoring.parallel_batchscore import PRODUCTION
from ml_service.backends import get_backend
from ml_service.backends.base import Backend
from ml_service.backends.local import LocalBackend
from ml_service.errors import ConfigurationError, DatasetNotFoundError, StepFailedError
from ml_service.pipelines import local_batchscore
from ml_service.pipelines.run_train_pipeline import find_published_pipeline
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import TrainingSettings, load_dotenv_file

LOGGER = logging.getLogger(__name__)
FAILED = {"FAILED", "Failed", "Error"}


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the options; the local and the Azure ML ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", help="registered model (default: MODEL_NAME)")
    parser.add_argument("--model_version", default=PRODUCTION,
                        help="a version number or 'production' (default)")
    local = parser.add_argument_group("local backend")
    local.add_argument("--input", type=Path,
                       help="CSV file to score (default: the latest version of DATASET_NAME "
                            "in the local store)")
    local.add_argument("--output", type=Path, default=Path(DEFAULT_OUTPUT_FILE_NAME),
                       help=f"CSV file to write (default: {DEFAULT_OUTPUT_FILE_NAME})")
    local.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    local.add_argument("--mini_batch_rows", type=int,
                       default=local_batchscore.DEFAULT_MINI_BATCH_ROWS,
                       help="rows per mini-batch")
    azure = parser.add_argument_group("azureml backend")
    azure.add_argument("--version", help="published version to run (default: BUILD_BUILDID)")
    azure.add_argument("--node_count", type=int,
                       help="nodes to score on (default: the pipeline's)")
    azure.add_argument("--wait", action="store_true", help="wait until the run has ended")
    return parser.parse_args(argv)


def default_input(backend: LocalBackend, dataset_name: str) -> Path:
    """The CSV file of the latest version of a dataset in the local store."""
    dataset = backend.find_dataset(dataset_name)
    if dataset is None:
        raise DatasetNotFoundError(f"no --input given and no dataset {dataset_name!r} in the "
                                   "local store: pass --input FILE (make run registers one)")
    return backend.dataset_path(dataset)


def score_locally(backend: LocalBackend, args: argparse.Namespace,
                  training: TrainingSettings) -> int:
    """Score a CSV file with the local batch scorer and a registered model."""
    input_path = args.input or default_input(backend, training.dataset_name)
    local_batchscore.score_csv_with_registry(
        backend, args.model_name or training.model_name, args.model_version, input_path,
        args.output, workers=args.workers, mini_batch_rows=args.mini_batch_rows)
    return 0


def submit_published(backend: Backend, args: argparse.Namespace,
                     training: TrainingSettings) -> int:
    """Find the batch scoring pipeline published for the build and submit it."""
    from ml_service.pipelines.diabetes_regression_build_parallel_batchscore_pipeline import \
        BatchScoringSettings

    settings = BatchScoringSettings.from_env()
    version = training.build_version(args.version, "it names the published batch scoring "
                                                   "pipeline to run")
    published = find_published_pipeline(
        backend, settings.pipeline_name, version,
        build_script="ml_service.pipelines.diabetes_regression_build_parallel_batchscore_pipeline")
    parameters = {"model_name": args.model_name or training.model_name,
                  "model_version": args.model_version}
    if args.node_count is not None:
        # An integer pipeline parameter: submitted as a number.
        parameters["node_count"] = args.node_count
    run = backend.submit_pipeline(published, parameters, training.build_tags(), wait=args.wait)
    LOGGER.info("Batch scoring run %s: %s", run.id, run.status)
    if run.status in FAILED:
        raise StepFailedError(f"batch scoring run {run.id} ended {run.status}")
    return 0


def run_batchscore(args: argparse.Namespace) -> int:
    """Score locally or submit the published pipeline, by backend."""
    load_dotenv_file()
    training = TrainingSettings.from_env()
    if args.node_count is not None and args.node_count < 1:
        raise ConfigurationError("--node_count must be at least 1")
    backend = get_backend(training=training)
    if isinstance(backend, LocalBackend):
        return score_locally(backend, args, training)
    return submit_published(backend, args, training)


def main(argv: Optional[list] = None) -> int:
    """Entry point: run batch scoring."""
    args = parse_args(argv)
    return run_cli(lambda: run_batchscore(args))


if __name__ == "__main__":
    sys.exit(main())
