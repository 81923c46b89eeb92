"""The web app through Flask's test client, against the real served model: the card, the
form, a file, and every way the endpoint can fail, each answered in plain words.

Model-agnostic: fields, kind and limits come from the card, which comes from the model."""
import csv
import io
import json
import socket
import subprocess
import sys

import pytest

from diabetes_regression.training.train import TARGET_COLUMN, load_sample_data
from ml_service.util.model_card import input_fields
from ml_service.webapp import app as webapp
from ml_service.webapp.endpoint import Endpoint, EndpointError
from ml_service.webapp.upload import UploadError, read_rows
from tests.ml_service.webapp.conftest import endpoint_answers, shown_value

# They talk to the real served model (a server of the test process).
pytestmark = pytest.mark.integration

PROBABILITY = "probability"


@pytest.fixture
def settings(served_model, model_card):
    return webapp.WebAppSettings(served_model.deployment.scoring_uri, model_card,
                                 max_upload_bytes=20_000)


@pytest.fixture
def client(settings):
    return webapp.create_app(settings).test_client()


def form_of(card):
    return {field["name"]: str(field["example"]) for field in card["fields"]}


def csv_bytes(header, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def test_the_card_describes_the_model_from_its_own_files(card, served_model):
    version = served_model.version
    assert (card["model"], card["version"]) == (version.name, version.version)
    features = [str(c) for c in load_sample_data().columns if c != TARGET_COLUMN]
    assert [f["name"] for f in card["fields"]] == features
    assert len(features) == served_model.model.n_features_in_
    assert card["production_since"] and card["metrics"]
    assert card["evaluation"]["pictures"] and card["monitoring"] is None


def test_fields_fall_back_to_numbered_names_and_the_signatures_types():
    signature = {"inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int64", '
                           '"shape": [-1, 2]}}]'}
    assert input_fields({}, signature, 2, [3, 4]) == [
        {"name": "feature_1", "type": "integer", "example": 3},
        {"name": "feature_2", "type": "integer", "example": 4}]


def test_the_form_answers_what_the_endpoint_answers(client, card, served_model):
    form = form_of(card)
    page = client.post("/", data=form)
    assert page.status_code == 200
    answer = endpoint_answers(served_model, card, [[float(v) for v in form.values()]])
    shown = shown_value(answer["result"][0])
    assert f'<output id="prediction">{shown}</output>' in page.text


def test_a_field_that_is_not_a_number_is_named_next_to_it(client, card):
    name = card["fields"][0]["name"]
    page = client.post("/", data={**form_of(card), name: "twelve"})
    assert page.status_code == 422
    assert 'aria-invalid="true" aria-describedby="error-1"' in page.text
    assert '<span class="error" id="error-1" role="alert">&#39;twelve&#39; is not a number' \
        in page.text


def test_a_file_comes_back_with_the_endpoints_predictions(client, card, served_model):
    names = [f["name"] for f in card["fields"]]
    rows = [[f["example"] for f in card["fields"]], [0] * len(names)]
    upload = csv_bytes(["note", *reversed(names)],
                       [[f"case {i}", *reversed(row)] for i, row in enumerate(rows)])
    answer = client.post("/file", data={"file": (io.BytesIO(upload), "cases.csv")})
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert 'filename="cases-scored.csv"' in answer.headers["Content-Disposition"]
    scored = list(csv.DictReader(io.StringIO(answer.text)))
    expected = endpoint_answers(served_model, card, [[float(v) for v in row] for row in rows])
    assert [row["note"] for row in scored] == ["case 0", "case 1"]
    assert [str(v) for v in expected["result"]] == [row["prediction"] for row in scored]


@pytest.mark.parametrize("content, message", [
    (b"", "The file is empty"),
    ("wrong\n1\n", "is missing (the header row has wrong)"),
    (None, "Row 3, column"),
    (b"\xff\xfe", "not UTF-8"),
    (b"x" * 20_001, "the limit is 20,000"),
], ids=["empty", "missing column", "not a number", "not utf-8", "too large"])
def test_a_bad_file_is_refused_naming_what_to_fix(client, card, content, message):
    names = [f["name"] for f in card["fields"]]
    if content is None:
        content = csv_bytes(names, [[1] * len(names), ["x"] + [1] * (len(names) - 1)])
    elif isinstance(content, str):
        content = content.encode()
    page = client.post("/file", data={"file": (io.BytesIO(content), "bad.csv")})
    assert page.status_code in (413, 422)
    assert 'role="alert"' in page.text and message in page.text.replace("&#39;", "'")


def test_a_file_of_more_rows_than_a_request_takes_is_sent_in_parts(served_model, card):
    limit = card["max_rows"]
    rows = [[float(f["example"]) for f in card["fields"]]] * (limit + 3)
    endpoint = Endpoint(served_model.deployment.scoring_uri, max_rows=limit)
    assert len(endpoint.score(rows)["result"]) == limit + 3


def test_a_request_the_endpoint_refuses_shows_its_own_message(served_model, card):
    rows = [[0.0] * len(card["fields"])] * (card["max_rows"] + 1)
    with pytest.raises(EndpointError, match="refused the request: .*at most") as caught:
        Endpoint(served_model.deployment.scoring_uri, max_rows=10 ** 6).score(rows)
    assert caught.value.status == 422


def test_an_endpoint_that_is_down_or_slow_is_said_in_plain_words(model_card, card):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = webapp.create_app(webapp.WebAppSettings(f"http://127.0.0.1:{port}/score",
                                                   model_card)).test_client()
    page = down.post("/", data=form_of(card))
    assert page.status_code == 502 and "cannot be reached right now" in page.text
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        slow = Endpoint(f"http://127.0.0.1:{silent.getsockname()[1]}/score", timeout_s=0.3)
        with pytest.raises(EndpointError, match="did not answer within 0.3 seconds") as caught:
            slow.score([[0.0]])
    assert caught.value.status == 504


def test_the_card_page_shows_the_model_and_serves_only_its_pictures(client, card):
    page = client.get("/model")
    assert page.status_code == 200
    assert f'<dd id="card-version">{card["version"]}</dd>' in page.text
    assert all(name in page.text for name in card["metrics"])
    picture = card["evaluation"]["pictures"][0]
    assert client.get(f"/card/{picture}").mimetype == "image/png"
    assert client.get("/card/../card.json").status_code == 404
    assert client.get("/card/card.json").status_code == 404


@pytest.mark.parametrize("env, message", [
    ({}, "WEBAPP_MODEL_CARD not set"),
    ({"WEBAPP_SCORING_URI": "u", "WEBAPP_MODEL_CARD": "c", "WEBAPP_TIMEOUT_S": "soon"},
     "WEBAPP_TIMEOUT_S"),
    ({"WEBAPP_SCORING_URI": "u", "WEBAPP_MODEL_CARD": "c", "WEBAPP_TIMEOUT_S": "0"},
     "must be positive"),
])
def test_bad_settings_are_named(env, message):
    with pytest.raises(webapp.WebAppConfigError, match=message):
        webapp.WebAppSettings.from_env(env)


def test_a_missing_or_empty_card_is_named(tmp_path):
    with pytest.raises(webapp.WebAppConfigError, match="no readable model card"):
        webapp.read_card(tmp_path)
    (tmp_path / "card.json").write_text(json.dumps({"fields": []}))
    with pytest.raises(webapp.WebAppConfigError, match="has no input fields"):
        webapp.read_card(tmp_path)


def test_read_rows_keeps_the_files_own_columns():
    header, rows, numbers = read_rows(b"b,a,c\n2,1,x\n", ["a", "b"], 100, 10)
    assert (header, rows, numbers) == (["b", "a", "c"], [["2", "1", "x"]], [[1.0, 2.0]])
    with pytest.raises(UploadError, match="has 3 rows; the limit is 2"):
        read_rows(b"a\n1\n2\n3\n", ["a"], 100, 2)


@pytest.mark.process
def test_the_app_imports_neither_the_models_stack_nor_an_sdk():
    heavy = "{'mlflow', 'pandas', 'numpy', 'sklearn', 'azureml', 'azure', 'diabetes_regression'}"
    done = subprocess.run(
        [sys.executable, "-c", "import sys, ml_service.webapp.app; "
         f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
