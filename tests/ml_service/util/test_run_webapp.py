"""make app's preparation (ml_service/util/run_webapp.py) and the model card's command
(ml_service/util/model_card.py) on the session's served model: the local service that serves
the production version is used as it is, one that is missing is deployed, the model card is
written where the app reads it (a second one replaces it whole), and another backend or a
missing report folder is refused before anything happens."""
import json
from pathlib import Path

import pytest

from ml_service.util import model_card, run_webapp


@pytest.fixture
def store(served_model, monkeypatch):
    """The session's store (its production model served as "test-svc"), as make app sees it."""
    for name, value in served_model.environment().items():
        monkeypatch.setenv(name, value)
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


@pytest.mark.integration
def test_the_card_command_writes_then_replaces_the_card_and_prints_its_path(
        store, tmp_path, capsys):
    out = tmp_path / "card"
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    (evaluation / "stale.png").write_bytes(b"png")
    assert model_card.main(["--out", str(out), "--evaluation_dir", str(evaluation)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "card.json")
    (out / "left-over.txt").write_text("from an older card")
    assert model_card.main(["--out", str(out), "--model_version",
                            str(store.version.version)]) == 0
    assert not (out / "left-over.txt").exists()
    assert json.loads((out / "card.json").read_text())["version"] == store.version.version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card", "evaluation"]


def test_the_card_command_refuses_a_missing_report_folder(tmp_path, caplog):
    missing = tmp_path / "nowhere"
    assert model_card.main(["--out", str(tmp_path / "card"), "--monitoring_dir",
                            str(missing)]) == 1
    assert f"{missing}: no such folder; pass the folder that holds the report" in caplog.text
    assert not (tmp_path / "card").exists()
