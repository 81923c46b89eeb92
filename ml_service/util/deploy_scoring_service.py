"""Deploy the production model to an Azure ML web service (ACI or AKS), replacing it if present.

    MLOPS_BACKEND=azureml python -m ml_service.util.deploy_scoring_service --type ACI

The service runs diabetes_regression/scoring/score.py with the inference
configuration (inference_config.yml) and the deployment configuration of its
type (deployment_config_aci.yml / deployment_config_aks.yml). With the local
backend the same command serves the model locally (the deployment
configuration does not apply there), which lets CI's commands be dry-run.
"""
import argparse
import logging
import sys
from typing import Optional

from ml_service.backends import get_backend
from ml_service.pipelines.diabetes_regression_pipeline import scoring_service_spec
from ml_service.util.cli import run_cli
from ml_service.util.deploy_local import deploy_production_model
from ml_service.util.env_variables import AzureScoringSettings, TrainingSettings, load_dotenv_file

LOGGER = logging.getLogger(__name__)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the service type, name and model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--type", required=True, choices=("ACI", "AKS"))
    parser.add_argument("--service",
                        help="service name (default: ACI_DEPLOYMENT_NAME / AKS_DEPLOYMENT_NAME)")
    parser.add_argument("--model_name", help="registered model (default: MODEL_NAME)")
    parser.add_argument("--model_version", type=int,
                        help="version to deploy (default: the production version)")
    return parser.parse_args(argv)


def deploy(args: argparse.Namespace) -> int:
    """Deploy and print the scoring URL."""
    load_dotenv_file()
    training = TrainingSettings.from_env()
    names = AzureScoringSettings.from_env()
    service = args.service or (names.aci_service_name if args.type == "ACI"
                               else names.aks_service_name)
    backend = get_backend(training=training)
    deployment = deploy_production_model(backend, args.model_name or training.model_name,
                                         service, args.model_version,
                                         scoring_service_spec(args.type))
    print(deployment.scoring_uri)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of the deploy script."""
    args = parse_args(argv)
    return run_cli(lambda: deploy(args))


if __name__ == "__main__":
    sys.exit(main())
