import json

import pandas as pd
import pytest

from diabetes_regression.parameters import DEFAULT_PATH
from diabetes_regression.training.train import TARGET_COLUMN
from ml_service.backends.local_server import read_record
from ml_service.util import deploy_local


def test_deploy_without_a_production_model_is_refused(backend, caplog):
    assert deploy_local.main(["deploy"]) == 1
    assert "has no production version; run the training pipeline first" in caplog.text
    recorded = backend.root / "deployments" / "diabetes-local" / "service.json"
    assert not recorded.exists()


def test_stop_when_nothing_runs_is_fine(backend, caplog):
    assert deploy_local.main(["stop"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["deploy", "--port", "http"], "--port='http' is not a port number"),
    (["deploy", "--service", "../x"], "bad service name"),
])
def test_bad_options_are_named(backend, caplog, argv, message):
    assert deploy_local.main(argv) == 1
    assert message in caplog.text


@pytest.mark.integration
@pytest.mark.usefixtures("warm_steps")
def test_deploy_prints_the_url_records_the_pid_and_stop_ends_it(backend, csv_file, capsys,
                                                                monkeypatch):
    from ml_service.pipelines import local_executor

    monkeypatch.setenv("RUN_EVALUATION", "false")
    backend.register_dataset("diabetes_ds", csv_file)
    assert local_executor.main([]) == 0
    # csv_file is the model package's synthetic data, not its sample: the server loads a
    # model of any width just as well.
    capsys.readouterr()
    assert deploy_local.main(["deploy"]) == 0
    url = capsys.readouterr().out.strip()
    service_dir = backend.root / "deployments" / "diabetes-local"
    record = read_record(service_dir)
    assert url == record["scoring_uri"] and record["pid"] > 0 and record["model_version"] == 1
    assert deploy_local.main(["stop"]) == 0
    assert read_record(service_dir) is None


@pytest.mark.integration
@pytest.mark.usefixtures("warm_steps")
def test_the_aci_deploy_and_smoke_test_commands_run_on_the_local_backend(backend, csv_file,
                                                                         capsys, monkeypatch):
    from ml_service.pipelines import local_executor
    from ml_service.util import deploy_scoring_service, smoke_test_scoring_service

    monkeypatch.setenv("RUN_EVALUATION", "false")
    backend.register_dataset("diabetes_ds", csv_file)
    assert local_executor.main([]) == 0
    capsys.readouterr()
    assert deploy_scoring_service.main(["--type", "ACI", "--service", "ci-aci"]) == 0
    url = capsys.readouterr().out.strip()
    assert backend.get_deployment("ci-aci").scoring_uri == url
    # csv_file's model takes csv_file's features: a sample of its rows.
    rows = pd.read_csv(csv_file).drop(columns=[TARGET_COLUMN]).head(2).to_numpy().tolist()
    parameters = backend.root.parent / "parameters.json"
    document = json.loads(DEFAULT_PATH.read_text())
    document["scoring"]["sample"] = {"data": rows}
    parameters.write_text(json.dumps(document))
    assert smoke_test_scoring_service.main(["--type", "ACI", "--service", "ci-aci",
                                            "--parameters", str(parameters)]) == 0
    assert deploy_local.main(["stop", "--service", "ci-aci"]) == 0
    assert backend.get_deployment("ci-aci") is None
