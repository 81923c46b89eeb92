"""The validate step script against the local backend: bad data stops it, changing nothing."""
import json
import logging

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from diabetes_regression.parameters import DEFAULT_PATH
from diabetes_regression.training import train_aml
from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.model_files import save_model
from diabetes_regression.training.train import TARGET_COLUMN as Y
from diabetes_regression.training.train import split_data, train_model
from diabetes_regression.validate import validate_data
from diabetes_regression.validate.validate_data import (ARTIFACT_FOLDER, EDGE_FILE,
                                                        REPORT_FILE, STATUS_TAG, SUMMARY_TAG)
from ml_service.backends.local import STEP_TAG, read_columnar_copy
from ml_service.util.env_variables import TrainingSettings
from ml_service.util.training_record import read_training_record
from tests.conftest import feature_names, make_frame, with_two_features_swapped

MODEL = TrainingSettings().model_name
DATASET = "ds"
X0, X1, X2, X3 = feature_names()
HEADER = ",".join(make_frame().columns)


@pytest.fixture
def production(backend, csv_file, tmp_path):
    """A production model trained on dataset ds version 1 (the csv_file)."""
    dataset = backend.register_dataset(DATASET, csv_file)
    run_id = backend.start_pipeline_run("p", {})
    path = save_model(train_model(split_data(make_frame()), load_parameters().training),
                      tmp_path, MODEL)
    model = backend.register_model(MODEL, path, run_id, {}, dataset)
    backend.set_production_model(MODEL, model.version)
    return model


@pytest.fixture
def out(tmp_path):
    return tmp_path / "validated"


def validate(out, *extra):
    return validate_data.main(["--dataset_name", DATASET, "--step_output", str(out), *extra])


def error_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def last_validate_run(backend):
    return backend.client.search_runs([backend.experiment_id()],
                                      filter_string=f"tags.`{STEP_TAG}` = 'validate'")[0]


def csv_text(frame):
    return frame.to_csv(index=False)


BAD_DATA = [
    pytest.param(csv_text(make_frame().assign(**{Y: 5.0})),
                 f"the target '{Y}' has (near) zero variance: std 0", id="constant target"),
    pytest.param(csv_text(make_frame().assign(**{X3: lambda f: f[Y]})),
                 f"feature '{X3}' is identical to the target '{Y}' (leakage)",
                 id="target as feature"),
    pytest.param(csv_text(make_frame().assign(**{X3: lambda f: 2 * f[Y] + 1})),
                 f"feature '{X3}' is correlated with the target '{Y}' at r=1.0000",
                 id="target scaled as feature"),
    pytest.param(csv_text(make_frame()).replace(HEADER, HEADER.replace(X2, X1), 1),
                 f"duplicated column names: {X1}", id="duplicated column names"),
    pytest.param(csv_text(make_frame(rows=1)),
                 "too few rows for the train/test split: 1 (at least 20", id="one row"),
    pytest.param(HEADER + "\n", "invalid data: the dataset has no rows (only a header)",
                 id="header only"),
    pytest.param("", "is empty: it needs a header row and data rows", id="empty file"),
    pytest.param(csv_text(make_frame().assign(**{X1: [np.nan] + [0.5] * 59})),
                 f"missing values (NaN) in columns: {X1}", id="missing values"),
    pytest.param(csv_text(make_frame().drop(columns=[Y])), f"the target column '{Y}' is missing",
                 id="no target"),
    pytest.param(csv_text(make_frame().assign(**{X0: "a"})), f"non-numeric columns: {X0}",
                 id="text column"),
    pytest.param(csv_text(make_frame().drop(columns=[X2])),
                 f"columns missing compared with the production data: {X2}", id="missing column"),
    pytest.param(csv_text(with_two_features_swapped(make_frame())),
                 "columns in another order than in the production data", id="column order"),
]


@pytest.mark.parametrize("content, message", BAD_DATA)
def test_bad_data_stops_the_step_and_changes_nothing(backend, production, tmp_path, out, caplog,
                                                     content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert validate(out, "--data_file_path", str(path)) == 1
    lines = error_lines(caplog)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert message in lines[0]
    assert backend.find_dataset(DATASET).version == 1
    assert [m.version for m in backend.list_models(MODEL)] == [1]
    assert backend.get_production_model(MODEL).version == production.version
    assert not (out / EDGE_FILE).exists()


def test_the_header_only_message_names_only_the_missing_rows(backend, tmp_path, out, caplog):
    path = tmp_path / "header.csv"
    path.write_text(HEADER + "\n")
    assert validate(out, "--data_file_path", str(path)) == 1
    assert error_lines(caplog) == [
        "DataValidationError: invalid data: the dataset has no rows (only a header)"]


def test_good_data_is_registered_after_it_passed_and_handed_to_the_train_step(
        backend, csv_file, out, tmp_path):
    assert validate(out, "--data_file_path", str(csv_file)) == 0
    edge = json.loads((out / EDGE_FILE).read_text())
    assert (edge["dataset_name"], edge["dataset_version"], edge["status"]) == (DATASET, 1, "pass")
    assert backend.find_dataset(DATASET).version == 1
    run = last_validate_run(backend)
    assert run.data.tags[STATUS_TAG] == "pass"
    assert "no production model to compare with" in run.data.tags[SUMMARY_TAG]
    assert run.data.params["validation.shift.action"] == "warn"

    model_out = tmp_path / "model"
    assert train_aml.main(["--step_output", str(model_out), "--validated_data", str(out)]) == 0
    assert read_training_record(model_out).tags["dataset_version"] == "1"
    assert backend.find_dataset(DATASET).version == 1


def test_the_file_that_passed_is_registered_with_a_columnar_copy_of_what_was_read(
        backend, csv_file, out):
    assert validate(out, "--data_file_path", str(csv_file)) == 0
    registered = backend.dataset_path(backend.find_dataset(DATASET))
    assert registered.read_bytes() == csv_file.read_bytes()
    pd.testing.assert_frame_equal(read_columnar_copy(registered.parent), pd.read_csv(csv_file),
                                  check_exact=True)


def test_a_registered_version_is_checked_and_nothing_new_is_registered(backend, production, out):
    assert validate(out, "--dataset_version", "1") == 0
    assert json.loads((out / EDGE_FILE).read_text())["dataset_version"] == 1
    assert backend.find_dataset(DATASET).version == 1


def test_a_missing_dataset_version_is_named(backend, production, out, caplog):
    assert validate(out, "--dataset_version", "7") == 1
    assert "dataset 'ds' version '7' is not registered" in error_lines(caplog)[0]


def artifacts(backend, tmp_path):
    """The report folder of the last validate run, downloaded from MLflow."""
    run_id = last_validate_run(backend).info.run_id
    folder = backend.client.download_artifacts(run_id, ARTIFACT_FOLDER, str(tmp_path / "dl"))
    return tmp_path / "dl" / ARTIFACT_FOLDER if folder else None


@pytest.fixture
def shifted_file(tmp_path):
    path = tmp_path / "shifted.csv"
    # The production data with one feature moved: the others cannot shift by chance.
    make_frame().assign(**{X2: lambda f: f[X2] + 3}).to_csv(path, index=False)
    return path


def test_a_shift_warns_registers_and_reports_a_picture(backend, production, shifted_file, out,
                                                       tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert validate(out, "--data_file_path", str(shifted_file)) == 0
    assert f"distribution shift from the production data: {X2} (psi" in caplog.text
    assert backend.find_dataset(DATASET).version == 2
    edge = json.loads((out / EDGE_FILE).read_text())
    assert edge["status"] == "warn" and len(edge["warnings"]) == 1
    folder = artifacts(backend, tmp_path)
    report = json.loads((folder / REPORT_FILE).read_text())
    assert report["status"] == "warn" and report["reference"]["dataset_version"] == "1"
    assert report["checks"]["distribution_shift"]["details"]["features"][X2]["shifted"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"shift_{X2}.png", REPORT_FILE])
    assert (folder / f"shift_{X2}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(folder / f"shift_{X2}.png").ndim == 3


def test_a_shift_fails_when_the_rule_says_so(backend, production, shifted_file, out, tmp_path,
                                             caplog):
    document = json.loads(DEFAULT_PATH.read_text())
    document["validation"]["shift"]["action"] = "fail"
    parameters = tmp_path / "parameters.json"
    parameters.write_text(json.dumps(document))
    assert validate(out, "--data_file_path", str(shifted_file),
                    "--parameters", str(parameters)) == 1
    assert f"invalid data: distribution shift from the production data: {X2}" \
        in error_lines(caplog)[0]
    assert backend.find_dataset(DATASET).version == 1
    assert not (out / EDGE_FILE).exists()
    run = last_validate_run(backend)
    assert run.info.status == "FAILED" and run.data.tags[STATUS_TAG] == "fail"
    folder = artifacts(backend, tmp_path)
    assert json.loads((folder / REPORT_FILE).read_text())["status"] == "fail"
    assert (folder / f"shift_{X2}.png").is_file()


def test_a_failed_report_is_logged_too(backend, production, tmp_path, out):
    path = tmp_path / "constant.csv"
    make_frame().assign(**{Y: 1.0}).to_csv(path, index=False)
    assert validate(out, "--data_file_path", str(path)) == 1
    report = json.loads((artifacts(backend, tmp_path) / REPORT_FILE).read_text())
    assert report["status"] == "fail" and report["checks"]["target_variance"]["status"] == "fail"
    assert report["problems"] == [
        f"the target '{Y}' has (near) zero variance: std 0 <= validation.min_target_std 1e-06"]


@pytest.mark.parametrize("content, message", [
    (None, f"no {EDGE_FILE} in"),
    ("{", "is not readable JSON"),
    ('{"dataset_name": "ds", "dataset_version": "one"}', "expected dataset_name"),
    ('{"dataset_name": "ds", "dataset_version": 4}', "dataset 'ds' version 4, passed by the "
                                                     "validate step, is not registered"),
])
def test_the_train_step_names_a_missing_or_damaged_record(backend, production, tmp_path, caplog,
                                                          content, message):
    folder = tmp_path / "edge"
    folder.mkdir()
    if content is not None:
        (folder / EDGE_FILE).write_text(content)
    assert train_aml.main(["--step_output", str(tmp_path / "m"), "--validated_data",
                           str(folder)]) == 1
    assert message in error_lines(caplog)[0]


def test_the_train_step_takes_the_record_or_a_file_not_both(backend, csv_file, out, tmp_path,
                                                            caplog):
    assert train_aml.main(["--step_output", str(tmp_path / "m"), "--validated_data", str(out),
                           "--data_file_path", str(csv_file)]) == 1
    assert "not both" in error_lines(caplog)[0]
    assert backend.find_dataset(DATASET) is None


def test_a_path_that_is_not_a_file_is_read_before_anything_is_registered(
        backend, production, tmp_path, out, caplog):
    """Not a local file: on Azure ML a path on the datastore, read without registering it;
    locally there is nothing to read, which is said, and nothing is registered."""
    versions = backend.find_dataset(DATASET).version
    missing = tmp_path / "no_such.csv"
    assert validate(out, "--data_file_path", str(missing)) == 1
    assert f"no data file at {missing}" in " ".join(error_lines(caplog))
    assert backend.find_dataset(DATASET).version == versions
