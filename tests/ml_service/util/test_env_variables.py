from pathlib import Path

import pytest

from ml_service.errors import ConfigurationError
from ml_service.util.env_variables import (BackendSettings, ScoringSettings, TrainingSettings,
                                           load_dotenv_file, parse_bool)


def test_defaults_follow_mlopspython():
    settings = TrainingSettings.from_env({})
    assert settings.model_name == "diabetes_regression_model.pkl"
    assert settings.run_evaluation is True and settings.allow_run_cancel is True
    assert settings.build_id is None
    assert BackendSettings.from_env({}).kind == "local"
    assert BackendSettings.from_env({}).root == Path(".mlops").resolve()
    assert ScoringSettings.from_env({}).port == 0


def test_values_come_from_the_mapping():
    settings = TrainingSettings.from_env({
        "MODEL_NAME": "m.pkl", "RUN_EVALUATION": "False", "ALLOW_RUN_CANCEL": "no",
        "BUILD_BUILDID": "42", "BUILD_BUILDURI": "vstfs:///Build/Build/42"})
    assert (settings.model_name, settings.run_evaluation, settings.allow_run_cancel) == \
        ("m.pkl", False, False)
    assert settings.build_id == "42"
    assert settings.build_tags() == {"BuildId": "42", "BuildUri": "vstfs:///Build/Build/42"}
    assert TrainingSettings().build_tags() == {}
    assert BackendSettings.from_env({"MLOPS_BACKEND": " Local "}).kind == "local"
    assert ScoringSettings.from_env({"LOCAL_SCORING_PORT": "5001"}).port == 5001


@pytest.mark.parametrize("env, name", [
    ({"RUN_EVALUATION": "maybe"}, "RUN_EVALUATION"),
    ({"ALLOW_RUN_CANCEL": "2"}, "ALLOW_RUN_CANCEL"),
])
def test_a_bad_boolean_names_the_variable(env, name):
    with pytest.raises(ConfigurationError, match=f"{name}=.* is not a boolean"):
        TrainingSettings.from_env(env)


@pytest.mark.parametrize("port", ["http", "-1", "70000"])
def test_a_bad_port_names_the_variable(port):
    with pytest.raises(ConfigurationError, match="LOCAL_SCORING_PORT"):
        ScoringSettings.from_env({"LOCAL_SCORING_PORT": port})


def test_parse_bool_words():
    assert parse_bool("TRUE", "X") is True and parse_bool("0", "X") is False


def test_dotenv_fills_unset_variables_only(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("MODEL_NAME=from_dotenv.pkl\nDATASET_NAME=from_dotenv\n")
    monkeypatch.setenv("DATASET_NAME", "from_env")
    monkeypatch.delenv("MODEL_NAME", raising=False)
    load_dotenv_file(tmp_path / ".env")
    settings = TrainingSettings.from_env()
    assert (settings.model_name, settings.dataset_name) == ("from_dotenv.pkl", "from_env")
    monkeypatch.delenv("MODEL_NAME")
