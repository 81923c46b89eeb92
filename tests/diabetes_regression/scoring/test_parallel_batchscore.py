"""The batch scoring script (ParallelRunStep's entry script) and its copy-output step."""
import math
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from diabetes_regression.scoring import batchscore_copy_output as copy_output
from diabetes_regression.scoring import parallel_batchscore as batchscore
from diabetes_regression.training.train import (TARGET_COLUMN, load_sample_data, split_data,
                                                train_model)
from ml_service.errors import ConfigurationError, ModelNotFoundError
from ml_service.paths import PROJECT_ROOT

NAME = "diabetes_regression_model.pkl"
SAMPLE = load_sample_data()
FEATURES = [c for c in SAMPLE.columns if c != TARGET_COLUMN]


@pytest.fixture(scope="module")
def model():
    return train_model(split_data(SAMPLE), {"alpha": 0.5})


@pytest.fixture
def model_file(tmp_path, model):
    path = tmp_path / NAME
    joblib.dump(model, path)
    return path


@pytest.fixture(autouse=True)
def no_loaded_model(monkeypatch):
    """Each test starts, and leaves, the script without a loaded model."""
    monkeypatch.setattr(batchscore, "model", None)


def expected(model, frame):
    return model.predict(frame[FEATURES].to_numpy())


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
    ("abc", "bmi value 'abc' is not a number"),
    (math.nan, "bmi is missing"),
    (None, "bmi is missing"),
    (math.inf, "bmi value inf is not finite"),
    (-math.inf, "bmi value -inf is not finite"),
    (True, "bmi value True is not a number"),
    ([1.0], "bmi value [1.0] is not a number"),
])
def test_a_bad_row_is_kept_with_its_problem_and_no_prediction(model, value, problem):
    frame = SAMPLE.head(6).astype(object)
    frame.at[3, "bmi"] = value
    scored = batchscore.score_frame(frame, model)
    assert len(scored) == 6
    assert scored["error"].tolist() == ["", "", "", f"row 3: {problem}", "", ""]
    assert math.isnan(scored["prediction"][3])
    good = [0, 1, 2, 4, 5]
    assert np.allclose(scored["prediction"][good], expected(model, SAMPLE.loc[good]))


def test_every_problem_of_a_row_is_named_with_the_rows_label(model):
    frame = SAMPLE.head(3).astype(object)
    frame.index = [1000, 1001, 1002]
    frame.at[1001, "age"] = "x"
    frame.at[1001, "s6"] = None
    scored = batchscore.score_frame(frame, model)
    assert scored["error"][1001] == "row 1001: age value 'x' is not a number; s6 is missing"


def test_a_text_column_read_from_csv_is_converted_where_it_holds_numbers(model, tmp_path):
    frame = SAMPLE.head(4).copy()
    path = tmp_path / "mixed.csv"
    frame.to_csv(path, index=False)
    text = path.read_text().splitlines()
    text[2] = text[2].replace(text[2].split(",")[2], "1.2.3", 1)  # row 1, column bmi
    path.write_text("\n".join(text) + "\n")
    read = pd.read_csv(path)
    assert not pd.api.types.is_numeric_dtype(read["bmi"])
    scored = batchscore.score_frame(read, model)
    assert scored["error"].tolist() == ["", "row 1: bmi value '1.2.3' is not a number", "", ""]
    assert np.allclose(scored["prediction"][[0, 2, 3]], expected(model, frame.loc[[0, 2, 3]]))


def test_a_column_of_booleans_is_not_numbers(model):
    frame = SAMPLE.head(2).assign(sex=[True, False])
    assert frame["sex"].dtype == bool
    scored = batchscore.score_frame(frame, model)
    assert scored["error"].tolist() == ["row 0: sex value True is not a number",
                                        "row 1: sex value False is not a number"]


def test_a_model_with_several_outputs_per_row_is_refused():
    two_targets = Ridge().fit(SAMPLE[FEATURES].to_numpy(), SAMPLE[["Y", "bmi"]].to_numpy())
    with pytest.raises(ValueError, match=re.escape("predictions of shape (3, 2)")):
        batchscore.score_frame(SAMPLE.head(3), two_targets)


def test_an_empty_mini_batch_gives_an_empty_result(model):
    scored = batchscore.score_frame(SAMPLE.head(0), model)
    assert scored.empty and list(scored.columns)[-2:] == ["prediction", "error"]


@pytest.mark.parametrize("columns, message", [
    (FEATURES[:9], "the model reads 10 feature columns; the input has 9"),
    (FEATURES + ["id"], "the model reads 10 feature columns; the input has 11"),
    (["name", "city"], "the input has 2 (name, city)"),
    (FEATURES + ["prediction"], "already has column(s) prediction"),
])
def test_columns_that_do_not_fit_the_model_are_refused(model, columns, message):
    with pytest.raises(batchscore.BatchInputError, match=re.escape(message)):
        batchscore.feature_columns(columns, model)


def test_the_target_column_is_not_a_feature(model):
    assert batchscore.feature_columns(list(SAMPLE.columns), model) == FEATURES


def test_a_model_that_knows_its_feature_names_picks_them_and_passes_other_columns():
    frame = SAMPLE[FEATURES].head(30).assign(id=range(30))
    named = Ridge().fit(SAMPLE[["bmi", "bp"]], SAMPLE[TARGET_COLUMN])
    assert batchscore.feature_columns(frame.columns, named) == ["bmi", "bp"]
    scored = batchscore.score_frame(frame, named)
    assert np.allclose(scored["prediction"], named.predict(frame[["bmi", "bp"]]))
    assert scored["id"].tolist() == list(range(30))
    with pytest.raises(batchscore.BatchInputError, match="feature column.s. missing: bp"):
        batchscore.feature_columns(["bmi", "id"], named)


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


def test_the_script_imports_the_project_when_loaded_by_its_path(tmp_path):
    script = Path(batchscore.__file__)
    done = subprocess.run([sys.executable, "-c", LOAD_BY_PATH, str(script), str(PROJECT_ROOT)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "parallel_batchscore Y"), done.stderr


def test_a_model_folder_must_hold_exactly_one_model_file(tmp_path, model_file):
    assert batchscore.load_model(model_file.parent).alpha == 0.5
    (tmp_path / "second.pkl").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="found 2"):
        batchscore.load_model(tmp_path)
    with pytest.raises(ModelNotFoundError, match="no model file"):
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
    frame.at[7, "bmi"] = "a b"
    frame.at[9, "s1"] = None
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
    assert written["error"][7] == "row 7: bmi value 'a b' is not a number"
    assert written["error"][9] == "row 9: s1 is missing"
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
    ("a,b\n", False, "have 13 fields; expected 4"),
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
