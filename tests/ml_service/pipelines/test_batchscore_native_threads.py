"""The local batch scorer with a model whose native threads do not survive a fork.

LightGBM and scikit-learn's HistGradientBoosting run OpenMP (libgomp) threads: a process
forked once the thread pool exists hangs at its first parallel call. The scorer must work for
a caller that has already used such a model. Each case trains the model here, saves it, and
runs the scorer in a child process that first predicts with the model (its OpenMP threads
start), then scores with two workers; a timeout turns a hang into a failure, so a regression
cannot hang the suite.

The models are generic (numpy data, columns f0..f4): nothing here depends on the example model.
"""
import os
import signal
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from diabetes_regression.training.prediction import RESULT_KEY, predict
from ml_service.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration
FEATURES = [f"f{i}" for i in range(5)]
ROWS = 2000
# Far above a normal run (seconds): only a hung worker gets there.
TIMEOUT_SECONDS = 180

# The scorer's caller: it uses the model first (OpenMP threads running), then scores.
SCRIPT = """
import sys

import joblib
import pandas as pd

from diabetes_regression.training.prediction import predict
from ml_service.pipelines.local_batchscore import score_csv

model_path, data, output = sys.argv[1:]
predict(joblib.load(model_path), pd.read_csv(data))
score_csv(data, output, model_path, workers=2, mini_batch_rows=250)
"""


def lightgbm_classifier():
    lightgbm = pytest.importorskip("lightgbm", reason="a dev dependency (pyproject.toml)")
    return lightgbm.LGBMClassifier(n_estimators=20, n_jobs=2, verbose=-1)


def hist_gradient_boosting_classifier():
    return HistGradientBoostingClassifier(max_iter=20)


def labelled_frame(rows, seed):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    labels = (frame["f0"] + frame["f1"] * frame["f2"] > 0).astype(int)
    return frame, labels


def run_with_timeout(command, env):
    """Run a command in its own process group; if it does not finish in time, kill the group
    (the scorer's workers with it) and fail with what it wrote to stderr."""
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, errors = process.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, errors = process.communicate()
        pytest.fail(f"batch scoring did not finish in {TIMEOUT_SECONDS} s: a worker hung (forked "
                    f"after the model's OpenMP threads started?)\n{errors}")
    assert process.returncode == 0, errors


@pytest.mark.parametrize("make_model", [lightgbm_classifier, hist_gradient_boosting_classifier])
def test_a_caller_that_used_an_openmp_model_scores_with_two_workers(tmp_path, make_model):
    features, labels = labelled_frame(500, seed=0)
    model = make_model().fit(features, labels)
    predict(model, features)  # OpenMP threads running in this process too
    model_path, data, output = tmp_path / "model.pkl", tmp_path / "data.csv", tmp_path / "out.csv"
    joblib.dump(model, model_path)
    labelled_frame(ROWS, seed=1)[0].to_csv(data, index=False)
    env = {**os.environ, "OMP_NUM_THREADS": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    run_with_timeout([sys.executable, "-c", SCRIPT, str(model_path), str(data), str(output)], env)
    scored = pd.read_csv(output)
    assert len(scored) == ROWS and scored["error"].isna().all()
    # Parsed as the workers parse it: the same numbers, so exactly the same predictions.
    expected = predict(model, pd.read_csv(data))[RESULT_KEY]
    np.testing.assert_array_equal(scored["prediction"].to_numpy(), expected)
