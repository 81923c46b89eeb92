import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from diabetes_regression.evaluate.evaluation import (IncompatibleProductionError,
                                                     MetricMissingError, compare_models,
                                                     decide_incompatible, metric_value,
                                                     score_production)
from diabetes_regression.parameters import EvaluationParameters

LOWER = EvaluationParameters("mse", higher_is_better=False)
HIGHER = EvaluationParameters("auc", higher_is_better=True)


@pytest.mark.parametrize("gate, new, production, register", [
    # lower is better (a regression error)
    (LOWER, 10.0, None, True),
    (LOWER, 9.0, 10.0, True),
    (LOWER, 10.0, 10.0, False),
    (LOWER, 11.0, 10.0, False),
    (EvaluationParameters("mse", False, min_improvement=0.5), 9.6, 10.0, False),
    (EvaluationParameters("mse", False, min_improvement=0.5), 9.4, 10.0, True),
    # higher is better (a classifier's AUC)
    (HIGHER, 0.7, None, True),
    (HIGHER, 0.8, 0.7, True),
    (HIGHER, 0.7, 0.7, False),
    (HIGHER, 0.6, 0.7, False),
    (EvaluationParameters("auc", True, min_improvement=0.05), 0.74, 0.7, False),
    (EvaluationParameters("auc", True, min_improvement=0.05), 0.76, 0.7, True),
])
def test_decision_table(gate, new, production, register):
    production_metrics = None if production is None else {gate.metric: production}
    decision = compare_models({gate.metric: new}, production_metrics, gate)
    assert decision.register is register
    assert decision.outcome == ("register" if register else "not_registered")
    assert decision.new_value == new and decision.production_value == production


def test_not_better_reason_gives_both_values():
    decision = compare_models({"mse": 11.0}, {"mse": 10.0}, LOWER)
    assert "11" in decision.reason and "10" in decision.reason
    assert "lower is better" in decision.reason


@pytest.mark.parametrize("new, production, owner", [
    ({"rmse": 1.0}, {"mse": 1.0}, "new model"),
    ({"mse": 1.0}, {"rmse": 1.0}, "production model"),
])
def test_a_missing_metric_is_an_error_naming_its_side(new, production, owner):
    with pytest.raises(MetricMissingError, match=f"the {owner} has no metric 'mse'"):
        compare_models(new, production, LOWER)


@pytest.mark.parametrize("value", [math.nan, math.inf, "abc", None])
def test_a_metric_that_is_not_a_finite_number_is_an_error(value):
    with pytest.raises(MetricMissingError):
        metric_value({"mse": value}, "mse", "new model")


def mean_prediction(model, data):
    """A metric function of the test's own: the gate works with whatever the package gives."""
    return {"mean": float(np.mean(model.predict(data["test"]["X"])))}


def _fitted_pair():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ [1.0, 2.0, 3.0]
    data = {"test": {"X": X, "y": y}}
    return Ridge().fit(X, y), LogisticRegression().fit(X, y > 0), data


def test_production_of_another_kind_is_incompatible():
    regressor, classifier, data = _fitted_pair()
    with pytest.raises(IncompatibleProductionError,
                       match="it answers a value per row, the new model a probability"):
        score_production(regressor, classifier, data, mean_prediction)


def test_production_that_fails_on_the_rows_is_incompatible():
    regressor, _, data = _fitted_pair()
    narrow = {"test": {"X": data["test"]["X"][:, :2], "y": data["test"]["y"]}}
    with pytest.raises(IncompatibleProductionError, match="ValueError: X has 2 features"):
        score_production(regressor, regressor, narrow, mean_prediction)


def test_production_scored_with_the_given_function():
    regressor, _, data = _fitted_pair()
    assert score_production(regressor, regressor, data, mean_prediction) \
        == mean_prediction(regressor, data)


@pytest.mark.parametrize("action", ["register", "fail"])
def test_decide_incompatible_follows_the_gate(action):
    gate = EvaluationParameters("mse", False, on_incompatible_production=action)
    if action == "fail":
        with pytest.raises(IncompatibleProductionError, match="set it to 'register'"):
            decide_incompatible({"mse": 1.0}, "why", 3, gate)
        return
    decision = decide_incompatible({"mse": 1.0}, "why", 3, gate)
    assert decision.register and "version 3" in decision.reason and "why" in decision.reason
