"""Create the AmlCompute cluster the training steps run on, or reuse it if it exists.

    python -m ml_service.util.attach_compute [--validate_only]

Settings: AML_COMPUTE_CLUSTER_NAME, AML_COMPUTE_CLUSTER_CPU_SKU,
AML_CLUSTER_MIN_NODES, AML_CLUSTER_MAX_NODES, AML_CLUSTER_PRIORITY. An existing
cluster is used as it is. --validate_only checks the settings with the SDK and
stops, without contacting Azure ML.
"""
import argparse
import logging
import sys
from typing import Optional

from azureml.core import Workspace
from azureml.core.compute import AmlCompute, ComputeTarget
from azureml.core.compute.amlcompute import AmlComputeProvisioningConfiguration
from azureml.exceptions import ComputeTargetException

from ml_service.errors import ConfigurationError
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import ComputeSettings, WorkspaceSettings, load_dotenv_file

LOGGER = logging.getLogger(__name__)
PRIORITIES = ("dedicated", "lowpriority")
# Nodes wait this long for the next job before the cluster scales down: long enough to keep
# them between the steps of one pipeline run, short enough not to pay for an idle cluster.
IDLE_SECONDS_BEFORE_SCALEDOWN = 600


def compute_provisioning_config(
        settings: ComputeSettings,
        idle_seconds_before_scaledown: int = IDLE_SECONDS_BEFORE_SCALEDOWN,
) -> AmlComputeProvisioningConfiguration:
    """Build and validate the cluster's provisioning configuration; no service call."""
    # The SDK checks neither of these offline; only the service would refuse them.
    if settings.priority not in PRIORITIES:
        raise ConfigurationError(f"AML_CLUSTER_PRIORITY={settings.priority!r}: use "
                                 f"{' or '.join(PRIORITIES)}")
    if not settings.vm_size.strip():
        raise ConfigurationError("AML_COMPUTE_CLUSTER_CPU_SKU is empty; name a VM size "
                                 "such as STANDARD_DS2_V2")
    try:
        # The configuration validates itself when built; checking again is explicit and cheap.
        config = AmlCompute.provisioning_configuration(
            vm_size=settings.vm_size, vm_priority=settings.priority,
            min_nodes=settings.min_nodes, max_nodes=settings.max_nodes,
            idle_seconds_before_scaledown=idle_seconds_before_scaledown)
        config.validate_configuration()
    except ComputeTargetException as err:
        raise ConfigurationError(
            f"AML_CLUSTER_MIN_NODES={settings.min_nodes}, AML_CLUSTER_MAX_NODES="
            f"{settings.max_nodes}: the Azure ML SDK refuses them: {err.message}") from err
    return config


def get_or_create_compute(workspace: Workspace, settings: ComputeSettings) -> AmlCompute:
    """Return the cluster named in the settings, creating it (and waiting) if it is missing."""
    config = compute_provisioning_config(settings)
    existing = workspace.compute_targets.get(settings.cluster_name)
    if isinstance(existing, AmlCompute):
        LOGGER.info("Using compute cluster %s", settings.cluster_name)
        return existing
    if existing is not None:
        raise ConfigurationError(f"AML_COMPUTE_CLUSTER_NAME={settings.cluster_name!r} names a "
                                 f"{type(existing).__name__}, not an AmlCompute cluster")
    LOGGER.info("Creating compute cluster %s (%s, %d to %d nodes)", settings.cluster_name,
                settings.vm_size, settings.min_nodes, settings.max_nodes)
    cluster = ComputeTarget.create(workspace, settings.cluster_name, config)
    cluster.wait_for_completion(show_output=False)
    return cluster


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validate_only", action="store_true",
                        help="check the settings with the SDK and stop; no Azure ML")
    return parser.parse_args(argv)


def attach_compute(args: argparse.Namespace) -> int:
    """Validate the compute settings, then (unless --validate_only) get or create the cluster."""
    load_dotenv_file()
    settings = ComputeSettings.from_env()
    compute_provisioning_config(settings)
    LOGGER.info("Compute cluster %s: %s, %s, %d to %d nodes", settings.cluster_name,
                settings.vm_size, settings.priority, settings.min_nodes, settings.max_nodes)
    if args.validate_only:
        return 0
    from ml_service.util.workspace import get_workspace

    get_or_create_compute(get_workspace(WorkspaceSettings.from_env()), settings)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point: get or create the training cluster."""
    args = parse_args(argv)
    return run_cli(lambda: attach_compute(args))


if __name__ == "__main__":
    sys.exit(main())
