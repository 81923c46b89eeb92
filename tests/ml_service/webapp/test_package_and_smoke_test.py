"""What CD does with the web app: package it (code, card, locked requirements) and smoke-test
it once deployed, here against the app served on this machine."""
import importlib.metadata
import socket
import stat
import subprocess
import sys
import zipfile

import pytest

from ml_service.errors import DeploymentError
from ml_service.paths import PROJECT_ROOT
from ml_service.util import package_webapp, smoke_test_webapp
from ml_service.webapp import app as webapp
from tests.ml_service.webapp.conftest import endpoint_answers, serve, shown_value

# They talk to the real served model (a server of the test process).
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def packaged(served_model, tmp_path_factory):
    """The package, made by the command CD runs, on the session's store."""
    out = tmp_path_factory.mktemp("package") / "model_app.zip"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in served_model.environment().items():
            patch.setenv(name, value)
        assert package_webapp.main(["--out", str(out), "--service", "test-svc"]) == 0
    return out


def test_the_package_holds_the_app_its_card_and_locked_requirements(packaged, served_model):
    with zipfile.ZipFile(packaged) as package:
        names = set(package.namelist())
        requirements = package.read("requirements.txt").decode().split()
        card = package.read("model_card/card.json").decode()
    assert {"ml_service/__init__.py", "ml_service/webapp/app.py",
            "ml_service/webapp/templates/try.html", "ml_service/webapp/static/app.css",
            "model_card/card.json"} <= names
    assert not [n for n in names if "__pycache__" in n or n.startswith("diabetes_regression")]
    assert served_model.deployment.scoring_uri in card
    lock = PROJECT_ROOT / "uv.lock"
    assert requirements == package_webapp.locked_requirements(lock, ("flask", "requests",
                                                                     "gunicorn"))
    pinned = dict(r.split("==") for r in requirements)
    assert {"flask", "werkzeug", "jinja2", "requests", "urllib3", "gunicorn"} <= set(pinned)
    assert pinned["flask"] == importlib.metadata.version("flask")


@pytest.mark.process
def test_the_unpacked_app_runs_from_the_package_alone(packaged, tmp_path):
    with zipfile.ZipFile(packaged) as package:
        package.extractall(tmp_path)
    code = ("import ml_service.webapp.app as a; "
            "assert a.__file__.startswith(%r), a.__file__; "
            "page = a.create_app().test_client().get('/'); print(page.status_code)"
            % str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "WEBAPP_MODEL_CARD": "model_card"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "200"


def test_a_service_that_is_not_up_is_named_and_a_key_is_kept_private(served_model, tmp_path):
    with pytest.raises(DeploymentError, match="no service 'elsewhere' is up"):
        package_webapp.package(served_model.backend, served_model.version, "elsewhere",
                               tmp_path / "a.zip")
    assert package_webapp.write_key(tmp_path / "none", None) is False
    assert not (tmp_path / "none").exists()
    assert package_webapp.write_key(tmp_path / "key", "s3cret") is True
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600
    assert (tmp_path / "key").read_text() == "s3cret"


def test_the_smoke_test_sends_the_pages_example_and_reads_the_prediction(served_model,
                                                                         model_card, card):
    url, server = serve(webapp.WebAppSettings(served_model.deployment.scoring_uri, model_card))
    try:
        value = smoke_test_webapp.smoke_test(url, 10)
    finally:
        server.shutdown()
    row = [float(f["example"]) for f in card["fields"]]
    expected = endpoint_answers(served_model, card, [row])["result"][0]
    assert value == pytest.approx(shown_value(expected))


def test_the_smoke_test_fails_naming_what_went_wrong(model_card):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url, server = serve(webapp.WebAppSettings(f"http://127.0.0.1:{port}/score", model_card))
    try:
        with pytest.raises(DeploymentError, match="answered HTTP 502 without a prediction"):
            smoke_test_webapp.smoke_test(url, 10)
    finally:
        server.shutdown()
    with pytest.raises(DeploymentError, match=r"did not answer 200 within 0 s \(last: "):
        smoke_test_webapp.smoke_test(f"http://127.0.0.1:{port}", 0)
