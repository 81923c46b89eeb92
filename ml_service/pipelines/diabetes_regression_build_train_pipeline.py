"""Publish the training pipeline, built from its one definition, versioned by the build id.

    BUILD_BUILDID=42 python -m ml_service.pipelines.diabetes_regression_build_train_pipeline

With the local backend the definition is published to the local store; with
MLOPS_BACKEND=azureml it becomes PythonScriptSteps joined by PipelineData,
validated and published to the workspace. Either way the sample dataset is
registered first when the store or workspace lacks it.
"""
import argparse
import logging
import sys
from typing import Optional

from ml_service.backends import get_backend
from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import TrainingSettings, load_dotenv_file
from ml_service.util.sample_dataset import ensure_sample_dataset

LOGGER = logging.getLogger(__name__)
DESCRIPTION = "Model training/retraining pipeline"


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the version to publish under."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", help="version to publish under (default: BUILD_BUILDID)")
    return parser.parse_args(argv)


def build_and_publish(args: argparse.Namespace) -> int:
    """Register the sample dataset if needed, then publish the pipeline; print its id."""
    load_dotenv_file()
    training = TrainingSettings.from_env()
    version = training.build_version(args.version, "it is the version the pipeline is "
                                                   "published under")
    backend = get_backend(training=training)
    ensure_sample_dataset(backend, training.dataset_name)
    definition = build_training_pipeline(training)
    published = backend.publish_pipeline(definition, version, DESCRIPTION)
    LOGGER.info("Published %s version %s on the %s backend: id %s", published.name,
                published.version, backend.name, published.id)
    print(published.id)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of the build script."""
    args = parse_args(argv)
    return run_cli(lambda: build_and_publish(args))


if __name__ == "__main__":
    sys.exit(main())
