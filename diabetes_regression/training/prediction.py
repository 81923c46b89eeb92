"""What the example model answers for each row: the one place every scorer asks.

The online scoring script, batch scoring and the smoke test all go through ``predict``,
so swapping in another model means editing this file (with ``train.py``), nothing else:

- a regressor answers its predicted value for each row;
- a binary classifier answers the probability of its positive class (``classes_[1]``), and
  its predicted label too when the caller asks for labels.

No platform import and no I/O: this module is staged with the scoring script.
"""
from typing import Any, Dict, Optional, Sequence

import numpy as np
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge

# Keys of an answer: the model's output per row, and (on request) a classifier's labels.
RESULT_KEY = "result"
LABELS_KEY = "labels"
VALUE, PROBABILITY = "value", "probability"
# Linear regressors whose predict() is ``X @ coef_ + intercept_`` after input validation.
LINEAR_REGRESSORS = (ElasticNet, Lasso, LinearRegression, Ridge)


class PredictionError(ValueError):
    """The model cannot answer in the form the scorers expect."""


def output_kind(model: Any) -> str:
    """``"probability"`` for a binary classifier, ``"value"`` for anything else that predicts."""
    classes = getattr(model, "classes_", None)
    if classes is None:
        if not callable(getattr(model, "predict", None)):
            raise PredictionError(f"{type(model).__name__} has no predict method")
        return VALUE
    if len(classes) != 2 or not callable(getattr(model, "predict_proba", None)):
        raise PredictionError(
            f"{type(model).__name__} has {len(classes)} classes"
            f"{'' if callable(getattr(model, 'predict_proba', None)) else ' and no predict_proba'}"
            "; the scorers answer the positive-class probability of a binary classifier: "
            "edit diabetes_regression/training/prediction.py for another output")
    return PROBABILITY


def predict(model: Any, features: Any, labels: bool = False,
            kind: str = "") -> Dict[str, np.ndarray]:
    """One output per row under RESULT_KEY (a value, or the positive-class probability), and a
    classifier's labels under LABELS_KEY when ``labels`` is true.

    ``kind`` is ``output_kind(model)``, computed once by a caller that predicts often.
    """
    kind = kind or output_kind(model)
    if labels and kind != PROBABILITY:
        raise PredictionError("labels are answered by a classifier only; this model predicts "
                              "values")
    if kind == PROBABILITY:
        result = np.asarray(model.predict_proba(features))[:, 1]
    else:
        result = _linear_values(model, features)
        if result is None:
            result = np.asarray(model.predict(features))
    _check_shape(result, features)
    answer = {RESULT_KEY: result}
    if labels:
        answer[LABELS_KEY] = np.asarray(model.predict(features))
    return answer


def _check_shape(result: np.ndarray, features: Sequence[Any]) -> None:
    """One output per row, or PredictionError naming the shape the model gave."""
    if result.ndim != 1 or len(result) != len(features):
        raise PredictionError(f"the model answered predictions of shape {result.shape} for "
                              f"{len(features)} rows; the scorers need one value per row")


def _linear_values(model: Any, features: Any) -> Optional[np.ndarray]:
    """A linear regressor's predictions computed directly, for a float matrix the caller has
    already checked (finite, one column per feature); None for anything else.

    scikit-learn's predict() validates its input again on every call, which costs more than
    the arithmetic for a few rows; the scoring script has checked the rows itself. Exact
    types only: a subclass may predict differently.
    """
    if type(model) not in LINEAR_REGRESSORS or not isinstance(features, np.ndarray) \
            or features.dtype != np.float64 or features.ndim != 2:
        return None
    coef = np.asarray(model.coef_)
    if coef.ndim != 1 or features.shape[1] != coef.shape[0]:
        return None
    return features @ coef + model.intercept_
