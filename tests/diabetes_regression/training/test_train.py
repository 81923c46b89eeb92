import io

import numpy as np
import pandas as pd
import pytest

from diabetes_regression.training.train import (TARGET_COLUMN, DataValidationError,
                                                get_model_metrics, load_sample_data,
                                                split_data, train_model, validate_data)
from tests.conftest import make_frame


def test_split_data_keeps_the_contract_and_is_repeatable():
    frame = make_frame(rows=50)
    first, second = split_data(frame), split_data(frame)
    assert set(first) == {"train", "test"}
    assert first["train"]["X"].shape == (40, 4) and first["test"]["X"].shape == (10, 4)
    assert len(first["train"]["y"]) == 40 and len(first["test"]["y"]) == 10
    np.testing.assert_array_equal(first["test"]["y"], second["test"]["y"])


def test_train_model_matches_mlopspython_example():
    data = {"train": {"X": np.array([1, 2, 3, 4, 5, 6]).reshape(-1, 1),
                      "y": np.array([10, 9, 8, 8, 6, 5])}}
    model = train_model(data, {"alpha": 1.2})
    np.testing.assert_almost_equal(model.predict([[1], [2]]),
                                   [9.93939393939394, 9.03030303030303])


class FixedModel:
    def __init__(self, predictions):
        self.predictions = np.asarray(predictions, dtype=float)

    def predict(self, X):
        return self.predictions


def test_get_model_metrics_computes_each_metric():
    data = {"test": {"X": np.zeros((3, 1)), "y": np.array([1.0, 2.0, 3.0])}}
    metrics = get_model_metrics(FixedModel([1.0, 2.0, 4.0]), data)
    assert metrics["mse"] == pytest.approx(1 / 3)
    assert metrics["rmse"] == pytest.approx(np.sqrt(1 / 3))
    assert metrics["mae"] == pytest.approx(1 / 3)
    assert metrics["r2"] == pytest.approx(0.5)


def test_sample_data_is_the_diabetes_set():
    frame = load_sample_data()
    assert frame.shape == (442, 11)
    assert TARGET_COLUMN in frame.columns
    validate_data(frame)


def test_validate_data_accepts_a_good_frame():
    validate_data(make_frame())


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=[TARGET_COLUMN]), "target column 'Y' is missing"),
    (lambda f: f.assign(Y=[np.nan] + list(f["Y"][1:])), "missing values (NaN) in columns: Y"),
    (lambda f: f.assign(x0="a"), "non-numeric columns: x0"),
    (lambda f: f.iloc[0:0], "no rows"),
    (lambda f: f[[TARGET_COLUMN]], "no feature columns"),
    (lambda f: f.assign(x1=np.inf), "infinite values"),
])
def test_validate_data_names_the_problem(change, message):
    with pytest.raises(DataValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_data(change(make_frame()))


def test_split_then_train_then_score_on_sample_data():
    data = split_data(load_sample_data())
    metrics = get_model_metrics(train_model(data, {"alpha": 0.5}), data)
    assert 0 < metrics["r2"] < 1 and metrics["mse"] > 0
    assert isinstance(pd.Series(metrics).sum(), float)


def test_a_header_only_file_has_no_rows_and_is_not_called_non_numeric():
    frame = pd.read_csv(io.StringIO("x0,x1,Y\n"))
    with pytest.raises(DataValidationError) as raised:
        validate_data(frame)
    assert str(raised.value) == "invalid training data: the dataset has no rows"
