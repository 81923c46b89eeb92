"""Moving the production tag on Azure ML: the real SDK Model code over an in-memory service.

Only the model management REST client (``ModelsClient``) is replaced, by an autospec of the
real class whose methods act on a dictionary of the SDK's own model records. Everything
above it is the SDK's: ``Model(...)``, ``Model.list``, ``update_tags_properties`` (which
writes back the whole tag set it holds), and the backend's promotion protocol.
"""
import copy
import itertools
from unittest import mock

import pytest
from azureml._restclient.models import Model as ModelRecord
from azureml._restclient.models_client import ModelsClient
from azureml.core import model as sdk_model
from azureml.exceptions import WebserviceException

from ml_service.backends import azureml as backend_module
from ml_service.backends.azureml import (PRODUCTION_SINCE_TAG, PRODUCTION_TAG, AzureMLBackend,
                                         choose_production)
from ml_service.util.env_variables import (AzureScoringSettings, ComputeSettings,
                                           EnvironmentSettings, TrainingSettings)
from tests.azureml_offline import offline_workspace

NAME = "model.pkl"


class FakeModelService:
    """The model management service's records, and hooks to fail or interleave a write."""

    def __init__(self) -> None:
        self.records = {}
        self.writes = 0
        self.fail_on_write = None
        self.after_write = {}
        self.after_query = None

    def add(self, version: int, tags: dict) -> None:
        self.records[f"{NAME}:{version}"] = ModelRecord(
            id=f"{NAME}:{version}", name=NAME, version=version, kv_tags=dict(tags),
            mime_type="application/octet-stream", url="aml://artifact/x", datasets=[])

    def tags(self, version: int) -> dict:
        return dict(self.records[f"{NAME}:{version}"].kv_tags or {})

    def tagged(self) -> list:
        return sorted(r.version for r in self.records.values()
                      if (r.kv_tags or {}).get(PRODUCTION_TAG) == "true")

    def get_by_id(self, model_id):
        if model_id not in self.records:
            raise WebserviceException(f"ModelNotFound: {model_id}")
        return copy.deepcopy(self.records[model_id])

    def query(self, name=None, tags=None, **_):
        wanted = [tag.split("=", 1) for tag in tags.split(",")] if tags else []
        found = [copy.deepcopy(r) for r in self.records.values()
                 if r.name == name and all((r.kv_tags or {}).get(k) == v for k, v in wanted)]
        if self.after_query is not None:
            hook, self.after_query = self.after_query, None
            hook()
        return iter(found)

    def patch(self, model_id, body=None):
        self.writes += 1
        if self.writes == self.fail_on_write:
            raise WebserviceException("Received bad response from Model Management Service")
        for operation in body:
            if operation["path"] == "/kvTags":
                self.records[model_id].kv_tags = dict(operation["value"])
        hook = self.after_write.pop(self.writes, None)
        if hook is not None:
            hook()


@pytest.fixture
def service(monkeypatch):
    fake = FakeModelService()
    client = mock.create_autospec(ModelsClient, spec_set=True)
    client.return_value.get_by_id.side_effect = fake.get_by_id
    client.return_value.query.side_effect = fake.query
    client.return_value.patch.side_effect = fake.patch
    monkeypatch.setattr(sdk_model, "ModelsClient", client)
    monkeypatch.setattr(sdk_model, "_get_mms_url", mock.create_autospec(
        sdk_model._get_mms_url, spec_set=True, return_value="https://mms.invalid"))
    # Promotions in a test follow each other within microseconds: give them distinct times.
    ticks = itertools.count(1)
    monkeypatch.setattr(backend_module, "promotion_time",
                        lambda: f"2026-12-01T00:00:00.{next(ticks):06d}Z")
    return fake


@pytest.fixture
def backend(service):
    return AzureMLBackend(TrainingSettings(), ComputeSettings(), EnvironmentSettings(),
                          AzureScoringSettings(), workspace=offline_workspace())


def test_promotion_moves_the_tag_and_keeps_every_other_tag(service, backend):
    service.add(1, {"run_id": "r1", "error": "3000.0"})
    service.add(2, {"run_id": "r2", "error": "2900.0"})
    backend.set_production_model(NAME, 1)
    assert backend.get_production_model(NAME).version == 1
    backend.set_production_model(NAME, 2)
    assert service.tagged() == [2]
    assert backend.get_production_model(NAME).version == 2
    assert service.tags(1) == {"run_id": "r1", "error": "3000.0"}
    assert service.tags(2)[PRODUCTION_SINCE_TAG] and service.tags(2)["run_id"] == "r2"


def test_rolling_back_to_an_older_version_makes_it_production(service, backend):
    for version in (1, 2):
        service.add(version, {})
        backend.set_production_model(NAME, version)
    backend.set_production_model(NAME, 1)
    assert service.tagged() == [1]
    assert backend.get_production_model(NAME).version == 1


@pytest.mark.parametrize("failing_write", [1, 2])
def test_a_failure_between_the_writes_never_leaves_no_production_model(
        service, backend, failing_write):
    service.add(1, {})
    service.add(2, {})
    backend.set_production_model(NAME, 1)
    service.fail_on_write = service.writes + failing_write
    with pytest.raises(WebserviceException):
        backend.set_production_model(NAME, 2)
    assert backend.get_production_model(NAME) is not None
    # Whatever failed, the next promotion repairs the registry.
    service.fail_on_write = None
    backend.set_production_model(NAME, 2)
    assert service.tagged() == [2]


def test_a_tag_written_by_someone_else_meanwhile_is_not_lost(service, backend):
    service.add(1, {})
    service.add(2, {})
    backend.set_production_model(NAME, 1)

    def someone_tags_version_1():
        record = service.records[f"{NAME}:1"]
        record.kv_tags = {**record.kv_tags, "reviewed_by": "alice"}

    service.after_query = someone_tags_version_1
    backend.set_production_model(NAME, 2)
    assert service.tags(1) == {"reviewed_by": "alice"}


@pytest.mark.parametrize("interleave_after_write", [1, 2])
def test_concurrent_promotions_leave_exactly_the_last_one(service, backend,
                                                          interleave_after_write):
    for version in (1, 2, 3):
        service.add(version, {})
    backend.set_production_model(NAME, 1)
    # Promotion B (version 3) runs whole in the middle of promotion A (version 2).
    service.after_write[service.writes + interleave_after_write] = \
        lambda: backend.set_production_model(NAME, 3)
    backend.set_production_model(NAME, 2)
    assert service.tagged() == [3]
    assert backend.get_production_model(NAME).version == 3


def test_concurrent_promotion_between_listing_and_untagging(service, backend):
    for version in (1, 2, 3):
        service.add(version, {})
    backend.set_production_model(NAME, 1)
    service.after_query = lambda: backend.set_production_model(NAME, 3)
    backend.set_production_model(NAME, 2)
    assert service.tagged() == [3]


def test_of_several_tagged_versions_the_last_promoted_is_production(service, backend, caplog):
    service.add(1, {PRODUCTION_TAG: "true", PRODUCTION_SINCE_TAG: "2026-12-01T10:00:00.000000Z"})
    service.add(2, {PRODUCTION_TAG: "true", PRODUCTION_SINCE_TAG: "2026-11-01T10:00:00.000000Z"})
    service.add(3, {PRODUCTION_TAG: "true"})  # tagged before production_since existed
    assert backend.get_production_model(NAME).version == 1
    assert "3 versions of model model.pkl are tagged production=true" in caplog.text


def test_no_tagged_version_means_no_production_model(service, backend):
    service.add(1, {})
    assert backend.get_production_model(NAME) is None
    assert choose_production([]) is None


def test_promoting_a_missing_version_is_refused_and_changes_nothing(service, backend):
    service.add(1, {})
    backend.set_production_model(NAME, 1)
    with pytest.raises(Exception, match="no model 'model.pkl' version 9"):
        backend.set_production_model(NAME, 9)
    assert service.tagged() == [1]
