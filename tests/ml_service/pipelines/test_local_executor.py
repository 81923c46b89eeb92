"""The local executor running the real step scripts as processes."""
import pytest

from ml_service.errors import ConfigurationError, StepFailedError
from ml_service.pipelines import local_executor
from ml_service.pipelines.definition import PipelineDefinition, Step
from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
from ml_service.util.env_variables import TrainingSettings

pytestmark = pytest.mark.integration
MODEL = TrainingSettings.model_name


def test_without_evaluation_every_run_registers(backend, csv_file):
    backend.register_dataset(TrainingSettings.dataset_name, csv_file)
    pipeline = build_training_pipeline(TrainingSettings(run_evaluation=False))
    first = local_executor.execute(pipeline, backend, tags={"BuildId": "7"})
    second = local_executor.execute(pipeline, backend)
    assert (first.status, second.status) == ("FINISHED", "FINISHED")
    assert [s.status for s in first.steps] == ["completed", "completed"]
    assert [m.version for m in backend.list_models(MODEL)] == [1, 2]
    assert backend.get_production_model(MODEL).run_id == second.run_id
    assert backend.list_models(MODEL)[0].tags["BuildId"] == "7"
    steps = backend.list_step_runs(first.run_id)
    assert [r.info.run_name for r in steps] == ["train", "register"]
    assert all(r.info.status == "FINISHED" for r in steps)
    assert backend.get_run_metrics(steps[0].info.run_id)["mse"] > 0
    assert "alpha" in steps[0].data.params


def test_a_failing_step_fails_the_run_and_skips_the_rest(backend, monkeypatch):
    monkeypatch.setenv("MLOPS_STEP_LAUNCHER", "process")
    pipeline = build_training_pipeline(TrainingSettings())
    with pytest.raises(StepFailedError, match="step 'Train Model' of run .* failed with exit "
                                              "code 1; its log is"):
        local_executor.execute(pipeline, backend)
    run = backend.client.search_runs([backend.experiment_id()],
                                     filter_string="tags.`mlops.pipeline` = "
                                                   f"'{pipeline.name}'")[0]
    assert run.info.status == "FAILED"
    assert backend.list_models(MODEL) == []


def test_an_invalid_definition_is_refused_before_anything_runs(backend):
    pipeline = PipelineDefinition("p", backend.root, (), (), (Step("s", "missing.py", ()),))
    with pytest.raises(ConfigurationError, match="is not valid: step 's': no script"):
        local_executor.execute(pipeline, backend)


def test_main_runs_the_training_pipeline(backend, csv_file, monkeypatch):
    monkeypatch.setenv("RUN_EVALUATION", "false")
    backend.register_dataset(TrainingSettings.dataset_name, csv_file)
    assert local_executor.main(["--caller_run_id", "ci-1"]) == 0
    production = backend.get_production_model(MODEL)
    assert backend.get_run_tags(production.run_id)["caller_run_id"] == "ci-1"
    assert local_executor.main(["--dataset_version", "9"]) == 1
