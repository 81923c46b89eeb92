"""A second example model, for the template's own tests: a binary classifier.

It replaces ``diabetes_regression/training/train.py`` in a rendered copy of the project
(see ``tests/model_variants/render.py``), as a user's swap would: same functions, another
target column, estimator, metrics and sample data. HistGradientBoosting runs OpenMP
threads, which is what a user's LightGBM or XGBoost model brings along.
"""
from typing import Any, Dict, Mapping

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

TARGET_COLUMN = "target"
TEST_SIZE = 0.25
RANDOM_STATE = 0
SAMPLE_ROWS = 2000
SAMPLE_FEATURES = 8

Data = Dict[str, Dict[str, Any]]


class DataValidationError(ValueError):
    """The training data cannot be used as it is."""


def load_sample_data() -> pd.DataFrame:
    """A generated binary dataset: 2,000 rows, 8 features, about 10 % positives."""
    X, y = make_classification(n_samples=SAMPLE_ROWS, n_features=SAMPLE_FEATURES,
                               n_informative=5, weights=[0.9], flip_y=0.02,
                               random_state=RANDOM_STATE)
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(SAMPLE_FEATURES)])
    frame[TARGET_COLUMN] = y
    return frame


def make_example_frame(rows: int = 60, features: int = 4, seed: int = 0) -> pd.DataFrame:
    """Synthetic data shaped like this model's: features ``x0``, ``x1``, ... and a 0/1
    target drawn from a logistic function of them (both classes present from 2 rows)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    score = X @ np.arange(1, features + 1) + rng.normal(scale=0.5, size=rows)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(features)])
    frame[TARGET_COLUMN] = (score > np.median(score)).astype(int)
    return frame


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
    features = df.drop(columns=[TARGET_COLUMN], errors="ignore")
    if features.shape[1] == 0:
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


def train_model(data: Data, args: Mapping[str, Any]) -> HistGradientBoostingClassifier:
    """Fit a gradient-boosted classifier with the given hyperparameters."""
    model = HistGradientBoostingClassifier(**args)
    model.fit(data["train"]["X"], data["train"]["y"])
    return model


def get_model_metrics(model: Any, data: Data) -> Dict[str, float]:
    """Score the model on the test set: auc, accuracy and log loss (auc is NaN when the
    test set holds one class only)."""
    y_true = data["test"]["y"]
    probability = model.predict_proba(data["test"]["X"])[:, 1]
    both = len(np.unique(y_true)) == 2
    return {
        "auc": float(roc_auc_score(y_true, probability)) if both else float("nan"),
        "accuracy": float(accuracy_score(y_true, probability >= 0.5)),
        "log_loss": float(log_loss(y_true, probability, labels=[0, 1])),
    }
