"""score.py: request checks in-process, then the real azmlinfsrv serving a registered model."""
import json
import math

import joblib
import numpy as np
import pytest
import requests

from diabetes_regression.parameters import load_parameters
from diabetes_regression.scoring import score
from diabetes_regression.training.train import load_sample_data, split_data, train_model
from ml_service.backends.local import LocalBackend
from ml_service.pipelines.diabetes_regression_pipeline import scoring_service_spec
from ml_service.util.smoke_test_scoring_service import smoke_test

SAMPLE = load_parameters().scoring.sample
ROW = SAMPLE["data"][0]


@pytest.mark.parametrize("data, message", [
    ("abc", "'data' must be a list of rows, got str"),
    ([], "'data' is empty"),
    ([ROW[:3]], "row 0 has 3 values; the model needs 10"),
    ([ROW, "x"], "row 1 must be a list of 10 numbers, got str"),
    ([ROW[:9] + ["a"]], "row 0, column 9: 'a' is not a number"),
    ([ROW[:9] + [True]], "row 0, column 9: True is not a number"),
    ([ROW[:9] + [math.nan]], "row 0, column 9: nan is not a finite number"),
    ([ROW[:9] + [math.inf]], "row 0, column 9: inf is not a finite number"),
])
def test_parse_rows_names_the_problem(data, message):
    with pytest.raises(score.RequestError, match=message.replace("(", r"\(")) as caught:
        score.parse_rows(data, 10)
    assert caught.value.status == 400


def test_too_many_rows_is_413():
    with pytest.raises(score.RequestError, match="3 rows; at most 2") as caught:
        score.parse_rows([ROW] * 3, 10, max_rows=2)
    assert caught.value.status == 413


def test_find_model_file_wants_exactly_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="found 0"):
        score.find_model_file(tmp_path)
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.pkl").write_bytes(b"")
    assert score.find_model_file(tmp_path).name == "model.pkl"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The production model served by the real azmlinfsrv, stopped afterwards."""
    root = tmp_path_factory.mktemp("scoring") / ".mlops"
    backend = LocalBackend(root)
    data = split_data(load_sample_data())
    model = train_model(data, {"alpha": 0.5})
    model_path = root.parent / "diabetes_regression_model.pkl"
    joblib.dump(model, model_path)
    run_id = backend.start_pipeline_run("p", {})
    version = backend.register_model("diabetes_regression_model.pkl", model_path, run_id, {})
    backend.set_production_model(version.name, version.version)
    deployment = backend.deploy_model(backend.get_production_model(version.name), "test-svc",
                                      scoring_service_spec())
    yield deployment, model
    assert backend.delete_deployment("test-svc") is True
    with pytest.raises(requests.ConnectionError):
        requests.get(deployment.scoring_uri.rsplit("/", 1)[0] + "/", timeout=2)


@pytest.mark.integration
def test_the_server_scores_like_the_model(service):
    deployment, model = service
    response = requests.post(deployment.scoring_uri, json=SAMPLE, timeout=10)
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["result"], model.predict(np.array(SAMPLE["data"])))
    assert smoke_test(deployment.scoring_uri, SAMPLE, total_s=10) == response.json()["result"]


BAD_REQUESTS = [
    ("malformed JSON", b'{"data": [[1, 2', 400, "could not be decoded as JSON"),
    ("missing data", json.dumps({"rows": [ROW]}), 400, "'data'"),
    ("empty list", json.dumps({"data": []}), 400, "'data' is empty"),
    ("wrong feature count", json.dumps({"data": [ROW[:4]]}), 400, "the model needs 10"),
    ("non-numeric", json.dumps({"data": [ROW[:9] + ["x"]]}), 400, "is not a number"),
    ("NaN", '{"data": [[' + ", ".join(["NaN"] * 10) + "]]}", 400, "not a finite number"),
    ("infinity", '{"data": [[' + ", ".join(["Infinity"] * 10) + "]]}", 400,
     "not a finite number"),
    ("data not a list", json.dumps({"data": "abc"}), 400, "must be a list of rows"),
    ("too many rows", json.dumps({"data": [ROW] * 1001}), 413, "at most 1000"),
    ("body not an object", json.dumps([ROW]), 400, "JSON dictionary"),
]


@pytest.mark.integration
@pytest.mark.parametrize("name, body, status, message", BAD_REQUESTS,
                         ids=[b[0] for b in BAD_REQUESTS])
def test_client_errors_get_a_4xx_naming_the_problem(service, name, body, status, message):
    deployment, _ = service
    response = requests.post(deployment.scoring_uri, data=body, timeout=10,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert message in response.json()["message"]


@pytest.mark.integration
def test_swagger_describes_the_input(service):
    deployment, _ = service
    base = deployment.scoring_uri.rsplit("/", 1)[0]
    swagger = requests.get(base + "/swagger.json", timeout=10).json()
    text = json.dumps(swagger)
    assert swagger["swagger"] == "2.0"
    assert "/score" in swagger["paths"] and '"data"' in text
