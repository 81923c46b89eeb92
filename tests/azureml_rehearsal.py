"""Rehearse Azure ML step runs offline: the real SDK v1 classes over a faked service.

The step scripts run under the Azure ML backend in the layout of a real run: the working
directory is the step's snapshot, and the PipelineData folders are elsewhere (Azure ML
mounts them). The SDK does all its own local work: ``Model.register`` checks and collects
the model path, ``Model.download`` lays the files out, datasets are serialised to the
service's records and rebuilt from them, the datastore uploads and downloads through its
own code, and every frame a step reads is read by azureml-dataprep with the column types
it learns from the data.

What is faked is what answers over HTTP, each an autospec (``spec_set=True``) of the SDK's
own client whose methods act on ``AzureMLService``, state that outlives one step:

- the model management, artifact and asset REST clients, and the download of a file by
  its SAS URL;
- the dataset REST client's register and get, the GET of a saved dataset's definition,
  and the workspace's default datastore;
- the blob container (``BlobServiceClient``), kept as files in a folder;
- the run history: ``Run.get_context()`` gives an autospec of ``Run`` whose metrics, tags
  and uploaded files are kept per run.

One SDK function is replaced although it is not HTTP: ``from_delimited_files`` learns
column types by reading the file through the service's data access, which cannot run
here. Its stand-in builds the same dataflow on the container's copy of the file, with
the types dataprep learns from it, so a registered version reads its file lazily as the
real one does.
"""
import copy
import itertools
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence
from unittest.mock import create_autospec

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azureml._vendor.azure_storage.blob import (BlobClient, BlobProperties,
                                                BlobServiceClient, ContainerClient,
                                                StorageStreamDownloader)
from azureml._restclient.artifacts_client import ArtifactsClient
from azureml._restclient.assets_client import AssetsClient
from azureml._restclient.models import Model as ModelRecord
from azureml._restclient.models.asset import Asset
from azureml._restclient.models.dataset_dto import DatasetDto
from azureml._restclient.models.dataset_reference import DatasetReference
from azureml._restclient.models import PaginatedResultDatasetDto
from azureml._restclient.models_client import ModelsClient
from azureml._restclient.operations.dataset_operations import DatasetOperations
from azureml._restclient.rest_client import RestClient
from azureml.core import Experiment, Run
from azureml.core import model as sdk_model
from azureml.data import TabularDataset, _dataset_rest_helper, abstract_dataset
from azureml.data.azure_storage_datastore import AzureBlobDatastore
from azureml.data.dataset_factory import TabularDatasetFactory
from azureml.data.datastore_client import _DatastoreClient
from azureml.exceptions import WebserviceException
from msrest.exceptions import HttpOperationError

from tests.azureml_offline import offline_workspace

EXPERIMENT = "mlopspython"
DATASTORE = "workspaceblobstore"


def learnt_tabular_dataset(path: Path) -> TabularDataset:
    """A TabularDataset reading a local CSV with the column types dataprep learns from it,
    as ``Dataset.Tabular.from_delimited_files`` builds it (its default infers types)."""
    import azureml.dataprep as dataprep

    flow = dataprep.read_csv(str(path), verify_exists=False, infer_column_types=False)
    types = flow.builders.set_column_types()
    types.learn()
    return TabularDataset._create(types.to_dataflow())


@dataclass
class RunRecord:
    """What the run history holds for one run."""

    run_id: str
    parent_id: Optional[str]
    metrics: Dict[str, List[Any]] = field(default_factory=dict)
    tags: Dict[str, str] = field(default_factory=dict)
    files: Dict[str, bytes] = field(default_factory=dict)
    cancelled: bool = False


class _RunSpec(Run):
    """Run, with the attributes the SDK sets in its constructor or as properties."""

    id = "run"
    parent = None
    experiment = Experiment


class _RestClientSpec(RestClient):
    """The dataset service's REST client, with the operations its constructor sets."""

    dataset = DatasetOperations


class _HttpResponse:
    """Enough of a response for the SDK's error handling (it reads the status code)."""

    def __init__(self, status_code: int, reason: str) -> None:
        self.status_code = status_code
        self.reason = reason
        self.text = reason

    def raise_for_status(self) -> None:
        """msrest's HttpOperationError calls it to build its message."""


class AzureMLService:
    """The workspace's service and blob container, in memory and in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.container = self.root / "blob-container"
        self.container.mkdir(parents=True, exist_ok=True)
        self.workspace = offline_workspace()
        self.artifacts: Dict[str, bytes] = {}
        self.assets: Dict[str, Asset] = {}
        self.models: Dict[str, ModelRecord] = {}
        self.datasets: Dict[str, List[DatasetDto]] = {}
        self.saved_dataflows: Dict[str, str] = {}
        self.runs: Dict[str, RunRecord] = {}
        self.current_run: Optional[Any] = None
        self._ids = itertools.count(1)
        self.datastore = AzureBlobDatastore(self.workspace, DATASTORE, "azureml-blobstore",
                                            "account", account_key="a2V5")
        self.datastore.blob_service = self._blob_service()

    # -- blob container -----------------------------------------------------------
    def blob_path(self, name: str) -> Path:
        return self.container / name

    def _blob_client(self, container: str, blob: str) -> Any:
        client = create_autospec(BlobClient, spec_set=True, instance=True)
        path = self.blob_path(blob)

        def upload_blob(data, blob_type="BlockBlob", overwrite=False, **_):
            if path.exists() and not overwrite:
                raise ResourceExistsError(f"The specified blob already exists: {blob}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.read() if hasattr(data, "read") else bytes(data))

        def download_blob(*_, **__):
            if not path.is_file():
                raise ResourceNotFoundError(f"The specified blob does not exist: {blob}")
            downloader = create_autospec(StorageStreamDownloader, spec_set=True, instance=True)
            downloader.readall.return_value = path.read_bytes()
            return downloader

        client.exists.side_effect = lambda **_: path.is_file()
        client.upload_blob.side_effect = upload_blob
        client.download_blob.side_effect = download_blob
        return client

    def _blob_service(self) -> Any:
        service = create_autospec(BlobServiceClient, spec_set=True, instance=True)
        service.get_blob_client.side_effect = \
            lambda container, blob, **_: self._blob_client(container, blob)

        def container_client(container, **_):
            client = create_autospec(ContainerClient, spec_set=True, instance=True)

            def list_blobs(name_starts_with=None, **__):
                found = []
                for path in sorted(p for p in self.container.rglob("*") if p.is_file()):
                    name = path.relative_to(self.container).as_posix()
                    if name.startswith(name_starts_with or ""):
                        found.append(BlobProperties(
                            name=name, **{"Content-Length": path.stat().st_size}))
                return iter(found)

            client.list_blobs.side_effect = list_blobs
            return client

        service.get_container_client.side_effect = container_client
        return service

    def write_blob(self, name: str, data: bytes) -> None:
        """Someone writes a file to the datastore (overwriting what was there)."""
        path = self.blob_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    # -- models -------------------------------------------------------------------
    def _upload_artifacts(self, paths, origin, container, names=None, **_):
        for path, name in zip(paths, names or paths):
            self.artifacts[f"{origin}/{container}/{name}"] = Path(path).read_bytes()

    def _files_by_prefix(self, prefix_id: str) -> List[tuple]:
        origin, container, prefix = prefix_id.split("/", 2)
        start = f"{origin}/{container}/"
        return [(key[len(start):], f"https://artifacts.invalid/{key}")
                for key in sorted(self.artifacts)
                if key.startswith(start) and (key[len(start):] == prefix
                                              or key[len(start):].startswith(prefix + "/"))]

    def _download_file(self, source_uri, path=None, *_, **__):
        key = source_uri[len("https://artifacts.invalid/"):]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(self.artifacts[key])

    def _create_asset(self, model_name, artifact_values, metadata_dict, **_):
        asset_id = uuid.uuid4().hex
        self.assets[asset_id] = Asset(id=asset_id, name=model_name, artifacts=[
            _artifact(value["prefix"]) for value in artifact_values])
        return copy.deepcopy(self.assets[asset_id])

    def _get_asset(self, asset_id):
        return copy.deepcopy(self.assets[asset_id])

    def _register_model(self, name, tags=None, url=None, datasets=None, **_):
        version = 1 + max((m.version for m in self.models.values() if m.name == name),
                          default=0)
        references = [DatasetReference(name=d["name"], id=d["id"]) for d in datasets or []]
        record = ModelRecord(id=f"{name}:{version}", name=name, version=version,
                             kv_tags=dict(tags or {}), url=url, datasets=references,
                             mime_type="application/octet-stream", unpack=False,
                             created_time=None)
        self.models[record.id] = record
        return copy.deepcopy(record)

    def _get_model(self, model_id):
        if model_id not in self.models:
            raise WebserviceException(f"ModelNotFound: {model_id}")
        return copy.deepcopy(self.models[model_id])

    def _query_models(self, name=None, tags=None, run_id=None, **_):
        wanted = [tag.split("=", 1) for tag in tags.split(",")] if tags else []
        found = [copy.deepcopy(m) for m in self.models.values()
                 if (name is None or m.name == name)
                 and all((m.kv_tags or {}).get(k) == v for k, v in wanted)]
        return iter(sorted(found, key=lambda m: -m.version))

    def _patch_model(self, model_id, body=None):
        for operation in body:
            if operation["path"] == "/kvTags":
                self.models[model_id].kv_tags = dict(operation["value"])

    def model_files(self, name: str, version: int) -> Dict[str, bytes]:
        """The files registered for a model version, by their path in the model."""
        asset_id = self.models[f"{name}:{version}"].url[len("aml://asset/"):]
        prefix = self.assets[asset_id].artifacts[0].prefix
        return {path: self.artifacts[f"{prefix.split('/', 2)[0]}/{prefix.split('/', 2)[1]}/"
                                     f"{path}"]
                for path, _ in self._files_by_prefix(prefix)}

    # -- datasets -----------------------------------------------------------------
    def _register_dataset(self, subscription_id, resource_group_name, workspace_name,
                          dataset_dto=None, **_):
        versions = self.datasets.setdefault(dataset_dto.name, [])
        record = copy.deepcopy(dataset_dto)
        record.dataset_id = versions[0].dataset_id if versions else uuid.uuid4().hex
        record.latest.version_id = str(len(versions) + 1)
        record.latest.saved_dataset_id = uuid.uuid4().hex
        self.saved_dataflows[record.latest.saved_dataset_id] = record.latest.dataflow
        versions.append(record)
        return copy.deepcopy(record)

    def _get_dataset(self, subscription_id, resource_group_name, workspace_name,
                     dataset_name, version_id=None, **_):
        versions = self.datasets.get(dataset_name, [])
        if not versions or (version_id is not None and not 1 <= int(version_id) <= len(versions)):
            raise HttpOperationError(_Deserializer(), _HttpResponse(404, "Not Found"))
        return copy.deepcopy(versions[-1 if version_id is None else int(version_id) - 1])

    def _datasets_by_saved_id(self, subscription_id, resource_group_name, workspace_name,
                              saved_dataset_id, **_):
        found = [copy.deepcopy(version) for versions in self.datasets.values()
                 for version in versions if version.latest.saved_dataset_id == saved_dataset_id]
        return PaginatedResultDatasetDto(value=found[:1])

    def _fetch_dataflow(self, workspace, fetch_id):
        # The service's answer to GET .../saveddatasets/<id>: the definition it stored.
        return self.saved_dataflows[fetch_id[len("unregistered-"):]]

    def _from_delimited_files(self, path, validate=True, include_path=False,
                              infer_column_types=True, **_):
        (datastore, datastore_path), = path
        assert datastore.name == DATASTORE and infer_column_types
        return learnt_tabular_dataset(self.blob_path(datastore_path))

    # -- runs ---------------------------------------------------------------------
    def new_run(self, parent: Optional[Any] = None) -> Any:
        """A run in the run history (a pipeline run, or a step run under ``parent``)."""
        record = RunRecord(f"run-{next(self._ids)}", parent.id if parent else None)
        self.runs[record.run_id] = record
        run = create_autospec(_RunSpec, spec_set=True, instance=True)
        run.id = record.run_id
        run.parent = parent
        run.experiment = create_autospec(Experiment, spec_set=True, instance=True)
        run.experiment.name = EXPERIMENT
        run.experiment.workspace = self.workspace
        run.log.side_effect = lambda name, value, description="", step=None: \
            record.metrics.setdefault(name, []).append(value)
        run.tag.side_effect = lambda key, value=None: record.tags.update({key: str(value)})
        run.set_tags.side_effect = lambda tags: record.tags.update(
            {k: str(v) for k, v in tags.items()})
        run.get_tags.side_effect = lambda: dict(record.tags)
        run.get_metrics.side_effect = lambda *_, **__: {
            k: (v[0] if len(v) == 1 else list(v)) for k, v in record.metrics.items()}
        run.cancel.side_effect = lambda: setattr(record, "cancelled", True)

        def upload_file(name, path_or_stream, datastore_name=None):
            record.files[name] = Path(path_or_stream).read_bytes()

        def upload_folder(name, path, datastore_name=None):
            for file in Path(path).rglob("*"):
                if file.is_file():
                    record.files[f"{name}/{file.relative_to(path).as_posix()}"] = \
                        file.read_bytes()

        run.upload_file.side_effect = upload_file
        run.upload_folder.side_effect = upload_folder
        return run

    # -- wiring -------------------------------------------------------------------
    def install(self, monkeypatch) -> None:
        """Put the fakes where the SDK looks them up."""
        models = create_autospec(ModelsClient, spec_set=True)
        models.return_value.register_model.side_effect = self._register_model
        models.return_value.get_by_id.side_effect = self._get_model
        models.return_value.query.side_effect = self._query_models
        models.return_value.patch.side_effect = self._patch_model
        artifacts = create_autospec(ArtifactsClient, spec_set=True)
        artifacts.return_value.upload_files.side_effect = self._upload_artifacts
        artifacts.return_value.get_files_by_artifact_prefix_id.side_effect = \
            self._files_by_prefix
        assets = create_autospec(AssetsClient, spec_set=True)
        assets.return_value.create_asset.side_effect = self._create_asset
        assets.return_value.get_asset_by_id.side_effect = self._get_asset
        monkeypatch.setattr(sdk_model, "ModelsClient", models)
        monkeypatch.setattr(sdk_model, "ArtifactsClient", artifacts)
        # model.py imports AssetsClient at the top, and again inside Model._get_asset.
        monkeypatch.setattr(sdk_model, "AssetsClient", assets)
        monkeypatch.setattr("azureml._restclient.assets_client.AssetsClient", assets)
        monkeypatch.setattr(sdk_model, "download_file", create_autospec(
            sdk_model.download_file, spec_set=True, side_effect=self._download_file))
        monkeypatch.setattr(sdk_model, "_get_mms_url", create_autospec(
            sdk_model._get_mms_url, spec_set=True, return_value="https://mms.invalid"))

        rest = create_autospec(_RestClientSpec, spec_set=True, instance=True)
        rest.dataset.register.side_effect = self._register_dataset
        rest.dataset.get_dataset_by_name.side_effect = self._get_dataset
        rest.dataset.get_datasets_by_saved_dataset_id.side_effect = self._datasets_by_saved_id
        for module in (abstract_dataset, _dataset_rest_helper):
            monkeypatch.setattr(module, "_restclient", create_autospec(
                _dataset_rest_helper._restclient, spec_set=True, return_value=rest))
        monkeypatch.setattr(_dataset_rest_helper, "_fetch_rslex_dataflow_yaml", create_autospec(
            _dataset_rest_helper._fetch_rslex_dataflow_yaml, spec_set=True,
            side_effect=self._fetch_dataflow))
        monkeypatch.setattr(_DatastoreClient, "get_default", create_autospec(
            _DatastoreClient.get_default, spec_set=True, return_value=self.datastore))
        monkeypatch.setattr(TabularDatasetFactory, "from_delimited_files", create_autospec(
            TabularDatasetFactory.from_delimited_files, spec_set=True,
            side_effect=self._from_delimited_files))
        monkeypatch.setattr(Run, "get_context", create_autospec(
            Run.get_context, spec_set=True, side_effect=lambda *_, **__: self.current_run))
        monkeypatch.setenv("MLOPS_BACKEND", "azureml")

    @contextmanager
    def step(self, pipeline_run: Any, snapshot: Path) -> Iterator[Any]:
        """Inside: the current run is a new step run of ``pipeline_run``, and the working
        directory is the step's snapshot, as on Azure ML compute."""
        before = os.getcwd()
        self.current_run = self.new_run(parent=pipeline_run)
        os.chdir(snapshot)
        try:
            yield self.current_run
        finally:
            os.chdir(before)
            self.current_run = None


class _Deserializer:
    """msrest's HttpOperationError asks its deserializer for the error model."""

    def __call__(self, *_: Any, **__: Any) -> None:
        return None


def _artifact(prefix: str) -> Any:
    from azureml._restclient.models.artifact import Artifact

    return Artifact(prefix=prefix)


def run_step(service: AzureMLService, pipeline_run: Any, snapshot: Path,
             main: Callable[[Optional[Sequence[str]]], int], argv: Sequence[str]) -> int:
    """Run one step script's main() as Azure ML runs it."""
    with service.step(pipeline_run, snapshot):
        return main(list(argv))
