"""Fuzz the real azmlinfsrv serving score.py: no body, header or method may get a 5xx.

Hypothesis generates the requests (seeded and derandomized: the same ones every run, a fixed
number of them); the cases the issue measured are sent too. Afterwards the server must still
be alive and still score a good request as the model does. The model, the sample request and
its width come from the model package, so the test runs unchanged with another model.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.model_files import save_model
from diabetes_regression.training.prediction import predict
from diabetes_regression.training.train import load_sample_data, split_data, train_model
from ml_service.backends.local_server import start_server, stop_server, write_record
from ml_service.paths import PROJECT_ROOT

SCORE_SCRIPT = PROJECT_ROOT / "diabetes_regression" / "scoring" / "score.py"
SAMPLE = load_parameters().scoring.sample
ROW = SAMPLE["data"][0]
# The model's width: the sample request has it (the server fixture checks it).
N = len(ROW)
# The rest of a row of N values after its first: ",1,2,...".
REST = b"".join(b",%d" % i for i in range(1, N))
# Generated requests: 1,200 in `make test`, fewer in the model-swap copy (tests/conftest.py).
GENERATED = settings.default.max_examples
# At least this many are sent: Hypothesis stops early once it has tried every input it can make.
AT_LEAST = GENERATED * 5 // 6
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "application/x+json"]
# The bodies the issue found answered with a 500, and their neighbours.
KNOWN_BAD = [
    b'{"data": [[\xff' + REST + b"]]}",
    b'{"d\xe4ta": [[0' + REST + b"]]}",
    b'{"data": [[' + str(10 ** 400).encode() + REST + b"]]}",
    b'{"data": [[' + b"7" * 4301 + REST + b"]]}",
    b"[" * 1000 + b"]" * 1000,
    b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b"[" * 100_000,
    b'{"data": [[1e400' + REST + b"]]}",
    b'{"data": [[' + b",".join([b"1e308"] * N) + b"]]}",
    b'{"data": [[-0' + REST + b']], "labels": "yes"}',
    b'{"data": [[0' + REST + b']], "labels": true}',
    b"\xef\xbb\xbf" + json.dumps(SAMPLE).encode(),
    json.dumps(SAMPLE).encode("utf-16"),
    b"x" * (2 * 1024 * 1024),
    b"",
]

scalars = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.integers(min_value=10 ** 300, max_value=10 ** 4000) | st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=12)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=60)
rows = st.lists(st.lists(scalars | st.floats(-1, 1), min_size=max(N - 2, 0), max_size=N + 2),
                max_size=4)


def dumps(value: Any) -> bytes:
    """JSON text of a value; huge integers and NaN included, as a client may send them."""
    return json.dumps(value).encode()


@st.composite
def mutated(draw: Any) -> bytes:
    """A good body with bytes inserted, replaced or cut."""
    body = dumps({"data": [ROW, ROW]})
    position = draw(st.integers(0, len(body)))
    junk = draw(st.binary(max_size=6))
    cut = draw(st.integers(0, 4))
    return body[:position] + junk + body[position + cut:]


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(dumps),
    st.fixed_dictionaries({"data": rows}).map(dumps),
    st.fixed_dictionaries({"data": rows, "labels": json_values}).map(dumps),
    st.dictionaries(st.sampled_from(["data", "labels", "Data", ""]), json_values,
                    max_size=3).map(dumps),
    mutated(),
)
requests_ = st.tuples(
    st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    st.sampled_from(JSON_TYPES * 3 + ["", "text/plain", "application/x-www-form-urlencoded",
                                      "application/json; charset=latin-1", "\u00e9/\u00e9"]),
    bodies,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Any:
    """The real azmlinfsrv serving score.py with the example model; stopped afterwards."""
    service_dir = tmp_path_factory.mktemp("fuzz") / "service"
    (service_dir / "model").mkdir(parents=True)
    model = train_model(split_data(load_sample_data()), load_parameters().training)
    assert model.n_features_in_ == N, "parameters.json's scoring.sample does not fit the model"
    save_model(model, service_dir / "model")
    record = start_server(SCORE_SCRIPT, service_dir)
    write_record(service_dir, record)
    yield record, model, service_dir
    stop_server(service_dir)


def send(url: str, method: str, content_type: str, body: bytes) -> requests.Response:
    """One request; a latin-1-unencodable content type is sent as raw bytes."""
    headers = {"Content-Type": content_type.encode("utf-8")} if content_type else {}
    return requests.request(method, url, data=body, headers=headers, timeout=30)


def check(response: requests.Response, seen: List[Tuple[int, bytes]]) -> None:
    """Below 500; a 4xx carries a JSON message, a 200 a result per row."""
    seen.append((response.status_code, response.content[:200]))
    assert response.status_code < 500, response.text
    if response.status_code >= 400 and response.request.method != "HEAD":
        assert response.json()["message"]
    elif response.status_code == 200 and response.request.method == "POST":
        assert isinstance(response.json()["result"], list)


@pytest.mark.integration
def test_no_request_gets_a_5xx_and_the_server_keeps_scoring(server):
    record, model, service_dir = server
    url = record["scoring_uri"]
    log = Path(service_dir / "server.log")
    start_of_requests = log.stat().st_size
    seen: List[Tuple[int, bytes]] = []
    for body in KNOWN_BAD:
        check(send(url, "POST", "application/json", body), seen)

    @settings(max_examples=GENERATED, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(requests_)
    def fuzz(request: Tuple[str, str, bytes]) -> None:
        check(send(url, *request), seen)

    fuzz()
    statuses: Dict[int, int] = {}
    for status, _ in seen:
        statuses[status] = statuses.get(status, 0) + 1
    assert len(seen) >= AT_LEAST + len(KNOWN_BAD), statuses
    assert sum(count for status, count in statuses.items() if status >= 400) >= AT_LEAST, statuses

    assert requests.get(record["url"] + "/", timeout=10).status_code == 200
    answer = requests.post(url, json=SAMPLE, timeout=10)
    assert answer.status_code == 200
    np.testing.assert_allclose(answer.json()["result"],
                               predict(model, np.array(SAMPLE["data"]))["result"])
    with open(log, "rb") as handle:
        handle.seek(start_of_requests)
        assert b"Traceback" not in handle.read()
