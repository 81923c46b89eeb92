"""Each step script, fed good and bad input: a clear error, exit code 1, nothing registered."""
import json
import logging

import numpy as np
import pytest

from diabetes_regression.evaluate import evaluate_model
from diabetes_regression.register import register_model
from diabetes_regression.training import train_aml
from ml_service.util import training_record
from tests.conftest import make_frame

MODEL = "diabetes_regression_model.pkl"


@pytest.fixture
def out(tmp_path):
    return tmp_path / "step_output"


def train(out, *extra):
    return train_aml.main(["--step_output", str(out), "--dataset_name", "ds", *extra])


def errors(caplog):
    return " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def assert_nothing_registered(backend, out):
    assert backend.list_models(MODEL) == []
    assert not (out / MODEL).exists()


def test_train_registers_the_data_file_then_trains(backend, csv_file, out):
    assert train(out, "--data_file_path", str(csv_file)) == 0
    assert (out / MODEL).is_file()
    assert backend.find_dataset("ds").version == 1


def test_train_on_a_missing_dataset(backend, out, caplog):
    assert train(out) == 1
    assert "dataset 'ds' version 'latest' is not registered" in errors(caplog)
    assert_nothing_registered(backend, out)


@pytest.mark.parametrize("write, message", [
    (lambda p: make_frame().drop(columns=["Y"]).to_csv(p, index=False),
     "target column 'Y' is missing"),
    (lambda p: make_frame().assign(Y=np.nan).to_csv(p, index=False),
     "missing values (NaN) in columns: Y"),
    (lambda p: p.write_text(""), "is empty"),
    (lambda p: p.write_text("x0,Y\n"), "no rows"),
    # By hand, a data file gets the validate step's checks (those without a reference).
    (lambda p: make_frame().assign(Y=1.0).to_csv(p, index=False), "(near) zero variance"),
    (lambda p: make_frame().assign(x3=lambda f: f["Y"]).to_csv(p, index=False),
     "feature 'x3' is identical to the target 'Y' (leakage)"),
    (lambda p: p.write_text(make_frame().to_csv(index=False).replace("x2", "x1", 1)),
     "duplicated column names: x1"),
    (lambda p: make_frame(rows=1).to_csv(p, index=False), "too few rows"),
])
def test_train_on_bad_data_changes_nothing(backend, tmp_path, out, caplog, write, message):
    path = tmp_path / "bad.csv"
    write(path)
    assert train(out, "--data_file_path", str(path)) == 1
    assert message in errors(caplog)
    assert backend.find_dataset("ds") is None
    assert_nothing_registered(backend, out)


@pytest.fixture
def malformed_parameters(tmp_path):
    path = tmp_path / "parameters.json"
    path.write_text('{"training": {"alpha": 0.5}')
    return path


def test_train_with_malformed_parameters(backend, csv_file, out, caplog, malformed_parameters):
    code = train(out, "--data_file_path", str(csv_file), "--parameters", str(malformed_parameters))
    assert code == 1
    assert "not valid JSON" in errors(caplog) and str(malformed_parameters) in errors(caplog)
    assert_nothing_registered(backend, out)


def test_train_with_a_hyperparameter_the_model_rejects(backend, csv_file, out, caplog, tmp_path):
    document = json.loads((train_aml.Path(train_aml.__file__).parents[1]
                           / "parameters.json").read_text())
    document["training"] = {"alfa": 1.0}
    path = tmp_path / "parameters.json"
    path.write_text(json.dumps(document))
    assert train(out, "--data_file_path", str(csv_file), "--parameters", str(path)) == 1
    assert "'training' parameters do not suit the model" in errors(caplog)
    assert_nothing_registered(backend, out)


@pytest.fixture
def trained_run(backend, csv_file, out):
    """A pipeline run whose train step has run: its id."""
    run_id = backend.start_pipeline_run("p", {})
    backend_env = {"MLOPS_PIPELINE_RUN_ID": run_id}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in backend_env.items():
            patch.setenv(key, value)
        assert train(out, "--data_file_path", str(csv_file)) == 0
    return run_id


def test_evaluate_then_register_the_first_model(backend, trained_run, out):
    assert evaluate_model.main(["--run_id", trained_run]) == 0
    assert backend.get_run_tags(trained_run)["evaluation"] == "register"
    assert register_model.main(["--run_id", trained_run, "--step_input", str(out)]) == 0
    production = backend.get_production_model(MODEL)
    assert production.version == 1 and production.run_id == trained_run
    assert {"run_id", "experiment_name", "dataset_name", "dataset_version", "mse"} \
        <= set(production.tags)


def test_register_twice_for_one_run_is_refused(backend, trained_run, out, caplog):
    args = ["--run_id", trained_run, "--step_input", str(out)]
    assert register_model.main(args) == 0
    assert register_model.main(args) == 1
    assert "already registered for run" in errors(caplog)
    assert len(backend.list_models(MODEL)) == 1


def test_register_takes_build_tags_from_the_environment(backend, trained_run, out, monkeypatch):
    monkeypatch.setenv("BUILD_BUILDID", "123")
    monkeypatch.setenv("BUILD_BUILDURI", "vstfs:///Build/Build/123")
    assert register_model.main(["--run_id", trained_run, "--step_input", str(out)]) == 0
    tags = backend.get_production_model(MODEL).tags
    assert tags["BuildId"] == "123" and tags["BuildUri"] == "vstfs:///Build/Build/123"


def test_not_better_cancels_the_run_and_exits_zero(backend, trained_run, out, csv_file,
                                                   tmp_path, caplog):
    assert register_model.main(["--run_id", trained_run, "--step_input", str(out)]) == 0
    second = backend.start_pipeline_run("p", {})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_PIPELINE_RUN_ID", second)
        assert train(tmp_path / "second", "--dataset_version", "1") == 0
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert evaluate_model.main(["--run_id", second, "--allow_run_cancel", "true"]) == 0
    assert "Decision: not registered" in caplog.text
    assert backend.get_run_tags(second)["evaluation"] == "not_registered"
    assert backend.pipeline_run_status(second) == "KILLED"


def test_register_honours_not_registered_when_the_run_was_not_cancelled(
        backend, trained_run, out, tmp_path):
    assert register_model.main(["--run_id", trained_run, "--step_input", str(out)]) == 0
    second = backend.start_pipeline_run("p", {})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_PIPELINE_RUN_ID", second)
        assert train(tmp_path / "second", "--dataset_version", "1") == 0
    assert evaluate_model.main(["--run_id", second, "--allow_run_cancel", "false"]) == 0
    assert backend.pipeline_run_status(second) == "RUNNING"
    assert register_model.main(["--run_id", second, "--step_input",
                                str(tmp_path / "second")]) == 0
    assert [m.version for m in backend.list_models(MODEL)] == [1]


def test_evaluate_without_the_metric_is_an_error(backend, caplog):
    run_id = backend.start_pipeline_run("p", {})
    assert evaluate_model.main(["--run_id", run_id]) == 1
    assert "the new model has no metric 'mse'" in errors(caplog)


def test_evaluate_with_malformed_parameters(backend, trained_run, caplog, malformed_parameters):
    assert evaluate_model.main(["--run_id", trained_run,
                                "--parameters", str(malformed_parameters)]) == 1
    assert "not valid JSON" in errors(caplog)


def test_evaluate_with_a_bad_allow_run_cancel(backend, trained_run, caplog):
    assert evaluate_model.main(["--run_id", trained_run, "--allow_run_cancel", "maybe"]) == 1
    assert "--allow_run_cancel='maybe' is not a boolean" in errors(caplog)


@pytest.mark.parametrize("content, message", [
    (None, "no model file at"),
    (b"not a pickle", "does not load as a model"),
])
def test_register_a_missing_or_broken_model_file(backend, trained_run, tmp_path, caplog,
                                                 content, message):
    folder = tmp_path / "empty"
    folder.mkdir()
    if content is not None:
        (folder / MODEL).write_bytes(content)
    assert register_model.main(["--run_id", trained_run, "--step_input", str(folder)]) == 1
    assert message in errors(caplog)
    assert backend.list_models(MODEL) == []


def test_register_with_malformed_parameters(backend, trained_run, out, caplog,
                                            malformed_parameters):
    assert register_model.main(["--run_id", trained_run, "--step_input", str(out),
                                "--parameters", str(malformed_parameters)]) == 1
    assert "not valid JSON" in errors(caplog)
    assert backend.list_models(MODEL) == []


def test_a_reused_train_step_is_evaluated_and_registered(backend, trained_run, out):
    """Azure ML reuses an unchanged train step: the new pipeline run gets the step's output
    folder but none of the metrics or tags it logged. Evaluate and register read them from
    the record beside the model and log them on the new run."""
    reused = backend.start_pipeline_run("p", {})
    assert backend.get_run_metrics(reused) == {}
    assert evaluate_model.main(["--run_id", reused, "--step_input", str(out)]) == 0
    assert backend.get_run_tags(reused)["evaluation"] == "register"
    assert register_model.main(["--run_id", reused, "--step_input", str(out)]) == 0
    production = backend.get_production_model(MODEL)
    assert production.run_id == reused
    assert production.tags["dataset_version"] == "1"
    assert backend.get_run_metrics(reused) == backend.get_run_metrics(trained_run)


def test_register_without_the_training_record_is_refused(backend, trained_run, out, caplog):
    (out / training_record.RECORD_FILE).unlink()
    assert register_model.main(["--run_id", trained_run, "--step_input", str(out)]) == 1
    assert f"no {training_record.RECORD_FILE} in {out}" in errors(caplog)
    assert backend.list_models(MODEL) == []


@pytest.mark.parametrize("content", ["{", "[]", '{"metrics": {"m": "high"}, "tags": {}}',
                                     '{"metrics": {"m": NaN}, "tags": {}}'])
def test_a_damaged_training_record_is_named(backend, trained_run, out, caplog, content):
    (out / training_record.RECORD_FILE).write_text(content)
    assert evaluate_model.main(["--run_id", trained_run, "--step_input", str(out)]) == 1
    assert training_record.RECORD_FILE in errors(caplog)
