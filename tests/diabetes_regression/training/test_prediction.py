"""The model package's prediction: values for a regressor, probabilities for a classifier."""
import numpy as np
import pytest
from sklearn.linear_model import (ElasticNet, Lasso, LinearRegression, LogisticRegression,
                                  Ridge)
from sklearn.tree import DecisionTreeClassifier

from diabetes_regression.training.prediction import (LABELS_KEY, PROBABILITY, RESULT_KEY, VALUE,
                                                     PredictionError, output_kind, predict)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 3))


@pytest.fixture(scope="module")
def classifier():
    """A small logistic regression with 4 % positives, as in the issue."""
    y = (X[:, 0] > np.quantile(X[:, 0], 0.96)).astype(int)
    return LogisticRegression().fit(X, y)


def test_a_regressor_answers_values():
    model = Ridge().fit(X, X @ [1.0, 2.0, 3.0])
    answer = predict(model, X[:5])
    assert output_kind(model) == VALUE and list(answer) == [RESULT_KEY]
    np.testing.assert_allclose(answer[RESULT_KEY], model.predict(X[:5]))


def test_a_classifier_answers_the_positive_class_probability(classifier):
    answer = predict(classifier, X)
    assert output_kind(classifier) == PROBABILITY and list(answer) == [RESULT_KEY]
    np.testing.assert_allclose(answer[RESULT_KEY], classifier.predict_proba(X)[:, 1])
    # Labels would all be 0 at 4 % positives; the probabilities still rank the risk.
    assert classifier.predict(X).sum() < 8 and len(np.unique(answer[RESULT_KEY])) == len(X)


def test_a_classifier_answers_labels_when_asked(classifier):
    answer = predict(classifier, X[:4], labels=True, kind=PROBABILITY)
    assert list(answer) == [RESULT_KEY, LABELS_KEY]
    np.testing.assert_array_equal(answer[LABELS_KEY], classifier.predict(X[:4]))


def test_labels_of_a_regressor_are_refused():
    with pytest.raises(PredictionError, match="labels are answered by a classifier only"):
        predict(Ridge().fit(X, X[:, 0]), X[:2], labels=True)


@pytest.mark.parametrize("model, message", [
    (DecisionTreeClassifier().fit(X, np.arange(200) % 3), "has 3 classes"),
    (object(), "has no predict method"),
])
def test_unsupported_models_are_named(model, message):
    with pytest.raises(PredictionError, match=message):
        output_kind(model)


def test_an_output_that_is_not_one_value_per_row_is_refused():
    model = Ridge().fit(X, np.c_[X[:, 0], X[:, 1]])
    with pytest.raises(PredictionError, match=r"predictions of shape \(3, 2\) for 3 rows"):
        predict(model, X[:3])


@pytest.mark.parametrize("estimator", [LinearRegression(), Ridge(alpha=0.5), Lasso(alpha=0.01),
                                       ElasticNet(alpha=0.01)])
@pytest.mark.parametrize("rows", [1, 100])
def test_linear_regressors_answer_what_their_predict_answers(estimator, rows):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(200, 6)), rng.normal(size=200)
    model = estimator.fit(X, y)
    features = rng.normal(size=(rows, 6))
    assert np.allclose(predict(model, features)[RESULT_KEY],
                       model.predict(features), rtol=1e-12, atol=1e-12)
