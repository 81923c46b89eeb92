"""The local batch scorer: every row, in order, across worker processes, one atomic output."""
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time

import joblib
import numpy as np
import pandas as pd
import pytest

from diabetes_regression.parameters import load_parameters
from diabetes_regression.scoring import parallel_batchscore
from diabetes_regression.training.model_files import save_model
from diabetes_regression.training.prediction import RESULT_KEY, predict
from diabetes_regression.training.train import (TARGET_COLUMN, load_sample_data, split_data,
                                                train_model)
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines import local_batchscore
from ml_service.pipelines.local_batchscore import MiniBatch, plan_mini_batches, score_csv
from ml_service.util.env_variables import TrainingSettings
from tests.processes import group_members

NAME = TrainingSettings().model_name
FEATURES = [c for c in load_sample_data().columns if c != TARGET_COLUMN]
WIDTH = len(FEATURES)
ROWS = 3000


def answers(model, frame):
    """What the scorers answer for the frame's rows: the model package's predictions."""
    return predict(model, frame[FEATURES].to_numpy())[RESULT_KEY]


@pytest.fixture(scope="module")
def model():
    return train_model(split_data(load_sample_data()), load_parameters().training)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, model):
    """The model saved once for the module: the scorers only read it."""
    return save_model(model, tmp_path_factory.mktemp("model") / "model", NAME)


def scoring_frame(rows=ROWS, seed=1):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(scale=0.05, size=(rows, len(FEATURES))), columns=FEATURES)
    frame[TARGET_COLUMN] = rng.normal(size=rows)  # not read by the scorer
    return frame


@pytest.fixture
def data_csv(tmp_path):
    path = tmp_path / "data" / "scoring.csv"
    path.parent.mkdir()
    scoring_frame().to_csv(path, index=False)
    return path


def leftovers(folder):
    """Files in a folder other than the input (temporary files would show here)."""
    return sorted(p.name for p in folder.iterdir() if p.name != "scoring.csv")


@pytest.mark.process
def test_every_row_is_scored_in_input_order_by_two_workers(model, model_file, data_csv):
    output = data_csv.parent / "scored.csv"
    summary = score_csv(data_csv, output, model_file, workers=2, mini_batch_rows=128)
    assert (summary.rows, summary.bad_rows, summary.mini_batches) == (ROWS, 0, 24)
    scored = pd.read_csv(output)
    frame = pd.read_csv(data_csv)
    assert list(scored.columns) == list(frame.columns) + ["prediction", "error"]
    assert len(scored) == ROWS
    assert (scored["prediction"].to_numpy() == answers(model, frame)).all()
    assert scored["error"].isna().all()
    # Each output line is the input line as it was, with the two columns appended.
    inputs, outputs = data_csv.read_text().splitlines(), output.read_text().splitlines()
    assert all(out.startswith(line + ",") for line, out in zip(inputs, outputs))
    assert leftovers(data_csv.parent) == ["scored.csv"]


@pytest.mark.process
def test_bad_rows_are_kept_and_named_by_their_row_number(model, model_file, tmp_path):
    lines = scoring_frame(300).to_csv(index=False).splitlines()
    first, third, fifth, last = FEATURES[0], FEATURES[2], FEATURES[4], FEATURES[-1]
    bad = {5: (third, "abc", f"{third} value 'abc' is not a number"),
           130: (fifth, "", f"{fifth} is missing"),
           299: (first, "inf", f"{first} value inf is not finite")}
    for row, (column, value, _) in bad.items():
        fields = lines[row + 1].split(",")
        fields[FEATURES.index(column)] = value
        lines[row + 1] = ",".join(fields)
    lines[201] = ""                                     # a blank line: row 200
    # a short row: 250, without its last feature and the target
    lines[251] = ",".join(lines[251].split(",")[:len(FEATURES) - 1])
    bad.update({200: (None, None, "; ".join(f"{c} is missing" for c in FEATURES)),
                250: (None, None, f"{last} is missing")})
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    summary = score_csv(path, tmp_path / "out.csv", model_file, workers=2, mini_batch_rows=64)
    assert (summary.rows, summary.bad_rows) == (300, 5)
    scored = pd.read_csv(tmp_path / "out.csv", keep_default_na=False, dtype=str)
    assert len(scored) == 300 and list(scored.columns)[-2:] == ["prediction", "error"]
    errors = {row: message for row, message in enumerate(scored["error"]) if message}
    assert errors == {row: f"row {row}: {problem}" for row, (_, _, problem) in bad.items()}
    assert all(scored["prediction"][row] == "" for row in bad)
    assert (scored["prediction"] != "").sum() == 295


@pytest.mark.process
def test_quoted_fields_crlf_and_a_missing_last_newline_are_read_right(model, model_file,
                                                                      tmp_path):
    frame = scoring_frame(50)
    text = frame.to_csv(index=False, lineterminator="\r\n")
    lines = text.split("\r\n")
    first = lines[3].split(",")
    first[0] = f'"{first[0]}"'          # a quoted number
    lines[3] = ",".join(first)
    second = lines[20].split(",")
    second[2] = '"two\nlines"'         # a line break inside a quoted field
    lines[20] = ",".join(second)
    path = tmp_path / "quoted.csv"
    path.write_text("\r\n".join(lines).rstrip("\r\n"), newline="")
    summary = score_csv(path, tmp_path / "out.csv", model_file, workers=2, mini_batch_rows=7)
    assert summary.rows == 50
    scored = pd.read_csv(tmp_path / "out.csv")
    assert scored["error"].dropna().tolist() == [
        f"row 19: {FEATURES[2]} value 'two\\nlines' is not a number"]
    good = frame.drop(index=19)
    assert np.allclose(scored["prediction"].drop(index=19), answers(model, good))


@pytest.mark.parametrize("block_bytes", [5, 64, 1 << 20])
def test_mini_batches_cover_the_rows_once_in_order(tmp_path, block_bytes):
    path = tmp_path / "rows.csv"
    path.write_bytes(b'a,b\n1,2\n"3\n",4\n5,6\n\n7,"8"\n9,10')
    layout = local_batchscore.read_layout(path)
    assert layout.columns == ["a", "b"] and layout.data_start == 4
    batches = list(plan_mini_batches(path, layout.data_start, 2, block_bytes=block_bytes))
    data = path.read_bytes()
    assert [(b.first_row, b.rows) for b in batches] == [(0, 2), (2, 2), (4, 2)]
    assert [data[b.start:b.end] for b in batches] == [b'1,2\n"3\n",4\n', b"5,6\n\n",
                                                      b'7,"8"\n9,10']


class BreaksOnLargeValues:
    """A model that fails on a row with a value above ``limit``: a fault inside a worker.

    Workers are not forked from the test process, so a fault must travel in the model file
    (a patch of the test process would not reach them): this class is imported by name.
    """

    def __init__(self, fitted, limit):
        self.fitted, self.limit = fitted, limit
        self.n_features_in_ = fitted.n_features_in_

    def predict(self, features):
        if (np.asarray(features) > self.limit).any():
            raise RuntimeError("the model broke")
        return self.fitted.predict(features)


@pytest.mark.process
def test_a_failing_worker_leaves_no_output_and_no_temporary_file(model, data_csv, tmp_path):
    frame = scoring_frame()
    frame.loc[1000:, FEATURES[0]] = 10.0      # the model breaks from row 1000 on
    frame.to_csv(data_csv, index=False)
    model_path = tmp_path / "breaks.pkl"
    joblib.dump(BreaksOnLargeValues(model, limit=1.0), model_path)
    with pytest.raises(RuntimeError, match="the model broke"):
        score_csv(data_csv, data_csv.parent / "scored.csv", model_path, workers=2,
                  mini_batch_rows=100)
    assert leftovers(data_csv.parent) == []


def ctrl_c():
    raise KeyboardInterrupt


def sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.process
@pytest.mark.parametrize("interrupt", [ctrl_c, sigterm])
def test_an_interrupted_run_leaves_no_output_and_keeps_an_older_one(model_file, data_csv,
                                                                    monkeypatch, interrupt):
    output = data_csv.parent / "scored.csv"
    output.write_text("an older output\n")
    done = local_batchscore._Progress.done

    def interrupt_after_three(progress, batch, bad_rows):
        done(progress, batch, bad_rows)
        if progress.batches == 3:
            interrupt()

    monkeypatch.setattr(local_batchscore._Progress, "done", interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        score_csv(data_csv, output, model_file, workers=2, mini_batch_rows=100)
    assert output.read_text() == "an older output\n"
    output.unlink()
    assert local_batchscore.main(["--input", str(data_csv), "--output", str(output),
                                  "--model_path", str(model_file), "--workers", "2",
                                  "--mini_batch_rows", "100"]) == 130
    assert leftovers(data_csv.parent) == []


@pytest.mark.process
@pytest.mark.parametrize("content, message", [
    (None, "no input file at"),
    (b"", "is empty: it needs a header row and data rows"),
    (b"\nage,sex\n1,2\n", "the first line is empty"),
    (",".join(FEATURES + [TARGET_COLUMN]).encode() + b"\n", "has a header but no data rows"),
    (b"name,city\nx,y\n",
     f"the model reads {WIDTH} feature columns; the input has 2 (name, city)"),
    (b'"age,sex\n1,2\n', "cannot read the header"),
    (",".join(FEATURES).encode() + b"\n" + b"1," * WIDTH + b"1\n",
     f"row 0 has more fields than the {WIDTH} columns of the header"),
    (",".join(FEATURES).encode() + b"\n" + b"1," * (WIDTH - 1) + b"1\n" + b"1," * WIDTH + b"1\n",
     f"Expected {WIDTH} fields in row 1, saw {WIDTH + 1}"),
])
def test_the_cli_refuses_a_bad_input_file_and_writes_nothing(model_file, tmp_path, caplog,
                                                             content, message):
    path = tmp_path / "scoring.csv"
    if content is not None:
        path.write_bytes(content)
    output = tmp_path / "out" / "scored.csv"
    assert local_batchscore.main(["--input", str(path), "--output", str(output),
                                  "--model_path", str(model_file), "--workers", "2"]) == 1
    assert re.search(re.escape(message), caplog.text), caplog.text
    assert not output.exists()
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


@pytest.mark.parametrize("options, message", [
    (["--output", "{input}"], "would replace the input"),
    (["--workers", "0"], "--workers and --mini_batch_rows must be at least 1"),
])
def test_options_that_cannot_work_are_refused(model_file, data_csv, caplog, options, message):
    output = data_csv.parent / "scored.csv"
    options = [option.format(input=data_csv) for option in options]
    assert local_batchscore.main(["--input", str(data_csv), "--output", str(output),
                                  "--model_path", str(model_file)] + options) == 1
    assert message in caplog.text
    assert leftovers(data_csv.parent) == []


@pytest.mark.process
def test_the_cli_scores_with_a_model_file(model_file, data_csv, caplog):
    caplog.set_level(logging.INFO)
    output = data_csv.parent / "scored.csv"
    assert local_batchscore.main(["--input", str(data_csv), "--output", str(output),
                                  "--model_path", str(model_file), "--log_every", "1",
                                  "--mini_batch_rows", "1000"]) == 0
    assert "100.0%  3000 rows in 3 mini-batches" in caplog.text
    assert len(pd.read_csv(output)) == ROWS


@pytest.mark.parametrize("text, quoted", [
    ("row 1: s1 is missing", "row 1: s1 is missing"),
    ("row 2: a,b is missing", '"row 2: a,b is missing"'),
    ('row 3: x value \'"\' is not a number', '"row 3: x value \'""\' is not a number"'),
])
def test_an_error_is_quoted_when_csv_needs_it(text, quoted):
    assert local_batchscore.csv_field(text) == quoted


@pytest.mark.process
def test_the_cli_scores_with_the_production_model_of_the_local_store(backend, model, model_file,
                                                                     data_csv, caplog):
    caplog.set_level(logging.INFO)
    assert local_batchscore.main(["--input", str(data_csv), "--output", "scored.csv"]) == 1
    assert "has no production version" in caplog.text
    run_id = backend.start_pipeline_run("test", {})
    backend.set_production_model(NAME, backend.register_model(NAME, model_file, run_id,
                                                              tags={}).version)
    caplog.clear()
    assert local_batchscore.main(["--input", str(data_csv), "--output", "scored.csv",
                                  "--workers", "2", "--mini_batch_rows", "1000"]) == 0
    assert "Scored 3000 rows (0 bad)" in caplog.text
    scored = pd.read_csv("scored.csv")
    assert np.allclose(scored["prediction"], answers(model, scoring_frame()))


def test_a_mini_batch_that_does_not_parse_to_its_rows_is_an_error(tmp_path):
    path = tmp_path / "cr.csv"
    path.write_bytes(b"a,b\n1,2\r3,4\n")
    with pytest.raises(parallel_batchscore.BatchInputError, match="parse as 2 rows"):
        local_batchscore.parse_rows(path.read_bytes()[4:], ["a", "b"], MiniBatch(4, 12, 0, 1),
                                    path)


@pytest.mark.process
@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="workers watch the scorer by pidfd")
def test_a_kill_of_the_scorer_ends_its_workers_and_their_server(model_file, tmp_path):
    data = tmp_path / "big.csv"
    scoring_frame(rows=200_000).to_csv(data, index=False)
    scorer = subprocess.Popen(
        [sys.executable, "-m", "ml_service.pipelines.local_batchscore", "--input", str(data),
         "--output", str(tmp_path / "scored.csv"), "--model_path", str(model_file),
         "--workers", "2", "--mini_batch_rows", "100"],
        cwd=PROJECT_ROOT, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        # The scorer, the resource tracker, the fork server and two workers.
        deadline = time.monotonic() + 60
        while len(group_members(scorer.pid)) < 5:
            assert scorer.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        scorer.kill()  # kill -9 of the scorer alone, not of its group
        scorer.wait()
        deadline = time.monotonic() + 15
        while group_members(scorer.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_members(scorer.pid) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(scorer.pid, signal.SIGKILL)
        scorer.wait()
