"""StepRun.log_artifact: a file attached to the step's run, locally and on Azure ML."""
from pathlib import Path
from unittest.mock import create_autospec

import pytest
from azureml.core import Run

from ml_service.backends.azureml import AzureStepRun


@pytest.mark.parametrize("folder, name", [("", "report.json"),
                                          ("data_validation", "data_validation/report.json"),
                                          ("a/b/", "a/b/report.json")])
def test_azure_uploads_the_file_to_the_step_run(tmp_path, folder, name):
    path = tmp_path / "report.json"
    path.write_text("{}")
    step, pipeline = (create_autospec(Run, spec_set=True, instance=True) for _ in range(2))
    run = AzureStepRun(step, pipeline)
    run.log_artifact(path, folder)
    step.upload_file.assert_called_once_with(name=name, path_or_stream=str(path))
    pipeline.upload_file.assert_not_called()


@pytest.mark.parametrize("folder, listed", [("", "report.json"),
                                            ("data_validation", "data_validation/report.json")])
def test_local_logs_the_file_as_an_mlflow_artifact_of_the_step_run(backend, tmp_path, folder,
                                                                   listed):
    path = tmp_path / "report.json"
    path.write_text('{"status": "pass"}')
    with backend.step_run("validate") as run:
        run.log_artifact(path, folder)
    found = backend.client.list_artifacts(run.id, folder or None)
    assert [f.path for f in found] == [listed]
    copied = backend.client.download_artifacts(run.id, listed, str(tmp_path / "dl"))
    assert Path(copied).read_text() == '{"status": "pass"}'
    assert backend.client.list_artifacts(run.pipeline_run_id) == []


def a_folder(tmp_path):
    folder = tmp_path / "report"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.json").write_text("{}")
    (folder / "sub" / "b.png").write_bytes(b"\x89PNG")
    return folder


@pytest.mark.parametrize("prefix, name", [("", "report"), ("runs/x", "runs/x/report")])
def test_azure_uploads_a_folder_under_its_name(tmp_path, prefix, name):
    folder = a_folder(tmp_path)
    step, pipeline = (create_autospec(Run, spec_set=True, instance=True) for _ in range(2))
    AzureStepRun(step, pipeline).log_artifact(folder, prefix)
    step.upload_folder.assert_called_once_with(name=name, path=str(folder))
    step.upload_file.assert_not_called()


def test_local_logs_a_folder_under_its_name(backend, tmp_path):
    folder = a_folder(tmp_path)
    with backend.step_run("evaluate") as run:
        run.log_artifact(folder)
    listed = backend.client.list_artifacts(run.id, "report")
    assert sorted(f.path for f in listed) == ["report/a.json", "report/sub"]
    copied = backend.client.download_artifacts(run.id, "report/sub/b.png", str(tmp_path / "dl"))
    assert Path(copied).read_bytes() == b"\x89PNG"
