"""The batch scoring script (ParallelRunStep's entry script) and its copy-output step.

Model-agnostic: the data, the model and its predictions come from the model package, so
these tests pass unchanged when another model is swapped in.
"""
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from diabetes_regression.parameters import load_parameters
from diabetes_regression.scoring import batchscore_copy_output as copy_output
from diabetes_regression.scoring import parallel_batchscore as batchscore
from diabetes_regression.training.model_files import save_model
from diabetes_regression.training.prediction import predict
from diabetes_regression.training.train import (TARGET_COLUMN, load_sample_data, split_data,
                                                train_model)
from ml_service.errors import ConfigurationError, ModelNotFoundError
from ml_service.paths import PROJECT_ROOT

NAME = "diabetes_regression_model.pkl"
SAMPLE = load_sample_data()
FEATURES = [c for c in SAMPLE.columns if c != TARGET_COLUMN]
TRAINING = load_parameters().training
# Feature columns picked by position, whatever the model package names them.
FIRST, SECOND, THIRD, FIFTH, LAST = (FEATURES[i] for i in (0, 1, 2, 4, -1))


@pytest.fixture(scope="module")
def model():
    return train_model(split_data(SAMPLE), TRAINING)


@pytest.fixture
def model_file(tmp_path, model):
    return save_model(model, tmp_path, NAME)


@pytest.fixture(autouse=True)
def no_loaded_model(monkeypatch):
    """Each test starts, and leaves, the script without a loaded model."""
    monkeypatch.setattr(batchscore, "model", None)


def expected(model, frame):
    return predict(model, frame[FEATURES].to_numpy())["result"]


def test_rows_come_back_in_order_with_prediction_and_error_appended(model):
    frame = SAMPLE.head(50)
    before = frame.copy()
    scored = batchscore.score_frame(frame, model)
    assert list(scored.columns) == list(frame.columns) + ["prediction", "error"]
    assert scored.index.equals(frame.index)
    pd.testing.assert_frame_equal(scored[frame.columns], frame)
    assert (scored["prediction"].to_numpy() == expected(model, frame)).all()
    assert (scored["error"] == "").all()
    pd.testing.assert_frame_equal(frame, before)


@pytest.mark.parametrize("value, problem", [
    ("abc", f"{THIRD} value 'abc' is not a number"),
    (math.nan, f"{THIRD} is missing"),
    (None, f"{THIRD} is missing"),
    (math.inf, f"{THIRD} value inf is not finite"),
    (-math.inf, f"{THIRD} value -inf is not finite"),
    (True, f"{THIRD} value True is not a number"),
    ([1.0], f"{THIRD} value [1.0] is not a number"),
])
def test_a_bad_row_is_kept_with_its_problem_and_no_prediction(model, value, problem):
    frame = SAMPLE.head(6).astype(object)
    frame.at[3, THIRD] = value
    scored = batchscore.score_frame(frame, model)
    assert len(scored) == 6
    assert scored["error"].tolist() == ["", "", "", f"row 3: {problem}", "", ""]
    assert math.isnan(scored["prediction"][3])
    good = [0, 1, 2, 4, 5]
    assert np.allclose(scored["prediction"][good], expected(model, SAMPLE.loc[good]))


def test_every_problem_of_a_row_is_named_with_the_rows_label(model):
    frame = SAMPLE.head(3).astype(object)
    frame.index = [1000, 1001, 1002]
    frame.at[1001, FIRST] = "x"
    frame.at[1001, LAST] = None
    scored = batchscore.score_frame(frame, model)
    assert scored["error"][1001] == \
        f"row 1001: {FIRST} value 'x' is not a number; {LAST} is missing"


def test_a_text_column_read_from_csv_is_converted_where_it_holds_numbers(model, tmp_path):
    frame = SAMPLE.head(4).copy()
    path = tmp_path / "mixed.csv"
    frame.to_csv(path, index=False)
    text = path.read_text().splitlines()
    fields = text[2].split(",")  # row 1
    fields[list(frame.columns).index(THIRD)] = "1.2.3"
    text[2] = ",".join(fields)
    path.write_text("\n".join(text) + "\n")
    read = pd.read_csv(path)
    assert not pd.api.types.is_numeric_dtype(read[THIRD])
    scored = batchscore.score_frame(read, model)
    assert scored["error"].tolist() == ["", f"row 1: {THIRD} value '1.2.3' is not a number",
                                        "", ""]
    assert np.allclose(scored["prediction"][[0, 2, 3]], expected(model, frame.loc[[0, 2, 3]]))


def test_a_column_of_booleans_is_not_numbers(model):
    frame = SAMPLE.head(2).assign(**{SECOND: [True, False]})
    assert frame[SECOND].dtype == bool
    scored = batchscore.score_frame(frame, model)
    assert scored["error"].tolist() == [f"row 0: {SECOND} value True is not a number",
                                        f"row 1: {SECOND} value False is not a number"]


def test_a_model_with_several_outputs_per_row_is_refused():
    # A regressor with two targets, fitted on generated data of the sample's width.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, len(FEATURES)))
    two_targets = LinearRegression().fit(X, X[:, :2] + rng.normal(size=(50, 2)))
    with pytest.raises(ValueError, match=re.escape("predictions of shape (3, 2)")):
        batchscore.score_frame(SAMPLE.head(3), two_targets)


def test_an_empty_mini_batch_gives_an_empty_result(model):
    scored = batchscore.score_frame(SAMPLE.head(0), model)
    assert scored.empty and list(scored.columns)[-2:] == ["prediction", "error"]


@pytest.mark.parametrize("columns, message", [
    (FEATURES[:-1], f"the model reads {len(FEATURES)} feature columns; the input has "
                    f"{len(FEATURES) - 1}"),
    (FEATURES + ["id"], f"the model reads {len(FEATURES)} feature columns; the input has "
                        f"{len(FEATURES) + 1}"),
    (["name", "city"], "the input has 2 (name, city)"),
    (FEATURES + ["prediction"], "already has column(s) prediction"),
])
def test_columns_that_do_not_fit_the_model_are_refused(model, columns, message):
    assert model.n_features_in_ == len(FEATURES)
    with pytest.raises(batchscore.BatchInputError, match=re.escape(message)):
        batchscore.feature_columns(columns, model)


def test_the_target_column_is_not_a_feature(model):
    assert batchscore.feature_columns(list(SAMPLE.columns), model) == FEATURES


def test_a_model_that_knows_its_feature_names_picks_them_and_passes_other_columns():
    frame = SAMPLE[FEATURES].head(30).assign(id=range(30))
    # The example model fitted on a data frame of two columns, which it then names.
    picked = [THIRD, FIFTH]
    data = {part: {"X": SAMPLE[picked], "y": SAMPLE[TARGET_COLUMN]} for part in ("train", "test")}
    named = train_model(data, TRAINING)
    assert list(named.feature_names_in_) == picked
    assert batchscore.feature_columns(frame.columns, named) == picked
    scored = batchscore.score_frame(frame, named)
    assert np.allclose(scored["prediction"], predict(named, frame[picked])["result"])
    assert scored["id"].tolist() == list(range(30))
    with pytest.raises(batchscore.BatchInputError, match=f"feature column.s. missing: {FIFTH}"):
        batchscore.feature_columns([THIRD, "id"], named)


def test_arguments_of_parallel_run_step_are_ignored_and_never_abbreviate_ours():
    argv = ["--client_sdk_version", "1.61.0", "--scoring_module_name", "x.py",
            "--mini_batch_size", "1048576", "--output", "DatasetOutputConfig:scored_rows",
            "--model_name", "m.pkl", "--model_version", "3", "--input_ds_0", "scoring_input"]
    args = batchscore.parse_args(argv)
    assert (args.model_name, args.model_version, args.model_path) == ("m.pkl", "3", None)
    assert batchscore.parse_args(["--model", "other.pkl"]).model_name is None


def test_init_reads_sys_argv_and_run_scores_with_the_loaded_model(model, model_file,
                                                                  monkeypatch):
    with pytest.raises(RuntimeError, match="init"):
        batchscore.run(SAMPLE.head(2))
    monkeypatch.setattr("sys.argv", ["driver.py", "--output", "out", "--model_path",
                                     str(model_file)])
    batchscore.init()
    scored = batchscore.run(SAMPLE.head(20))
    assert (scored["prediction"].to_numpy() == expected(model, SAMPLE.head(20))).all()


def test_a_v2_batch_deployment_scores_its_mounted_model_on_a_list_of_files(
        model, model_file, tmp_path, monkeypatch):
    """A v2 batch deployment mounts the model at AZUREML_MODEL_DIR, passes no arguments
    and hands run() the paths of a mini-batch's files."""
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(model_file.parent))
    batchscore.init([])
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    SAMPLE.head(3).to_csv(first, index=False)
    bad = SAMPLE.iloc[3:6].astype(object)
    bad.iloc[1, bad.columns.get_loc(SECOND)] = "abc"
    bad.to_csv(second, index=False)
    scored = batchscore.run([str(first), str(second)])
    assert list(scored["file"]) == ["a.csv"] * 3 + ["b.csv"] * 3
    assert list(scored.columns[:len(SAMPLE.columns)]) == list(SAMPLE.columns)
    assert np.allclose(scored["prediction"].iloc[:3], expected(model, SAMPLE.head(3)))
    assert scored["error"].tolist()[3:] == [
        "", f"row 1: {SECOND} value 'abc' is not a number", ""]
    assert math.isnan(scored["prediction"].iloc[4])
    assert batchscore.run([]).empty


def test_a_file_that_cannot_be_scored_is_named(model, tmp_path, monkeypatch):
    monkeypatch.setattr(batchscore, "model", model)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(batchscore.BatchInputError, match="empty.csv is not a readable CSV"):
        batchscore.run([str(empty)])
    clash = tmp_path / "clash.csv"
    SAMPLE.head(2).assign(file="x").to_csv(clash, index=False)
    with pytest.raises(batchscore.BatchInputError, match="clash.csv already has a 'file'"):
        batchscore.run([str(clash)])


LOAD_BY_PATH = """
import importlib.util, sys
# As ParallelRunStep's driver: the project is not importable, the script is loaded by path.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path if p not in ("", sys.argv[2])]
try:
    import ml_service
    sys.exit("the project is importable before the script is loaded")
except ImportError:
    pass
spec = importlib.util.spec_from_file_location("parallel_batchscore", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(module.run.__module__, module.TARGET_COLUMN)
"""


@pytest.mark.process
def test_the_script_imports_the_project_when_loaded_by_its_path(tmp_path):
    script = Path(batchscore.__file__)
    done = subprocess.run([sys.executable, "-c", LOAD_BY_PATH, str(script), str(PROJECT_ROOT)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (
        0, f"parallel_batchscore {TARGET_COLUMN}"), done.stderr


def test_a_model_folder_must_hold_exactly_one_model(tmp_path, model, model_file):
    loaded = batchscore.load_model(model_file.parent)
    assert type(loaded) is type(model)
    assert {name: loaded.get_params()[name] for name in TRAINING} == TRAINING
    assert (expected(loaded, SAMPLE.head(5)) == expected(model, SAMPLE.head(5))).all()
    save_model(model, tmp_path, "second")
    with pytest.raises(ModelNotFoundError, match="found 2"):
        batchscore.load_model(tmp_path)
    with pytest.raises(ModelNotFoundError, match="no model at"):
        batchscore.load_model(tmp_path / "missing.pkl")


def register(backend, model_file, production=True):
    run_id = backend.start_pipeline_run("test", {})
    version = backend.register_model(NAME, model_file, run_id, tags={})
    if production:
        backend.set_production_model(NAME, version.version)
    return version


def test_init_loads_a_registered_model_through_the_backend(backend, model, model_file):
    with pytest.raises(ModelNotFoundError, match="has no production version"):
        batchscore.init(["--model_name", NAME])
    register(backend, model_file, production=False)
    register(backend, model_file)
    for version in ("production", "2", "1"):
        batchscore.model = None
        batchscore.init(["--model_name", NAME, "--model_version", version])
        assert (batchscore.run(SAMPLE.head(5))["prediction"].to_numpy()
                == expected(model, SAMPLE.head(5))).all()
    with pytest.raises(ModelNotFoundError, match="version 3"):
        batchscore.init(["--model_version", "3"])
    with pytest.raises(ConfigurationError, match="bad model version 'latest'"):
        batchscore.init(["--model_version", "latest"])


# -- the copy step --------------------------------------------------------------------
def append_row_file(path, scored):
    """What ParallelRunStep's append_row writes: pandas' to_csv, space-separated, no
    header."""
    scored.to_csv(path, sep=" ", header=False, index=False)


@pytest.fixture
def step_folders(tmp_path, model):
    frame = SAMPLE.head(40).astype(object)
    frame.at[7, THIRD] = "a b"
    frame.at[9, FIFTH] = None
    (tmp_path / "input").mkdir()
    SAMPLE.head(3).to_csv(tmp_path / "input" / "scoring.csv", index=False)
    (tmp_path / "scored").mkdir()
    scored = batchscore.score_frame(frame, model)
    append_row_file(tmp_path / "scored" / copy_output.APPEND_ROW_FILE_NAME, scored)
    return tmp_path, scored


def test_the_copy_step_writes_the_rows_with_the_inputs_header(step_folders):
    folder, scored = step_folders
    assert copy_output.main(["--scored_rows", str(folder / "scored"),
                             "--scoring_input", str(folder / "input"),
                             "--output_dir", str(folder / "out"),
                             "--output_file_name", "scores.csv"]) == 0
    written = pd.read_csv(folder / "out" / "scores.csv", keep_default_na=False, dtype=str)
    assert list(written.columns) == list(SAMPLE.columns) + ["prediction", "error"]
    assert len(written) == 40
    assert written["error"][7] == f"row 7: {THIRD} value 'a b' is not a number"
    assert written["error"][9] == f"row 9: {FIFTH} is missing"
    assert written["prediction"][7] == ""
    assert np.allclose(written["prediction"][:7].astype(float), scored["prediction"][:7])
    assert [p.name for p in (folder / "out").iterdir()] == ["scores.csv"]


def test_no_scored_rows_give_a_file_with_the_header_only(step_folders):
    folder, _ = step_folders
    (folder / "scored" / copy_output.APPEND_ROW_FILE_NAME).write_text("")
    assert copy_output.main(["--scored_rows", str(folder / "scored"),
                             "--scoring_input", str(folder / "input"),
                             "--output_dir", str(folder / "out")]) == 0
    assert (folder / "out" / copy_output.DEFAULT_OUTPUT_FILE_NAME).read_text().strip() == \
        ",".join(list(SAMPLE.columns) + ["prediction", "error"])


@pytest.mark.parametrize("header, extra_field, message", [
    ("a,b\n", False, f"have {len(SAMPLE.columns) + 2} fields; expected 4"),
    ("", False, "is empty: it needs a header row"),
    (None, True, "a row does not have the fields of the others"),
])
def test_the_copy_step_refuses_rows_that_do_not_match_the_header(step_folders, caplog, header,
                                                                 extra_field, message):
    folder, _ = step_folders
    if header is not None:
        (folder / "input" / "scoring.csv").write_text(header)
    if extra_field:
        scored_file = folder / "scored" / copy_output.APPEND_ROW_FILE_NAME
        lines = scored_file.read_text().splitlines()
        lines[20] += " 1.5"
        scored_file.write_text("\n".join(lines) + "\n")
    assert copy_output.main(["--scored_rows", str(folder / "scored"),
                             "--scoring_input", str(folder / "input" / "scoring.csv"),
                             "--output_dir", str(folder / "out")]) == 1
    assert message in caplog.text
    assert not (folder / "out").exists() or list((folder / "out").iterdir()) == []


def test_the_copy_step_needs_the_parallel_run_step_output(tmp_path, caplog):
    assert copy_output.main(["--scored_rows", str(tmp_path), "--scoring_input", str(tmp_path),
                             "--output_dir", str(tmp_path / "out")]) == 1
    assert "no ParallelRunStep output file parallel_run_step.txt" in caplog.text
