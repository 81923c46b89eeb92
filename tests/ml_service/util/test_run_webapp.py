"""make app's preparation (ml_service/util/run_webapp.py) on the session's served model: the
local service that serves the production version is used as it is, one that is missing is
deployed, the model card is written where the app reads it, and another backend is refused
before anything happens."""
import json
from pathlib import Path

import pytest

from ml_service.util import run_webapp


@pytest.fixture
def store(served_model, monkeypatch):
    """The session's store (its production model served as "test-svc"), as make app sees it."""
    monkeypatch.setenv("MLOPS_BACKEND", "local")
    monkeypatch.setenv("MLOPS_ROOT", str(served_model.backend.root))
    monkeypatch.setenv("MODEL_NAME", served_model.version.name)
    return served_model


def read_card(settings) -> dict:
    return json.loads((Path(settings["WEBAPP_MODEL_CARD"]) / "card.json").read_text())


@pytest.mark.integration
def test_the_service_that_serves_production_is_used_and_the_card_written(
        store, monkeypatch, tmp_path):
    monkeypatch.setenv("LOCAL_DEPLOYMENT_NAME", "test-svc")
    settings = run_webapp.prepare(tmp_path)
    assert settings["WEBAPP_SCORING_URI"] == store.deployment.scoring_uri
    assert Path(settings["WEBAPP_MODEL_CARD"]).parent == tmp_path / "webapp"
    card = read_card(settings)
    assert (card["model"], card["version"]) == (store.version.name, store.version.version)


@pytest.mark.integration
@pytest.mark.process
def test_without_a_service_the_production_model_is_deployed(store, monkeypatch, tmp_path):
    monkeypatch.setenv("LOCAL_DEPLOYMENT_NAME", "app-svc")
    assert store.backend.get_deployment("app-svc") is None
    try:
        settings = run_webapp.prepare(tmp_path)
        deployment = store.backend.get_deployment("app-svc")
        assert settings["WEBAPP_SCORING_URI"] == deployment.scoring_uri
        assert (deployment.model_name, deployment.model_version) == (
            store.version.name, store.version.version)
        assert read_card(settings)["version"] == store.version.version
        assert run_webapp.prepare(tmp_path)["WEBAPP_SCORING_URI"] == deployment.scoring_uri
    finally:
        store.backend.delete_deployment("app-svc")


def test_another_backend_is_refused_with_what_to_do(monkeypatch, caplog):
    monkeypatch.setenv("MLOPS_BACKEND", "azureml")
    assert run_webapp.main(["--port", "0"]) == 1
    assert "make app runs against the local deployment (MLOPS_BACKEND=local, it is azureml)" \
        in caplog.text
