"""The Azure ML backend on SDK v2 (azure-ai-ml): every v2 service call behind the backend
interface is here (the batch endpoint's own calls are in azureml_v2_batch_endpoint.main()).

Chosen by MLOPS_BACKEND=azureml-v2 (the pipeline's steps set it for themselves on the
compute). Datasets are data assets (``uri_file``, versioned, the same names), models are
``mlflow_model`` assets carrying the same tags and the same production tag protocol as on
SDK v1, and the training pipeline is a pipeline component registered with the build id as
its version: SDK v2 has no published pipelines, and a registered component is what a later
job can find by name and build id and run, as run_train_pipeline does on v1.

Step runs log through MLflow to the workspace: inside a v2 command job the tracking URI and
the step's run id come from the job (MLFLOW_TRACKING_URI, MLFLOW_RUN_ID) and azureml-mlflow
serves them (the steps' environment: conda_dependencies_v2.yml).

The workspace is reached on first use, never at construction. None of these calls can run
without a workspace: docs/azure-ml.md lists them as untested here.
"""
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import pandas as pd

from ml_service.backends.azureml import (CANCEL_TAG, PRODUCTION_TAG, choose_production,
                                         is_production, promote)
from ml_service.backends.base import (LATEST, Backend, DatasetVersion, Deployment,
                                      ModelVersion, PipelineRun, PublishedPipeline,
                                      ServiceSpec, StepRun)
from ml_service.backends.local import LocalStepRun, read_csv
from ml_service.errors import (ConfigurationError, ModelAlreadyRegisteredError,
                               ModelNotFoundError)
from ml_service.pipelines.azureml_v2_pipeline import (asset_name, build_pipeline_component,
                                                      pipeline_job)
from ml_service.pipelines.definition import PipelineDefinition
from ml_service.util.env_variables import (AzureScoringSettings, ComputeSettings,
                                           EnvironmentV2Settings, TrainingSettings,
                                           WorkspaceSettings)

LOGGER = logging.getLogger(__name__)
NAME = "azureml-v2"
# What a v2 command job sets for the code it runs (MLflow reads the same variables).
JOB_RUN_ID = "MLFLOW_RUN_ID"
PARENT_RUN_TAG = "mlflow.parentRunId"
# Set by Azure ML in a job that runs as its submitter (user_identity, as the pipeline job
# does): the endpoint AzureMLOnBehalfOfCredential gets that identity's tokens from.
ON_BEHALF_OF_ENDPOINT = "OBO_ENDPOINT"
# The client id of the compute cluster's user-assigned identity, set by Azure ML in a job.
IDENTITY_CLIENT_ID = "DEFAULT_IDENTITY_CLIENT_ID"
# AML_CLUSTER_PRIORITY -> AmlCompute's tier (written to the service as snake_to_pascal(tier)).
CLUSTER_TIERS = {"dedicated": "dedicated", "lowpriority": "low_priority"}


def step_variables(workspace: WorkspaceSettings,
                   scoring: AzureScoringSettings) -> Dict[str, str]:
    """What every step reads on the v2 compute, where the agent's environment is absent: the
    backend to use (a v2 job also sets AZUREML_RUN_ID, which would choose SDK v1) and the
    workspace the backend's client works on."""
    return {"MLOPS_BACKEND": NAME, "SUBSCRIPTION_ID": workspace.subscription_id,
            "RESOURCE_GROUP": workspace.resource_group,
            "WORKSPACE_NAME": workspace.workspace_name, **scoring.step_environment()}


def make_credential(workspace: WorkspaceSettings,
                    env: Optional[Mapping[str, str]] = None) -> Any:
    """Inside a pipeline job, the submitter's identity (on-behalf-of); else the service
    principal when one is configured; else DefaultAzureCredential (the Azure CLI on an agent
    or a laptop, a managed identity elsewhere)."""
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    env = os.environ if env is None else env
    if env.get(ON_BEHALF_OF_ENDPOINT):
        from azure.ai.ml.identity import AzureMLOnBehalfOfCredential

        return AzureMLOnBehalfOfCredential()
    if workspace.uses_service_principal:
        return ClientSecretCredential(workspace.tenant_id, workspace.sp_app_id,
                                      workspace.sp_app_secret)
    return DefaultAzureCredential(managed_identity_client_id=env.get(IDENTITY_CLIENT_ID))


def make_client(workspace: WorkspaceSettings) -> Any:
    """An MLClient on the configured workspace (no call is made until it is used)."""
    from azure.ai.ml import MLClient

    return MLClient(make_credential(workspace), workspace.subscription_id,
                    workspace.resource_group, workspace.workspace_name)


def not_found() -> type:
    """The exception azure-ai-ml's operations raise for a missing asset or job."""
    from azure.core.exceptions import ResourceNotFoundError

    return ResourceNotFoundError


class AzureMLv2StepRun(LocalStepRun):
    """A step's MLflow run inside a v2 pipeline job, and the pipeline job's run.

    The pipeline job's name is its MLflow run id; cancelling it goes through the service.
    """

    def __init__(self, client: Any, run_id: str, pipeline_run_id: str,
                 experiment_name: str, cancel_job: Callable[[str], Any]) -> None:
        super().__init__(client, run_id, pipeline_run_id, experiment_name)
        self._cancel_job = cancel_job

    def cancel_pipeline(self, reason: str) -> None:
        self._client.set_tag(self.pipeline_run_id, CANCEL_TAG, reason)
        self._cancel_job(self.pipeline_run_id)


class AzureMLv2Backend(Backend):
    """Data and model assets, pipeline components and jobs of an Azure ML workspace (SDK v2)."""

    name = NAME

    def __init__(self, training: TrainingSettings,
                 compute: Optional[ComputeSettings] = None,
                 environment: Optional[EnvironmentV2Settings] = None,
                 scoring: Optional[AzureScoringSettings] = None,
                 workspace: Optional[WorkspaceSettings] = None,
                 client: Any = None) -> None:
        self.training = training
        self.compute = compute or ComputeSettings.from_env()
        self.environment = environment or EnvironmentV2Settings.from_env()
        self.scoring = scoring or AzureScoringSettings.from_env()
        self._workspace = workspace
        self._client = client

    @property
    def workspace(self) -> WorkspaceSettings:
        """The workspace settings (SUBSCRIPTION_ID, RESOURCE_GROUP, WORKSPACE_NAME)."""
        if self._workspace is None:
            self._workspace = WorkspaceSettings.from_env()
        return self._workspace

    @property
    def client(self) -> Any:
        """The MLClient, made on first use."""
        if self._client is None:
            self._client = make_client(self.workspace)
        return self._client

    # -- runs --------------------------------------------------------------
    @staticmethod
    def _tracking_client() -> Any:
        """MLflow's client on the job's tracking URI (set by the v2 job)."""
        from mlflow.tracking import MlflowClient

        return MlflowClient()

    @contextmanager
    def step_run(self, step_name: str, run_id: Optional[str] = None) -> Iterator[StepRun]:
        step_run_id = os.environ.get(JOB_RUN_ID)
        if not step_run_id:
            raise ConfigurationError(
                f"the {step_name} step is not running in an Azure ML v2 job ({JOB_RUN_ID} is "
                "not set): on SDK v2 the steps run inside the pipeline job that "
                "run_train_pipeline submits")
        tracking = self._tracking_client()
        run = tracking.get_run(step_run_id)
        pipeline_run_id = run.data.tags.get(PARENT_RUN_TAG) or step_run_id
        experiment = tracking.get_experiment(run.info.experiment_id).name
        yield AzureMLv2StepRun(tracking, step_run_id, pipeline_run_id, experiment,
                               self.client.jobs.begin_cancel)

    def get_run_metrics(self, run_id: str) -> Dict[str, float]:
        if not os.environ.get(JOB_RUN_ID):
            raise ConfigurationError("on SDK v2 run metrics are read through MLflow inside a "
                                     "job; open the run in Azure ML studio instead")
        return dict(self._tracking_client().get_run(run_id).data.metrics)

    # -- datasets ----------------------------------------------------------
    def _data(self, name: str, version: str) -> Any:
        wanted = str(version).lower()
        try:
            if wanted == LATEST:
                return self.client.data.get(name, label=LATEST)
            return self.client.data.get(name, version=str(int(wanted)))
        except not_found():
            return None

    def find_dataset(self, name: str, version: str = LATEST) -> Optional[DatasetVersion]:
        data = self._data(name, version)
        if data is None:
            return None
        return DatasetVersion(name, int(data.version), data.description or "")

    def register_dataset(self, name: str, file_path: Path, description: str = "",
                         frame: Optional[pd.DataFrame] = None) -> DatasetVersion:
        """Register a file as the next version of a ``uri_file`` data asset: a local file
        (uploaded by content, so a version's bytes never change), or a path on the datastore
        (DATASTORE_NAME, default the workspace's) given as MLOpsPython's --data_file_path.
        ``frame`` is not used: Azure ML keeps the file itself."""
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Data

        path = Path(file_path)
        data = Data(name=name, description=description, type=AssetTypes.URI_FILE,
                    path=str(path) if path.is_file() else self._datastore_uri(str(file_path)))
        registered = self.client.data.create_or_update(data)
        LOGGER.info("Registered data asset %s version %s from %s", name, registered.version,
                    file_path)
        return DatasetVersion(name, int(registered.version), description)

    def _datastore_uri(self, datastore_path: str) -> str:
        """A path on the datastore as an azureml:// URI (already one: unchanged)."""
        if datastore_path.startswith("azureml://"):
            return datastore_path
        datastore = self.scoring.datastore_name or self.client.datastores.get_default().name
        return f"azureml://datastores/{datastore}/paths/{datastore_path.lstrip('/')}"

    def load_dataset(self, dataset: DatasetVersion) -> pd.DataFrame:
        data = self._data(dataset.name, str(dataset.version))
        if data is None:
            raise ConfigurationError(f"data asset {dataset.name} version {dataset.version} "
                                     "is not registered")
        return self._read_remote(data.path)

    def read_data_file(self, file_path: str) -> pd.DataFrame:
        """A local CSV, or a file on the datastore (a path or an azureml:// URI)."""
        if Path(file_path).is_file():
            return read_csv(Path(file_path))
        return self._read_remote(self._datastore_uri(file_path))

    @staticmethod
    def _read_remote(uri: str) -> pd.DataFrame:
        """Read a CSV at an azureml:// URI (pandas through azureml-fsspec, installed in the
        steps' environment), with the file named in any error."""
        try:
            return pd.read_csv(uri)
        except ImportError as err:
            raise ConfigurationError(
                f"reading {uri} needs azureml-fsspec: it is in conda_dependencies_v2.yml, the "
                "environment of the steps on SDK v2") from err
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
            raise ValueError(f"{uri} is not a readable CSV file: {err}") from err

    # -- models ------------------------------------------------------------
    @staticmethod
    def _model_version(model: Any) -> ModelVersion:
        tags = dict(model.tags or {})
        return ModelVersion(model.name, int(model.version),
                            tags.get("run_id") or getattr(model, "job_name", None), tags)

    def _model(self, name: str, version: int) -> Any:
        try:
            return self.client.models.get(name, version=str(int(version)))
        except not_found() as err:
            raise ModelNotFoundError(f"no model {name!r} version {version}") from err

    def _versions(self, name: str) -> List[Any]:
        try:
            return list(self.client.models.list(name=name))
        except not_found():
            return []

    def get_production_model(self, name: str) -> Optional[ModelVersion]:
        chosen = choose_production([m for m in self._versions(name) if is_production(m)])
        return None if chosen is None else self._model_version(chosen)

    def get_model(self, name: str, version: int) -> ModelVersion:
        return self._model_version(self._model(name, version))

    def list_models(self, name: str, run_id: Optional[str] = None) -> List[ModelVersion]:
        found = (self._model_version(m) for m in self._versions(name))
        return sorted((m for m in found if run_id is None or m.run_id == run_id),
                      key=lambda m: m.version)

    def register_model(self, name: str, model_path: Path, run_id: str,
                       tags: Mapping[str, str],
                       dataset: Optional[DatasetVersion] = None) -> ModelVersion:
        """Register the step's MLflow model folder as the next version of an ``mlflow_model``
        asset (uploaded from wherever the step's input is mounted), once per run."""
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        existing = self.list_models(name, run_id=run_id)
        if existing:
            raise ModelAlreadyRegisteredError(
                f"model {name!r} version {existing[0].version} is already registered for "
                f"run {run_id}; a run registers at most one model")
        model = Model(name=name, path=str(model_path), type=AssetTypes.MLFLOW_MODEL,
                      tags={**tags, "run_id": run_id},
                      description=(f"trained on {dataset.name} version {dataset.version}"
                                   if dataset else None))
        registered = self.client.models.create_or_update(model)
        LOGGER.info("Registered model %s version %s for run %s", name, registered.version,
                    run_id)
        return self._model_version(registered)

    def _write_tags(self, model: Any, add: Optional[Mapping[str, str]] = None,
                    remove: Tuple[str, ...] = ()) -> None:
        """Write a version's tags back (a registered model's tags are the one part of it that
        can change), keeping the other tags it holds."""
        model.tags = {**{k: v for k, v in (model.tags or {}).items() if k not in remove},
                      **dict(add or {})}
        self.client.models.create_or_update(model)

    def set_production_model(self, name: str, version: int) -> None:
        """The same promotion as SDK v1 (see promote()): never zero production versions,
        and the last promotion stays."""
        since = promote(
            version, lambda: [m for m in self._versions(name) if is_production(m)],
            lambda v: self._model(name, v),
            lambda model, tags: self._write_tags(model, add=tags),
            lambda model, keys: self._write_tags(model, remove=tuple(keys)))
        LOGGER.info("Model %s version %s is production (%s=true since %s)", name, version,
                    PRODUCTION_TAG, since)

    def download_model(self, model: ModelVersion, target_dir: Path) -> Path:
        """Download a version's files; return its MLflow model folder."""
        target_dir = Path(target_dir)
        target_dir.mkdir(parents=True, exist_ok=True)
        self.client.models.download(model.name, str(model.version), download_path=target_dir)
        found = sorted(target_dir.rglob("MLmodel"))
        if not found:
            raise ModelNotFoundError(f"model {model.name} version {model.version} has no "
                                     f"MLmodel file: it is not an MLflow model")
        return found[0].parent

    # -- the training pipeline as a registered pipeline component ----------
    def pipeline_component(self, definition: PipelineDefinition,
                           version: Optional[str] = None) -> Any:
        """The definition as azure-ai-ml's PipelineComponent, checked by the SDK locally."""
        return build_pipeline_component(definition, self.environment.base_image,
                                        self.environment.conda_file,
                                        step_variables(self.workspace, self.scoring), version)

    def _ensure_compute(self) -> str:
        """The training cluster, created when the workspace lacks it; its azureml: name."""
        from azure.ai.ml.entities import AmlCompute

        name = self.compute.cluster_name
        try:
            self.client.compute.get(name)
        except not_found():
            LOGGER.info("Creating compute cluster %s (%s)", name, self.compute.vm_size)
            self.client.compute.begin_create_or_update(AmlCompute(
                name=name, size=self.compute.vm_size, min_instances=self.compute.min_nodes,
                max_instances=self.compute.max_nodes,
                tier=CLUSTER_TIERS[self.compute.priority])).result()
        return f"azureml:{name}"

    def publish_pipeline(self, definition: PipelineDefinition, version: str,
                         description: str = "") -> PublishedPipeline:
        component = self.pipeline_component(definition, str(version))
        component.description = description
        self._ensure_compute()
        registered = self.client.components.create_or_update(component, version=str(version))
        LOGGER.info("Registered pipeline component %s version %s", registered.name,
                    registered.version)
        return PublishedPipeline(registered.id, definition.name, str(registered.version),
                                 description)

    def list_published_pipelines(self, name: str,
                                 version: Optional[str] = None) -> List[PublishedPipeline]:
        component_name = asset_name(name)
        try:
            found = ([self.client.components.get(component_name, version=str(version))]
                     if version is not None else
                     list(self.client.components.list(name=component_name)))
        except not_found():
            return []
        return [PublishedPipeline(c.id, name, str(c.version), c.description or "")
                for c in found]

    def submit_pipeline(self, published: PublishedPipeline, parameters: Mapping[str, str],
                        tags: Mapping[str, str], wait: bool = False) -> PipelineRun:
        from azure.ai.ml.exceptions import JobException

        component = self.client.components.get(asset_name(published.name),
                                               version=published.version)
        job = pipeline_job(component, parameters, self._ensure_compute(),
                           self.training.experiment_name, tags)
        submitted = self.client.jobs.create_or_update(job)
        LOGGER.info("Submitted pipeline job %s", submitted.name)
        if wait:
            try:
                self.client.jobs.stream(submitted.name)
            except JobException as err:  # a failed job: its status says so below
                LOGGER.error("Pipeline job %s: %s", submitted.name, err)
            submitted = self.client.jobs.get(submitted.name)
        return PipelineRun(submitted.name, submitted.status)

    # -- deployments: SDK v2 deploys to online endpoints, with deploy_online_endpoint ---
    def _no_deployments(self) -> ConfigurationError:
        return ConfigurationError(
            "the azureml-v2 backend has no web services: SDK v2 deploys to managed online "
            "endpoints with ml_service.util.deploy_online_endpoint; web services (ACI, AKS) "
            "are SDK v1's, with MLOPS_BACKEND=azureml")

    def deploy_model(self, model: ModelVersion, service_name: str,
                     spec: ServiceSpec) -> Deployment:
        raise self._no_deployments()

    def get_deployment(self, service_name: str) -> Optional[Deployment]:
        """The managed online endpoint of that name, as a deployment: its scoring URI, the
        model version of the deployment with the most live traffic, and its primary key
        (read through the SDK); None when the workspace has no such endpoint."""
        from ml_service.backends.azureml_v2_online import live_deployment, model_version

        try:
            endpoint = self.client.online_endpoints.get(service_name)
        except not_found():
            return None
        serving = live_deployment(endpoint.traffic)
        if serving is None:
            return None
        deployment = self.client.online_deployments.get(serving, service_name)
        model = self.training.model_name
        key = self.client.online_endpoints.get_keys(service_name).primary_key
        return Deployment(service_name, endpoint.scoring_uri, model,
                          model_version(deployment.model), key=key)

    def delete_deployment(self, service_name: str) -> bool:
        raise self._no_deployments()
