"""Each step script, fed good and bad input: a clear error, exit code 1, nothing registered."""
import json
import logging

import numpy as np
import pytest

from diabetes_regression.evaluate import evaluate_model
from diabetes_regression.parameters import load_parameters
from diabetes_regression.register import register_model
from diabetes_regression.training import train_aml
from diabetes_regression.training.model_files import MLMODEL, MODEL_FOLDER
from diabetes_regression.training.train import TARGET_COLUMN as TARGET
from ml_service.util import training_record
from ml_service.util.env_variables import TrainingSettings
from tests.conftest import feature_names, make_frame

MODEL = TrainingSettings().model_name
_, X1, X2, X3 = feature_names()
METRIC = load_parameters().evaluation.metric


@pytest.fixture
def out(tmp_path):
    return tmp_path / "step_output"


def train(out, *extra):
    return train_aml.main(["--step_output", str(out), "--dataset_name", "ds", *extra])


def errors(caplog):
    return " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def assert_nothing_registered(backend, out):
    assert backend.list_models(MODEL) == []
    assert not (out / MODEL_FOLDER).exists()


def test_train_registers_the_data_file_then_trains(backend, csv_file, out):
    assert train(out, "--data_file_path", str(csv_file)) == 0
    assert (out / MODEL_FOLDER / MLMODEL).is_file()
    assert backend.find_dataset("ds").version == 1


def test_train_on_a_missing_dataset(backend, out, caplog):
    assert train(out) == 1
    assert "dataset 'ds' version 'latest' is not registered" in errors(caplog)
    assert_nothing_registered(backend, out)


@pytest.mark.parametrize("write, message", [
    (lambda p: make_frame().drop(columns=[TARGET]).to_csv(p, index=False),
     f"target column '{TARGET}' is missing"),
    (lambda p: make_frame().assign(**{TARGET: np.nan}).to_csv(p, index=False),
     f"missing values (NaN) in columns: {TARGET}"),
    (lambda p: p.write_text(""), "is empty"),
    (lambda p: p.write_text(",".join(make_frame().columns) + "\n"), "no rows"),
    # By hand, a data file gets the validate step's checks (those without a reference).
    (lambda p: make_frame().assign(**{TARGET: 1.0}).to_csv(p, index=False),
     "(near) zero variance"),
    (lambda p: make_frame().assign(**{X3: lambda f: f[TARGET]}).to_csv(p, index=False),
     f"feature '{X3}' is identical to the target '{TARGET}' (leakage)"),
    (lambda p: p.write_text(make_frame().to_csv(index=False).replace(X2, X1, 1)),
     f"duplicated column names: {X1}"),
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
    path.write_text('{"training": {}')
    return path


def test_train_with_malformed_parameters(backend, csv_file, out, caplog, malformed_parameters):
    code = train(out, "--data_file_path", str(csv_file), "--parameters", str(malformed_parameters))
    assert code == 1
    assert "not valid JSON" in errors(caplog) and str(malformed_parameters) in errors(caplog)
    assert_nothing_registered(backend, out)


def test_train_with_a_hyperparameter_the_model_rejects(backend, csv_file, out, caplog, tmp_path):
    document = json.loads((train_aml.Path(train_aml.__file__).parents[1]
                           / "parameters.json").read_text())
    document["training"] = {"no_such_hyperparameter": 1.0}
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


def evaluate(run_id, out, *extra):
    return evaluate_model.main(["--run_id", run_id, "--step_input", str(out), *extra])


def test_evaluate_then_register_the_first_model(backend, trained_run, out):
    assert evaluate(trained_run, out) == 0
    assert backend.get_run_tags(trained_run)["evaluation"] == "register"
    assert register_model.main(["--run_id", trained_run, "--step_input", str(out)]) == 0
    production = backend.get_production_model(MODEL)
    assert production.version == 1 and production.run_id == trained_run
    assert {"run_id", "experiment_name", "dataset_name", "dataset_version", METRIC} \
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
        assert evaluate(second, tmp_path / "second", "--allow_run_cancel", "true") == 0
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
    assert evaluate(second, tmp_path / "second", "--allow_run_cancel", "false") == 0
    assert backend.pipeline_run_status(second) == "RUNNING"
    assert register_model.main(["--run_id", second, "--step_input",
                                str(tmp_path / "second")]) == 0
    assert [m.version for m in backend.list_models(MODEL)] == [1]


def test_evaluate_without_the_metric_is_an_error(backend, trained_run, out, caplog):
    training_record.write_training_record(out, training_record.TrainingRecord("r", {"other": 1.0}))
    assert evaluate(trained_run, out) == 1
    assert f"the new model has no metric '{METRIC}'" in errors(caplog)


def test_evaluate_with_malformed_parameters(backend, trained_run, out, caplog,
                                            malformed_parameters):
    assert evaluate(trained_run, out, "--parameters", str(malformed_parameters)) == 1
    assert "not valid JSON" in errors(caplog)


def test_evaluate_with_a_bad_allow_run_cancel(backend, trained_run, out, caplog):
    assert evaluate(trained_run, out, "--allow_run_cancel", "maybe") == 1
    assert "--allow_run_cancel='maybe' is not a boolean" in errors(caplog)


@pytest.mark.parametrize("content, message", [
    (None, "no model at"),
    (b"flavors: [", "does not load as a model"),
    (b"flavors: {}\n", "names no python_function loader"),
])
def test_register_a_missing_or_broken_model(backend, trained_run, tmp_path, caplog,
                                            content, message):
    folder = tmp_path / "empty"
    folder.mkdir()
    if content is not None:
        (folder / MODEL_FOLDER).mkdir()
        (folder / MODEL_FOLDER / MLMODEL).write_bytes(content)
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
    assert evaluate(reused, out) == 0
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
    assert evaluate(trained_run, out) == 1
    assert training_record.RECORD_FILE in errors(caplog)


def write_parameters(tmp_path, **evaluation):
    """parameters.json with some evaluation settings changed; its path."""
    document = json.loads((train_aml.Path(train_aml.__file__).parents[1]
                           / "parameters.json").read_text())
    document["evaluation"].update(evaluation)
    path = tmp_path / "changed_parameters.json"
    path.write_text(json.dumps(document))
    return path


def second_run(backend, tmp_path, frame):
    """A new pipeline run trained on ``frame`` (registered as a new dataset version)."""
    path = tmp_path / "second.csv"
    frame.to_csv(path, index=False)
    run_id = backend.start_pipeline_run("p", {})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_PIPELINE_RUN_ID", run_id)
        assert train(tmp_path / "second", "--data_file_path", str(path)) == 0
    return run_id, tmp_path / "second"


def test_production_is_scored_on_the_new_runs_test_data(backend, trained_run, out, tmp_path):
    """Champion and challenger meet on the same rows with the same metric function: the
    production model's stored metric (from its own test data) is not what is compared."""
    assert register_model.main(["--run_id", trained_run, "--step_input", str(out)]) == 0
    production = backend.get_production_model(MODEL)
    second, folder = second_run(backend, tmp_path, make_frame(rows=200, seed=7))
    assert evaluate(second, folder, "--allow_run_cancel", "false") == 0
    from diabetes_regression.training.model_files import load_model
    from diabetes_regression.training.train import get_model_metrics
    X, y = training_record.read_test_split(folder)
    champion = load_model(backend.download_model(production, tmp_path / "champion"))
    expected = get_model_metrics(champion, {"test": {"X": X, "y": y}})[METRIC]
    logged = backend.get_run_metrics(second)[f"production_{METRIC}"]
    assert logged == pytest.approx(expected)
    assert logged != pytest.approx(float(production.tags[METRIC]))
    assert f"production {expected:.6g}" in backend.get_run_tags(second)["evaluation_reason"]


@pytest.mark.parametrize("action, code, outcome", [
    ("register", 0, "register"),
    ("fail", 1, None),
])
def test_a_production_model_that_cannot_score_the_new_data(backend, trained_run, out, tmp_path,
                                                           caplog, action, code, outcome):
    """The new data has other features than the production model reads: the outcome is
    the configured one, and says what to do."""
    assert register_model.main(["--run_id", trained_run, "--step_input", str(out)]) == 0
    second, folder = second_run(backend, tmp_path, make_frame(rows=100, features=6, seed=3))
    parameters = write_parameters(tmp_path, on_incompatible_production=action)
    caplog.clear()
    assert evaluate(second, folder, "--parameters", str(parameters)) == code
    tags = backend.get_run_tags(second)
    assert tags.get("evaluation") == outcome
    assert "cannot score this run's test data" in caplog.text
    if action == "fail":
        assert "on_incompatible_production is 'fail'" in errors(caplog)
        assert backend.pipeline_run_status(second) == "RUNNING"
    else:
        assert "on_incompatible_production is 'register'" in tags["evaluation_reason"]
        assert register_model.main(["--run_id", second, "--step_input", str(folder)]) == 0
        assert backend.get_production_model(MODEL).run_id == second


def test_evaluate_needs_the_test_split_when_there_is_a_production_model(backend, trained_run,
                                                                        out, caplog):
    assert register_model.main(["--run_id", trained_run, "--step_input", str(out)]) == 0
    (out / training_record.TEST_SPLIT_FILE).unlink()
    assert evaluate(trained_run, out) == 1
    assert f"no {training_record.TEST_SPLIT_FILE} in {out}" in errors(caplog)


def test_a_bad_on_incompatible_production_is_named(backend, trained_run, out, tmp_path, caplog):
    parameters = write_parameters(tmp_path, on_incompatible_production="maybe")
    assert evaluate(trained_run, out, "--parameters", str(parameters)) == 1
    assert "evaluation.on_incompatible_production must be one of register, fail" \
        in errors(caplog)


def report_of(backend, pipeline_run_id, tmp_path):
    """The evaluate step's report files, downloaded: {name: path}."""
    from diabetes_regression.evaluate.report import REPORT_FOLDER
    evaluate_run = [r for r in backend.list_step_runs(pipeline_run_id)
                    if r.info.run_name == evaluate_model.STEP_RUN_NAME][-1]
    folder = backend.client.download_artifacts(evaluate_run.info.run_id, REPORT_FOLDER,
                                               str(tmp_path / "report"))
    return {p.name: p for p in train_aml.Path(folder).iterdir()}


def test_the_report_shows_both_models_on_the_same_rows(backend, trained_run, out, tmp_path):
    """Pictures and a JSON whose figures are the logged metrics, new next to production."""
    from diabetes_regression.evaluate.report import REPORT_JSON
    assert register_model.main(["--run_id", trained_run, "--step_input", str(out)]) == 0
    second, folder = second_run(backend, tmp_path, make_frame(rows=200, seed=7))
    assert evaluate(second, folder, "--allow_run_cancel", "false") == 0
    files = report_of(backend, second, tmp_path)
    document = json.loads(files[REPORT_JSON].read_text(),
                          parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    logged = backend.get_run_metrics(second)
    assert document["models"]["new"]["metrics"][METRIC] == pytest.approx(logged[METRIC])
    assert document["models"]["production"]["metrics"][METRIC] == \
        pytest.approx(logged[f"production_{METRIC}"])
    assert document["test_rows"] == len(training_record.read_test_split(folder)[1])
    assert sorted(document["pictures"]) == sorted(n for n in files if n.endswith(".png"))
    for name in document["pictures"]:
        assert files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_first_model_gets_a_report_of_its_own(backend, trained_run, out, tmp_path):
    assert evaluate(trained_run, out) == 0
    document = json.loads(report_of(backend, trained_run, tmp_path)["evaluation_report.json"]
                          .read_text())
    assert list(document["models"]) == ["new"]
