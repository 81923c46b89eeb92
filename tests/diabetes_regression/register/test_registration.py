import pytest

from diabetes_regression.evaluate.evaluation import MetricMissingError
from diabetes_regression.register.registration import build_model_tags

BASE = dict(run_id="r1", experiment_name="exp", dataset_name="ds", dataset_version="3",
            metrics={"mse": 2.5, "r2": 0.5}, metric_tags=["mse", "r2"])


def test_tags_name_run_experiment_dataset_and_metrics():
    tags = build_model_tags(**BASE)
    assert tags == {"run_id": "r1", "experiment_name": "exp", "dataset_name": "ds",
                    "dataset_version": "3", "mse": "2.5", "r2": "0.5"}


def test_build_tags_only_when_set():
    tags = build_model_tags(**BASE, build_id="42", build_uri="vstfs:///Build/Build/42")
    assert tags["BuildId"] == "42" and tags["BuildUri"] == "vstfs:///Build/Build/42"
    assert "BuildId" not in build_model_tags(**BASE)


def test_a_listed_metric_that_was_not_logged_is_an_error():
    with pytest.raises(MetricMissingError, match="'mae'"):
        build_model_tags(**{**BASE, "metric_tags": ["mae"]})
