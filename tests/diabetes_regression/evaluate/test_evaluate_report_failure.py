"""A report that cannot be drawn or attached is a warning: the evaluation's decision stands."""
import logging
import sys

import pytest
from sklearn.linear_model import Ridge

from diabetes_regression.evaluate import evaluate_model
from diabetes_regression.evaluate.report import NEW, PRODUCTION, REPORT_FOLDER
from diabetes_regression.training.train import TARGET_COLUMN
from tests.conftest import make_frame


@pytest.fixture
def report_inputs():
    """Two small fitted models and the test rows, as the evaluate step hands them over."""
    frame = make_frame(rows=40)
    features, target = frame.drop(columns=TARGET_COLUMN).to_numpy(), frame[TARGET_COLUMN].to_numpy()
    models = {label: (Ridge(alpha=alpha).fit(features, target), {"mse": 1.0})
              for label, alpha in ((NEW, 1.0), (PRODUCTION, 100.0))}
    return {"test": {"X": features, "y": target}}, models


def artifacts(backend, run):
    return [a.path for a in backend.client.list_artifacts(run.id)]


def test_the_report_is_attached_when_it_can_be_drawn(backend, report_inputs):
    with backend.step_run(evaluate_model.STEP_RUN_NAME) as run:
        evaluate_model.log_report(run, *report_inputs)
    assert artifacts(backend, run) == [REPORT_FOLDER]


def test_matplotlib_missing_is_a_warning(backend, report_inputs, monkeypatch, caplog):
    # An environment registered before matplotlib was added: every import of it fails.
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # also when it was never imported
    with backend.step_run(evaluate_model.STEP_RUN_NAME) as run:
        assert evaluate_model.log_report(run, *report_inputs) is None
    assert artifacts(backend, run) == []
    warning, = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "evaluation report was not written" in warning.getMessage()
    assert "ModuleNotFoundError" in warning.getMessage()
    assert "matplotlib" in warning.getMessage()


def _fail(error):
    def fail(*args, **kwargs):
        raise error
    return fail


FAILURES = [("draw", ImportError("No module named 'matplotlib'")),
            ("draw", RuntimeError("Agg could not allocate the canvas")),
            ("draw", MemoryError("out of memory")),
            ("attach", OSError(28, "No space left on device")),
            ("attach", ImportError("No module named 'azure.storage'"))]


@pytest.mark.parametrize("where, error", FAILURES,
                         ids=[f"{where}-{type(error).__name__}" for where, error in FAILURES])
def test_any_failure_to_draw_or_attach_is_a_warning(backend, report_inputs, monkeypatch,
                                                    caplog, where, error):
    if where == "draw":
        monkeypatch.setattr(evaluate_model, "write_evaluation_report", _fail(error))
    with backend.step_run(evaluate_model.STEP_RUN_NAME) as run:
        if where == "attach":
            monkeypatch.setattr(run, "log_artifact", _fail(error))
        evaluate_model.log_report(run, *report_inputs)
    warning, = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert type(error).__name__ in warning.getMessage()
    assert str(error) in warning.getMessage()


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3)],
                         ids=lambda e: type(e).__name__)
def test_an_interruption_is_not_swallowed(backend, report_inputs, monkeypatch, error):
    monkeypatch.setattr(evaluate_model, "write_evaluation_report", _fail(error))
    with pytest.raises(type(error)):
        with backend.step_run(evaluate_model.STEP_RUN_NAME) as run:
            evaluate_model.log_report(run, *report_inputs)
