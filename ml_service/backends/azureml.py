"""The Azure ML backend (SDK v1, azureml-core): every service call of the project is here.

Chosen by MLOPS_BACKEND=azureml, or automatically inside an Azure ML run. The
workspace is reached on first use, never at construction, so choosing this
backend costs nothing until it is used. None of these calls can run without a
workspace: docs/azure-ml.md lists them as untested here.

SDK v1 reached end of support on 2026-06-30; keeping every v1 call in this one
module leaves room for a v2 backend beside it.
"""
import logging
import numbers
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence,
                    Tuple)

import pandas as pd

from ml_service.backends.base import (LATEST, PRODUCTION_SINCE_TAG, Backend, DatasetVersion,
                                      Deployment, ModelVersion, PipelineRun,
                                      PublishedPipeline, ServiceSpec, StepRun, promotion_time)
from ml_service.errors import (ConfigurationError, DeploymentError,
                               ModelAlreadyRegisteredError, ModelNotFoundError)
from ml_service.pipelines.definition import PipelineDefinition
from ml_service.util.dataprep_types import as_pandas_reads_it
from ml_service.util.env_variables import (AzureScoringSettings, ComputeSettings,
                                           EnvironmentSettings, TrainingSettings,
                                           WorkspaceSettings)
from ml_service.util.sample_dataset import file_digest

LOGGER = logging.getLogger(__name__)
# Azure ML v1 has no model aliases: the production version carries this tag, and the
# time it was promoted (UTC, ISO 8601, sortable as text).
PRODUCTION_TAG = "production"
CANCEL_TAG = "mlops.cancel_reason"


def promotion_key(model: Any) -> Tuple[str, int]:
    """Order of promotion of a model version tagged production: the latest promotion wins,
    then the higher version (a version tagged before production_since existed sorts first)."""
    return (str((model.tags or {}).get(PRODUCTION_SINCE_TAG, "")), int(model.version))


def choose_production(models: Sequence[Any]) -> Optional[Any]:
    """The production version among versions tagged production=true: the one promoted last.

    More than one is tagged only between a promotion's two writes, or when a promotion
    failed half-way; the next promotion removes the tag from the older ones.
    """
    if not models:
        return None
    ordered = sorted(models, key=promotion_key)
    if len(ordered) > 1:
        LOGGER.warning("%d versions of model %s are tagged %s=true (%s); version %s was "
                       "promoted last and is production; the next promotion removes the "
                       "tag from the others", len(ordered), ordered[-1].name, PRODUCTION_TAG,
                       ", ".join(str(m.version) for m in ordered), ordered[-1].version)
    return ordered[-1]


def is_production(model: Any) -> bool:
    """Whether a model version carries the production tag."""
    return (model.tags or {}).get(PRODUCTION_TAG) == "true"


def promote(version: int, tagged: Callable[[], Iterable[Any]], read: Callable[[int], Any],
            add_tags: Callable[[Any, Mapping[str, str]], None],
            remove_tags: Callable[[Any, Sequence[str]], None]) -> str:
    """Promote a version, as both SDKs' backends do: tag it first, then untag the versions
    promoted before it; return the time of the promotion.

    Tagging first means a failure in between leaves two tagged versions (the newer one
    wins), never none. Each version is read again right before its tags are written,
    because the SDKs write back the whole tag set they hold. Concurrent promotions each
    untag only versions promoted earlier than their own, so the last promotion stays.
    ``tagged`` lists the versions tagged production; ``read`` reads one version again.
    """
    since = promotion_time()
    add_tags(read(version), {PRODUCTION_TAG: "true", PRODUCTION_SINCE_TAG: since})
    mine = (since, int(version))
    for model in tagged():
        if int(model.version) == int(version) or promotion_key(model) >= mine:
            continue
        current = read(model.version)
        if is_production(current) and promotion_key(current) < mine:
            remove_tags(current, (PRODUCTION_TAG, PRODUCTION_SINCE_TAG))
    return since


def latest_metrics(metrics: Mapping[str, Any]) -> Dict[str, float]:
    """A run's metrics as numbers: the last value of a metric logged more than once."""
    found = {}
    for name, value in metrics.items():
        if isinstance(value, list) and value:
            value = value[-1]
        if isinstance(value, numbers.Number) and not isinstance(value, bool):
            found[name] = float(value)
    return found


# The packages reading a tabular dataset needs (import name -> distribution): the SDK
# imports them only deep inside to_pandas_dataframe(), with a message that names neither.
DATASET_PACKAGES = {"azureml.dataprep": "azureml-dataprep", "pyarrow": "pyarrow"}


def require_dataset_packages(conda_file: str) -> None:
    """Raise ConfigurationError naming the package and the conda file if one that tabular
    datasets need is missing."""
    try:
        import azureml.dataprep as dataprep
        import pyarrow
    except ImportError as err:
        package = DATASET_PACKAGES.get(err.name or "", err.name or str(err))
        raise ConfigurationError(
            f"{package} is not installed: Azure ML tabular datasets need it to be read or "
            f"registered; add it to the pip dependencies of {conda_file} (the environment of "
            "the steps) and to pyproject.toml") from err
    LOGGER.debug("Tabular datasets read with azureml-dataprep %s and pyarrow %s",
                 dataprep.__version__, pyarrow.__version__)


def tabular_to_frame(dataset: Any, conda_file: str) -> pd.DataFrame:
    """A TabularDataset's rows as a data frame, read by azureml-dataprep, with the column
    types pandas gives the same file on the local backend (see dataprep_types)."""
    require_dataset_packages(conda_file)
    return as_pandas_reads_it(dataset.to_pandas_dataframe())


def dataset_folder(name: str, digest: str) -> str:
    """The datastore folder holding the bytes of one registered file: named after the
    dataset and the file's content, so a version's data never changes once registered
    (a TabularDataset reads its source again each time it is read)."""
    return f"datasets/{name}/{digest}"


@contextmanager
def under_working_directory(path: Path) -> Iterator[str]:
    """``path`` as a path relative to the working directory, copied under it first when it
    lies elsewhere; the copy is removed afterwards.

    Model.register refuses a path outside os.getcwd() (PermissionError) before any upload.
    On Azure ML compute a step's working directory is its snapshot, and its PipelineData
    inputs are mounted in other folders.
    """
    cwd = Path.cwd().resolve()
    source = Path(path).resolve()
    if source.is_relative_to(cwd):
        yield os.path.relpath(source, cwd)
        return
    with tempfile.TemporaryDirectory(prefix=".upload-", dir=cwd) as folder:
        staged = Path(folder) / source.name
        if source.is_dir():
            shutil.copytree(source, staged)
        else:
            shutil.copy2(source, staged)
        yield os.path.relpath(staged, cwd)


class AzureStepRun(StepRun):
    """A step's run in an Azure ML pipeline, and its parent pipeline run."""

    def __init__(self, run: Any, pipeline_run: Any) -> None:
        self._run = run
        self._pipeline = pipeline_run
        self.id = run.id
        self.pipeline_run_id = pipeline_run.id
        self.experiment_name = run.experiment.name

    def _targets(self) -> List[Any]:
        return [self._run] if self._run.id == self._pipeline.id else [self._run, self._pipeline]

    def log_metric(self, name: str, value: float) -> None:
        for run in self._targets():
            run.log(name, float(value))

    def log_params(self, params: Mapping[str, Any]) -> None:
        # SDK v1 runs have no parameters: numbers become metrics, the rest tags.
        for key, value in params.items():
            if isinstance(value, numbers.Number) and not isinstance(value, bool):
                self._run.log(key, value)
            else:
                self._run.tag(key, str(value))

    def set_pipeline_tags(self, tags: Mapping[str, str]) -> None:
        for run in self._targets():
            run.set_tags({k: str(v) for k, v in tags.items()})

    def get_pipeline_metrics(self) -> Dict[str, float]:
        return latest_metrics(self._pipeline.get_metrics())

    def get_pipeline_tags(self) -> Dict[str, str]:
        return dict(self._pipeline.get_tags())

    def cancel_pipeline(self, reason: str) -> None:
        self._pipeline.tag(CANCEL_TAG, reason)
        self._pipeline.cancel()

    def log_artifact(self, path: Path, artifact_path: str = "") -> None:
        # The name is the file's (or folder's) path among the run's outputs; Azure ML uses
        # "/" in it. upload_folder names each file name + its path after ``path``.
        path = Path(path)
        name = "/".join(part for part in (artifact_path.strip("/"), path.name) if part)
        if path.is_dir():
            self._run.upload_folder(name=name, path=str(path))
        else:
            self._run.upload_file(name=name, path_or_stream=str(path))


class AzureMLBackend(Backend):
    """Runs, datasets, models, published pipelines and web services of an Azure ML workspace."""

    name = "azureml"

    def __init__(self, training: TrainingSettings,
                 compute: Optional[ComputeSettings] = None,
                 environment: Optional[EnvironmentSettings] = None,
                 scoring: Optional[AzureScoringSettings] = None,
                 workspace: Any = None) -> None:
        self.training = training
        self.compute = compute or ComputeSettings.from_env()
        self.environment = environment or EnvironmentSettings.from_env()
        self.scoring = scoring or AzureScoringSettings.from_env()
        self._workspace = workspace

    @property
    def workspace(self) -> Any:
        """The workspace: the current run's inside Azure ML, else the configured one."""
        if self._workspace is None:
            from azureml.core import Run

            run = Run.get_context()
            if hasattr(run, "experiment"):
                self._workspace = run.experiment.workspace
            else:
                from ml_service.util.workspace import get_workspace

                self._workspace = get_workspace(WorkspaceSettings.from_env())
        return self._workspace

    # -- runs --------------------------------------------------------------
    @contextmanager
    def step_run(self, step_name: str, run_id: Optional[str] = None) -> Iterator[StepRun]:
        from azureml.core import Experiment, Run

        run = Run.get_context()
        if hasattr(run, "experiment"):
            yield AzureStepRun(run, run.parent or run)
            return
        if not run_id:
            raise ConfigurationError(f"the {step_name} step is not running in Azure ML: pass "
                                     "--run_id of the pipeline run to work on")
        pipeline_run = Run(Experiment(self.workspace, self.training.experiment_name), run_id)
        yield AzureStepRun(pipeline_run, pipeline_run)

    def get_run_metrics(self, run_id: str) -> Dict[str, float]:
        from azureml.core import Run

        return latest_metrics(Run.get(self.workspace, run_id).get_metrics())

    # -- datasets ----------------------------------------------------------
    def _datastore(self) -> Any:
        from azureml.core import Datastore

        if self.scoring.datastore_name:
            return Datastore.get(self.workspace, self.scoring.datastore_name)
        return self.workspace.get_default_datastore()

    def _get_dataset(self, name: str, version: Any) -> Any:
        from azureml.core import Dataset
        from azureml.exceptions import UserErrorException

        try:
            return Dataset.get_by_name(self.workspace, name, version=version)
        except UserErrorException:
            return None

    def find_dataset(self, name: str, version: str = LATEST) -> Optional[DatasetVersion]:
        wanted = LATEST if str(version).lower() == LATEST else int(version)
        dataset = self._get_dataset(name, wanted)
        if dataset is None:
            return None
        return DatasetVersion(name, int(dataset.version), dataset.description or "")

    def register_dataset(self, name: str, file_path: Path, description: str = "",
                         frame: Optional[pd.DataFrame] = None) -> DatasetVersion:
        """Register a file as a new version: a local file, or any other path taken as a file
        on the datastore (MLOpsPython's --data_file_path). ``frame`` is not used: Azure ML
        reads the registered file itself.

        The version points at a copy of the file's bytes in a datastore folder named after
        its content, uploaded without overwriting: registering a changed file again (or new
        data written over the same datastore path) never changes an earlier version.
        """
        from azureml.core import Dataset

        # Checked first: the file would be uploaded before from_delimited_files failed.
        require_dataset_packages(self.environment.conda_file)
        datastore = self._datastore()
        path = Path(file_path)
        with tempfile.TemporaryDirectory(prefix="dataset-") as folder:
            local = path if path.is_file() else self._download(datastore, str(file_path),
                                                               Path(folder))
            target = dataset_folder(name, file_digest(local))
            # Skipped when the folder has it already: same name and content, same bytes.
            datastore.upload_files([str(local)], target_path=target, overwrite=False,
                                   show_progress=False)
            datastore_path = f"{target}/{local.name}"
        dataset = Dataset.Tabular.from_delimited_files(path=[(datastore, datastore_path)])
        dataset = dataset.register(self.workspace, name=name, description=description,
                                   create_new_version=True)
        LOGGER.info("Registered dataset %s version %s from %s (datastore %s, %s)", name,
                    dataset.version, file_path, datastore.name, datastore_path)
        return DatasetVersion(name, int(dataset.version), description)

    @staticmethod
    def _download(datastore: Any, datastore_path: str, folder: Path) -> Path:
        """A copy of one file on the datastore, so that its bytes can be registered."""
        datastore.download(str(folder), prefix=datastore_path, overwrite=True,
                           show_progress=False)
        local = folder / datastore_path
        if not local.is_file():
            raise ConfigurationError(
                f"{datastore_path} is not a file on datastore {datastore.name}: give the path "
                "of one CSV file (a local file, or a file on the datastore) to register")
        return local

    def load_dataset(self, dataset: DatasetVersion) -> pd.DataFrame:
        require_dataset_packages(self.environment.conda_file)
        found = self._get_dataset(dataset.name, dataset.version)
        if found is None:
            raise ConfigurationError(f"dataset {dataset.name} version {dataset.version} "
                                     "is not registered")
        return tabular_to_frame(found, self.environment.conda_file)

    def read_data_file(self, file_path: str) -> pd.DataFrame:
        """A local CSV, or a path on the datastore read as an unregistered tabular dataset."""
        from azureml.core import Dataset

        from ml_service.backends.local import read_csv

        if Path(file_path).is_file():
            return read_csv(Path(file_path))
        require_dataset_packages(self.environment.conda_file)
        dataset = Dataset.Tabular.from_delimited_files(path=[(self._datastore(), file_path)])
        return tabular_to_frame(dataset, self.environment.conda_file)

    # -- models ------------------------------------------------------------
    @staticmethod
    def _model_version(model: Any) -> ModelVersion:
        tags = dict(model.tags or {})
        return ModelVersion(model.name, int(model.version), tags.get("run_id") or model.run_id,
                            tags)

    def _model(self, name: str, version: int) -> Any:
        from azureml.core import Model
        from azureml.exceptions import WebserviceException

        try:
            return Model(self.workspace, name=name, version=int(version))
        except WebserviceException as err:
            raise ModelNotFoundError(f"no model {name!r} version {version}") from err

    def _tagged_production(self, name: str) -> List[Any]:
        from azureml.core import Model

        return Model.list(self.workspace, name=name, tags=[[PRODUCTION_TAG, "true"]])

    def get_production_model(self, name: str) -> Optional[ModelVersion]:
        chosen = choose_production(self._tagged_production(name))
        return None if chosen is None else self._model_version(chosen)

    def get_model(self, name: str, version: int) -> ModelVersion:
        return self._model_version(self._model(name, version))

    def list_models(self, name: str, run_id: Optional[str] = None) -> List[ModelVersion]:
        from azureml.core import Model

        models = Model.list(self.workspace, name=name,
                            tags=[["run_id", run_id]] if run_id else None)
        return sorted((self._model_version(m) for m in models), key=lambda m: m.version)

    def register_model(self, name: str, model_path: Path, run_id: str,
                       tags: Mapping[str, str],
                       dataset: Optional[DatasetVersion] = None) -> ModelVersion:
        from azureml.core import Model

        existing = self.list_models(name, run_id=run_id)
        if existing:
            raise ModelAlreadyRegisteredError(
                f"model {name!r} version {existing[0].version} is already registered for "
                f"run {run_id}; a run registers at most one model")
        datasets = None
        if dataset is not None:
            datasets = [("training data", self._get_dataset(dataset.name, dataset.version))]
        with under_working_directory(model_path) as local_path:
            model = Model.register(workspace=self.workspace, model_path=local_path,
                                   model_name=name, tags={**tags, "run_id": run_id},
                                   datasets=datasets)
        LOGGER.info("Registered model %s version %s for run %s", name, model.version, run_id)
        return self._model_version(model)

    def set_production_model(self, name: str, version: int) -> None:
        """Promote a version (see promote())."""
        since = promote(
            version, lambda: self._tagged_production(name), lambda v: self._model(name, v),
            lambda model, tags: model.update_tags_properties(add_tags=dict(tags)),
            lambda model, keys: model.update_tags_properties(remove_tags=list(keys)))
        LOGGER.info("Model %s version %s is production (%s=true since %s)", name, version,
                    PRODUCTION_TAG, since)

    def download_model(self, model: ModelVersion, target_dir: Path) -> Path:
        Path(target_dir).mkdir(parents=True, exist_ok=True)
        path = self._model(model.name, model.version).download(target_dir=str(target_dir),
                                                               exist_ok=True)
        return Path(path)

    # -- published pipelines -----------------------------------------------
    def publish_pipeline(self, definition: PipelineDefinition, version: str,
                         description: str = "") -> PublishedPipeline:
        from ml_service.pipelines.azureml_pipeline import (build_run_configuration,
                                                           translate_pipeline)
        from ml_service.util.attach_compute import get_or_create_compute
        from ml_service.util.manage_environment import get_environment

        compute = get_or_create_compute(self.workspace, self.compute)
        run_config = build_run_configuration(get_environment(self.workspace, self.environment),
                                             self.scoring.step_environment())
        pipeline = translate_pipeline(self.workspace, definition, compute, run_config)
        problems = pipeline.validate()
        if problems:
            raise ConfigurationError(f"Azure ML refuses pipeline {definition.name!r}: {problems}")
        published = pipeline.publish(name=definition.name, description=description,
                                     version=str(version))
        return PublishedPipeline(published.id, published.name, str(published.version),
                                 description)

    def list_published_pipelines(self, name: str,
                                 version: Optional[str] = None) -> List[PublishedPipeline]:
        from azureml.pipeline.core import PublishedPipeline as AzurePublishedPipeline

        return [PublishedPipeline(p.id, p.name, str(p.version), p.description or "")
                for p in AzurePublishedPipeline.list(self.workspace)
                if p.name == name and (version is None or str(p.version) == str(version))]

    def submit_pipeline(self, published: PublishedPipeline, parameters: Mapping[str, str],
                        tags: Mapping[str, str], wait: bool = False) -> PipelineRun:
        from azureml.core import Experiment
        from azureml.pipeline.core import PublishedPipeline as AzurePublishedPipeline

        pipeline = AzurePublishedPipeline.get(self.workspace, published.id)
        experiment = Experiment(self.workspace, self.training.experiment_name)
        run = experiment.submit(pipeline, tags=dict(tags), pipeline_parameters=dict(parameters))
        LOGGER.info("Submitted pipeline run %s", run.id)
        if wait:
            run.wait_for_completion(show_output=True, raise_on_error=False)
        return PipelineRun(run.id, run.get_status())

    # -- web services --------------------------------------------------------
    def deploy_model(self, model: ModelVersion, service_name: str,
                     spec: ServiceSpec) -> Deployment:
        from azureml.core import Model
        from azureml.core.compute import AksCompute

        from ml_service.util.deployment_configs import (aci_deployment_config,
                                                        aks_deployment_config, load_config,
                                                        staged_inference_config)
        from ml_service.util.manage_environment import get_environment

        if spec.inference_config is None or spec.deployment_config is None:
            raise ConfigurationError("an Azure ML deployment needs the inference configuration "
                                     "and an ACI or AKS deployment configuration file")
        kind = str(load_config(spec.deployment_config).get("computeType", "")).upper()
        if kind == "AKS":
            config = aks_deployment_config(spec.deployment_config)
            target = AksCompute(self.workspace, self.scoring.aks_compute_name)
        else:
            config, target = aci_deployment_config(spec.deployment_config), None
        # The staged source directory lives until Model.deploy has uploaded it.
        with staged_inference_config(spec.inference_config, get_environment(
                self.workspace, self.environment)) as inference:
            service = Model.deploy(self.workspace, service_name,
                                   [self._model(model.name, model.version)], inference, config,
                                   deployment_target=target, overwrite=True)
        service.wait_for_deployment(show_output=True)
        if service.state != "Healthy":
            raise DeploymentError(f"service {service_name} is {service.state}: "
                                  f"{service.get_logs()}")
        return self._deployment(service, model)

    def _deployment(self, service: Any, model: Optional[ModelVersion] = None) -> Deployment:
        key = service.get_keys()[0] if getattr(service, "auth_enabled", False) else None
        name = model.name if model else (service.models[0].name if service.models else "")
        version = model.version if model else (
            int(service.models[0].version) if service.models else 0)
        return Deployment(service.name, service.scoring_uri, name, version, key)

    def get_deployment(self, service_name: str) -> Optional[Deployment]:
        from azureml.core.webservice import Webservice
        from azureml.exceptions import WebserviceException

        try:
            service = Webservice(self.workspace, name=service_name)
        except WebserviceException:
            return None
        return self._deployment(service)

    def delete_deployment(self, service_name: str) -> bool:
        from azureml.core.webservice import Webservice
        from azureml.exceptions import WebserviceException

        try:
            service = Webservice(self.workspace, name=service_name)
        except WebserviceException:
            return False
        service.delete()
        return True
