"""The training pipeline rehearsed as an Azure ML SDK v2 pipeline job runs it.

The pipeline component is the one the azureml-v2 backend publishes, built from the one
definition. Each of its command jobs runs as the v2 runtime runs it: the command line of
its component with ``${{inputs.x}}`` / ``${{outputs.x}}`` replaced by parameter values and
by folders mounted outside the working directory, the working directory an empty snapshot,
the job's environment variables set, and MLflow pointed at the job's run (a child of the
pipeline job's run) through MLFLOW_TRACKING_URI and MLFLOW_RUN_ID, on a local store in
place of the workspace's. The workspace behind MLClient is tests/azureml_v2_fakes.py; state
carries from one pipeline run to the next.
"""
import importlib
import re
import shlex
import shutil
from pathlib import Path

import pytest

from diabetes_regression.evaluate.evaluate_model import OUTCOME_TAG
from diabetes_regression.training.model_files import MODEL_FOLDER
from diabetes_regression.training.train import load_sample_data
from ml_service.backends import azureml_v2
from ml_service.backends.azureml import PRODUCTION_TAG
from ml_service.backends.azureml_v2 import AzureMLv2Backend
from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
from ml_service.util.env_variables import AzureScoringSettings, TrainingSettings
from tests.azureml_v2_fakes import WORKSPACE, FakeClient, FakeWorkspace

SETTINGS = TrainingSettings()
BINDING = re.compile(r"^\$\{\{(inputs|outputs)\.(\w+)\}\}$")


@pytest.fixture
def workspace(tmp_path, monkeypatch, mlops_root):
    """The faked workspace; every MLClient the backend makes is its client."""
    fake = FakeWorkspace(tmp_path / "workspace")
    client = FakeClient(fake)
    monkeypatch.setattr(azureml_v2, "make_client", lambda settings: client)
    for name, value in (("SUBSCRIPTION_ID", WORKSPACE.subscription_id),
                        ("RESOURCE_GROUP", WORKSPACE.resource_group),
                        ("WORKSPACE_NAME", WORKSPACE.workspace_name)):
        monkeypatch.setenv(name, value)
    return fake


@pytest.fixture
def tracking(tmp_path, monkeypatch, empty_store):
    """The MLflow store that stands in for the workspace's (the job sets its URI)."""
    from mlflow.tracking import MlflowClient

    shutil.copyfile(empty_store, tmp_path / "tracking.db")
    uri = f"sqlite:///{tmp_path / 'tracking.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(uri)


def script_main(script: str):
    """A step script's main(), imported by the script's path in the code snapshot."""
    return importlib.import_module(script[:-len(".py")].replace("/", ".")).main


def command_argv(command: str, values: dict) -> tuple:
    """The script and its arguments, each binding replaced as the v2 runtime does."""
    words = shlex.split(command)
    assert words[0] == "python"

    def resolve(word):
        match = BINDING.match(word)
        return values[match.group(2)] if match else word
    return words[1], [resolve(word) for word in words[2:]]


def run_pipeline_job(workspace, tracking, monkeypatch, run_dir: Path) -> str:
    """One run of the published pipeline component, each job as the v2 runtime runs it;
    returns the pipeline job's name (its MLflow run id)."""
    backend = AzureMLv2Backend(SETTINGS)
    component = backend.pipeline_component(build_training_pipeline(SETTINGS))
    experiment = (tracking.get_experiment_by_name(SETTINGS.experiment_name)
                  or tracking.get_experiment(tracking.create_experiment(
                      SETTINGS.experiment_name))).experiment_id
    pipeline_run = tracking.create_run(experiment).info.run_id
    outputs = {}
    for node_name, node in component.jobs.items():
        spec = node.component
        values = {}
        for name, binding in node.inputs.items():
            source = str(binding._data)
            parent = re.match(r"\$\{\{parent\.inputs\.(\w+)\}\}", source)
            produced = re.match(r"\$\{\{parent\.jobs\.(\w+)\.outputs\.(\w+)\}\}", source)
            values[name] = (component.inputs[parent.group(1)].default if parent
                            else outputs[(produced.group(1), produced.group(2))])
        for name in spec.outputs:
            folder = run_dir / "mnt" / node_name / name
            folder.mkdir(parents=True)
            outputs[(node_name, name)] = values[name] = str(folder)
        snapshot = run_dir / "snapshots" / node_name
        snapshot.mkdir(parents=True)
        step_run = tracking.create_run(
            experiment, tags={"mlflow.parentRunId": pipeline_run}).info.run_id
        script, argv = command_argv(spec.command, values)
        with monkeypatch.context() as job:
            for name, value in node.environment_variables.items():
                job.setenv(name, value)
            job.setenv("MLFLOW_RUN_ID", step_run)
            job.chdir(snapshot)
            assert script_main(script)(argv) == 0, f"job {node_name} failed"
        assert not any(snapshot.iterdir()), f"job {node_name} left files in its snapshot"
        if pipeline_run in workspace.cancelled:
            break
    return pipeline_run


def register_sample(backend, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    load_sample_data().to_csv(path, index=False)
    backend.register_dataset(SETTINGS.dataset_name, path, "rehearsal")


@pytest.mark.process
def test_two_pipeline_jobs_register_then_keep_the_production_model(
        workspace, tracking, monkeypatch, tmp_path):
    backend = AzureMLv2Backend(SETTINGS, scoring=AzureScoringSettings())
    register_sample(backend, tmp_path / "data" / "diabetes.csv")

    first = run_pipeline_job(workspace, tracking, monkeypatch, tmp_path / "run1")
    production = backend.get_production_model(SETTINGS.model_name)
    assert (production.version, production.run_id) == (1, first)
    assert production.tags[PRODUCTION_TAG] == "true"
    assert production.tags["dataset_version"] == "1"
    stored = workspace.models[SETTINGS.model_name]["1"]
    assert stored.type == "mlflow_model" and Path(stored.path).name == MODEL_FOLDER
    assert tracking.get_run(first).data.tags["registered_model_version"] == "1"
    assert workspace.cancelled == []

    # The same data again: the evaluate job downloads production, finds the new model no
    # better and cancels the pipeline job, so the register job never runs.
    second = run_pipeline_job(workspace, tracking, monkeypatch, tmp_path / "run2")
    tags = tracking.get_run(second).data.tags
    assert tags["production_model_version"] == "1"
    assert tags[OUTCOME_TAG] == "not_registered"
    assert workspace.cancelled == [second]
    assert workspace.downloads == [(SETTINGS.model_name, "1")]
    assert [m.version for m in backend.list_models(SETTINGS.model_name)] == [1]
