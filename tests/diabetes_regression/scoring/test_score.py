"""score.py: request checks in-process, then the real azmlinfsrv serving a registered model.

Model-agnostic: the data, the model and what it answers come from the model package, so
these tests pass unchanged when another model is swapped in. Tests about a regressor or a
classifier specifically build that estimator from generated data.
"""
import io
import json
import math
import re

import numpy as np
import pytest
import requests
from sklearn.linear_model import LinearRegression, LogisticRegression

from diabetes_regression.parameters import load_parameters
from diabetes_regression.scoring import score
from diabetes_regression.training import prediction
from diabetes_regression.training.model_files import save_model
from diabetes_regression.training.prediction import PROBABILITY, VALUE
from ml_service.util.smoke_test_scoring_service import smoke_test

SCORING = load_parameters().scoring
SAMPLE = SCORING.sample
MAX_ROWS, MAX_BODY_BYTES = SCORING.max_rows, SCORING.max_body_bytes
ROWS = SAMPLE["data"]
ROW = ROWS[0]
# The sample request has the model's width (the service fixture checks it against the model).
N = len(ROW)
assert N >= 4, "these tests cut a row into pieces: the sample needs 4 features or more"


def scorer(n_features=N, max_rows=1000, kind=VALUE, model=None):
    return score.Scorer(model, kind, n_features, max_rows, 1024)


@pytest.mark.parametrize("data, message", [
    ("abc", "'data' must be an array of rows, got the string 'abc'"),
    ([], "'data' is empty"),
    ([ROW[:3]], f"row 0 has 3 values; the model needs {N}"),
    ([ROW[:1]], f"row 0 has 1 value; the model needs {N}"),
    ([ROW, "x"], f"row 1 must be an array of {N} numbers, got the string 'x'"),
    ([ROW, {"a": 1}], f"row 1 must be an array of {N} numbers, got an object"),
    ([ROW[:-1] + ["a" * 100]], f"row 0, column {N - 1}: the string '" + "a" * 40 + "'... is not"),
    ([ROW[:-1] + [True]], f"row 0, column {N - 1}: true is not a number"),
    ([ROW, ROW[:-2] + [None, 1]], f"row 1, column {N - 2}: null is not a number"),
    ([ROW[:-1] + [[1.0]]], f"row 0, column {N - 1}: an array is not a number"),
    ([ROW[:-1] + [math.nan]], f"row 0, column {N - 1}: nan is not a finite number"),
    ([ROW, ROW[:2] + [math.inf] + ROW[3:]], "row 1, column 2: inf is not a finite number"),
    ([ROW[:-1] + [10 ** 400]], f"row 0, column {N - 1}: the integer is too large"),
])
def test_parse_rows_names_the_problem(data, message):
    with pytest.raises(score.RequestError, match=re.escape(message)) as caught:
        score.parse_rows(data, N, 1000)
    assert caught.value.status == 400


def test_parse_rows_returns_a_float_matrix():
    matrix = score.parse_rows([ROW, [1] * N], N, 1000)
    assert matrix.dtype == float and matrix.shape == (2, N)


def test_too_many_rows_is_413():
    with pytest.raises(score.RequestError, match="3 rows; at most 2") as caught:
        score.parse_rows([ROW] * 3, N, max_rows=2)
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


def generated(rows=500, seed=0):
    """Generated features of the sample's width, and a linear score of them."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, N))
    return X, X @ np.arange(1, N + 1) + rng.normal(scale=0.5, size=rows)


def serve(model, folder, monkeypatch):
    """Make ``model`` the one score.init() loads."""
    save_model(model, folder)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(folder))
    return model


@pytest.fixture
def classifier_dir(tmp_path, monkeypatch):
    """A logistic regression on generated features, 4 % positives, as the served model."""
    X, score_ = generated()
    y = (score_ > np.quantile(score_, 0.96)).astype(int)
    return serve(LogisticRegression().fit(X, y), tmp_path, monkeypatch)


@pytest.fixture
def regressor_dir(tmp_path, monkeypatch):
    """A linear regression on generated features, as the served model."""
    X, y = generated()
    return serve(LinearRegression().fit(X, y), tmp_path, monkeypatch)


def test_run_answers_a_classifier_s_probabilities_and_labels_on_request(classifier_dir):
    score.init()
    rows = np.array(ROWS)
    answer = score.run({"data": ROWS})
    assert list(answer) == ["result"]
    np.testing.assert_allclose(answer["result"], classifier_dir.predict_proba(rows)[:, 1])
    labelled = score.run({"data": ROWS, "labels": True})
    assert labelled["labels"] == classifier_dir.predict(rows).tolist()
    refused = score.run({"data": [ROW[:2]]})
    assert refused.status_code == 400 and f"the model needs {N}".encode() in refused.get_data()


def test_run_answers_a_regressor_s_values_and_refuses_labels(regressor_dir):
    score.init()
    answer = score.run({"data": ROWS})
    assert list(answer) == ["result"]
    np.testing.assert_allclose(answer["result"], regressor_dir.predict(np.array(ROWS)))
    refused = score.run({"data": ROWS, "labels": True})
    assert refused.status_code == 400
    assert b"'labels' is for a classifier" in refused.get_data()


def test_run_answers_a_400_when_the_model_s_output_overflows(regressor_dir):
    score.init()
    with np.errstate(over="ignore"):  # the overflow is what this test makes
        assert not np.isfinite(regressor_dir.predict(np.full((1, N), 1e308))).all()
        refused = score.run({"data": [[1e308] * N]})
    assert refused.status_code == 400
    assert json.loads(refused.get_data())["message"].startswith(
        "row(s) 0: the model's output is not finite")


def test_find_model_wants_exactly_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="found 0"):  # ModelFileError is one
        score.find_model(tmp_path)
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.pkl").write_bytes(b"")
    assert score.find_model(tmp_path).name == "model.pkl"


@pytest.fixture
def service(served_model):
    """The served model (tests/conftest.py): its deployment and the estimator."""
    assert served_model.model.n_features_in_ == N, \
        "parameters.json's scoring.sample does not fit the model"
    return served_model.deployment, served_model.model


def is_classifier(model):
    return prediction.output_kind(model) == PROBABILITY


@pytest.mark.integration
def test_the_server_scores_like_the_model(service):
    deployment, model = service
    response = requests.post(deployment.scoring_uri, json=SAMPLE, timeout=10)
    assert response.status_code == 200
    assert list(response.json()) == ["result"]
    np.testing.assert_allclose(response.json()["result"],
                               prediction.predict(model, np.array(ROWS))["result"])
    assert smoke_test(deployment.scoring_uri, SAMPLE, total_s=10) == response.json()["result"]


@pytest.mark.integration
def test_the_server_answers_labels_for_a_classifier_only(service):
    deployment, model = service
    response = requests.post(deployment.scoring_uri, json={"data": ROWS, "labels": True},
                             timeout=10)
    if is_classifier(model):
        assert response.status_code == 200, response.text
        expected = prediction.predict(model, np.array(ROWS), labels=True)
        assert list(response.json()) == list(expected)
        np.testing.assert_allclose(response.json()["result"], expected["result"])
        assert response.json()["labels"] == expected["labels"].tolist()
    else:
        assert response.status_code == 400, response.text
        assert "'labels' is for a classifier" in response.json()["message"]


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
    ("wrong feature count", json.dumps({"data": [ROW[:-1]]}), 400, f"the model needs {N}"),
    ("non-numeric", json.dumps({"data": [ROW[:-1] + ["x"]]}), 400, "is not a number"),
    ("NaN", '{"data": [[' + ", ".join(["NaN"] * N) + "]]}", 400, "not a finite number"),
    ("infinity", '{"data": [[' + ", ".join(["Infinity"] * N) + "]]}", 400,
     "not a finite number"),
    ("labels not a boolean", json.dumps({"data": [ROW], "labels": "yes"}), 400,
     "'labels' must be true or false"),
    ("data not a list", json.dumps({"data": "abc"}), 400, "must be an array of rows"),
    ("too many rows", json.dumps({"data": [ROW] * (MAX_ROWS + 1)}), 413,
     f"at most {MAX_ROWS}"),
    ("body over the limit", b" " * (MAX_BODY_BYTES + 1), 413, f"at most {MAX_BODY_BYTES} bytes"),
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
    deployment, model = service
    # A classifier's request takes "labels", and its example answer shows them.
    labels = is_classifier(model)
    expected = prediction.predict(model, np.array(ROWS), labels=labels)
    base = deployment.scoring_uri.rsplit("/", 1)[0]
    swagger = requests.get(base + "/swagger.json", timeout=10).json()
    assert swagger["swagger"] == "2.0" and "/score" in swagger["paths"]
    body = swagger["definitions"]["ServiceInput"]
    assert list(body["properties"]) == ["data"] + (["labels"] if labels else [])
    assert body["example"]["data"] == ROWS
    answer = swagger["definitions"]["ServiceOutput"]
    assert list(answer["properties"]) == list(expected)
    np.testing.assert_allclose(answer["example"]["result"], expected["result"])
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

    row = json.dumps(ROW).encode() + b","

    def chunks():
        yield b'{"data": ['
        for _ in range(2 * MAX_BODY_BYTES // len(row)):
            yield row

    response = requests.post(deployment.scoring_uri, data=chunks(), timeout=30,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert f"more than {MAX_BODY_BYTES} bytes" in response.json()["message"]
