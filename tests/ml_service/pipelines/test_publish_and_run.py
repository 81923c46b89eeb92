"""Publish the training pipeline for a build, find it by build id, run it: local backend."""
import pytest

from ml_service.pipelines import diabetes_regression_build_train_pipeline as build
from ml_service.pipelines import run_train_pipeline
from ml_service.pipelines.definition import definition_from_dict, definition_to_dict
from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
from ml_service.util.env_variables import TrainingSettings

NAME = TrainingSettings.pipeline_name


def test_a_definition_survives_its_json_form():
    definition = build_training_pipeline(TrainingSettings())
    assert definition_from_dict(definition_to_dict(definition)) == definition


def test_publishing_needs_a_build_id(backend, caplog):
    assert build.main([]) == 1
    assert "BUILD_BUILDID is not set" in caplog.text
    assert backend.list_published_pipelines(NAME) == []


@pytest.mark.integration
@pytest.mark.usefixtures("warm_steps")
def test_publish_find_and_run_by_build_id(backend, monkeypatch, capsys, tmp_path, caplog):
    monkeypatch.setenv("BUILD_BUILDID", "42")
    monkeypatch.setenv("BUILD_BUILDURI", "vstfs:///Build/Build/42")
    assert build.main([]) == 0
    pipeline_id = capsys.readouterr().out.strip()
    assert backend.find_dataset("diabetes_ds").version == 1
    assert build.main([]) == 0, "republishing the same build replaces it"
    assert capsys.readouterr().out.strip() == pipeline_id
    assert [p.version for p in backend.list_published_pipelines(NAME)] == ["42"]

    id_file = tmp_path / "out" / "pipeline_id.txt"
    assert run_train_pipeline.main(["--output_pipeline_id_file", str(id_file),
                                    "--skip_train_execution"]) == 0
    assert id_file.read_text() == pipeline_id
    assert backend.list_models("diabetes_regression_model.pkl") == []

    assert run_train_pipeline.main(["--wait"]) == 0
    production = backend.get_production_model("diabetes_regression_model.pkl")
    assert production.tags["BuildId"] == "42"
    run_tags = backend.get_run_tags(production.run_id)
    assert run_tags["BuildId"] == "42" and run_tags["published_pipeline_id"] == pipeline_id

    caplog.clear()
    assert run_train_pipeline.main(["--version", "43", "--skip_train_execution"]) == 1
    assert "0 published pipelines named 'diabetes-Training-Pipeline' with version '43'" \
        in caplog.text
