"""Swap in another model, as a user would, and run what must keep working.

The project is rendered into a temporary folder with each variant of the model package:
- tests/model_variants/classifier: a scikit-learn classifier (another target column,
  estimator, metric and sample);
- tests/model_variants/lightgbm: a LightGBM classifier saved with its own MLflow flavour, its
  target first and a metric where lower is better;
each with its library (its library.json: flavour, save options, the pins, then the locks);
and there:
- the generic tests pass unchanged (every test but the model's own contract tests, which
  a user rewrites for their model: GENERIC_TESTS below);
- batch scoring scores the sample with the production model the loop registered.
The loop itself (`make run`, twice, then on a user's CSV) is among the generic tests.
"""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.model_variants.render import VARIANTS as VARIANTS_FOLDER
from tests.model_variants.render import render, rendered_environment

pytestmark = pytest.mark.integration
VARIANTS = ("classifier", "lightgbm")
# Tests of the example model's own contract: a user edits these for their model.
MODEL_CONTRACT_TESTS = ("tests/diabetes_regression/training/test_train.py",
                        "tests/diabetes_regression/test_parameters.py")
GENERIC_TESTS = ("tests/diabetes_regression", "tests/ml_service")
# Tests that never train, load or score a model: they say nothing about a swap, and run once.
MODEL_INDEPENDENT_TESTS = ("tests/ml_service/backends/test_store_init.py",)
# Generous: the generic suite takes minutes (its time is printed by `make test`); a hang
# fails, not blocks.
SUITE_TIMEOUT_S = 45 * 60


@pytest.fixture(scope="module", params=VARIANTS)
def swapped(request, tmp_path_factory):
    """The project, rendered with a variant."""
    return render(request.param, tmp_path_factory.mktemp(f"swap-{request.param}") / "project")


def run_in(folder: Path, argv, timeout: float) -> subprocess.CompletedProcess:
    env = {**rendered_environment(folder), "MLOPS_HYPOTHESIS_PROFILE": "model-swap"}
    return subprocess.run([sys.executable, *argv], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_rendered_copy_imports_the_variant(swapped, request):
    done = run_in(swapped, ["-c", "import diabetes_regression.training.train as t; "
                                  "print(t.__file__)"], 60)
    assert done.stdout.split() == [str(swapped / "diabetes_regression/training/train.py")]
    variant = request.node.callspec.params["swapped"]
    assert (swapped / "diabetes_regression/training/train.py").read_bytes() == \
        (VARIANTS_FOLDER / variant / "train.py").read_bytes()


@pytest.mark.heavy(rank=1)
def test_the_generic_tests_pass_with_the_variant_swapped_in(swapped):
    ignored = [f"--ignore={path}" for path in MODEL_CONTRACT_TESTS + MODEL_INDEPENDENT_TESTS]
    done = run_in(swapped, ["-m", "pytest", "-q", "-p", "no:cacheprovider", *ignored,
                            *GENERIC_TESTS], SUITE_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]


@pytest.mark.heavy(rank=6)
def test_batch_scoring_after_the_loop_with_the_variant(swapped, tmp_path):
    loop = run_in(swapped, ["-m", "ml_service.local_loop"], 600)
    assert loop.returncode == 0, loop.stderr[-3000:]
    metric = json.loads((swapped / "diabetes_regression/parameters.json").read_text())
    assert f"{metric['evaluation']['metric']}=" in loop.stdout
    sample = tmp_path / "input.csv"
    check = run_in(swapped, ["-c", "from diabetes_regression.training.train import "
                                   "load_sample_data as s, TARGET_COLUMN as t; "
                                   f"s().drop(columns=t).to_csv({str(sample)!r}, "
                                   "index=False)"], 120)
    assert check.returncode == 0, check.stderr
    output = tmp_path / "scored.csv"
    done = run_in(swapped, ["-m", "ml_service.pipelines.run_parallel_batchscore_pipeline",
                            "--input", str(sample), "--output", str(output)], 600)
    assert done.returncode == 0, done.stderr[-3000:]
    scored = pd.read_csv(output)
    assert len(scored) == len(pd.read_csv(sample))
    assert scored["prediction"].between(0, 1).all() and scored["error"].isna().all()
