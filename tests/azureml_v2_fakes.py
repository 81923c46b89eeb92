"""A faked Azure ML workspace for SDK v2 tests: azure-ai-ml's own entities kept in memory,
behind MLClient's operation groups, each an autospec of the real azure-ai-ml class
(``spec_set=True``) whose methods act on that state, so it carries from one call (and one
pipeline run) to the next.

Registering a model or a data asset copies its local files into the workspace's storage
folder, as the SDK's upload does, and a download copies them back in the layout
``ModelOperations.download`` gives (``<download_path>/<name>/<folder>``). What lies below
the operations (REST calls, blob uploads) needs a workspace and is not rehearsed.
"""
import copy
import itertools
import shutil
from pathlib import Path
from unittest.mock import create_autospec

from azure.ai.ml.entities import AzureBlobDatastore, Component
from azure.ai.ml.exceptions import JobException
from azure.ai.ml.entities import EndpointAuthKeys
from azure.ai.ml.operations import (ComponentOperations, ComputeOperations, DataOperations,
                                    DatastoreOperations, JobOperations, ModelOperations,
                                    OnlineDeploymentOperations, OnlineEndpointOperations)
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.polling import LROPoller

from ml_service.util.env_variables import TrainingSettings, WorkspaceSettings
from tests.blob_storage import ACCOUNT, CONTAINER

WORKSPACE = WorkspaceSettings("00000000-0000-0000-0000-000000000000", "rg", "ws")
MODEL = TrainingSettings().model_name


class FakeWorkspace:
    """An Azure ML workspace's assets and jobs, as azure-ai-ml entities, in memory."""

    def __init__(self, storage: Path) -> None:
        self.storage = Path(storage)
        self.models, self.data, self.components, self.jobs = {}, {}, {}, {}
        self.computes = {}
        self.model_writes = 0
        self.fail_on_model_write = None
        self.job_status = "Completed"
        self.cancelled = []
        self.downloads = []
        self.names = (f"job_{n}" for n in itertools.count(1))

    @staticmethod
    def _missing(kind, name, version=None):
        return ResourceNotFoundError(f"{kind} {name}:{version} not found")

    def upload(self, kind: str, name: str, version: str, path: str) -> str:
        """Copy a local file or folder into the storage, as the SDK uploads it; its path
        there (an asset already in storage keeps its path)."""
        source = Path(path)
        if source.is_relative_to(self.storage):
            return path
        target = self.storage / kind / name / version / source.name
        target.parent.mkdir(parents=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        return str(target)

    # models
    def create_model(self, model):
        self.model_writes += 1
        if self.model_writes == self.fail_on_model_write:
            raise ResourceNotFoundError("the service dropped the connection")
        versions = self.models.setdefault(model.name, {})
        stored = copy.deepcopy(model)
        if stored.version is None:
            stored.version = str(len(versions) + 1)
        stored.path = self.upload("models", model.name, stored.version, str(model.path))
        versions[stored.version] = stored
        return copy.deepcopy(stored)

    def get_model(self, name, version=None, label=None):
        try:
            return copy.deepcopy(self.models[name][version])
        except KeyError:
            raise self._missing("model", name, version) from None

    def list_models(self, name=None, **_):
        if name not in self.models:
            raise self._missing("model", name)
        return [copy.deepcopy(m) for m in self.models[name].values()]

    def download_model(self, name, version, download_path="."):
        stored = Path(self.get_model(name, version).path)
        target = Path(download_path) / name / stored.name
        if stored.is_dir():
            shutil.copytree(stored, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(stored, target)
        self.downloads.append((name, version))

    def tags(self, version):
        return dict(self.models[MODEL][str(version)].tags or {})

    # data
    def create_data(self, data):
        versions = self.data.setdefault(data.name, {})
        stored = copy.deepcopy(data)
        stored.version = str(len(versions) + 1)
        if not str(data.path).startswith("azureml://"):
            stored.path = self.upload("data", data.name, stored.version, str(data.path))
        versions[stored.version] = stored
        return copy.deepcopy(stored)

    def get_data(self, name, version=None, label=None):
        versions = self.data.get(name, {})
        key = str(max(map(int, versions))) if label == "latest" and versions else version
        if key not in versions:
            raise self._missing("data", name, version or label)
        return copy.deepcopy(versions[key])

    # components and jobs
    def create_component(self, component, version=None, **_):
        """Kept as the service keeps it: its REST form, with the id the service gives it."""
        version = version or component.version
        rest = component._to_rest_object()
        rest.name = version
        rest.id = (f"/subscriptions/{WORKSPACE.subscription_id}/resourceGroups/rg/providers/"
                   f"Microsoft.MachineLearningServices/workspaces/ws/components/"
                   f"{component.name}/versions/{version}")
        self.components[(component.name, version)] = rest
        return self.get_component(component.name, version)

    def get_component(self, name, version=None, label=None):
        if (name, version) not in self.components:
            raise self._missing("component", name, version)
        # A copy: building the entity consumes parts of the REST form.
        return Component._from_rest_object(copy.deepcopy(self.components[(name, version)]))

    def list_components(self, name=None, **_):
        return [self.get_component(n, v) for (n, v) in self.components if n == name]

    def create_job(self, job, **_):
        job.name = next(self.names)
        job._status = "NotStarted"  # what the service answers; the SDK has no setter
        self.jobs[job.name] = job
        return job

    def stream(self, name):
        self.jobs[name]._status = self.job_status
        if self.job_status == "Failed":
            raise JobException(message="Exception : step failed", no_personal_data_message="x")

    def get_job(self, name):
        return self.jobs[name]

    def cancel(self, name, **_):
        self.cancelled.append(name)

    # compute and datastores
    def get_compute(self, name, **_):
        if name not in self.computes:
            raise self._missing("compute", name)
        return self.computes[name]

    def create_compute(self, compute, **_):
        self.computes[compute.name] = compute
        return done(compute)


def operations(cls, **methods):
    """A spec'd azure-ai-ml operations object whose methods are the fake's."""
    mock = create_autospec(cls, spec_set=True, instance=True)
    for name, method in methods.items():
        getattr(mock, name).side_effect = method
    return mock


def done(result=None):
    """A finished long-running operation (an autospec of azure-core's LROPoller)."""
    poller = create_autospec(LROPoller, spec_set=True, instance=True)
    poller.result.return_value = result
    return poller


class FakeOnline:
    """Managed online endpoints: the endpoint entities (traffic, mirror), their deployments,
    and the history of what was done to them. A deployment of a version in ``failing``
    fails to start."""

    KEY = "k3y-never-shown"

    def __init__(self) -> None:
        self.endpoints, self.deployments = {}, {}
        self.history = []
        self.failing = set()

    def get(self, name, **_):
        if name not in self.endpoints:
            raise ResourceNotFoundError(f"endpoint {name} not found")
        return copy.deepcopy(self.endpoints[name])

    def create_or_update_endpoint(self, endpoint, **_):
        stored = copy.deepcopy(endpoint)
        # Read-only in the SDK: the service sets it.
        stored._scoring_uri = f"https://{endpoint.name}.westeurope.inference.ml.azure.com/score"
        live = {n for n, p in (stored.traffic or {}).items() if p}
        assert not live & {n for n, p in (stored.mirror_traffic or {}).items() if p}
        self.endpoints[endpoint.name] = stored
        self.history.append(("traffic", endpoint.name, dict(stored.traffic or {}),
                             dict(stored.mirror_traffic or {})))
        return done(copy.deepcopy(stored))

    def get_keys(self, name):
        self.get(name)
        return EndpointAuthKeys(primary_key=self.KEY, secondary_key=self.KEY + "2")

    def create_or_update_deployment(self, deployment, **_):
        version = int(str(deployment.model).rsplit(":", 1)[1])
        # The service keeps a deployment whose provisioning failed (state Failed).
        self.deployments[(deployment.endpoint_name, deployment.name)] = deployment
        if version in self.failing:
            raise HttpResponseError(message=f"ResourceNotReady: the container of version "
                                            f"{version} crashed at start")
        self.history.append(("create", deployment.name, version))
        return done(deployment)

    def get_deployment(self, name, endpoint_name, **_):
        if (endpoint_name, name) not in self.deployments:
            raise ResourceNotFoundError(f"deployment {name} not found")
        return copy.deepcopy(self.deployments[(endpoint_name, name)])

    def list_deployments(self, endpoint_name, **_):
        return [d for (e, _), d in self.deployments.items() if e == endpoint_name]

    def delete_deployment(self, name, endpoint_name, **_):
        assert not (self.endpoints[endpoint_name].traffic or {}).get(name), "still live"
        if (endpoint_name, name) not in self.deployments:
            raise ResourceNotFoundError(f"deployment {name} not found")
        del self.deployments[(endpoint_name, name)]
        self.history.append(("delete", name))
        return done()


class FakeClient:
    """MLClient's operation groups that the backend uses, each spec'd from azure-ai-ml."""

    def __init__(self, fake: FakeWorkspace, online: FakeOnline = None) -> None:
        online = online or FakeOnline()
        self.online_endpoints = operations(
            OnlineEndpointOperations, get=online.get, get_keys=online.get_keys,
            begin_create_or_update=online.create_or_update_endpoint)
        self.online_deployments = operations(
            OnlineDeploymentOperations, begin_create_or_update=online.create_or_update_deployment,
            get=online.get_deployment, list=online.list_deployments,
            begin_delete=online.delete_deployment)
        self.models = operations(ModelOperations, create_or_update=fake.create_model,
                                 get=fake.get_model, list=fake.list_models,
                                 download=fake.download_model)
        self.data = operations(DataOperations, create_or_update=fake.create_data,
                               get=fake.get_data)
        self.components = operations(ComponentOperations,
                                     create_or_update=fake.create_component,
                                     get=fake.get_component, list=fake.list_components)
        self.jobs = operations(JobOperations, create_or_update=fake.create_job,
                               stream=fake.stream, get=fake.get_job, begin_cancel=fake.cancel)
        self.compute = operations(ComputeOperations, get=fake.get_compute,
                                  begin_create_or_update=fake.create_compute)
        self.datastores = operations(DatastoreOperations)
        self.datastores.get_default.return_value = AzureBlobDatastore(
            name="workspaceblobstore", account_name=ACCOUNT, container_name=CONTAINER)
