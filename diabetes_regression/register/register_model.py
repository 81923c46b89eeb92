"""Register step: register the trained model with its tags and make it production.

Honours the evaluate step: if it decided "not registered" (and did not cancel
the pipeline), this step records that and registers nothing. The metrics and the
dataset come from the record the train step wrote beside the model, so a train step
that Azure ML reused is registered like one that ran.
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

from diabetes_regression.evaluate.evaluate_model import OUTCOME_TAG, REASON_TAG
from diabetes_regression.parameters import load_parameters
from diabetes_regression.register.registration import build_model_tags
from diabetes_regression.training.model_files import (MODEL_FOLDER, ModelFileError,
                                                      load_model)
from ml_service.backends import get_backend
from ml_service.errors import ModelNotFoundError
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import TrainingSettings, load_dotenv_file
from ml_service.util.training_record import read_training_record, record_on_pipeline_run

LOGGER = logging.getLogger(__name__)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse MLOpsPython's register-step arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_id", help="pipeline run to register for, when not started by one")
    parser.add_argument("--model_name", help="registered model name (default: MODEL_NAME)")
    parser.add_argument("--step_input", required=True,
                        help="folder holding the model written by the train step")
    parser.add_argument("--parameters", type=Path, help="parameters.json to use")
    return parser.parse_args(argv)


def check_model_file(path: Path) -> None:
    """Refuse a missing file or one that does not load as a model with predict()."""
    try:
        load_model(path)
    except ModelFileError as err:
        raise ModelNotFoundError(f"{err}; the train step writes the model to the folder "
                                 "passed as --step_input") from err


def register(args: argparse.Namespace) -> int:
    """The step: check the decision and the file, tag, register, promote."""
    load_dotenv_file()
    settings = TrainingSettings.from_env()
    parameters = load_parameters(args.parameters)
    model_name = args.model_name or settings.model_name
    backend = get_backend(training=settings)
    with backend.step_run("register", run_id=args.run_id) as run:
        pipeline_tags = run.get_pipeline_tags()
        if pipeline_tags.get(OUTCOME_TAG) == "not_registered":
            LOGGER.info("Not registered: the evaluate step decided so (%s)",
                        pipeline_tags.get(REASON_TAG, "no reason recorded"))
            return 0
        model_path = Path(args.step_input) / MODEL_FOLDER
        check_model_file(model_path)
        record = read_training_record(Path(args.step_input))
        record_on_pipeline_run(run, record)
        dataset_name = record.tags.get("dataset_name")
        dataset_version = record.tags.get("dataset_version")
        dataset = (backend.find_dataset(dataset_name, dataset_version)
                   if dataset_name and dataset_version else None)
        tags = build_model_tags(
            run_id=run.pipeline_run_id, experiment_name=run.experiment_name,
            dataset_name=dataset_name, dataset_version=dataset_version,
            metrics=record.metrics, metric_tags=parameters.registration_tags,
            build_id=settings.build_id or pipeline_tags.get("BuildId"),
            build_uri=settings.build_uri or pipeline_tags.get("BuildUri"))
        model = backend.register_model(model_name, model_path, run.pipeline_run_id, tags,
                                       dataset)
        backend.set_production_model(model_name, model.version)
        run.set_pipeline_tags({"registered_model_version": str(model.version)})
    LOGGER.info("Registered %s version %d as production", model_name, model.version)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of the register step."""
    args = parse_args(argv)
    return run_cli(lambda: register(args))


if __name__ == "__main__":
    sys.exit(main())
