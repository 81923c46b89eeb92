"""The local backend: MLflow (SQLite) for runs and models, files for datasets.

Everything lives under one root folder (``.mlops/`` by default):

    mlflow.db               MLflow tracking store and model registry
    artifacts/              MLflow artifacts (registered model files)
    datasets/NAME/N/        version N of a dataset: data.csv, dataset.json and
                            data.parquet, a columnar copy of data.csv read instead of it
    pipeline_runs/RUN_ID/   data edges and step logs of a local pipeline run
    deployments/NAME/       a local scoring service: model, record, server log

``mlflow ui --backend-store-uri sqlite:///.mlops/mlflow.db`` shows the runs.
"""
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from ml_service.backends.base import (LATEST, PRODUCTION_SINCE_TAG, Backend, DatasetVersion,
                                      Deployment, ModelVersion, PipelineRun,
                                      PublishedPipeline, ServiceSpec, StepRun, promotion_time)
from ml_service.backends import local_server
from ml_service.monitoring.variables import (COLLECTOR_VARIABLE, FOLDER_VARIABLE,
                                             MODEL_NAME_VARIABLE, MODEL_VERSION_VARIABLE,
                                             SERVICE_VARIABLE)
from ml_service.pipelines.definition import (PipelineDefinition, definition_from_dict,
                                             definition_to_dict)
from ml_service.errors import (ConfigurationError, DatasetNotFoundError, MLOpsError,
                               ModelAlreadyRegisteredError, ModelNotFoundError,
                               RunNotFoundError)

LOGGER = logging.getLogger(__name__)

PRODUCTION_ALIAS = "production"
# Where a registered version's files are among its run's artifacts, and the file that
# makes a folder an MLflow model.
MODEL_ARTIFACT = "model"
MLMODEL_FILE = "MLmodel"
# Set by the local executor for the step processes it starts.
ENV_PIPELINE_RUN_ID = "MLOPS_PIPELINE_RUN_ID"
STEP_TAG = "mlops.step"
PIPELINE_TAG = "mlops.pipeline"
CANCEL_TAG = "mlops.cancel_reason"
PARENT_TAG = "mlflow.parentRunId"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# A dataset version's files: the CSV file as registered, byte for byte, and its columnar
# copy, which load_dataset reads instead while it is intact and made from that CSV file.
DATA_FILE = "data.csv"
CACHE_FILE = "data.parquet"
# The Parquet metadata key of the fingerprint of the CSV file a columnar copy was made from.
CACHE_SOURCE_KEY = b"mlops.csv_fingerprint"
# The frame.attrs key of the file (and its version) read_csv read a frame from.
SOURCE_ATTR = "mlops.source"


class DataFileChangedError(MLOpsError):
    """A data file changed between being read (and checked) and being registered."""


def check_name(kind: str, name: str) -> str:
    """Return a dataset or service name if it is safe as a folder name, else raise."""
    if not NAME_PATTERN.match(name or ""):
        raise ConfigurationError(
            f"bad {kind} name {name!r}: use letters, digits, '_', '.' or '-', "
            "starting with a letter or digit, at most 128 characters")
    return name


def file_uri_to_path(uri: str) -> Path:
    """Turn a ``file://`` artifact URI into a local path."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise ModelNotFoundError(f"model source {uri!r} is not a local file")
    return Path(unquote(parsed.path))


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path`` (created if missing)."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def initialise_store(db_path: Path, artifact_root: Path) -> None:
    """Create the MLflow database once and whole, or leave an existing one alone.

    MLflow creates its tables with a series of migrations; two processes doing that on one
    new file, or a kill half-way, leave a database no later run can open. So the tables are
    made under an inter-process lock in a temporary file beside it, which is renamed into
    place only when complete: there is either no database or a complete one.
    """
    db_path = Path(db_path)
    if db_path.is_file():
        return
    with file_lock(db_path.with_name(f"{db_path.name}.lock")):
        if db_path.is_file():
            return
        for leftover in db_path.parent.glob(f".{db_path.name}.init-*"):
            leftover.unlink()  # from a run killed while initialising
        handle, name = tempfile.mkstemp(dir=db_path.parent, prefix=f".{db_path.name}.init-")
        os.close(handle)
        temporary = Path(name)
        try:
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            store = SqlAlchemyStore(f"sqlite:///{temporary}", artifact_root.as_uri())
            store.engine.dispose()
            os.chmod(temporary, 0o644)  # mkstemp makes it private; the store is the user's
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
            os.replace(temporary, db_path)
            directory = os.open(db_path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        finally:
            if temporary.exists():
                temporary.unlink()
        LOGGER.info("Created the MLflow store %s", db_path)


class LocalStepRun(StepRun):
    """A step run stored in MLflow, nested under its pipeline run."""

    def __init__(self, client: Any, run_id: str, pipeline_run_id: str,
                 experiment_name: str) -> None:
        self._client = client
        self.id = run_id
        self.pipeline_run_id = pipeline_run_id
        self.experiment_name = experiment_name

    def _targets(self) -> List[str]:
        return list(dict.fromkeys([self.id, self.pipeline_run_id]))

    def log_metric(self, name: str, value: float) -> None:
        for run_id in self._targets():
            self._client.log_metric(run_id, name, float(value))

    def log_params(self, params: Mapping[str, Any]) -> None:
        for key, value in params.items():
            self._client.log_param(self.id, key, value)

    def set_pipeline_tags(self, tags: Mapping[str, str]) -> None:
        for run_id in self._targets():
            for key, value in tags.items():
                self._client.set_tag(run_id, key, str(value))

    def get_pipeline_metrics(self) -> Dict[str, float]:
        return dict(self._client.get_run(self.pipeline_run_id).data.metrics)

    def get_pipeline_tags(self) -> Dict[str, str]:
        tags = self._client.get_run(self.pipeline_run_id).data.tags
        return {k: v for k, v in tags.items() if not k.startswith("mlflow.")}

    def cancel_pipeline(self, reason: str) -> None:
        self._client.set_tag(self.pipeline_run_id, CANCEL_TAG, reason)
        self._client.set_terminated(self.pipeline_run_id, "KILLED")

    def log_artifact(self, path: Path, artifact_path: str = "") -> None:
        path = Path(path)
        if path.is_dir():
            # A folder keeps its name among the run's artifacts, as a file does.
            target = "/".join(part for part in (artifact_path.strip("/"), path.name) if part)
            self._client.log_artifacts(self.id, str(path), target)
        else:
            self._client.log_artifact(self.id, str(path), artifact_path or None)


class LocalBackend(Backend):
    """Runs and models in MLflow on SQLite, datasets and deployments in files."""

    name = "local"

    def __init__(self, root: Path, experiment_name: str = "mlopspython",
                 scoring_port: int = 0) -> None:
        self.root = Path(root).resolve()
        self.experiment_name = experiment_name
        self.scoring_port = scoring_port
        self._mlflow_client = None

    # -- MLflow plumbing -------------------------------------------------
    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking and registry URI of this store."""
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def client(self) -> Any:
        """The MLflow client, created (and the store initialised) on first use."""
        if self._mlflow_client is None:
            self.root.mkdir(parents=True, exist_ok=True)
            initialise_store(self.root / "mlflow.db", self.root / "artifacts")
            # Imported here: mlflow is slow to import and only the local backend needs it.
            from mlflow.tracking import MlflowClient

            self._mlflow_client = MlflowClient(tracking_uri=self.tracking_uri,
                                               registry_uri=self.tracking_uri)
        return self._mlflow_client

    def experiment_id(self, name: Optional[str] = None) -> str:
        """Return the id of an experiment, creating it with its artifacts in this root."""
        name = name or self.experiment_name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = (self.root / "artifacts").as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def _get_run(self, run_id: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException as err:
            raise RunNotFoundError(f"no run with id {run_id!r} in {self.tracking_uri}") from err

    # -- pipeline runs (used by the local executor) ------------------------
    def start_pipeline_run(self, pipeline_name: str, parameters: Mapping[str, Any],
                           tags: Optional[Mapping[str, str]] = None) -> str:
        """Create a running pipeline run with its parameters; return its id."""
        all_tags = {PIPELINE_TAG: pipeline_name, **(tags or {})}
        run = self.client.create_run(self.experiment_id(), run_name=pipeline_name,
                                     tags=all_tags)
        for key, value in parameters.items():
            self.client.log_param(run.info.run_id, key, value)
        return run.info.run_id

    def pipeline_run_status(self, run_id: str) -> str:
        """Return the MLflow status of a run: RUNNING, FINISHED, FAILED or KILLED."""
        return self._get_run(run_id).info.status

    def end_pipeline_run(self, run_id: str, status: str) -> None:
        """Mark a pipeline run finished, failed or killed."""
        self.client.set_terminated(run_id, status)

    def get_run_tags(self, run_id: str) -> Dict[str, str]:
        """Return a run's tags."""
        return dict(self._get_run(run_id).data.tags)

    def list_step_runs(self, pipeline_run_id: str) -> List[Any]:
        """Return the step runs nested under a pipeline run, oldest first."""
        run = self._get_run(pipeline_run_id)
        return list(reversed(self.client.search_runs(
            [run.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{pipeline_run_id}'")))

    # -- runs --------------------------------------------------------------
    @contextmanager
    def step_run(self, step_name: str, run_id: Optional[str] = None) -> Iterator[StepRun]:
        pipeline_run_id = run_id or os.environ.get(ENV_PIPELINE_RUN_ID) or None
        owns_pipeline_run = pipeline_run_id is None
        if owns_pipeline_run:
            pipeline_run_id = self.start_pipeline_run(f"{step_name} (standalone)", {})
            experiment_id = self.experiment_id()
            experiment_name = self.experiment_name
        else:
            experiment_id = self._get_run(pipeline_run_id).info.experiment_id
            experiment_name = self.client.get_experiment(experiment_id).name
        run = self.client.create_run(experiment_id, run_name=step_name,
                                     tags={PARENT_TAG: pipeline_run_id, STEP_TAG: step_name})
        step = LocalStepRun(self.client, run.info.run_id, pipeline_run_id, experiment_name)
        try:
            yield step
        except BaseException:
            self.client.set_terminated(step.id, "FAILED")
            if owns_pipeline_run:
                self.client.set_terminated(pipeline_run_id, "FAILED")
            raise
        self.client.set_terminated(step.id, "FINISHED")
        if owns_pipeline_run and self.pipeline_run_status(pipeline_run_id) == "RUNNING":
            self.client.set_terminated(pipeline_run_id, "FINISHED")

    def get_run_metrics(self, run_id: str) -> Dict[str, float]:
        return dict(self._get_run(run_id).data.metrics)

    def artifact_path(self, run_id: str, relative: str) -> Path:
        """Where a run's artifact is on this machine."""
        return file_uri_to_path(self._get_run(run_id).info.artifact_uri) / relative

    # -- datasets ----------------------------------------------------------
    def _dataset_dir(self, name: str) -> Path:
        return self.root / "datasets" / check_name("dataset", name)

    def _dataset_versions(self, name: str) -> List[int]:
        folder = self._dataset_dir(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir()
                      if p.name.isdigit() and (p / DATA_FILE).is_file())

    def find_dataset(self, name: str, version: str = LATEST) -> Optional[DatasetVersion]:
        versions = self._dataset_versions(name)
        if not versions:
            return None
        if str(version).strip().lower() == LATEST:
            number = versions[-1]
        else:
            try:
                number = int(version)
            except ValueError as err:
                raise ConfigurationError(
                    f"bad dataset version {version!r}: use a number or {LATEST!r}") from err
            if number not in versions:
                return None
        meta_path = self._dataset_dir(name) / str(number) / "dataset.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        return DatasetVersion(name, number, meta.get("description", ""))

    def register_dataset(self, name: str, file_path: Path, description: str = "",
                         frame: Optional[pd.DataFrame] = None) -> DatasetVersion:
        """Copy the CSV file into the next version folder; with ``frame``, the file as
        read_csv read it, also write its columnar copy (data.parquet) from it, so the file is
        not parsed again. The version appears whole, with or without the copy, or not at all.
        """
        file_path = Path(file_path)
        if not file_path.is_file():
            raise DatasetNotFoundError(f"cannot register dataset {name!r}: "
                                       f"no file at {file_path}")
        folder = self._dataset_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        # Stage the copy beside its final place, then rename: no half-written version.
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
        try:
            shutil.copyfile(file_path, staging / DATA_FILE)
            if frame is not None and same_content(frame, file_path):
                write_columnar_copy(staging, frame, csv_fingerprint(staging / DATA_FILE))
            while True:
                number = (self._dataset_versions(name) or [0])[-1] + 1
                meta = {"name": name, "version": number, "description": description,
                        "source": str(file_path.resolve()),
                        "registered": datetime.now(timezone.utc).isoformat()}
                (staging / "dataset.json").write_text(json.dumps(meta, indent=2))
                try:
                    staging.rename(folder / str(number))
                    break
                except OSError:
                    if not (folder / str(number)).exists():
                        raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        LOGGER.info("Registered dataset %s version %d from %s", name, number, file_path)
        return DatasetVersion(name, number, description)

    def dataset_path(self, dataset: DatasetVersion) -> Path:
        """Return the CSV file of a registered dataset version."""
        return self._dataset_dir(dataset.name) / str(dataset.version) / DATA_FILE

    def load_dataset(self, dataset: DatasetVersion) -> pd.DataFrame:
        """The version's data: from its columnar copy while that is sound and matches
        data.csv, else from data.csv, and then the copy is written again for the next load."""
        csv_path = self.dataset_path(dataset)
        frame = read_columnar_copy(csv_path.parent)
        if frame is not None:
            return frame
        fingerprint = csv_fingerprint(csv_path) if csv_path.is_file() else b""
        frame = read_csv(csv_path)
        write_columnar_copy(csv_path.parent, frame, fingerprint)
        return frame

    def read_data_file(self, file_path: str) -> pd.DataFrame:
        return read_csv(Path(file_path))

    # -- models ------------------------------------------------------------
    @staticmethod
    def _model_version(mv: Any) -> ModelVersion:
        return ModelVersion(mv.name, int(mv.version), mv.run_id, dict(mv.tags or {}))

    def get_production_model(self, name: str) -> Optional[ModelVersion]:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(name, PRODUCTION_ALIAS)
        except MlflowException:
            return None
        return self._model_version(mv)

    def get_model(self, name: str, version: int) -> ModelVersion:
        """Return one registered version of a model."""
        from mlflow.exceptions import MlflowException

        try:
            return self._model_version(self.client.get_model_version(name, str(version)))
        except MlflowException as err:
            raise ModelNotFoundError(f"no model {name!r} version {version}") from err

    def list_models(self, name: str, run_id: Optional[str] = None) -> List[ModelVersion]:
        query = f"name = '{name}'" + (f" and run_id = '{run_id}'" if run_id else "")
        found = [self._model_version(mv) for mv in self.client.search_model_versions(query)]
        return sorted(found, key=lambda m: m.version)

    def register_model(self, name: str, model_path: Path, run_id: str,
                       tags: Mapping[str, str],
                       dataset: Optional[DatasetVersion] = None) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        model_path = Path(model_path)
        if not model_path.exists():
            raise ModelNotFoundError(f"no model at {model_path}")
        self._get_run(run_id)
        existing = self.list_models(name, run_id=run_id)
        if existing:
            raise ModelAlreadyRegisteredError(
                f"model {name!r} version {existing[0].version} is already registered for "
                f"run {run_id}; a run registers at most one model: start a new pipeline run")
        try:
            self.client.create_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        # An MLflow model folder is the version's source itself (models:/name@alias loads
        # it); a single file (the format before) is stored in a folder of its own.
        if model_path.is_dir():
            self.client.log_artifacts(run_id, str(model_path), MODEL_ARTIFACT)
        else:
            self.client.log_artifact(run_id, str(model_path), MODEL_ARTIFACT)
        source = f"{self._get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT}"
        all_tags = dict(tags)
        if dataset is not None:
            all_tags.update({"dataset_name": dataset.name,
                             "dataset_version": str(dataset.version)})
        mv = self.client.create_model_version(name, source, run_id=run_id, tags=all_tags)
        LOGGER.info("Registered model %s version %s for run %s", name, mv.version, run_id)
        return self._model_version(mv)

    def set_production_model(self, name: str, version: int) -> None:
        self.get_model(name, version)
        self.client.set_model_version_tag(name, str(version), PRODUCTION_SINCE_TAG,
                                          promotion_time())
        self.client.set_registered_model_alias(name, PRODUCTION_ALIAS, str(version))
        LOGGER.info("Model %s version %s is now %r", name, version, PRODUCTION_ALIAS)

    def download_model(self, model: ModelVersion, target_dir: Path) -> Path:
        source = self.client.get_model_version(model.name, str(model.version)).source
        source_dir = file_uri_to_path(source)
        target_dir = Path(target_dir)
        if (source_dir / MLMODEL_FILE).is_file():
            target = target_dir / source_dir.name
            shutil.copytree(source_dir, target, dirs_exist_ok=True)
            return target
        files = sorted(p for p in source_dir.iterdir() if p.is_file()) \
            if source_dir.is_dir() else []
        if len(files) != 1:
            raise ModelNotFoundError(
                f"model {model.name} version {model.version}: expected an MLflow model "
                f"folder or one file in {source_dir}, found {len(files)} files")
        target_dir.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(files[0], target_dir / files[0].name))

    # -- published pipelines ---------------------------------------------
    def _published_dir(self, name: str) -> Path:
        return self.root / "published_pipelines" / check_name("pipeline", name)

    def publish_pipeline(self, definition: PipelineDefinition, version: str,
                         description: str = "") -> PublishedPipeline:
        """Store the definition under its name and version; republishing replaces it."""
        problems = definition.validate()
        if problems:
            raise ConfigurationError(f"pipeline {definition.name!r} is not valid: "
                                     + "; ".join(problems))
        version = check_name("pipeline version", str(version))
        folder = self._published_dir(definition.name)
        folder.mkdir(parents=True, exist_ok=True)
        existing = self.list_published_pipelines(definition.name, version)
        published = PublishedPipeline(existing[0].id if existing else uuid.uuid4().hex,
                                      definition.name, version, description)
        record = {"id": published.id, "name": published.name, "version": version,
                  "description": description,
                  "published": datetime.now(timezone.utc).isoformat(),
                  "definition": definition_to_dict(definition)}
        tmp = folder / f".{version}.json.tmp"
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(folder / f"{version}.json")
        LOGGER.info("Published pipeline %s version %s (id %s)", published.name, version,
                    published.id)
        return published

    def _published_records(self, name: str) -> List[Dict[str, Any]]:
        folder = self._published_dir(name)
        if not folder.is_dir():
            return []
        return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]

    def list_published_pipelines(self, name: str,
                                 version: Optional[str] = None) -> List[PublishedPipeline]:
        return [PublishedPipeline(r["id"], r["name"], r["version"], r.get("description", ""))
                for r in self._published_records(name)
                if version is None or r["version"] == str(version)]

    def get_published_definition(self, published: PublishedPipeline) -> PipelineDefinition:
        """The definition stored for a published pipeline."""
        for record in self._published_records(published.name):
            if record["id"] == published.id:
                return definition_from_dict(record["definition"])
        raise ConfigurationError(f"no published pipeline with id {published.id}")

    def submit_pipeline(self, published: PublishedPipeline, parameters: Mapping[str, str],
                        tags: Mapping[str, str], wait: bool = False) -> PipelineRun:
        """Run the published pipeline with the local executor (always to the end)."""
        # Imported here: the executor itself builds on this backend.
        from ml_service.pipelines.local_executor import execute

        definition = self.get_published_definition(published)
        result = execute(definition, self, parameters,
                         {**tags, "published_pipeline_id": published.id})
        return PipelineRun(result.run_id, result.status)

    # -- deployments -------------------------------------------------------
    def _service_dir(self, service_name: str) -> Path:
        return self.root / "deployments" / check_name("service", service_name)

    @contextmanager
    def _service_lock(self, service_name: str) -> Iterator[Path]:
        """Serialise deploy and stop of one service across processes; yield its folder."""
        service_dir = self._service_dir(service_name)
        service_dir.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(service_dir.parent / f".{service_name}.lock"):
            yield service_dir

    def collected_dir(self) -> Path:
        """Where the local services' collectors write (one folder per service and day)."""
        return self.root / "monitoring"

    def collection_environment(self, service_name: str, model: ModelVersion
                               ) -> Dict[str, str]:
        """The scoring server's collector: the local store, unless MLOPS_COLLECTOR says
        otherwise (``off``, or ``log`` for the server's log)."""
        return {COLLECTOR_VARIABLE: os.environ.get(COLLECTOR_VARIABLE) or "local",
                FOLDER_VARIABLE: str(self.collected_dir()), SERVICE_VARIABLE: service_name,
                MODEL_NAME_VARIABLE: model.name, MODEL_VERSION_VARIABLE: str(model.version)}

    def deploy_model(self, model: ModelVersion, service_name: str,
                     spec: ServiceSpec) -> Deployment:
        """Replace the service: one deploy at a time per service, and a server is either
        recorded or stopped, even when the deploy is interrupted."""
        with self._service_lock(service_name) as service_dir:
            local_server.stop_server(service_dir)
            shutil.rmtree(service_dir, ignore_errors=True)
            # The Azure ML container layout: <model dir>/<name>/<version>/<file>.
            self.download_model(model, service_dir / "model" / model.name / str(model.version))
            record = local_server.start_server(
                spec.entry_script, service_dir, self.scoring_port,
                environment=self.collection_environment(service_name, model))
            record.update({"name": service_name, "model_name": model.name,
                           "model_version": model.version})
            try:
                local_server.write_record(service_dir, record)
            except BaseException:
                local_server.terminate(record["pid"])
                raise
        return Deployment(service_name, record["scoring_uri"], model.name, model.version)

    def get_deployment(self, service_name: str) -> Optional[Deployment]:
        record = local_server.read_record(self._service_dir(service_name))
        if record is None or not local_server.is_running(record):
            return None
        return Deployment(service_name, record["scoring_uri"], record["model_name"],
                          int(record["model_version"]))

    def delete_deployment(self, service_name: str) -> bool:
        with self._service_lock(service_name) as service_dir:
            return local_server.stop_server(service_dir)


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV file with pandas; raise DatasetNotFoundError or ValueError with the file
    named. The frame's ``attrs`` record which file, and which version of it, it holds:
    register_dataset takes its columnar copy from the frame only while the file is still
    that version (see same_content)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"no data file at {path}")
    source = {"path": str(path.resolve()), **file_stamp(path)}
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{path} is empty: it needs a header row and data rows") from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable CSV file: {err}") from err
    frame.attrs[SOURCE_ATTR] = {**source, "shape": list(frame.shape)}
    return frame


def file_stamp(path: Path) -> Dict[str, int]:
    """What tells one version of a file from another without reading it."""
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino,
            "device": stat.st_dev}


def same_content(frame: pd.DataFrame, file_path: Path) -> bool:
    """True when ``frame`` is the file as read_csv read it and the file is unchanged since.

    False (logged) for a frame read_csv did not read; ValueError for one read from another
    file or cut since; DataFileChangedError when the file changed after it was read, so
    what was checked is not what would be registered.
    """
    source = frame.attrs.get(SOURCE_ATTR)
    if not isinstance(source, dict):
        LOGGER.debug("The frame given for %s was not read by read_csv: its columnar copy is "
                     "written when it is first loaded", file_path)
        return False
    file_path = Path(file_path)
    if source.get("path") != str(file_path.resolve()) or source.get("shape") != list(
            frame.shape):
        raise ValueError(f"the frame given with {file_path} is not that file as read_csv "
                         f"read it (it was read from {source.get('path')}, "
                         f"{source.get('shape')} rows and columns, and is now "
                         f"{list(frame.shape)}): pass the frame read_csv returned, or none")
    now = file_stamp(file_path)
    if any(source.get(key) != value for key, value in now.items()):
        raise DataFileChangedError(
            f"{file_path} changed after it was read ({source.get('size')} bytes then, "
            f"{now['size']} now): the data checked is not the data that would be "
            "registered; run the step again once nothing writes to the file")
    return True


def csv_fingerprint(csv_path: Path) -> bytes:
    """Size and modification time of a version's data.csv, kept in its columnar copy: a
    copy whose fingerprint differs was not made from this file and is not used."""
    stamp = file_stamp(csv_path)
    return json.dumps({"size": stamp["size"], "mtime_ns": stamp["mtime_ns"]}).encode()


def columnar_copy_possible(frame: pd.DataFrame) -> bool:
    """A frame whose Parquet copy reads back identical: numbers or booleans in numpy
    columns with distinct text names, on the default row index."""
    index = frame.index
    return (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
            and frame.columns.is_unique and all(isinstance(c, str) for c in frame.columns)
            and all(isinstance(d, np.dtype) and d.kind in "biuf" for d in frame.dtypes))


def write_columnar_copy(folder: Path, frame: pd.DataFrame, fingerprint: bytes) -> bool:
    """Write ``frame`` as ``folder/data.parquet`` (a temporary file renamed into place) with
    the fingerprint of the data.csv it holds; return False, logged, when it cannot be: the
    CSV file stays the data, the copy only saves parsing it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not fingerprint or not columnar_copy_possible(frame):
        LOGGER.debug("No columnar copy of the data in %s: it is read from its CSV file", folder)
        return False
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{CACHE_FILE}.",
                                             suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            table = pa.Table.from_pandas(without_attrs(frame))
            metadata = {**(table.schema.metadata or {}), CACHE_SOURCE_KEY: fingerprint}
            pq.write_table(table.replace_schema_metadata(metadata), out,
                           compression="none", use_dictionary=False,
                           write_page_checksum=True)
        # mkstemp makes the file private: give it the permissions of the CSV file it copies.
        os.chmod(temporary, (folder / DATA_FILE).stat().st_mode & 0o777)
        os.replace(temporary, folder / CACHE_FILE)
        return True
    except (pa.ArrowException, OSError) as err:
        LOGGER.warning("Could not write the columnar copy of the data in %s (%s): it is read "
                       "from its CSV file", folder, err)
        return False
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)


def without_attrs(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame without its ``attrs`` (pyarrow would store them in the copy), not copied."""
    plain = frame.copy(deep=False)
    plain.attrs = {}
    return plain


def read_columnar_copy(folder: Path) -> Optional[pd.DataFrame]:
    """The data of ``folder/data.parquet`` if it is there, intact and made from the
    folder's data.csv as it is now; None (a damaged or outdated copy logged) otherwise."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / CACHE_FILE
    csv_path = folder / DATA_FILE
    if not path.is_file() or not csv_path.is_file():
        return None
    try:
        with pq.ParquetFile(path, page_checksum_verification=True) as parquet:
            made_from = (parquet.schema_arrow.metadata or {}).get(CACHE_SOURCE_KEY)
            if made_from != csv_fingerprint(csv_path):
                LOGGER.warning("The columnar copy %s was not made from %s as it is now: "
                               "reading the CSV file", path, csv_path)
                return None
            return table_to_frame(parquet.read())
    except (pa.ArrowException, OSError, ValueError, KeyError) as err:
        LOGGER.warning("The columnar copy %s is unreadable (%s): reading %s instead", path,
                       err, csv_path)
        return None


def table_to_frame(table: Any) -> pd.DataFrame:
    """The table as a frame, column by column without copying where pandas can share
    pyarrow's memory; the memory pyarrow freed is given back, not kept beside the frame."""
    import pyarrow as pa

    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    pa.default_memory_pool().release_unused()
    return frame
