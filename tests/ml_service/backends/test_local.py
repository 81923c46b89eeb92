import pytest

from ml_service.backends import get_backend
from ml_service.backends.local import LocalBackend
from ml_service.errors import (ConfigurationError, DatasetNotFoundError,
                               ModelAlreadyRegisteredError, ModelNotFoundError,
                               RunNotFoundError)
from ml_service.util.env_variables import BackendSettings

MODEL = "model.pkl"


def test_local_is_the_default_backend(mlops_root):
    backend = get_backend()
    assert isinstance(backend, LocalBackend) and backend.root == mlops_root


def test_an_unknown_backend_is_refused_with_the_supported_list():
    with pytest.raises(ConfigurationError, match="MLOPS_BACKEND='nope'.*supported: local"):
        get_backend(BackendSettings(kind="nope"))


# -- datasets ----------------------------------------------------------------
def test_registering_a_csv_makes_a_new_version_each_time(backend, csv_file):
    assert backend.find_dataset("ds") is None
    first = backend.register_dataset("ds", csv_file, "first")
    second = backend.register_dataset("ds", csv_file)
    assert (first.version, second.version) == (1, 2)
    assert backend.find_dataset("ds").version == 2
    assert backend.find_dataset("ds", "1") == first
    assert backend.find_dataset("ds", "7") is None
    assert backend.load_dataset(first).shape == (60, 5)


def test_a_bad_dataset_version_or_name_is_refused(backend, csv_file):
    backend.register_dataset("ds", csv_file)
    with pytest.raises(ConfigurationError, match="bad dataset version 'two'"):
        backend.find_dataset("ds", "two")
    with pytest.raises(ConfigurationError, match="bad dataset name"):
        backend.register_dataset("../escape", csv_file)


def test_registering_a_missing_file_changes_nothing(backend, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no file at"):
        backend.register_dataset("ds", tmp_path / "missing.csv")
    assert backend.find_dataset("ds") is None


# -- runs ----------------------------------------------------------------------
def test_a_standalone_step_gets_its_own_pipeline_run(backend):
    with backend.step_run("train") as run:
        run.log_metric("error", 2.0)
        run.log_params({"alpha": 0.5})
        run.set_pipeline_tags({"dataset_name": "ds"})
    assert run.pipeline_run_id != run.id
    assert backend.get_run_metrics(run.pipeline_run_id) == {"error": 2.0}
    assert backend.get_run_metrics(run.id) == {"error": 2.0}
    assert backend.get_run_tags(run.pipeline_run_id)["dataset_name"] == "ds"
    assert backend.pipeline_run_status(run.pipeline_run_id) == "FINISHED"
    assert [r.info.run_id for r in backend.list_step_runs(run.pipeline_run_id)] == [run.id]


def test_a_failing_step_marks_its_runs_failed(backend):
    with pytest.raises(ValueError):
        with backend.step_run("train") as run:
            raise ValueError("boom")
    assert backend.pipeline_run_status(run.id) == "FAILED"
    assert backend.pipeline_run_status(run.pipeline_run_id) == "FAILED"


def test_cancel_kills_the_pipeline_run(backend):
    pipeline_run_id = backend.start_pipeline_run("p", {"model_name": "m"})
    with backend.step_run("evaluate", run_id=pipeline_run_id) as run:
        run.cancel_pipeline("not better")
    assert backend.pipeline_run_status(pipeline_run_id) == "KILLED"
    assert backend.pipeline_run_status(run.id) == "FINISHED"


def test_an_unknown_run_id_is_an_error(backend):
    with pytest.raises(RunNotFoundError, match="no run with id 'nope'"):
        with backend.step_run("evaluate", run_id="nope"):
            pass


# -- models ------------------------------------------------------------------
@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / MODEL
    path.write_bytes(b"model bytes")
    return path


def test_versions_alias_and_refusal_for_the_same_run(backend, model_file, tmp_path):
    assert backend.get_production_model(MODEL) is None
    run_a = backend.start_pipeline_run("p", {})
    run_b = backend.start_pipeline_run("p", {})
    v1 = backend.register_model(MODEL, model_file, run_a, {"error": "2.0"})
    backend.set_production_model(MODEL, v1.version)
    v2 = backend.register_model(MODEL, model_file, run_b, {"error": "1.0"})
    assert (v1.version, v2.version) == (1, 2)
    # Production is the aliased version, not merely the latest.
    assert backend.get_production_model(MODEL).version == 1
    backend.set_production_model(MODEL, 2)
    production = backend.get_production_model(MODEL)
    assert production.version == 2 and production.run_id == run_b
    assert production.tags["error"] == "1.0"
    with pytest.raises(ModelAlreadyRegisteredError, match="version 1 is already registered"):
        backend.register_model(MODEL, model_file, run_a, {})
    assert [m.version for m in backend.list_models(MODEL)] == [1, 2]
    copied = backend.download_model(production, tmp_path / "out")
    assert copied.name == MODEL and copied.read_bytes() == b"model bytes"


def test_dataset_is_recorded_on_the_model(backend, model_file, csv_file):
    dataset = backend.register_dataset("ds", csv_file)
    run = backend.start_pipeline_run("p", {})
    model = backend.register_model(MODEL, model_file, run, {}, dataset)
    assert model.tags["dataset_name"] == "ds" and model.tags["dataset_version"] == "1"


def test_a_missing_file_or_unknown_version_is_refused(backend, tmp_path, model_file):
    run = backend.start_pipeline_run("p", {})
    with pytest.raises(ModelNotFoundError, match="no model at"):
        backend.register_model(MODEL, tmp_path / "missing.pkl", run, {})
    assert backend.list_models(MODEL) == []
    backend.register_model(MODEL, model_file, run, {})
    with pytest.raises(ModelNotFoundError, match="version 5"):
        backend.set_production_model(MODEL, 5)


@pytest.mark.integration
def test_a_model_the_scoring_script_cannot_load_fails_the_deploy_with_the_log(backend,
                                                                              model_file):
    from ml_service.errors import DeploymentError
    from ml_service.pipelines.diabetes_regression_pipeline import scoring_service_spec

    run = backend.start_pipeline_run("p", {})
    model = backend.register_model(MODEL, model_file, run, {})
    with pytest.raises(DeploymentError, match="exited with code 3 while starting; its log"):
        backend.deploy_model(model, "broken", scoring_service_spec())
    assert backend.delete_deployment("broken") is False
