"""Package a registered model and its scoring service into a Docker image on Azure ML.

    python -m ml_service.util.create_scoring_image [--model_name NAME] [--model_version N]
        [--output_image_location_file image_location.txt] [--validate_only]

The image runs diabetes_regression/scoring/score.py with the inference
configuration (inference_config.yml) in the project's environment (AML_ENV_NAME);
only score.py and the files it needs are uploaded (a staged folder, not the repository).
The model is the version tagged production=true unless --model_version is given.
The image's location (REGISTRY/NAME:TAG) is logged and, with
--output_image_location_file, written to that file for the next CI job.
--validate_only builds the inference configuration and stops, without Azure ML.
"""
import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

from azureml.core import Model, Workspace
from azureml.core.model import InferenceConfig
from azureml.exceptions import WebserviceException

from ml_service.backends.azureml import PRODUCTION_TAG as AZURE_PRODUCTION_TAG
from ml_service.backends.azureml import choose_production
from ml_service.errors import DeploymentError, ModelNotFoundError
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines.diabetes_regression_pipeline import \
    INFERENCE_CONFIG as INFERENCE_CONFIG_FILE
from ml_service.util.cli import run_cli
from ml_service.util.deployment_configs import staged_inference_config
from ml_service.util.env_variables import (EnvironmentSettings, TrainingSettings,
                                           WorkspaceSettings, load_dotenv_file)
from ml_service.util.manage_environment import build_environment, get_environment

LOGGER = logging.getLogger(__name__)
INFERENCE_CONFIG = PROJECT_ROOT / INFERENCE_CONFIG_FILE
PRODUCTION_TAG = (AZURE_PRODUCTION_TAG, "true")
# How the SDK's WebserviceException message starts when a model version does not exist.
MODEL_NOT_FOUND = "ModelNotFound"


def find_model(workspace: Workspace, name: str, version: Optional[int] = None) -> Model:
    """Return a registered model version, by default the one tagged production=true."""
    if version is not None:
        try:
            return Model(workspace, name=name, version=version)
        except WebserviceException as err:
            # Model() raises WebserviceException, not ModelNotFoundException: "ModelNotFound: ..."
            # for a missing version, "Received bad response ..." for other service errors.
            message = " ".join(str(err.message).split())
            if message.startswith(MODEL_NOT_FOUND):
                raise ModelNotFoundError(f"model {name!r} has no version {version}") from err
            raise DeploymentError(f"cannot read model {name!r} version {version} from Azure ML: "
                                  f"{message}") from err
    # The backend's rule: of the versions tagged production, the one promoted last.
    chosen = choose_production(Model.list(workspace, name=name, tags=[list(PRODUCTION_TAG)]))
    if chosen is None:
        raise ModelNotFoundError(f"model {name!r} has no version tagged "
                                 f"{PRODUCTION_TAG[0]}={PRODUCTION_TAG[1]}; run the training "
                                 "pipeline or give --model_version")
    return chosen


def package_model(workspace: Workspace, model: Model, config: InferenceConfig) -> str:
    """Build the scoring image of a model on Azure ML; return its location."""
    package = Model.package(workspace, [model], config, generate_dockerfile=False)
    try:
        package.wait_for_creation(show_output=False)
    except WebserviceException as err:
        raise DeploymentError(f"packaging {model.name} version {model.version} failed: "
                              f"{' '.join(err.message.split())}; build log: "
                              f"{package.package_build_log_uri}") from err
    if not package.location:
        raise DeploymentError(f"packaging {model.name} version {model.version} succeeded "
                              "but Azure ML reported no image location")
    return package.location


def write_image_location(path: Path, location: str) -> None:
    """Write the image location to a file, whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(location)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the model, the output file and the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", help="registered model (default: MODEL_NAME)")
    parser.add_argument("--model_version", type=positive_int,
                        help="version to package (default: the version tagged production)")
    parser.add_argument("--output_image_location_file", type=Path,
                        help="file to write the image location to")
    parser.add_argument("--inference_config", type=Path, default=INFERENCE_CONFIG,
                        help="inference configuration file (default: %(default)s)")
    parser.add_argument("--validate_only", action="store_true",
                        help="build the inference configuration and stop; no Azure ML")
    return parser.parse_args(argv)


def create_scoring_image(args: argparse.Namespace) -> int:
    """Check the configuration offline, then package the model and record the location."""
    load_dotenv_file()
    model_name = args.model_name or TrainingSettings.from_env().model_name
    environment = EnvironmentSettings.from_env()
    # Built offline first, so a bad file stops the script before any service call.
    with staged_inference_config(args.inference_config, build_environment(environment)):
        pass
    LOGGER.info("Inference configuration %s is valid", args.inference_config)
    if args.validate_only:
        return 0
    from ml_service.util.workspace import get_workspace

    workspace = get_workspace(WorkspaceSettings.from_env())
    model = find_model(workspace, model_name, args.model_version)
    LOGGER.info("Packaging %s version %s", model.name, model.version)
    # The staged source directory lives until Model.package has uploaded it.
    with staged_inference_config(args.inference_config,
                                 get_environment(workspace, environment)) as config:
        location = package_model(workspace, model, config)
    LOGGER.info("Scoring image: %s", location)
    if args.output_image_location_file:
        write_image_location(args.output_image_location_file, location)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point: build the scoring image of the production (or a given) model."""
    args = parse_args(argv)
    return run_cli(lambda: create_scoring_image(args))


if __name__ == "__main__":
    sys.exit(main())
