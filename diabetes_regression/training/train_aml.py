"""Train step: train the model on a registered dataset and save it to the step output.

In the pipeline it trains on the dataset version the validate step passed (--validated_data).
By hand it takes MLOpsPython's arguments: --dataset_version, or --data_file_path, a file it
checks with the validation rules (without the production reference) and registers first::

    python diabetes_regression/training/train_aml.py --step_output out/ \\
        --dataset_name diabetes_ds
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from diabetes_regression.training.model_files import MODEL_FOLDER, save_model
from diabetes_regression.parameters import (ParametersError, ValidationParameters,
                                            load_parameters)
from diabetes_regression.training.train import (TARGET_COLUMN, DataValidationError,
                                                get_model_metrics, split_data, train_model,
                                                validate_data)
from diabetes_regression.validate.validate_data import read_data_file, read_validated_data
from diabetes_regression.validate.validation import validate_frame
from ml_service.backends import get_backend
from ml_service.backends.base import Backend, DatasetVersion
from ml_service.errors import ConfigurationError, DatasetNotFoundError
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import TrainingSettings, load_dotenv_file
from ml_service.util.training_record import (TrainingRecord, write_test_split,
                                             write_training_record)

LOGGER = logging.getLogger(__name__)
NONE = "none"


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse MLOpsPython's train-step arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name",
                        help="registered model name; accepted as MLOpsPython passes it (the "
                             "model is saved as the MLflow model folder 'model')")
    parser.add_argument("--step_output", required=True,
                        help="folder the trained model is written to")
    parser.add_argument("--dataset_version", default="latest",
                        help="dataset version to train on (a number or 'latest')")
    parser.add_argument("--data_file_path", default=NONE,
                        help="CSV file to register as a new dataset version first")
    parser.add_argument("--caller_run_id", default=NONE,
                        help="id of the run (e.g. a CI build) that started this pipeline")
    parser.add_argument("--dataset_name", help="dataset name (default: DATASET_NAME)")
    parser.add_argument("--parameters", type=Path, help="parameters.json to use")
    parser.add_argument("--validated_data", type=Path,
                        help="folder written by the validate step: train on the dataset "
                             "version it passed (instead of --dataset_version)")
    return parser.parse_args(argv)


def check_data_file(path: Path, rules: ValidationParameters) -> pd.DataFrame:
    """Raise DataValidationError naming every problem the validation rules find in a file;
    return the frame read, so registering it does not parse the file again."""
    frame, header = read_data_file(path)
    problems = validate_frame(frame, rules, header=header).problems
    if problems:
        raise DataValidationError("invalid data: " + "; ".join(problems))
    validate_data(frame)
    return frame


def resolve_dataset(backend: Backend, name: str, version: str, data_file_path: str,
                    rules: Optional[ValidationParameters] = None) -> DatasetVersion:
    """Return the dataset to train on, registering ``data_file_path`` first if given."""
    if data_file_path and data_file_path.lower() != NONE:
        frame = None
        if Path(data_file_path).is_file():
            # Check a local file before it becomes a dataset version (on Azure ML the
            # path is on the datastore: the data is checked once loaded).
            frame = check_data_file(Path(data_file_path), rules or ValidationParameters())
        return backend.register_dataset(name, Path(data_file_path),
                                        description="registered by the train step", frame=frame)
    dataset = backend.find_dataset(name, version)
    if dataset is None:
        raise DatasetNotFoundError(
            f"dataset {name!r} version {version!r} is not registered; register it "
            "(make run registers the sample) or pass --data_file_path")
    return dataset


def validated_dataset(backend: Backend, folder: Path) -> DatasetVersion:
    """The dataset version the validate step passed, as its output folder records it."""
    name, version = read_validated_data(folder)
    dataset = backend.find_dataset(name, str(version))
    if dataset is None:
        raise DatasetNotFoundError(f"dataset {name!r} version {version}, passed by the "
                                   "validate step, is not registered")
    return dataset


def fit(training_parameters: dict, data: dict) -> Any:
    """Train, turning hyperparameters the model rejects into a ParametersError."""
    try:
        return train_model(data, training_parameters)
    except TypeError as err:
        raise ParametersError(f"the 'training' parameters do not suit the model: {err}") \
            from err


def train(args: argparse.Namespace) -> int:
    """The step: read settings and data, train, log, save."""
    load_dotenv_file()
    settings = TrainingSettings.from_env()
    parameters = load_parameters(args.parameters)
    dataset_name = args.dataset_name or settings.dataset_name
    backend = get_backend(training=settings)
    if args.validated_data is not None and args.data_file_path.lower() != NONE:
        raise ConfigurationError("pass --validated_data (the validate step's output) or "
                                 "--data_file_path, not both")
    with backend.step_run("train") as run:
        if args.validated_data is not None:
            dataset = validated_dataset(backend, args.validated_data)
        else:
            dataset = resolve_dataset(backend, dataset_name, args.dataset_version,
                                      args.data_file_path, parameters.validation)
        frame = backend.load_dataset(dataset)
        validate_data(frame)
        LOGGER.info("Training on dataset %s version %d (%d rows)", dataset.name,
                    dataset.version, len(frame))
        data = split_data(frame)
        model = fit(parameters.training, data)
        metrics = get_model_metrics(model, data)
        run.log_params(parameters.training)
        for name, value in metrics.items():
            run.log_metric(name, value)
        tags = {"dataset_name": dataset.name, "dataset_version": str(dataset.version)}
        if args.caller_run_id and args.caller_run_id.lower() != NONE:
            tags["caller_run_id"] = args.caller_run_id
        run.set_pipeline_tags(tags)
        # The later steps read these from the output folder: a reused step logs nothing.
        write_training_record(Path(args.step_output), TrainingRecord(run.id, metrics, tags))
        write_test_split(Path(args.step_output), data["test"]["X"], data["test"]["y"])
        features = [str(c) for c in frame.columns if c != TARGET_COLUMN]
        path = save_model(model, Path(args.step_output), MODEL_FOLDER,
                          input_example=data["test"]["X"], feature_names=features)
        # The model in MLflow's format, on the train run too: mlflow ui shows it there.
        run.log_artifact(path)
    LOGGER.info("Metrics: %s", ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    LOGGER.info("Model saved to %s", path)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of the train step."""
    args = parse_args(argv)
    return run_cli(lambda: train(args))


if __name__ == "__main__":
    sys.exit(main())
