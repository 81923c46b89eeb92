"""The smoke test of a scoring service: the answer must fit parameters.json's sample request."""
import pytest
import requests

from diabetes_regression.parameters import load_parameters
from ml_service.errors import ConfigurationError
from ml_service.backends.local_server import free_port
from ml_service.util import smoke_test_scoring_service as smoke
from ml_service.util.smoke_test_scoring_service import SmokeTestError

# The sample request of the model package, with two rows whatever its own number.
_REQUEST = load_parameters().scoring.sample
SAMPLE = {**_REQUEST, "data": (_REQUEST["data"] * 2)[:2]}


@pytest.mark.parametrize("service, url", [
    ("http://127.0.0.1:5001/score", "http://127.0.0.1:5001/score"),
    ("http://127.0.0.1:5001", "http://127.0.0.1:5001/score"),
    ("http://127.0.0.1:5001/", "http://127.0.0.1:5001/score"),
])
def test_scoring_url(service, url):
    assert smoke.scoring_url(service) == url


def test_a_service_that_is_not_a_url_is_refused():
    with pytest.raises(ConfigurationError, match="not an http"):
        smoke.scoring_url("my-aci-service")


@pytest.mark.parametrize("status, body, message", [
    (500, {"message": "boom"}, "answered 500"),
    (200, {"predictions": []}, "no 'result' list"),
    (200, {"result": [1.0]}, "1 predictions for 2 rows"),
    (200, {"result": [1.0, "x"]}, "not all finite numbers"),
    (200, {"result": [1.0, None]}, "not all finite numbers"),
])
def test_wrong_answers_fail(status, body, message):
    with pytest.raises(SmokeTestError, match=message):
        smoke.check_answer(SAMPLE, status, body)


def test_a_good_answer_passes():
    assert smoke.check_answer(SAMPLE, 200, {"result": [1.5, 2]}) == [1.5, 2]


class Response:
    def __init__(self, status_code):
        self.status_code = status_code


def test_connection_errors_and_gateway_errors_are_retried_with_back_off():
    answers = [requests.ConnectionError("refused"), requests.Timeout("slow"), Response(503),
               Response(200)]
    waits = []

    def post(url, **kwargs):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    response = smoke.post_with_retries("http://x/score", SAMPLE, 60, post=post,
                                       sleep=waits.append)
    assert response.status_code == 200
    assert waits == [0.25, 0.5, 1.0]


def test_a_client_error_is_not_retried():
    calls = []

    def post(url, **kwargs):
        calls.append(url)
        return Response(400)

    assert smoke.post_with_retries("http://x/score", SAMPLE, 60, post=post).status_code == 400
    assert len(calls) == 1


def test_retrying_stops_within_the_total_time():
    url = f"http://127.0.0.1:{free_port()}/score"
    with pytest.raises(SmokeTestError, match="no good answer from .* after \\d+ attempts"):
        smoke.smoke_test(url, SAMPLE, total_s=0.6)


def test_main_fails_with_exit_code_1_when_nothing_answers(caplog):
    url = f"http://127.0.0.1:{free_port()}/score"
    assert smoke.main(["--type", "Local", "--service", url, "--timeout", "0.3"]) == 1
    assert "SmokeTestError" in caplog.text


def test_the_key_goes_as_a_bearer_token():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen["auth"] = self.headers.get("Authorization")
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"result": [1.0, 2.0]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/score"
        assert smoke.smoke_test(url, SAMPLE, total_s=5, key="k3y") == [1.0, 2.0]
    finally:
        server.shutdown()
    assert seen["auth"] == "Bearer k3y"


def test_an_aci_service_that_does_not_exist_is_named(backend, caplog):
    assert smoke.main(["--type", "ACI", "--service", "nope"]) == 1
    assert "there is no ACI service named 'nope'" in caplog.text
