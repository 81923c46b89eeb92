"""A third example model, for the template's own tests: LightGBM, through its own MLflow flavour.

It replaces ``diabetes_regression/training/train.py`` in a rendered copy of the project
(see ``tests/model_variants/render.py``), with what a user sets for a library other than
scikit-learn (``library.json``: the flavour in ``model_files.py``, the pins in the three
pyproject.toml files, then the locks and conda files). Unlike the other two models it has no
scikit-learn estimator, takes its target as the FIRST column, names its features otherwise,
gates on a metric where lower is better (log loss), and only warns about a hyperparameter it
does not know, so ``train_model`` checks them itself.
"""
from typing import Any, Dict, Mapping

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.datasets import make_classification
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

TARGET_COLUMN = "claimed"
TEST_SIZE = 0.3
RANDOM_STATE = 1
SAMPLE_ROWS = 1500
SAMPLE_FEATURES = 6

Data = Dict[str, Dict[str, Any]]


class DataValidationError(ValueError):
    """The training data cannot be used as it is."""


def _frame(X: np.ndarray, y: np.ndarray, prefix: str) -> pd.DataFrame:
    """The target first, then the features ``prefix_0``, ``prefix_1``, ..."""
    frame = pd.DataFrame(X, columns=[f"{prefix}_{i}" for i in range(X.shape[1])])
    frame.insert(0, TARGET_COLUMN, y)
    return frame


def load_sample_data() -> pd.DataFrame:
    """A generated binary dataset: 1,500 rows, 6 features, about 20 % positives."""
    X, y = make_classification(n_samples=SAMPLE_ROWS, n_features=SAMPLE_FEATURES,
                               n_informative=4, weights=[0.8], flip_y=0.03,
                               random_state=RANDOM_STATE)
    return _frame(X, y, "signal")


def make_example_frame(rows: int = 60, features: int = 4, seed: int = 0) -> pd.DataFrame:
    """Synthetic data shaped like this model's: the 0/1 target first, drawn from a logistic
    function of the features ``reading_0``, ``reading_1``, ... (both classes from 2 rows)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    score = X @ np.arange(1, features + 1) + rng.normal(scale=0.5, size=rows)
    return _frame(X, (score > np.median(score)).astype(int), "reading")


def validate_data(df: pd.DataFrame) -> None:
    """Raise DataValidationError naming every problem that would spoil training."""
    problems = []
    if df.empty:
        problems.append("the dataset has no rows")
    if TARGET_COLUMN not in df.columns:
        problems.append(f"the target column {TARGET_COLUMN!r} is missing "
                        f"(columns: {', '.join(map(str, df.columns)) or 'none'})")
    elif not df.empty and not df[TARGET_COLUMN].isin([0, 1]).all():
        problems.append(f"the target {TARGET_COLUMN!r} must hold 0 or 1 only")
    if df.drop(columns=[TARGET_COLUMN], errors="ignore").shape[1] == 0:
        problems.append("there are no feature columns")
    non_numeric = [] if df.empty else [
        str(c) for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        problems.append(f"non-numeric columns: {', '.join(non_numeric)}")
    elif not df.empty:
        missing = df.columns[df.isna().any()].tolist()
        if missing:
            problems.append(f"missing values (NaN) in columns: {', '.join(map(str, missing))}")
        elif not np.isfinite(df.to_numpy(dtype=float)).all():
            problems.append("infinite values in the data")
    if problems:
        raise DataValidationError("invalid training data: " + "; ".join(problems))


def split_data(df: pd.DataFrame) -> Data:
    """Split into train and test sets, stratified so both hold both classes."""
    X = df.drop(columns=[TARGET_COLUMN]).values
    y = df[TARGET_COLUMN].values
    counts = np.bincount(y.astype(int), minlength=2)
    stratify = y if counts.min() >= 2 else None
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=RANDOM_STATE, stratify=stratify)
    return {"train": {"X": X_train, "y": y_train}, "test": {"X": X_test, "y": y_test}}


def train_model(data: Data, args: Mapping[str, Any]) -> LGBMClassifier:
    """Fit a LightGBM classifier with the given hyperparameters.

    LightGBM only logs a warning for a parameter it does not know; the train step's contract
    is a TypeError, so the names are checked against the estimator's own. LightGBM's log
    is kept quiet: the step logs what matters."""
    known = LGBMClassifier().get_params()
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise TypeError(f"LGBMClassifier got unexpected hyperparameters: {', '.join(unknown)}"
                        f" (it takes {', '.join(sorted(known))})")
    model = LGBMClassifier(**args, verbose=-1)
    model.fit(data["train"]["X"], data["train"]["y"])
    return model


def get_model_metrics(model: Any, data: Data) -> Dict[str, float]:
    """Score the model on the test set: log loss, auc and accuracy (auc is NaN when the test
    set holds one class only)."""
    y_true = data["test"]["y"]
    probability = model.predict_proba(data["test"]["X"])[:, 1]
    both = len(np.unique(y_true)) == 2
    return {
        "log_loss": float(log_loss(y_true, probability, labels=[0, 1])),
        "auc": float(roc_auc_score(y_true, probability)) if both else float("nan"),
        "accuracy": float(accuracy_score(y_true, probability >= 0.5)),
    }
