"""Find the training pipeline published for a build and run it.

    python -m ml_service.pipelines.run_train_pipeline --output_pipeline_id_file id.txt \\
        [--skip_train_execution] [--wait]

Exactly one published pipeline must match TRAINING_PIPELINE_NAME and the build
id (BUILD_BUILDID, or --version); anything else is an error. The run is tagged
with BuildId / BuildUri. A run cancelled by the evaluate step ("not better")
is a normal outcome: exit 0. A failed run: exit 1.
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

from ml_service.backends import get_backend
from ml_service.backends.base import Backend, PublishedPipeline
from ml_service.errors import PipelineNotFoundError, StepFailedError
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import TrainingSettings, load_dotenv_file

LOGGER = logging.getLogger(__name__)
FAILED = {"FAILED", "Failed", "Error"}


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse MLOpsPython's arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_pipeline_id_file", type=Path,
                        help="file to write the published pipeline's id to")
    parser.add_argument("--skip_train_execution", action="store_true",
                        help="find the pipeline (and write its id) without running it")
    parser.add_argument("--wait", action="store_true", help="wait until the run has ended")
    parser.add_argument("--version", help="published version (default: BUILD_BUILDID)")
    return parser.parse_args(argv)


def find_published_pipeline(
        backend: Backend, name: str, version: str,
        build_script: str = "ml_service.pipelines.diabetes_regression_build_train_pipeline",
) -> PublishedPipeline:
    """The one pipeline published under this name and version, or PipelineNotFoundError."""
    matches = backend.list_published_pipelines(name, version)
    if len(matches) != 1:
        raise PipelineNotFoundError(
            f"{len(matches)} published pipelines named {name!r} with version {version!r}; "
            f"expected exactly one: publish it with {build_script} for this build")
    return matches[0]


def write_id(path: Path, pipeline_id: str) -> None:
    """Write the pipeline id to a file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(pipeline_id)
    tmp.replace(path)


def find_and_run(args: argparse.Namespace) -> int:
    """Find the published pipeline, write its id, run it unless told not to."""
    load_dotenv_file()
    training = TrainingSettings.from_env()
    version = training.build_version(args.version, "it names the published pipeline to run")
    backend = get_backend(training=training)
    published = find_published_pipeline(backend, training.pipeline_name, version)
    LOGGER.info("Found %s version %s: id %s", published.name, published.version, published.id)
    if args.output_pipeline_id_file:
        write_id(args.output_pipeline_id_file, published.id)
    if args.skip_train_execution:
        LOGGER.info("Not running it (--skip_train_execution)")
        return 0
    run = backend.submit_pipeline(published, {"model_name": training.model_name},
                                  training.build_tags(), wait=args.wait)
    LOGGER.info("Pipeline run %s: %s", run.id, run.status)
    if run.status in FAILED:
        raise StepFailedError(f"pipeline run {run.id} ended {run.status}")
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point: find (and run) the published training pipeline."""
    args = parse_args(argv)
    return run_cli(lambda: find_and_run(args))


if __name__ == "__main__":
    sys.exit(main())
