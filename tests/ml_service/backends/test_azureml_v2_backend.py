"""The SDK v2 backend over azure-ai-ml's own entities and spec'd operations, offline
(tests/azureml_v2_fakes.py). Step runs use real MLflow on a local store, as a v2 job's
MLflow would on the workspace's."""
import shutil
from pathlib import Path

import pytest
from azure.ai.ml.entities import AmlCompute, Data, Model, PipelineComponent, PipelineJob
from azure.core.exceptions import ResourceNotFoundError

from ml_service.backends import get_backend
from ml_service.backends.azureml import PRODUCTION_SINCE_TAG, PRODUCTION_TAG
from ml_service.backends.azureml_v2 import AzureMLv2Backend, make_credential, step_variables
from ml_service.backends.base import DatasetVersion, PublishedPipeline
from ml_service.errors import (ConfigurationError, ModelAlreadyRegisteredError,
                               ModelNotFoundError)
from ml_service.pipelines.azureml_v2_pipeline import asset_name
from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
from ml_service.util.env_variables import (AzureScoringSettings, BackendSettings,
                                           ComputeSettings, EnvironmentV2Settings,
                                           TrainingSettings, WorkspaceSettings)
from tests.azureml_v2_fakes import MODEL, WORKSPACE, FakeClient, FakeWorkspace


@pytest.fixture
def fake(tmp_path):
    return FakeWorkspace(tmp_path / "workspace")


@pytest.fixture
def backend(fake):
    return AzureMLv2Backend(TrainingSettings(build_id="42"), ComputeSettings(),
                            EnvironmentV2Settings(), AzureScoringSettings(), WORKSPACE,
                            client=FakeClient(fake))


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    return folder


def test_chosen_by_mlops_backend_without_touching_the_service():
    backend = get_backend(BackendSettings.from_env({"MLOPS_BACKEND": "azureml-v2"}),
                          TrainingSettings())
    assert isinstance(backend, AzureMLv2Backend) and backend.name == "azureml-v2"
    assert backend._client is None and backend._workspace is None


def test_models_are_mlflow_model_assets_registered_once_per_run(backend, fake, model_folder):
    registered = backend.register_model(MODEL, model_folder, "run_1", {"mse": "3.0"},
                                        DatasetVersion("ds", 2))
    assert (registered.version, registered.run_id) == (1, "run_1")
    stored = fake.models[MODEL]["1"]
    assert isinstance(stored, Model) and stored.type == "mlflow_model"
    assert (Path(stored.path) / "MLmodel").read_text() == (model_folder / "MLmodel").read_text()
    assert stored.tags == {"mse": "3.0", "run_id": "run_1"}
    assert "ds version 2" in stored.description
    with pytest.raises(ModelAlreadyRegisteredError, match="version 1 is already registered"):
        backend.register_model(MODEL, model_folder, "run_1", {})
    assert backend.register_model(MODEL, model_folder, "run_2", {}).version == 2
    assert [m.run_id for m in backend.list_models(MODEL)] == ["run_1", "run_2"]
    assert [m.version for m in backend.list_models(MODEL, run_id="run_2")] == [2]


def test_no_model_yet_means_no_production_and_no_versions(backend):
    assert backend.get_production_model(MODEL) is None
    assert backend.list_models(MODEL) == []
    with pytest.raises(ModelNotFoundError, match="version 3"):
        backend.get_model(MODEL, 3)


def test_promotion_moves_the_production_tag_and_never_leaves_zero(backend, fake,
                                                                  model_folder):
    for run in ("run_1", "run_2", "run_3"):
        backend.register_model(MODEL, model_folder, run, {})
    backend.set_production_model(MODEL, 1)
    assert backend.get_production_model(MODEL).version == 1
    backend.set_production_model(MODEL, 2)
    assert backend.get_production_model(MODEL).version == 2
    assert PRODUCTION_TAG not in fake.tags(1) and PRODUCTION_SINCE_TAG not in fake.tags(1)
    assert fake.tags(2)["run_id"] == "run_2"  # other tags are kept
    # The write that untags version 2 fails: versions 2 and 3 are both tagged, 3 wins.
    fake.fail_on_model_write = fake.model_writes + 2
    with pytest.raises(ResourceNotFoundError):
        backend.set_production_model(MODEL, 3)
    assert fake.tags(2)[PRODUCTION_TAG] == fake.tags(3)[PRODUCTION_TAG] == "true"
    assert backend.get_production_model(MODEL).version == 3
    # The next promotion removes the stale tag.
    backend.set_production_model(MODEL, 1)
    tagged = [v for v in ("1", "2", "3") if fake.tags(v).get(PRODUCTION_TAG) == "true"]
    assert tagged == ["1"]


def test_a_downloaded_model_is_its_mlflow_folder(backend, fake, model_folder, tmp_path):
    model = backend.register_model(MODEL, model_folder, "run_1", {})
    path = backend.download_model(model, tmp_path / "download")
    assert (path / "MLmodel").is_file() and fake.downloads == [(MODEL, "1")]


def test_datasets_are_versioned_uri_file_data_assets(backend, fake, tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n1,2\n")
    assert backend.find_dataset("ds") is None
    assert backend.register_dataset("ds", csv, "first").version == 1
    assert backend.register_dataset("ds", csv, "second").version == 2
    assert backend.find_dataset("ds") == DatasetVersion("ds", 2, "second")
    assert backend.find_dataset("ds", "1") == DatasetVersion("ds", 1, "first")
    assert backend.find_dataset("ds", "7") is None
    stored = fake.data["ds"]["1"]
    assert isinstance(stored, Data) and stored.type == "uri_file"
    assert Path(stored.path).read_text() == csv.read_text()


def test_a_path_on_the_datastore_is_registered_by_its_azureml_uri(backend, fake):
    backend.register_dataset("ds", Path("incoming/new.csv"))
    assert fake.data["ds"]["1"].path == (
        "azureml://datastores/workspaceblobstore/paths/incoming/new.csv")


def test_publish_registers_the_pipeline_component_versioned_by_build_id(backend, fake):
    definition = build_training_pipeline(TrainingSettings())
    published = backend.publish_pipeline(definition, "42", "retraining")
    assert (published.name, published.version) == (definition.name, "42")
    component = fake.get_component(asset_name(definition.name), "42")
    assert isinstance(component, PipelineComponent) and published.id == component.id
    assert list(component.jobs) == [asset_name(s.name) for s in definition.steps]
    assert component.description == "retraining"
    for node in component.jobs.values():
        assert node.environment_variables == step_variables(WORKSPACE, AzureScoringSettings())
        assert node.environment_variables["MLOPS_BACKEND"] == "azureml-v2"
    created = fake.computes[ComputeSettings().cluster_name]
    assert isinstance(created, AmlCompute) and created.tier == "low_priority"


def test_run_train_pipeline_finds_exactly_the_build_and_submits_a_tagged_job(backend, fake):
    definition = build_training_pipeline(TrainingSettings())
    backend.publish_pipeline(definition, "41")
    backend.publish_pipeline(definition, "42")
    assert [p.version for p in backend.list_published_pipelines(definition.name)] == [
        "41", "42"]
    [found] = backend.list_published_pipelines(definition.name, "42")
    assert backend.list_published_pipelines(definition.name, "43") == []
    run = backend.submit_pipeline(found, {"model_name": "m.pkl"}, {"BuildId": "42"},
                                  wait=True)
    assert (run.id, run.status) == ("job_1", "Completed")
    job = fake.jobs["job_1"]
    assert isinstance(job, PipelineJob) and job.tags == {"BuildId": "42"}
    assert job.component.version == "42"
    assert job.inputs["model_name"]._data == "m.pkl"
    assert job.settings.default_compute == f"azureml:{ComputeSettings().cluster_name}"
    assert job.experiment_name == TrainingSettings().experiment_name
    assert type(job.identity).__name__ == "UserIdentityConfiguration"


def test_a_failed_job_is_reported_as_failed_not_raised(backend, fake):
    definition = build_training_pipeline(TrainingSettings())
    published = backend.publish_pipeline(definition, "42")
    fake.job_status = "Failed"
    assert backend.submit_pipeline(published, {}, {}, wait=True).status == "Failed"
    fake.job_status = "Completed"
    assert backend.submit_pipeline(published, {}, {}).status == "NotStarted"


def test_submitting_an_unpublished_version_is_an_error(backend):
    with pytest.raises(ResourceNotFoundError):
        backend.submit_pipeline(PublishedPipeline("x", TrainingSettings().pipeline_name, "9"),
                                {}, {})


def test_a_step_outside_a_v2_job_is_told_where_it_runs(backend, monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    with pytest.raises(ConfigurationError, match="MLFLOW_RUN_ID is not set"):
        with backend.step_run("train"):
            pass


def test_a_step_in_a_v2_job_logs_to_its_run_and_the_pipeline_and_cancels_the_job(
        backend, fake, monkeypatch, tmp_path, empty_store):
    """MLflow as a v2 job sets it up: the tracking URI and the step's run id in the
    environment, the step run a child of the pipeline job's run."""
    from mlflow.tracking import MlflowClient

    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("mlopspython")
    pipeline = client.create_run(experiment).info.run_id
    step = client.create_run(experiment, tags={"mlflow.parentRunId": pipeline}).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", step)
    with backend.step_run("evaluate") as run:
        assert (run.id, run.pipeline_run_id, run.experiment_name) == (
            step, pipeline, "mlopspython")
        run.log_metric("mse", 2.5)
        run.set_pipeline_tags({"outcome": "not_registered"})
        assert run.get_pipeline_metrics() == {"mse": 2.5}
        assert run.get_pipeline_tags() == {"outcome": "not_registered"}
        run.cancel_pipeline("not better than production")
    assert client.get_run(step).data.metrics == {"mse": 2.5}
    assert fake.cancelled == [pipeline]
    assert client.get_run(pipeline).data.tags["mlops.cancel_reason"] == (
        "not better than production")


@pytest.mark.parametrize("env, kind", [
    ({"OBO_ENDPOINT": "http://127.0.0.1:1/obo"}, "AzureMLOnBehalfOfCredential"),
    ({}, "DefaultAzureCredential"),
], ids=["in a pipeline job", "on an agent or a laptop"])
def test_the_credential_follows_where_the_code_runs(env, kind):
    assert type(make_credential(WORKSPACE, env)).__name__ == kind
    principal = WorkspaceSettings("s", "rg", "ws", "tenant", "app", "secret")
    expected = kind if env else "ClientSecretCredential"
    assert type(make_credential(principal, env)).__name__ == expected


def test_deployments_name_the_backends_that_deploy(backend):
    with pytest.raises(ConfigurationError, match="MLOPS_BACKEND=azureml"):
        backend.deploy_model(None, "svc", None)
