"""Deploy a model version to an Azure ML SDK v2 managed online endpoint, safely.

    MLOPS_BACKEND=azureml-v2 python -m ml_service.util.deploy_online_endpoint \\
        --stage staging|production [--model_version N]

``staging`` (ONLINE_STAGING_ENDPOINT_NAME) replaces its deployment blue/green in one step:
the new one is created beside the old, smoke-tested, given all traffic, smoke-tested again,
and only then is the old one deleted. ``production`` (ONLINE_ENDPOINT_NAME) rolls out as
``deployment_config_online.yml``'s ``rollout`` says: mirrored traffic and a smoke test of the
new deployment, then live traffic in steps, each smoke-tested (ml_service/util/online_rollout.py).
A failure at any step returns the traffic to the old deployment, deletes the new one and
exits 1 naming the step. The model is the production version unless --model_version says
otherwise. Prints the endpoint's scoring URI (never its key). With the local backend the
same rollout runs on local scoring services (ml_service/backends/local_online.py), which is
how the CD pipeline's SDK v2 stages are dry-run.
"""
import argparse
import logging
import sys
from typing import Any, List, Mapping, Optional

from diabetes_regression.parameters import load_parameters
from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines.diabetes_regression_pipeline import (INFERENCE_CONFIG,
                                                               scoring_service_spec)
from ml_service.util.cli import run_cli
from ml_service.util.deploy_local import production_or_version
from ml_service.util.env_variables import (OnlineEndpointSettings, TrainingSettings,
                                           load_dotenv_file)
from ml_service.util.online_configs import (OnlineDeploymentConfig, online_deployment,
                                            read_online_config, staged_code)
from ml_service.util.online_rollout import RolloutSettings, roll_out

LOGGER = logging.getLogger(__name__)
STAGES = ("staging", "production")
# Staging has one deployment at a time: no mirroring, all traffic at once.
STAGING_ROLLOUT = RolloutSettings(mirror_percent=0, traffic_steps=(100,))


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the stage and the model version."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--model_version", type=int,
                        help="version to deploy (default: the production version)")
    return parser.parse_args(argv)


def deploy(args: argparse.Namespace) -> int:
    """Roll the model version out to the stage's endpoint; print its scoring URI."""
    from ml_service.backends import get_backend
    from ml_service.backends.azureml_v2 import AzureMLv2Backend
    from ml_service.backends.local import LocalBackend

    load_dotenv_file()
    training = TrainingSettings.from_env()
    backend = get_backend(training=training)
    if not isinstance(backend, (AzureMLv2Backend, LocalBackend)):
        raise ConfigurationError(f"online endpoints are SDK v2's: set MLOPS_BACKEND=azureml-v2 "
                                 f"(or local to try them here; it is {backend.name}); SDK v1 "
                                 "deploys with ml_service.util.deploy_scoring_service")
    settings = OnlineEndpointSettings.from_env()
    path = PROJECT_ROOT / settings.deployment_config
    config = read_online_config(path)
    name = settings.staging_endpoint_name if args.stage == "staging" else settings.endpoint_name
    model = production_or_version(backend, training.model_name, args.model_version)
    rollout = STAGING_ROLLOUT if args.stage == "staging" else config.rollout
    sample = load_parameters().scoring.sample
    if isinstance(backend, LocalBackend):
        from ml_service.backends.local_online import LocalOnlineEndpoint

        local = LocalOnlineEndpoint(backend, name, model.name, scoring_service_spec(), sample)
        local.ensure_exists()
        steps = roll_out(local, model.version, rollout)
        uri = local.scoring_uri()
    else:
        steps = roll_out_on_azure(backend, name, model, config, rollout, sample, str(path),
                                  settings.identity)
        uri = backend.client.online_endpoints.get(name).scoring_uri
    LOGGER.info("%s: version %s of %s rolled out (%s)", name, model.version, model.name,
                "; ".join(steps) or "nothing to do")
    print(uri)
    return 0


def roll_out_on_azure(backend: Any, name: str, model: Any, config: OnlineDeploymentConfig,
                      rollout: RolloutSettings, sample: Mapping[str, Any],
                      source: str, identity: str = "") -> List[str]:
    """The rollout on an Azure ML managed online endpoint, score.py staged while it runs."""
    from ml_service.backends.azureml_v2_online import AzureOnlineEndpoint

    with staged_code(PROJECT_ROOT / INFERENCE_CONFIG) as (code, script):
        def build(deployment: str, version: int) -> Any:
            return online_deployment(config, name, deployment, model.name, version, code,
                                     script, source)

        endpoint = AzureOnlineEndpoint(backend.client, name, build, sample,
                                       identity=identity)
        endpoint.ensure_exists()
        return roll_out(endpoint, model.version, rollout)


def main(argv: Optional[list] = None) -> int:
    """Entry point of the online deployment."""
    args = parse_args(argv)
    return run_cli(lambda: deploy(args))


if __name__ == "__main__":
    sys.exit(main())
