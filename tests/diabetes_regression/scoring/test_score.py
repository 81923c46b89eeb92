"""score.py: request checks in-process, then the real azmlinfsrv serving a registered model."""
import io
import json
import math
import re

import joblib
import numpy as np
import pytest
import requests
from sklearn.linear_model import LogisticRegression

from diabetes_regression.parameters import load_parameters
from diabetes_regression.scoring import score
from diabetes_regression.training.prediction import PROBABILITY, VALUE
from diabetes_regression.training.train import (TARGET_COLUMN, load_sample_data, split_data,
                                                train_model)
from ml_service.backends.local import LocalBackend
from ml_service.pipelines.diabetes_regression_pipeline import scoring_service_spec
from ml_service.util.smoke_test_scoring_service import smoke_test

SAMPLE = load_parameters().scoring.sample
ROWS = SAMPLE["data"]
ROW = ROWS[0]


def scorer(n_features=10, max_rows=1000, kind=VALUE, model=None):
    return score.Scorer(model, kind, n_features, max_rows, 1024)


@pytest.mark.parametrize("data, message", [
    ("abc", "'data' must be an array of rows, got the string 'abc'"),
    ([], "'data' is empty"),
    ([ROW[:3]], "row 0 has 3 values; the model needs 10"),
    ([ROW[:1]], "row 0 has 1 value; the model needs 10"),
    ([ROW, "x"], "row 1 must be an array of 10 numbers, got the string 'x'"),
    ([ROW, {"a": 1}], "row 1 must be an array of 10 numbers, got an object"),
    ([ROW[:9] + ["a" * 100]], "row 0, column 9: the string '" + "a" * 40 + "'... is not"),
    ([ROW[:9] + [True]], "row 0, column 9: true is not a number"),
    ([ROW, ROW[:8] + [None, 1]], "row 1, column 8: null is not a number"),
    ([ROW[:9] + [[1.0]]], "row 0, column 9: an array is not a number"),
    ([ROW[:9] + [math.nan]], "row 0, column 9: nan is not a finite number"),
    ([ROW, ROW[:2] + [math.inf] + ROW[3:]], "row 1, column 2: inf is not a finite number"),
    ([ROW[:9] + [10 ** 400]], "row 0, column 9: the integer is too large"),
])
def test_parse_rows_names_the_problem(data, message):
    with pytest.raises(score.RequestError, match=re.escape(message)) as caught:
        score.parse_rows(data, 10, 1000)
    assert caught.value.status == 400


def test_parse_rows_returns_a_float_matrix():
    matrix = score.parse_rows([ROW, [1] * 10], 10, 1000)
    assert matrix.dtype == float and matrix.shape == (2, 10)


def test_too_many_rows_is_413():
    with pytest.raises(score.RequestError, match="3 rows; at most 2") as caught:
        score.parse_rows([ROW] * 3, 10, max_rows=2)
    assert caught.value.status == 413


@pytest.mark.parametrize("body, message", [
    (b"\xff", "not UTF-8 text: byte 0xff at offset 0"),
    (b" ", "the body is empty"),
    (b'{"data": [[1, 2', "could not be decoded as JSON"),
    (b"[" * 100_000, "nested too deeply"),
])
def test_decode_body_names_the_problem(body, message):
    with pytest.raises(score.RequestError, match=re.escape(message)):
        score.decode_body(body)


def test_decode_body_parses_any_integer_as_a_float():
    assert score.decode_body(b'{"data": [[1, ' + b"9" * 5000 + b"]]}") == {
        "data": [[1.0, math.inf]]}


@pytest.mark.parametrize("payload, kind, message", [
    ([1], VALUE, "the body must be a JSON object such as"),
    ({"rows": []}, VALUE, "unknown key(s) 'rows'"),
    ({}, VALUE, "the body has no 'data'"),
    ({"data": [ROW], "labels": 1.0}, PROBABILITY, "'labels' must be true or false, got the "
                                                  "number 1.0"),
    ({"data": [ROW], "labels": True}, VALUE, "'labels' is for a classifier"),
])
def test_parse_body_names_the_problem(payload, kind, message):
    with pytest.raises(score.RequestError, match=re.escape(message)):
        score.parse_body(payload, scorer(kind=kind))


@pytest.mark.parametrize("content_length, body, status, message", [
    (2000, b"", 413, "the body has 2000 bytes; at most 1024 bytes per request"),
    (None, b"x" * 1025, 413, "the body has more than 1024 bytes"),
])
def test_read_body_refuses_a_body_over_the_limit(content_length, body, status, message):
    with pytest.raises(score.RequestError, match=re.escape(message)) as caught:
        score.read_body(io.BytesIO(body), content_length, 1024)
    assert caught.value.status == status


def test_read_body_turns_a_broken_stream_into_a_400():
    class Broken(io.RawIOBase):
        def read(self, size=-1):
            raise OSError("chunk size invalid")

    with pytest.raises(score.RequestError, match="could not be read: chunk size invalid"):
        score.read_body(Broken(), None, 1024)


@pytest.mark.parametrize("method, mimetype, status", [
    ("GET", "application/json", 405), ("PUT", "application/json", 405),
    ("POST", "", 415), ("POST", "text/plain", 415),
])
def test_method_and_content_type_are_checked(method, mimetype, status):
    with pytest.raises(score.RequestError) as caught:
        score.check_method(method)
        score.check_content_type(mimetype)
    assert caught.value.status == status


@pytest.mark.parametrize("mimetype", ["application/json", "application/problem+json"])
def test_json_content_types_are_accepted(mimetype):
    score.check_content_type(mimetype)


def test_an_output_overflow_is_a_400_naming_the_rows():
    with pytest.raises(score.RequestError, match=r"row\(s\) 1: the model's output is not"):
        score.check_answer(np.array([1.0, np.inf]))


@pytest.fixture
def classifier_dir(tmp_path, monkeypatch):
    """A logistic regression on the sample features, 4 % positives, as the served model."""
    frame = load_sample_data()
    X = frame.drop(columns=[TARGET_COLUMN]).to_numpy()
    y = (frame[TARGET_COLUMN] > frame[TARGET_COLUMN].quantile(0.96)).to_numpy().astype(int)
    model = LogisticRegression().fit(X, y)
    joblib.dump(model, tmp_path / "model.pkl")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    return model


def test_run_answers_a_classifier_s_probabilities_and_labels_on_request(classifier_dir):
    score.init()
    rows = np.array(ROWS)
    answer = score.run({"data": ROWS})
    assert list(answer) == ["result"]
    np.testing.assert_allclose(answer["result"], classifier_dir.predict_proba(rows)[:, 1])
    labelled = score.run({"data": ROWS, "labels": True})
    assert labelled["labels"] == classifier_dir.predict(rows).tolist()
    refused = score.run({"data": [ROW[:2]]})
    assert refused.status_code == 400 and b"the model needs 10" in refused.get_data()


def test_find_model_file_wants_exactly_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="found 0"):  # ModelFileError is one
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
    ("not UTF-8 in a value", b'{"data": [[\xff,1]]}', 400, "not UTF-8 text: byte 0xff"),
    ("not UTF-8 in a key", b'{"d\xe4ta": 1}', 400, "not UTF-8 text: byte 0xe4 at offset 3"),
    ("integer over 4300 digits", b'{"data": [[' + b"1" * 5000 + b"]]}", 400,
     "row 0 has 1 value"),
    ("integer 10**400", json.dumps({"data": [[10 ** 400] + ROW[1:]]}), 400,
     "row 0, column 0: inf is not a finite number"),
    # Well-formed: parsed (orjson allows 1,024 levels), then refused for what it is.
    ("nested 1,000 deep", b"[" * 1000 + b"]" * 1000, 400,
     "the body must be a JSON object such as"),
    ("nested 100,000 deep", b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400,
     "nested too deeply"),
    ("missing data", json.dumps({"rows": [ROW]}), 400, "unknown key(s) 'rows'"),
    ("empty list", json.dumps({"data": []}), 400, "'data' is empty"),
    ("wrong feature count", json.dumps({"data": [ROW[:4]]}), 400, "the model needs 10"),
    ("non-numeric", json.dumps({"data": [ROW[:9] + ["x"]]}), 400, "is not a number"),
    ("NaN", '{"data": [[' + ", ".join(["NaN"] * 10) + "]]}", 400, "not a finite number"),
    ("infinity", '{"data": [[' + ", ".join(["Infinity"] * 10) + "]]}", 400,
     "not a finite number"),
    ("output overflow", json.dumps({"data": [[1e308] * 10]}), 400, "output is not finite"),
    ("labels of a regressor", json.dumps({"data": [ROW], "labels": True}), 400,
     "'labels' is for a classifier"),
    ("data not a list", json.dumps({"data": "abc"}), 400, "must be an array of rows"),
    ("too many rows", json.dumps({"data": [ROW] * 1001}), 413, "at most 1000"),
    ("body over the limit", b" " * (1024 * 1024 + 1), 413, "at most 1048576 bytes"),
    ("body not an object", json.dumps([ROW]), 400, "must be a JSON object"),
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
    assert swagger["swagger"] == "2.0" and "/score" in swagger["paths"]
    body = swagger["definitions"]["ServiceInput"]
    assert list(body["properties"]) == ["data"] and body["example"]["data"] == ROWS
    answer = swagger["definitions"]["ServiceOutput"]
    assert list(answer["properties"]) == ["result"] and len(answer["example"]["result"]) == 2
    openapi = requests.get(base + "/swagger.json?version=3", timeout=10).json()
    assert openapi["components"]["schemas"]["ServiceInput"] == body


@pytest.mark.integration
@pytest.mark.parametrize("method, status", [("GET", 405), ("PUT", 405), ("DELETE", 405),
                                            ("PATCH", 405), ("OPTIONS", 200)])
def test_other_methods_are_refused_with_a_4xx(service, method, status):
    deployment, _ = service
    response = requests.request(method, deployment.scoring_uri, timeout=10)
    assert response.status_code == status
    if status == 405:
        assert "message" in response.json()


@pytest.mark.integration
@pytest.mark.parametrize("headers, status", [({}, 415), ({"Content-Type": "text/csv"}, 415)])
def test_a_body_not_declared_json_is_415(service, headers, status):
    deployment, _ = service
    response = requests.post(deployment.scoring_uri, data=json.dumps(SAMPLE), headers=headers,
                             timeout=10)
    assert response.status_code == status
    assert "Content-Type must be application/json" in response.json()["message"]


@pytest.mark.integration
def test_a_chunked_body_over_the_limit_is_413(service):
    deployment, _ = service

    def chunks():
        yield b'{"data": ['
        for _ in range(60_000):
            yield json.dumps(ROW).encode() + b","

    response = requests.post(deployment.scoring_uri, data=chunks(), timeout=30,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert "more than 1048576 bytes" in response.json()["message"]
