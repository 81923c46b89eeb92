"""Pure training code for the example model: no platform imports, no I/O.

Everything specific to the model lives here: the target column, the estimator, its
metrics, the sample data and the synthetic data the tests make. With ``prediction.py``
(what a prediction is) and ``parameters.json``, it is all a swap of the model edits: the
rest of the project, and its generic tests, ask this module.
"""
from typing import Any, Dict, Mapping

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

TARGET_COLUMN = "Y"
TEST_SIZE = 0.2
RANDOM_STATE = 0

Data = Dict[str, Dict[str, Any]]


class DataValidationError(ValueError):
    """The training data cannot be used as it is."""


def load_sample_data() -> pd.DataFrame:
    """Return the sample dataset: scikit-learn's bundled diabetes data, target in ``Y``."""
    bunch = load_diabetes()
    frame = pd.DataFrame(bunch.data, columns=bunch.feature_names)
    frame[TARGET_COLUMN] = bunch.target
    return frame


def make_example_frame(rows: int = 60, features: int = 4, seed: int = 0) -> pd.DataFrame:
    """Synthetic data shaped like this model's (numeric features ``x0``, ``x1``, ... and
    the target), with a target the model can learn: what tests and benchmarks train on."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(features)])
    frame[TARGET_COLUMN] = X @ np.arange(1, features + 1) + rng.normal(scale=0.1, size=rows)
    return frame


def validate_data(df: pd.DataFrame) -> None:
    """Raise DataValidationError naming every problem that would spoil training."""
    problems = []
    if df.empty:
        problems.append("the dataset has no rows")
    if TARGET_COLUMN not in df.columns:
        problems.append(f"the target column {TARGET_COLUMN!r} is missing "
                        f"(columns: {', '.join(map(str, df.columns)) or 'none'})")
    features = df.drop(columns=[TARGET_COLUMN], errors="ignore")
    if features.shape[1] == 0:
        problems.append("there are no feature columns")
    # A header-only file has no values, and pandas reads its empty columns as text: they
    # are not "non-numeric", there is just nothing in them.
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
    """Split a frame into train and test sets: ``{"train": {"X", "y"}, "test": {"X", "y"}}``."""
    X = df.drop(columns=[TARGET_COLUMN]).values
    y = df[TARGET_COLUMN].values
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=RANDOM_STATE)
    return {"train": {"X": X_train, "y": y_train}, "test": {"X": X_test, "y": y_test}}


def train_model(data: Data, args: Mapping[str, Any]) -> Ridge:
    """Fit a Ridge regression on the training set with the given hyperparameters."""
    model = Ridge(**args)
    model.fit(data["train"]["X"], data["train"]["y"])
    return model


def get_model_metrics(model: Any, data: Data) -> Dict[str, float]:
    """Score the model on the test set: mse, rmse, mae and r2."""
    y_true = data["test"]["y"]
    predictions = model.predict(data["test"]["X"])
    mse = float(mean_squared_error(y_true, predictions))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(mean_absolute_error(y_true, predictions)),
        "r2": float(r2_score(y_true, predictions)) if len(y_true) > 1 else float("nan"),
    }
