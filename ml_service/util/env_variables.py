"""Platform settings: small typed objects read from the environment inside main().

Names follow MLOpsPython's variables so the Azure DevOps variables template and
``.env`` files carry over. Nothing here reads the environment at import.
"""
import os
import re
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from ml_service.errors import ConfigurationError

TRUE_WORDS = {"true", "1", "yes", "y", "on"}
FALSE_WORDS = {"false", "0", "no", "n", "off"}


def setting(default: Any = MISSING, *, env: str, effect: str, kind: str = "",
            **options: Any) -> Any:
    """A settings field read from the variable ``env``; ``effect`` (and ``kind`` where the
    field's type does not say enough) describe it in docs/configuration.md."""
    return field(default=default, metadata={"env": env, "effect": effect, "kind": kind},
                 **options)


def load_dotenv_file(path: Optional[Path] = None) -> None:
    """Load ``.env`` (if present) into os.environ without overriding set variables."""
    from dotenv import load_dotenv

    load_dotenv(dotenv_path=path or Path.cwd() / ".env", override=False)


def parse_bool(value: str, name: str) -> bool:
    """Read a true/false setting; raise ConfigurationError naming the variable."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigurationError(f"{name}={value!r} is not a boolean; use true or false")


def parse_port(value: str, name: str) -> int:
    """Read a TCP port (0 picks a free one); raise ConfigurationError naming the variable."""
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"{name}={value!r} is not a port number (0 to 65535)")
    return port


@dataclass(frozen=True)
class BackendSettings:
    """Which backend to use and, for the local one, where its store lives."""

    kind: str = setting("local", env="MLOPS_BACKEND", kind="local, azureml or azureml-v2",
                        effect="Where runs, models and services live: the local store, Azure "
                        "ML through SDK v1, or Azure ML through SDK v2 (azureml inside an "
                        "Azure ML run)")
    root: Path = setting(Path(".mlops"), env="MLOPS_ROOT",
                         effect="The folder of the local store (relative to the working "
                         "folder)")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "BackendSettings":
        """Read MLOPS_BACKEND (default: azureml inside an Azure ML run, else local) and
        MLOPS_ROOT."""
        env = os.environ if env is None else env
        root = Path(env.get("MLOPS_ROOT") or cls.root)
        default = "azureml" if env.get("AZUREML_RUN_ID") else cls.kind
        return cls(kind=(env.get("MLOPS_BACKEND") or default).strip().lower(),
                   root=root.resolve())


@dataclass(frozen=True)
class TrainingSettings:
    """Names and switches of the training pipeline."""

    model_name: str = setting("diabetes_regression_model.pkl", env="MODEL_NAME",
                              effect="The name the model is registered, deployed and "
                              "monitored under")
    experiment_name: str = setting("mlopspython", env="EXPERIMENT_NAME",
                                   effect="The experiment training runs are recorded in")
    dataset_name: str = setting("diabetes_ds", env="DATASET_NAME",
                                effect="The registered dataset training reads")
    pipeline_name: str = setting("diabetes-Training-Pipeline",
                                 env="TRAINING_PIPELINE_NAME",
                                 effect="The training pipeline's name (published with the "
                                 "build id as its version)")
    run_evaluation: bool = setting(True, env="RUN_EVALUATION",
                                   effect="false skips the evaluate step: every trained model "
                                   "is registered")
    allow_run_cancel: bool = setting(True, env="ALLOW_RUN_CANCEL",
                                     effect="Whether the evaluate step may cancel the run when "
                                     "the new model is not better")
    build_id: Optional[str] = setting(None, env="BUILD_BUILDID",
                                      effect="The CI build (Azure DevOps sets it): tagged on "
                                      "runs and models, and the published pipeline's version")
    build_uri: Optional[str] = setting(None, env="BUILD_BUILDURI",
                                       effect="The CI build's address (Azure DevOps sets it), "
                                       "tagged on runs and models")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "TrainingSettings":
        """Read MODEL_NAME, EXPERIMENT_NAME, DATASET_NAME, TRAINING_PIPELINE_NAME,
        RUN_EVALUATION, ALLOW_RUN_CANCEL, BUILD_BUILDID and BUILD_BUILDURI."""
        env = os.environ if env is None else env

        def text(name: str, default: Optional[str]) -> Optional[str]:
            value = env.get(name, "").strip()
            return value or default

        def flag(name: str, default: bool) -> bool:
            value = env.get(name, "").strip()
            return parse_bool(value, name) if value else default

        return cls(
            model_name=text("MODEL_NAME", cls.model_name),
            experiment_name=text("EXPERIMENT_NAME", cls.experiment_name),
            dataset_name=text("DATASET_NAME", cls.dataset_name),
            pipeline_name=text("TRAINING_PIPELINE_NAME", cls.pipeline_name),
            run_evaluation=flag("RUN_EVALUATION", cls.run_evaluation),
            allow_run_cancel=flag("ALLOW_RUN_CANCEL", cls.allow_run_cancel),
            build_id=text("BUILD_BUILDID", None),
            build_uri=text("BUILD_BUILDURI", None),
        )

    def build_version(self, override: Optional[str], purpose: str,
                      option: str = "--version") -> str:
        """The CI build id (or the command line's override); ConfigurationError naming
        BUILD_BUILDID and what it is for when there is neither."""
        version = override or self.build_id
        if not version:
            raise ConfigurationError(f"BUILD_BUILDID is not set: {purpose}; set it or pass "
                                     f"{option}")
        return version

    def build_tags(self) -> Dict[str, str]:
        """``BuildId`` / ``BuildUri`` run tags for the CI build, when there is one."""
        tags = {"BuildId": self.build_id, "BuildUri": self.build_uri}
        return {key: value for key, value in tags.items() if value}


@dataclass(frozen=True)
class ScoringSettings:
    """Where the local scoring service runs."""

    service_name: str = setting("diabetes-local", env="LOCAL_DEPLOYMENT_NAME",
                                effect="The name of the local scoring service")
    port: int = setting(0, env="LOCAL_SCORING_PORT", kind="port (0 to 65535)",
                        effect="The local scoring service's port; 0 picks a free one")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "ScoringSettings":
        """Read LOCAL_DEPLOYMENT_NAME and LOCAL_SCORING_PORT (0: any free port)."""
        env = os.environ if env is None else env
        port = env.get("LOCAL_SCORING_PORT", "").strip()
        return cls(service_name=env.get("LOCAL_DEPLOYMENT_NAME", "").strip() or cls.service_name,
                   port=parse_port(port, "LOCAL_SCORING_PORT") if port else cls.port)


def _text(env: Mapping[str, str], name: str, default: Optional[str] = None) -> Optional[str]:
    value = env.get(name, "").strip()
    return value or default


def _required(env: Mapping[str, str], name: str) -> str:
    value = _text(env, name)
    if not value:
        raise ConfigurationError(f"{name} is not set; set it in the environment or in .env "
                                 "(see .env.example)")
    return value


def _integer(env: Mapping[str, str], name: str, default: Optional[int],
             minimum: int = 0) -> Optional[int]:
    value = _text(env, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ConfigurationError(f"{name}={value!r} is not a whole number >= {minimum}")
    return number


@dataclass(frozen=True)
class WorkspaceSettings:
    """The Azure ML workspace and, for CI, the service principal that signs in to it."""

    subscription_id: str = setting(env="SUBSCRIPTION_ID",
                                   effect="The Azure subscription of the workspace (required "
                                   "on the Azure path)")
    resource_group: str = setting(env="RESOURCE_GROUP",
                                  effect="The workspace's resource group (required on the "
                                  "Azure path)")
    workspace_name: str = setting(env="WORKSPACE_NAME",
                                  effect="The Azure ML workspace (required on the Azure path)")
    tenant_id: Optional[str] = setting(None, env="TENANT_ID",
                                       effect="The service principal's tenant; unset: sign in "
                                       "as the Azure CLI's account")
    sp_app_id: Optional[str] = setting(None, env="SP_APP_ID",
                                       effect="The service principal's application id (set "
                                       "TENANT_ID, SP_APP_ID and SP_APP_SECRET, or none)")
    # Never shown: repr=False keeps it out of logs and error messages.
    sp_app_secret: Optional[str] = setting(None, env="SP_APP_SECRET", repr=False,
                                           effect="The service principal's secret: keep it in "
                                           ".env or a secret variable, never in the repository")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "WorkspaceSettings":
        """Read SUBSCRIPTION_ID, RESOURCE_GROUP, WORKSPACE_NAME (required) and
        TENANT_ID, SP_APP_ID, SP_APP_SECRET (all three, or none)."""
        env = os.environ if env is None else env
        principal = [_text(env, n) for n in ("TENANT_ID", "SP_APP_ID", "SP_APP_SECRET")]
        if any(principal) and not all(principal):
            missing = [n for n, v in zip(("TENANT_ID", "SP_APP_ID", "SP_APP_SECRET"), principal)
                       if not v]
            raise ConfigurationError(f"a service principal needs TENANT_ID, SP_APP_ID and "
                                     f"SP_APP_SECRET; missing: {', '.join(missing)}")
        return cls(subscription_id=_required(env, "SUBSCRIPTION_ID"),
                   resource_group=_required(env, "RESOURCE_GROUP"),
                   workspace_name=_required(env, "WORKSPACE_NAME"),
                   tenant_id=principal[0], sp_app_id=principal[1], sp_app_secret=principal[2])

    @property
    def uses_service_principal(self) -> bool:
        """True when the service principal variables are set."""
        return bool(self.sp_app_secret)


@dataclass(frozen=True)
class ComputeSettings:
    """The AmlCompute cluster the training steps run on."""

    cluster_name: str = setting("train-cluster", env="AML_COMPUTE_CLUSTER_NAME",
                                effect="The AmlCompute cluster the training steps run on "
                                "(created when missing)")
    vm_size: str = setting("STANDARD_DS2_V2", env="AML_COMPUTE_CLUSTER_CPU_SKU",
                           effect="The cluster's virtual machine size")
    min_nodes: int = setting(0, env="AML_CLUSTER_MIN_NODES",
                             effect="Nodes the cluster keeps when idle")
    max_nodes: int = setting(4, env="AML_CLUSTER_MAX_NODES",
                             effect="Nodes the cluster scales up to (at least 1, and at least "
                             "AML_CLUSTER_MIN_NODES)")
    priority: str = setting("lowpriority", env="AML_CLUSTER_PRIORITY",
                            kind="dedicated or lowpriority",
                            effect="The cluster's tier: low priority nodes are cheaper and may "
                            "be preempted")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "ComputeSettings":
        """Read AML_COMPUTE_CLUSTER_NAME, AML_COMPUTE_CLUSTER_CPU_SKU, AML_CLUSTER_MIN_NODES,
        AML_CLUSTER_MAX_NODES and AML_CLUSTER_PRIORITY."""
        env = os.environ if env is None else env
        priority = _text(env, "AML_CLUSTER_PRIORITY", cls.priority).lower()
        if priority not in ("dedicated", "lowpriority"):
            raise ConfigurationError(f"AML_CLUSTER_PRIORITY={priority!r}: use dedicated or "
                                     "lowpriority")
        settings = cls(cluster_name=_text(env, "AML_COMPUTE_CLUSTER_NAME", cls.cluster_name),
                       vm_size=_text(env, "AML_COMPUTE_CLUSTER_CPU_SKU", cls.vm_size),
                       min_nodes=_integer(env, "AML_CLUSTER_MIN_NODES", cls.min_nodes),
                       max_nodes=_integer(env, "AML_CLUSTER_MAX_NODES", cls.max_nodes, 1),
                       priority=priority)
        if settings.min_nodes > settings.max_nodes:
            raise ConfigurationError(f"AML_CLUSTER_MIN_NODES={settings.min_nodes} is above "
                                     f"AML_CLUSTER_MAX_NODES={settings.max_nodes}")
        return settings


@dataclass(frozen=True)
class EnvironmentSettings:
    """The Azure ML environment the steps and the scoring service run in."""

    name: str = setting("diabetes_regression_training_env", env="AML_ENV_NAME",
                        effect="The Azure ML environment of the steps and the scoring service")
    conda_file: str = setting("diabetes_regression/conda_dependencies.yml",
                              env="AML_ENV_TRAIN_CONDA_DEP_FILE",
                              effect="The conda file that environment is built from")
    rebuild: bool = setting(False, env="AML_REBUILD_ENVIRONMENT",
                            effect="true registers a new version of the environment even when "
                            "its conda file has not changed")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "EnvironmentSettings":
        """Read AML_ENV_NAME, AML_ENV_TRAIN_CONDA_DEP_FILE and AML_REBUILD_ENVIRONMENT."""
        env = os.environ if env is None else env
        rebuild = _text(env, "AML_REBUILD_ENVIRONMENT")
        return cls(name=_text(env, "AML_ENV_NAME", cls.name),
                   conda_file=_text(env, "AML_ENV_TRAIN_CONDA_DEP_FILE", cls.conda_file),
                   rebuild=parse_bool(rebuild, "AML_REBUILD_ENVIRONMENT") if rebuild
                   else cls.rebuild)


@dataclass(frozen=True)
class EnvironmentV2Settings:
    """The environment the training steps run in on Azure ML SDK v2: a conda file (its own
    lock: azureml-mlflow caps MLflow below the project's pin) on a base image."""

    conda_file: str = setting("diabetes_regression/conda_dependencies_v2.yml",
                              env="AML_ENV_V2_CONDA_DEP_FILE",
                              effect="SDK v2: the steps' conda file (locked on its own)")
    base_image: str = setting("mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
                              env="AML_ENV_V2_BASE_IMAGE",
                              effect="SDK v2: the Docker image that conda file is installed on")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "EnvironmentV2Settings":
        """Read AML_ENV_V2_CONDA_DEP_FILE and AML_ENV_V2_BASE_IMAGE."""
        env = os.environ if env is None else env
        return cls(conda_file=_text(env, "AML_ENV_V2_CONDA_DEP_FILE", cls.conda_file),
                   base_image=_text(env, "AML_ENV_V2_BASE_IMAGE", cls.base_image))


USER_ASSIGNED_IDENTITY = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+$", re.IGNORECASE)


@dataclass(frozen=True)
class OnlineEndpointSettings:
    """The SDK v2 managed online endpoints (staging, then production) and their deployment
    configuration file. Endpoint names are unique within an Azure region."""

    staging_endpoint_name: str = setting("mlops-staging", env="ONLINE_STAGING_ENDPOINT_NAME",
                                         effect="SDK v2: the managed online endpoint a new "
                                         "model is tried on first (unique in its region)")
    endpoint_name: str = setting("mlops-online", env="ONLINE_ENDPOINT_NAME",
                                 effect="SDK v2: the production managed online endpoint "
                                 "(unique in its region)")
    deployment_config: str = setting("diabetes_regression/scoring/deployment_config_online.yml",
                                     env="ONLINE_DEPLOYMENT_CONFIG",
                                     effect="SDK v2: the online deployments' configuration "
                                     "file (instance type and count, probes)")
    # Resource id of the user-assigned identity the endpoints run as (the infrastructure's
    # output); empty: each endpoint's own system-assigned identity.
    identity: str = setting("", env="ONLINE_ENDPOINT_IDENTITY", kind="resource id",
                            effect="SDK v2: the user-assigned identity the endpoints run as "
                            "(the infrastructure's output onlineEndpointIdentityId); empty: "
                            "each endpoint's system-assigned identity")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "OnlineEndpointSettings":
        """Read ONLINE_STAGING_ENDPOINT_NAME, ONLINE_ENDPOINT_NAME, ONLINE_DEPLOYMENT_CONFIG
        and ONLINE_ENDPOINT_IDENTITY."""
        env = os.environ if env is None else env
        identity = _text(env, "ONLINE_ENDPOINT_IDENTITY", cls.identity)
        if identity and not USER_ASSIGNED_IDENTITY.match(identity):
            raise ConfigurationError(
                f"ONLINE_ENDPOINT_IDENTITY={identity!r} is not the resource id of a "
                "user-assigned identity (/subscriptions/<id>/resourceGroups/<group>/providers/"
                "Microsoft.ManagedIdentity/userAssignedIdentities/<name>): set it to the "
                "infrastructure's output onlineEndpointIdentityId, or leave it empty")
        return cls(staging_endpoint_name=_text(env, "ONLINE_STAGING_ENDPOINT_NAME",
                                               cls.staging_endpoint_name),
                   endpoint_name=_text(env, "ONLINE_ENDPOINT_NAME", cls.endpoint_name),
                   deployment_config=_text(env, "ONLINE_DEPLOYMENT_CONFIG",
                                           cls.deployment_config),
                   identity=identity)


@dataclass(frozen=True)
class AzureScoringSettings:
    """Names of the Azure scoring services and of the AKS cluster."""

    aci_service_name: str = setting("mlops-aci", env="ACI_DEPLOYMENT_NAME",
                                    effect="SDK v1: the Azure Container Instances service "
                                    "(staging)")
    aks_service_name: str = setting("mlops-aks", env="AKS_DEPLOYMENT_NAME",
                                    effect="SDK v1: the Azure Kubernetes Service service "
                                    "(production)")
    aks_compute_name: str = setting("aks", env="AKS_COMPUTE_NAME",
                                    effect="SDK v1: the AKS cluster attached to the workspace")
    datastore_name: Optional[str] = setting(None, env="DATASTORE_NAME",
                                            effect="The datastore datasets are uploaded to; "
                                            "unset: the workspace's default datastore")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "AzureScoringSettings":
        """Read ACI_DEPLOYMENT_NAME, AKS_DEPLOYMENT_NAME, AKS_COMPUTE_NAME, DATASTORE_NAME."""
        env = os.environ if env is None else env
        return cls(aci_service_name=_text(env, "ACI_DEPLOYMENT_NAME", cls.aci_service_name),
                   aks_service_name=_text(env, "AKS_DEPLOYMENT_NAME", cls.aks_service_name),
                   aks_compute_name=_text(env, "AKS_COMPUTE_NAME", cls.aks_compute_name),
                   datastore_name=_text(env, "DATASTORE_NAME"))

    def step_environment(self) -> Dict[str, str]:
        """The variables a training step reads on the Azure ML compute, which does not see
        the agent's environment: set in the steps' run configuration when publishing."""
        return {"DATASTORE_NAME": self.datastore_name} if self.datastore_name else {}


MINI_BATCH_SIZE = re.compile(r"^\d+([kKmMgG][bB])?$")


@dataclass(frozen=True)
class BatchScoringSettings:
    """Where the batch scoring pipeline reads and writes, and how it splits the work."""

    pipeline_name: str = setting("diabetes-Batch-Scoring-Pipeline",
                                 env="SCORING_PIPELINE_NAME",
                                 effect="The batch scoring pipeline's name")
    input_path: str = setting("diabetes_scoring/input/"
                              "diabetes_scoring_input.csv",
                              env="SCORING_DATASTORE_INPUT_PATH",
                              effect="The datastore path batch scoring reads")
    output_path: str = setting("diabetes_scoring/output",
                               env="SCORING_DATASTORE_OUTPUT_PATH",
                               effect="The datastore folder batch scoring writes to")
    output_file_name: str = setting("diabetes_scoring_output.csv",
                                    env="SCORING_OUTPUT_FILE_NAME",
                                    effect="The scored file's name in that folder")
    node_count: int = setting(1, env="BATCHSCORE_NODE_COUNT",
                              effect="Nodes batch scoring runs on (at least 1)")
    process_count_per_node: Optional[int] = setting(
        None, env="BATCHSCORE_PROCESS_COUNT_PER_NODE",
        effect="Scoring processes per node (at least 1); unset: one per core")
    mini_batch_size: str = setting("1MB", env="BATCHSCORE_MINI_BATCH_SIZE",
                                   kind="size (1MB, 512KB, 1048576)",
                                   effect="How much input one mini-batch holds")
    error_threshold: int = setting(0, env="BATCHSCORE_ERROR_THRESHOLD",
                                   effect="Failed records (or files) tolerated before the "
                                   "run fails; -1: any number")
    run_invocation_timeout: int = setting(60, env="BATCHSCORE_RUN_INVOCATION_TIMEOUT",
                                          effect="Seconds one mini-batch may take")
    # Its own environment: ParallelRunStep's tabular input needs pandas < 2 (see the file).
    environment_name: str = "diabetes_regression_batchscore_env"
    conda_file: str = "diabetes_regression/batchscore_conda_dependencies.yml"
    # SDK v2: the batch endpoint, and how many input files one mini-batch holds.
    endpoint_name: str = setting("diabetes-batch", env="BATCH_ENDPOINT_NAME",
                                 effect="SDK v2: the batch endpoint")
    files_per_mini_batch: int = setting(10, env="BATCHSCORE_FILES_PER_MINI_BATCH",
                                        effect="SDK v2: input files one mini-batch holds")

    def environment_settings(self, rebuild: bool = False) -> EnvironmentSettings:
        """The Azure ML environment the batch scoring steps run in."""
        return EnvironmentSettings(self.environment_name, self.conda_file, rebuild)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "BatchScoringSettings":
        """Read SCORING_PIPELINE_NAME, SCORING_DATASTORE_INPUT_PATH,
        SCORING_DATASTORE_OUTPUT_PATH, SCORING_OUTPUT_FILE_NAME, BATCHSCORE_NODE_COUNT,
        BATCHSCORE_PROCESS_COUNT_PER_NODE, BATCHSCORE_MINI_BATCH_SIZE,
        BATCHSCORE_ERROR_THRESHOLD, BATCHSCORE_RUN_INVOCATION_TIMEOUT, and for SDK v2
        BATCH_ENDPOINT_NAME and BATCHSCORE_FILES_PER_MINI_BATCH."""
        env = os.environ if env is None else env

        def text(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        mini_batch_size = text("BATCHSCORE_MINI_BATCH_SIZE", cls.mini_batch_size)
        if not MINI_BATCH_SIZE.match(mini_batch_size):
            raise ConfigurationError(f"BATCHSCORE_MINI_BATCH_SIZE={mini_batch_size!r}: use a "
                                     "size such as 1MB, 512KB or 1048576 (bytes)")
        return cls(
            pipeline_name=text("SCORING_PIPELINE_NAME", cls.pipeline_name),
            input_path=text("SCORING_DATASTORE_INPUT_PATH", cls.input_path),
            output_path=text("SCORING_DATASTORE_OUTPUT_PATH", cls.output_path),
            output_file_name=text("SCORING_OUTPUT_FILE_NAME", cls.output_file_name),
            node_count=_integer(env, "BATCHSCORE_NODE_COUNT", cls.node_count, 1),
            process_count_per_node=_integer(env, "BATCHSCORE_PROCESS_COUNT_PER_NODE",
                                            cls.process_count_per_node, 1),
            mini_batch_size=mini_batch_size,
            error_threshold=_integer(env, "BATCHSCORE_ERROR_THRESHOLD", cls.error_threshold, -1),
            run_invocation_timeout=_integer(env, "BATCHSCORE_RUN_INVOCATION_TIMEOUT",
                                            cls.run_invocation_timeout, 1),
            endpoint_name=text("BATCH_ENDPOINT_NAME", cls.endpoint_name),
            files_per_mini_batch=_integer(env, "BATCHSCORE_FILES_PER_MINI_BATCH",
                                          cls.files_per_mini_batch, 1),
        )
