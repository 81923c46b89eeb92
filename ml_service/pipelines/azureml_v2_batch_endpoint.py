"""Batch scoring on Azure ML SDK v2: a batch endpoint whose model deployment runs the same
batch scoring script as SDK v1's ParallelRunStep and the local scorer.

    MLOPS_BACKEND=azureml-v2 python -m ml_service.pipelines.azureml_v2_batch_endpoint \\
        deploy [--model_version production|N]
    MLOPS_BACKEND=azureml-v2 python -m ml_service.pipelines.azureml_v2_batch_endpoint \\
        score [--input azureml://datastores/<store>/paths/<folder>] [--wait]

``deploy`` creates the endpoint (BATCH_ENDPOINT_NAME) if needed and a deployment of the
chosen model version (the production one by default) running
``diabetes_regression/scoring/parallel_batchscore.py`` from the repository root (the same
code snapshot and ``.amlignore`` as the training steps), in the batch scoring environment
(``batchscore_conda_dependencies.yml``: a batch deployment needs azureml-core and
azureml-dataset-runtime[fuse], which that environment has), on the training cluster; the
new deployment becomes the endpoint's default. ``score`` invokes the endpoint on a folder of
CSV files (SCORING_DATASTORE_INPUT_PATH's folder by default); the deployment appends the
scored rows to SCORING_OUTPUT_FILE_NAME in the job's output (``append_row``: space
separated, no header, as on v1, which batchscore_copy_output.py turns into a CSV).

The entities are built by pure functions from the settings, which tests build and
serialise offline; main() holds the service calls (untested here: see docs/azure-ml.md).
"""
import argparse
import io
import logging
import sys
from pathlib import PurePosixPath
from typing import Any, Dict, Mapping, Optional

import yaml

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines.diabetes_regression_build_parallel_batchscore_pipeline import (
    ENTRY_SCRIPT)
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import (BatchScoringSettings, ComputeSettings,
                                           EnvironmentV2Settings, TrainingSettings,
                                           load_dotenv_file)

LOGGER = logging.getLogger(__name__)
PRODUCTION = "production"
# The name of the input a batch endpoint's model deployment reads.
INPUT_NAME = "input"
ENDPOINT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/batchEndpoint.schema.json"
DEPLOYMENT_SCHEMA = ("https://azuremlschemas.azureedge.net/latest/"
                     "modelBatchDeployment.schema.json")
# A mini-batch that fails (or times out) is tried this many times more.
MAX_RETRIES = 3


def deployment_name(version: int) -> str:
    """The deployment of one model version: letters, digits and dashes, a letter first."""
    return f"model-{int(version)}"


def batch_endpoint_spec(settings: BatchScoringSettings) -> Dict[str, Any]:
    """The batch endpoint's YAML form (Microsoft Entra token auth, the only kind a batch
    endpoint has)."""
    return {"$schema": ENDPOINT_SCHEMA, "name": settings.endpoint_name,
            "description": "Batch scoring of the production model", "auth_mode": "aad_token"}


def batch_deployment_spec(settings: BatchScoringSettings, model_name: str, model_version: int,
                          compute: str, base_image: str) -> Dict[str, Any]:
    """The YAML form of the model deployment that scores with one registered version: the
    batch scoring script from the repository root, in the batch scoring environment."""
    conda_file = PROJECT_ROOT / settings.conda_file
    if not conda_file.is_file():
        raise ConfigurationError(f"the batch scoring conda file {conda_file} does not exist")
    return {
        "$schema": DEPLOYMENT_SCHEMA,
        "name": deployment_name(model_version),
        "endpoint_name": settings.endpoint_name,
        "type": "model",
        "model": f"azureml:{model_name}:{int(model_version)}",
        "code_configuration": {"code": str(PROJECT_ROOT), "scoring_script": ENTRY_SCRIPT},
        "environment": {"name": settings.environment_name, "image": base_image,
                        "conda_file": str(conda_file)},
        "compute": f"azureml:{compute}",
        "resources": {"instance_count": settings.node_count},
        "settings": {
            "max_concurrency_per_instance": settings.process_count_per_node or 1,
            "mini_batch_size": settings.files_per_mini_batch,
            "output_action": "append_row",
            "output_file_name": settings.output_file_name,
            "retry_settings": {"max_retries": MAX_RETRIES,
                               "timeout": settings.run_invocation_timeout},
            "error_threshold": settings.error_threshold,
            "logging_level": "info",
        },
    }


def load_batch_endpoint(spec: Mapping[str, Any]) -> Any:
    """The BatchEndpoint of a spec, loaded (and schema-checked) by azure-ai-ml, its name
    checked as the SDK checks it before sending it (which raises)."""
    from azure.ai.ml import load_batch_endpoint as load
    from azure.ai.ml.entities._endpoint._endpoint_helpers import (
        validate_endpoint_or_deployment_name)

    endpoint = load(io.StringIO(yaml.safe_dump(dict(spec), sort_keys=False)))
    validate_endpoint_or_deployment_name(endpoint.name)
    return endpoint


def load_batch_deployment(spec: Mapping[str, Any]) -> Any:
    """The ModelBatchDeployment of a spec, loaded (and schema-checked) by azure-ai-ml's
    loader for that kind, then checked by its own validation and its name check (which
    raise). The loader and the checks are the SDK's private names, pinned with it."""
    from azure.ai.ml.entities._endpoint._endpoint_helpers import (
        validate_endpoint_or_deployment_name)
    from azure.ai.ml.entities._load_functions import load_model_batch_deployment as load

    deployment = load(io.StringIO(yaml.safe_dump(dict(spec), sort_keys=False)))
    deployment._validate()
    validate_endpoint_or_deployment_name(deployment.name, is_deployment=True)
    return deployment


def batch_deployment(settings: BatchScoringSettings, model_name: str, version: int) -> Any:
    """The checked deployment of one model version, on the training cluster and the steps'
    base image (from the settings)."""
    return load_batch_deployment(batch_deployment_spec(
        settings, model_name, version, ComputeSettings.from_env().cluster_name,
        EnvironmentV2Settings.from_env().base_image))


def scoring_input(path: str, datastore: str) -> Any:
    """The folder of CSV files to score, as the endpoint's input (an azureml:// URI, or a
    folder on the datastore)."""
    from azure.ai.ml import Input

    if not path.startswith("azureml://"):
        path = f"azureml://datastores/{datastore}/paths/{path.strip('/')}"
    return Input(type="uri_folder", path=path)


def input_folder(settings: BatchScoringSettings) -> str:
    """The default input: the folder of SCORING_DATASTORE_INPUT_PATH (v1 reads that file)."""
    return str(PurePosixPath(settings.input_path).parent)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the command and its options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    deploy = commands.add_parser("deploy", help="deploy a model version to the batch endpoint")
    deploy.add_argument("--model_version", default=PRODUCTION,
                        help=f"a version number or {PRODUCTION!r} (default)")
    score = commands.add_parser("score", help="score a folder of CSV files")
    score.add_argument("--input", help="azureml:// URI or datastore folder of CSV files "
                                       "(default: SCORING_DATASTORE_INPUT_PATH's folder)")
    score.add_argument("--wait", action="store_true", help="wait until the job has ended")
    return parser.parse_args(argv)


def run_command(args: argparse.Namespace) -> int:
    """Deploy or score, on the workspace of the azureml-v2 backend."""
    from diabetes_regression.scoring.parallel_batchscore import resolve_model
    from ml_service.backends.azureml_v2 import AzureMLv2Backend

    load_dotenv_file()
    training = TrainingSettings.from_env()
    settings = BatchScoringSettings.from_env()
    backend = AzureMLv2Backend(training)
    client = backend.client
    if args.command == "deploy":
        model = resolve_model(backend, training.model_name, args.model_version)
        deployment = batch_deployment(settings, model.name, model.version)
        client.batch_endpoints.begin_create_or_update(
            load_batch_endpoint(batch_endpoint_spec(settings))).result()
        client.batch_deployments.begin_create_or_update(deployment).result()
        endpoint = client.batch_endpoints.get(settings.endpoint_name)
        endpoint.defaults = {"deployment_name": deployment.name}
        client.batch_endpoints.begin_create_or_update(endpoint).result()
        LOGGER.info("Batch endpoint %s scores with %s version %s (deployment %s)",
                    settings.endpoint_name, model.name, model.version, deployment.name)
        return 0
    datastore = backend.scoring.datastore_name or client.datastores.get_default().name
    job = client.batch_endpoints.invoke(
        settings.endpoint_name,
        inputs={INPUT_NAME: scoring_input(args.input or input_folder(settings), datastore)})
    LOGGER.info("Batch scoring job %s started", job.name)
    if args.wait:
        client.jobs.stream(job.name)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    return run_cli(lambda: run_command(args))


if __name__ == "__main__":
    sys.exit(main())
