"""`make run`: the whole loop, twice in a row, then on a user's CSV, in a temporary store."""
import logging
from pathlib import Path

import pytest

from diabetes_regression.evaluate.report import REPORT_JSON
from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.train import TARGET_COLUMN, load_sample_data
from ml_service import local_loop
from ml_service.util.env_variables import ScoringSettings, TrainingSettings

pytestmark = [pytest.mark.integration, pytest.mark.system,
              pytest.mark.usefixtures("warm_steps")]
SETTINGS = TrainingSettings()
METRIC = load_parameters().evaluation.metric
SAMPLE_ROWS = len(load_parameters().scoring.sample["data"])


@pytest.mark.heavy(rank=5)
def test_the_loop_runs_twice_then_on_a_users_csv(backend, capsys, tmp_path):
    assert local_loop.main([]) == 0
    first = capsys.readouterr().out
    assert local_loop.main([]) == 0
    second = capsys.readouterr().out

    assert "decision       registered version 1: there is no production model yet" in first
    assert "(FINISHED)" in first
    assert f"decision       not registered: new {METRIC}" in second and "(KILLED)" in second
    for summary in (first, second):
        assert f"model          {SETTINGS.model_name} version 1 (production)" in summary
        assert f"smoke test passed: {SAMPLE_ROWS} predictions" in summary
        assert f"{METRIC}=" in summary and "scoring URL    http://127.0.0.1:" in summary
        assert f"dataset        {SETTINGS.dataset_name} version 1" in summary
    for summary in (first, second):
        line = next(x for x in summary.splitlines() if x.startswith("  evaluation     "))
        report = Path(line.split()[-1])
        assert (report / REPORT_JSON).is_file() and list(report.glob("*.png")), line
    # The command to look at the runs is the environment's own mlflow, as printed.
    inspect = next(x for x in first.splitlines() if x.startswith("  inspect runs   "))
    assert Path(inspect.split()[2]).is_file() and inspect.split()[3:5] == \
        ["ui", "--backend-store-uri"] and f"experiment {SETTINGS.experiment_name})" in inspect
    assert [m.version for m in backend.list_models(SETTINGS.model_name)] == [1]
    assert backend.find_dataset(SETTINGS.dataset_name).version == 1
    assert not (backend.root / "deployments" / ScoringSettings().service_name
                / "service.json").exists()

    # make run DATA=mine.csv: checked, registered as version 2, trained on.
    mine = tmp_path / "mine.csv"
    load_sample_data().sample(frac=0.8, random_state=1).to_csv(mine, index=False)
    assert local_loop.main(["--data", str(mine)]) == 0
    third = capsys.readouterr().out
    assert f"dataset        {SETTINGS.dataset_name} version 2" in third
    assert backend.find_dataset(SETTINGS.dataset_name).version == 2


def test_the_loop_refuses_a_missing_or_bad_data_file(backend, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    assert local_loop.main(["--data", str(tmp_path / "absent.csv")]) == 1
    assert "absent.csv: no such file; pass the path of a CSV file" in caplog.text
    bad = tmp_path / "bad.csv"
    load_sample_data().drop(columns=[TARGET_COLUMN]).to_csv(bad, index=False)
    assert local_loop.main(["--data", str(bad)]) == 1
    assert backend.find_dataset(SETTINGS.dataset_name) is None
    assert backend.list_models(SETTINGS.model_name) == []
