"""Fetching what SDK v2's data collector kept (``--source mdc`` on azureml-v2 without
``--collected_dir``): the endpoint's serving deployment is read through MLClient's operations
(spec'd, tests/azureml_v2_fakes.py), and its files come through the real ContainerClient of
azure-storage-blob with only the storage's HTTP answers made here (tests/blob_storage.py)."""
import datetime as dt
import json
import urllib.parse
from functools import partial

import pytest
from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint

from ml_service.backends.azureml_v2 import AzureMLv2Backend
from ml_service.backends.base import ModelVersion
from ml_service.monitoring import mdc_download, monitor
from ml_service.monitoring.collected import CollectedDataError
from ml_service.monitoring.mdc import read_mdc
from ml_service.monitoring.mdc_download import Serving, day_prefixes, download_collected
from ml_service.util.env_variables import TrainingSettings
from tests.azureml_v2_fakes import MODEL, WORKSPACE, FakeClient, FakeOnline, FakeWorkspace
from tests.blob_storage import BlobService, container_maker

ENDPOINT = "mlops-online"
TODAY = dt.date(2026, 12, 3)


def event(collection, request, rows):
    return json.dumps({"specversion": "1.0", "type": f"azureml.inference.{collection}",
                       "correlationid": request, "data": rows})


def prefixes(service):
    """The prefixes the client listed."""
    return {urllib.parse.parse_qs(urllib.parse.urlsplit(r.url).query)["prefix"][0]
            for r in service.seen if "comp=list" in r.url}


def blobs_of(deployment, days):
    """Each day one hour file per collection, one request of two rows; plus a file that is
    not JSON lines, which is left alone."""
    found = {}
    for number, day in enumerate(days):
        for collection, rows in (("model_inputs", [{"a": number, "b": 1}, {"a": 2, "b": 3}]),
                                 ("model_outputs", [{"result": 0.5}, {"result": 1.5}])):
            name = (f"modelDataCollector/{ENDPOINT}/{deployment}/{collection}/"
                    f"{day:%Y/%m/%d}/10/part-0.jsonl")
            found[name] = (event(collection, f"r{number}", rows) + "\n").encode()
    found[f"modelDataCollector/{ENDPOINT}/{deployment}/model_inputs/_SUCCESS"] = b""
    return found


@pytest.fixture
def online():
    """The endpoint: green (version 2) takes 90 % of the live traffic, blue (version 1) 10 %."""
    fake = FakeOnline()
    fake.endpoints[ENDPOINT] = ManagedOnlineEndpoint(name=ENDPOINT, auth_mode="key",
                                                     traffic={"blue": 10, "green": 90})
    for name, version in (("blue", 1), ("green", 2)):
        fake.deployments[(ENDPOINT, name)] = ManagedOnlineDeployment(
            name=name, endpoint_name=ENDPOINT, model=f"azureml:{MODEL}:{version}")
    return fake


@pytest.fixture
def client(tmp_path, online):
    return FakeClient(FakeWorkspace(tmp_path / "workspace"), online)


def test_the_deployment_with_most_live_traffic_serves_and_names_its_version(client, online):
    assert mdc_download.serving_deployment(client, ENDPOINT) == Serving(ENDPOINT, "green", 2)
    online.endpoints[ENDPOINT].traffic = {"blue": 0, "green": 0}
    with pytest.raises(CollectedDataError, match="sends no live traffic"):
        mdc_download.serving_deployment(client, ENDPOINT)
    with pytest.raises(CollectedDataError, match="no online endpoint other.*--service"):
        mdc_download.serving_deployment(client, "other")


def test_a_window_lists_one_prefix_per_day_and_an_open_one_the_whole_folder():
    assert day_prefixes("f", dt.date(2026, 11, 30), dt.date(2026, 12, 1), TODAY) == [
        "f/2026/11/30/", "f/2026/12/01/"]
    assert day_prefixes("f", dt.date(2026, 12, 2), None, TODAY) == [
        "f/2026/12/02/", "f/2026/12/03/"]
    assert day_prefixes("f", None, dt.date(2026, 12, 1), TODAY) == ["f/"]
    assert day_prefixes("f", dt.date(2025, 1, 1), None, TODAY) == ["f/"]


def test_the_windows_files_arrive_as_mdc_reads_a_deployments_folder(client, tmp_path):
    days = [TODAY - dt.timedelta(days=n) for n in range(3)]
    service = BlobService({**blobs_of("green", days), **blobs_of("blue", days)})
    container = mdc_download.default_container(client, "the monitor's credential",
                                               container_maker(service))
    serving = Serving(ENDPOINT, "green", 2)
    since = TODAY - dt.timedelta(days=1)
    assert download_collected(container, serving, tmp_path / "got", since, None, TODAY) == 4
    collected = read_mdc(tmp_path / "got", MODEL, 2, since)
    assert sorted(r["id"] for r in collected.records) == ["r0", "r1"]
    assert collected.records[0]["outputs"] == {"result": [0.5, 1.5]}
    assert service.credentials == ["the monitor's credential"]
    folder = f"modelDataCollector/{ENDPOINT}/green"
    assert prefixes(service) == {f"{folder}/{collection}/{day:%Y/%m/%d}/"
                                 for collection in ("model_inputs", "model_outputs")
                                 for day in (since, TODAY)}
    assert not any("blue" in r.url for r in service.seen)


def test_an_open_window_lists_the_folder_page_by_page(client, tmp_path):
    days = [TODAY - dt.timedelta(days=n) for n in range(3)]
    service = BlobService(blobs_of("green", days), page=2)
    container = mdc_download.default_container(client, None, container_maker(service))
    assert download_collected(container, Serving(ENDPOINT, "green", 2), tmp_path, None, None,
                              TODAY) == 6
    assert sorted(r["id"] for r in read_mdc(tmp_path, MODEL, 2).records) == ["r0", "r1", "r2"]
    assert any("marker=" in r.url for r in service.seen)
    assert not (tmp_path / "model_inputs" / "_SUCCESS").exists()


def test_a_refusal_by_the_storage_names_the_container_and_the_role(client, tmp_path):
    service = BlobService({}, status=403)
    container = mdc_download.default_container(client, None, container_maker(service))
    with pytest.raises(CollectedDataError, match=r"azureml-blobstore-0000 on stmlopsws refused"
                                                 r".*Storage Blob Data Reader"):
        download_collected(container, Serving(ENDPOINT, "green", 2), tmp_path, None, None,
                           TODAY)


def test_a_blob_name_that_would_leave_the_folder_is_refused(client, tmp_path):
    folder = f"modelDataCollector/{ENDPOINT}/green"
    service = BlobService({f"{folder}/model_inputs/../../../x.jsonl": b"{}\n"})
    container = mdc_download.default_container(client, None, container_maker(service))
    with pytest.raises(CollectedDataError, match="is not a file under"):
        download_collected(container, Serving(ENDPOINT, "green", 2), tmp_path / "d", None,
                           None, TODAY)
    assert not (tmp_path / "x.jsonl").exists()


def test_the_monitor_fetches_the_serving_deployments_files_for_its_model(
        client, tmp_path, monkeypatch):
    days = [dt.datetime.now(dt.timezone.utc).date()]
    service = BlobService(blobs_of("green", days))
    monkeypatch.setattr(mdc_download, "default_container",
                        partial(mdc_download.default_container,
                                make_container=container_maker(service)))
    backend = AzureMLv2Backend(TrainingSettings(), workspace=WORKSPACE, client=client)
    monkeypatch.setenv("ONLINE_ENDPOINT_NAME", ENDPOINT)
    args = monitor.parse_args(["--source", "mdc", "--report_dir", "r"])
    endpoint = monitor.default_service(args)
    assert endpoint == ENDPOINT
    monitor.check_options(args, "azureml-v2")
    collected = monitor.fetch_mdc(args, backend, endpoint, ModelVersion(MODEL, 2, None))
    assert [r["id"] for r in collected.records] == ["r0"]
    assert (collected.records[0]["model"], collected.records[0]["version"]) == (MODEL, 2)
    assert type(service.credentials[0]).__module__.startswith("azure.identity")
    with pytest.raises(monitor.MonitoringError, match="served by deployment green with .* "
                                                      "version 2, not version 1: pass "
                                                      "--model_version 2"):
        monitor.fetch_mdc(args, backend, endpoint, ModelVersion(MODEL, 1, None))
