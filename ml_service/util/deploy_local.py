"""Deploy the production model locally, or stop the local service.

    python -m ml_service.util.deploy_local deploy   # prints the scoring URL
    python -m ml_service.util.deploy_local stop

The service is azureml-inference-server-http running the model's score.py, in
the background; its process id and URL are recorded under the local store.
"""
import argparse
import logging
import sys
from typing import Optional

from ml_service.backends.base import Backend, Deployment, ModelVersion, ServiceSpec
from ml_service.backends.local import LocalBackend, check_name
from ml_service.errors import ModelNotFoundError
from ml_service.pipelines.diabetes_regression_pipeline import scoring_service_spec
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import (BackendSettings, ScoringSettings, TrainingSettings,
                                           load_dotenv_file, parse_port)

LOGGER = logging.getLogger(__name__)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the action and its options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("deploy", "stop"))
    parser.add_argument("--model_name", help="registered model (default: MODEL_NAME)")
    parser.add_argument("--model_version", type=int,
                        help="version to deploy (default: the production version)")
    parser.add_argument("--service", help="service name (default: LOCAL_DEPLOYMENT_NAME)")
    parser.add_argument("--port", help="port (default: LOCAL_SCORING_PORT, 0 = any free port)")
    return parser.parse_args(argv)


def production_or_version(backend: Backend, model_name: str,
                          version: Optional[int] = None) -> ModelVersion:
    """The given version of a model, or its production version; ModelNotFoundError if none."""
    if version is not None:
        return backend.get_model(model_name, version)
    model = backend.get_production_model(model_name)
    if model is None:
        raise ModelNotFoundError(f"model {model_name!r} has no production version; "
                                 "run the training pipeline first (make run)")
    return model


def deploy_production_model(backend: Backend, model_name: str, service: str,
                            version: Optional[int] = None,
                            spec: Optional[ServiceSpec] = None) -> Deployment:
    """Deploy the production (or a given) version of a model (default: as a local service)."""
    model = production_or_version(backend, model_name, version)
    LOGGER.info("Deploying %s version %d as %r", model.name, model.version, service)
    deployment = backend.deploy_model(model, service, spec or scoring_service_spec())
    LOGGER.info("Service %r is up at %s", service, deployment.scoring_uri)
    return deployment


def deploy_or_stop(args: argparse.Namespace) -> int:
    """Carry out the action against the local backend."""
    load_dotenv_file()
    training = TrainingSettings.from_env()
    scoring = ScoringSettings.from_env()
    port = parse_port(args.port, "--port") if args.port else scoring.port
    backend = LocalBackend(BackendSettings.from_env().root, training.experiment_name, port)
    service = check_name("service", args.service or scoring.service_name)
    if args.action == "stop":
        stopped = backend.delete_deployment(service)
        LOGGER.info("Service %r %s", service, "stopped" if stopped else "was not running")
        return 0
    deployment = deploy_production_model(backend, args.model_name or training.model_name,
                                         service, args.model_version)
    print(deployment.scoring_uri)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point: deploy or stop the local scoring service."""
    args = parse_args(argv)
    return run_cli(lambda: deploy_or_stop(args))


if __name__ == "__main__":
    sys.exit(main())
