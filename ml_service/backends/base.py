"""The backend interface: what step scripts and ml_service need from a platform.

Named after what the steps need, not after either SDK. The local backend
implements it with MLflow and files; an Azure ML backend implements it with
azureml-core.
"""
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from ml_service.pipelines.definition import PipelineDefinition

if TYPE_CHECKING:  # pandas only in annotations: the executor starts without importing it
    import pandas as pd

LATEST = "latest"
# When a model version became production (UTC, ISO 8601), a tag every backend writes.
PRODUCTION_SINCE_TAG = "production_since"


def promotion_time(now: Optional[datetime] = None) -> str:
    """The value of the production_since tag for a promotion happening now."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class DatasetVersion:
    """One registered version of a dataset."""

    name: str
    version: int
    description: str = ""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: int
    run_id: Optional[str]
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    """A running scoring service; ``key`` is set when it requires one."""

    name: str
    scoring_uri: str
    model_name: str
    model_version: int
    key: Optional[str] = field(default=None, repr=False)


@dataclass(frozen=True)
class ServiceSpec:
    """What a scoring service runs: the scoring script, and on Azure ML the inference
    configuration and the deployment configuration (ACI or AKS) files."""

    entry_script: Path
    inference_config: Optional[Path] = None
    deployment_config: Optional[Path] = None


@dataclass(frozen=True)
class PublishedPipeline:
    """A pipeline published under a name and a version (the CI build id)."""

    id: str
    name: str
    version: str
    description: str = ""


@dataclass(frozen=True)
class PipelineRun:
    """A submitted pipeline run and its status (when known)."""

    id: str
    status: str


class StepRun(ABC):
    """The run of one pipeline step and the pipeline run that contains it."""

    id: str
    pipeline_run_id: str
    experiment_name: str

    @abstractmethod
    def log_metric(self, name: str, value: float) -> None:
        """Log a metric to the step run and to the pipeline run."""

    @abstractmethod
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters (e.g. the model's hyperparameters) to the step run."""

    @abstractmethod
    def set_pipeline_tags(self, tags: Mapping[str, str]) -> None:
        """Tag the pipeline run (and the step run)."""

    @abstractmethod
    def get_pipeline_metrics(self) -> Dict[str, float]:
        """Return the metrics logged to the pipeline run so far."""

    @abstractmethod
    def get_pipeline_tags(self) -> Dict[str, str]:
        """Return the pipeline run's tags."""

    @abstractmethod
    def cancel_pipeline(self, reason: str) -> None:
        """Cancel the pipeline run: the steps after this one do not run."""

    @abstractmethod
    def log_artifact(self, path: Path, artifact_path: str = "") -> None:
        """Attach a file to the step run, in the folder ``artifact_path`` of its artifacts."""


class Backend(ABC):
    """Runs, datasets, the model registry and deployments of one platform."""

    name: str

    # runs
    @abstractmethod
    def step_run(self, step_name: str, run_id: Optional[str] = None):
        """Context manager yielding the StepRun of the calling step script.

        ``run_id`` names the pipeline run to attach to when the script was not
        started by a pipeline executor. The run is marked failed if the block raises.
        """

    @abstractmethod
    def get_run_metrics(self, run_id: str) -> Dict[str, float]:
        """Return the metrics of a (pipeline) run."""

    # datasets
    @abstractmethod
    def find_dataset(self, name: str, version: str = LATEST) -> Optional[DatasetVersion]:
        """Return the dataset version (a number or ``latest``), or None if there is none."""

    @abstractmethod
    def register_dataset(self, name: str, file_path: Path, description: str = "",
                         frame: Optional["pd.DataFrame"] = None) -> DatasetVersion:
        """Register a CSV file as the next version of a dataset.

        ``frame`` is the file as the caller read it (``read_data_file``), when it has: a
        backend may keep a faster copy of the data from it instead of parsing the file
        again. The file stays the registered data, byte for byte.
        """

    @abstractmethod
    def load_dataset(self, dataset: DatasetVersion) -> "pd.DataFrame":
        """Read a registered dataset version as a data frame."""

    @abstractmethod
    def read_data_file(self, file_path: str) -> "pd.DataFrame":
        """Read a data file that is not registered (a local CSV; on Azure ML also a path on
        the datastore) without registering it, so it can be checked first."""

    # models
    @abstractmethod
    def get_production_model(self, name: str) -> Optional[ModelVersion]:
        """Return the version of the model that is in production, or None."""

    @abstractmethod
    def get_model(self, name: str, version: int) -> ModelVersion:
        """Return one registered version of a model, or raise ModelNotFoundError."""

    @abstractmethod
    def list_models(self, name: str, run_id: Optional[str] = None) -> List[ModelVersion]:
        """Return the registered versions of a model, oldest first, optionally for one run."""

    @abstractmethod
    def register_model(self, name: str, model_path: Path, run_id: str,
                       tags: Mapping[str, str],
                       dataset: Optional[DatasetVersion] = None) -> ModelVersion:
        """Register a model file for a pipeline run; refuse a second one for the same run."""

    @abstractmethod
    def set_production_model(self, name: str, version: int) -> None:
        """Make a registered version the production model."""

    @abstractmethod
    def download_model(self, model: ModelVersion, target_dir: Path) -> Path:
        """Copy a registered model's files into a folder; return the model file's path."""

    # published pipelines
    @abstractmethod
    def publish_pipeline(self, definition: PipelineDefinition, version: str,
                         description: str = "") -> PublishedPipeline:
        """Publish a pipeline definition under its name and a version (the build id)."""

    @abstractmethod
    def list_published_pipelines(self, name: str,
                                 version: Optional[str] = None) -> List[PublishedPipeline]:
        """Return the published pipelines of that name (and version)."""

    @abstractmethod
    def submit_pipeline(self, published: PublishedPipeline, parameters: Mapping[str, str],
                        tags: Mapping[str, str], wait: bool = False) -> PipelineRun:
        """Start a run of a published pipeline; with ``wait``, return when it has ended."""

    # deployments
    @abstractmethod
    def deploy_model(self, model: ModelVersion, service_name: str,
                     spec: ServiceSpec) -> Deployment:
        """Deploy a model version as a scoring service, replacing one of the same name."""

    @abstractmethod
    def get_deployment(self, service_name: str) -> Optional[Deployment]:
        """Return a running scoring service (with its key when it needs one), or None."""

    @abstractmethod
    def delete_deployment(self, service_name: str) -> bool:
        """Stop and remove a scoring service; return False if there was none."""
