"""The local executor running the real step scripts as processes."""
import json
import os

import pytest

from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.train import TARGET_COLUMN
from diabetes_regression.validate.validate_data import ARTIFACT_FOLDER, REPORT_FILE, STATUS_TAG
from ml_service.errors import ConfigurationError, StepFailedError
from ml_service.pipelines import local_executor
from ml_service.pipelines.definition import PipelineDefinition, Step
from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
from ml_service.util.env_variables import TrainingSettings
from tests.conftest import make_frame

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("warm_steps")]
MODEL = TrainingSettings.model_name
PARAMETERS = load_parameters()


def test_without_evaluation_every_run_registers(backend, csv_file):
    backend.register_dataset(TrainingSettings.dataset_name, csv_file)
    pipeline = build_training_pipeline(TrainingSettings(run_evaluation=False))
    first = local_executor.execute(pipeline, backend, tags={"BuildId": "7"})
    second = local_executor.execute(pipeline, backend)
    assert (first.status, second.status) == ("FINISHED", "FINISHED")
    assert [s.status for s in first.steps] == ["completed"] * 3
    assert [m.version for m in backend.list_models(MODEL)] == [1, 2]
    assert backend.get_production_model(MODEL).run_id == second.run_id
    assert backend.list_models(MODEL)[0].tags["BuildId"] == "7"
    steps = backend.list_step_runs(first.run_id)
    assert [r.info.run_name for r in steps] == ["validate", "train", "register"]
    assert all(r.info.status == "FINISHED" for r in steps)
    assert PARAMETERS.evaluation.metric in backend.get_run_metrics(steps[1].info.run_id)
    assert set(PARAMETERS.training) <= set(steps[1].data.params)
    assert "validation.min_rows" in steps[0].data.params
    # The same registered version both times: nothing new registered by the pipeline.
    assert backend.find_dataset(TrainingSettings.dataset_name).version == 1


def test_a_failing_step_fails_the_run_and_skips_the_rest(backend, monkeypatch):
    monkeypatch.setenv("MLOPS_STEP_LAUNCHER", "process")
    pipeline = build_training_pipeline(TrainingSettings())
    with pytest.raises(StepFailedError, match="step 'Validate Data' of run .* failed with exit "
                                              "code 1; its log is"):
        local_executor.execute(pipeline, backend)
    run = backend.client.search_runs([backend.experiment_id()],
                                     filter_string="tags.`mlops.pipeline` = "
                                                   f"'{pipeline.name}'")[0]
    assert run.info.status == "FAILED"
    assert backend.list_models(MODEL) == []


def test_a_data_file_is_validated_registered_and_trained_on_and_bad_data_stops_the_run(
        backend, csv_file, tmp_path):
    pipeline = build_training_pipeline(TrainingSettings())
    good = local_executor.execute(pipeline, backend, {"data_file_path": str(csv_file)})
    assert good.status == "FINISHED"
    assert [s.name for s in good.steps] == ["Validate Data", "Train Model", "Evaluate Model",
                                            "Register Model"]
    production = backend.get_production_model(MODEL)
    assert (production.version, production.tags["dataset_version"]) == (1, "1")
    validate_run = backend.list_step_runs(good.run_id)[0]
    report = backend.root / "artifacts" / validate_run.info.run_id / "artifacts" \
        / ARTIFACT_FOLDER / REPORT_FILE
    assert json.loads(report.read_text())["status"] == "pass"
    assert backend.get_run_tags(good.run_id)[STATUS_TAG] == "pass"

    bad = tmp_path / "constant.csv"
    make_frame().assign(**{TARGET_COLUMN: 1.0}).to_csv(bad, index=False)
    with pytest.raises(StepFailedError, match="step 'Validate Data' of run"):
        local_executor.execute(pipeline, backend, {"data_file_path": str(bad)})
    assert backend.find_dataset(TrainingSettings.dataset_name).version == 1
    assert [m.version for m in backend.list_models(MODEL)] == [1]
    assert backend.get_production_model(MODEL).version == 1
    failed = backend.client.search_runs([backend.experiment_id()],
                                        filter_string="tags.`mlops.pipeline` = "
                                                      f"'{pipeline.name}'")[0]
    assert failed.info.status == "FAILED" and failed.data.tags[STATUS_TAG] == "fail"
    log = (backend.root / "pipeline_runs" / failed.info.run_id / "logs"
           / "01_Validate_Data.log").read_text()
    assert f"invalid data: the target '{TARGET_COLUMN}' has (near) zero variance" in log
    assert [r.info.run_name for r in backend.list_step_runs(failed.info.run_id)] == ["validate"]


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


PID_PROBE = "import os, sys\nopen(sys.argv[1], 'a').write(f'{os.getpid()} {os.getppid()}\\n')\n"


def test_runs_in_a_test_fork_each_step_from_the_sessions_one_launcher(backend, tmp_path):
    (tmp_path / "probe.py").write_text(PID_PROBE)
    pids = tmp_path / "pids.txt"
    steps = tuple(Step(name, "probe.py", (str(pids),)) for name in ("first", "second"))
    pipeline = PipelineDefinition("probe", tmp_path, (), (), steps)
    for _ in range(2):
        assert local_executor.execute(pipeline, backend).status == "FINISHED"
    rows = [line.split() for line in pids.read_text().splitlines()]
    assert len({pid for pid, _ in rows}) == 4, "every step is a process of its own"
    launchers = {parent for _, parent in rows}
    assert len(launchers) == 1 and int(launchers.pop()) != os.getpid()
