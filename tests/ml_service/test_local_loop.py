"""`make run`: the whole loop, twice in a row, in a temporary store."""
import pytest

from ml_service import local_loop

pytestmark = pytest.mark.integration


def test_the_loop_runs_twice_and_the_second_model_is_not_registered(backend, capsys):
    assert local_loop.main([]) == 0
    first = capsys.readouterr().out
    assert local_loop.main([]) == 0
    second = capsys.readouterr().out

    assert "decision       registered version 1: there is no production model yet" in first
    assert "(FINISHED)" in first
    assert "decision       not registered: new mse" in second and "(KILLED)" in second
    for summary in (first, second):
        assert "model          diabetes_regression_model.pkl version 1 (production)" in summary
        assert "smoke test passed: 2 predictions" in summary
        assert "mse=" in summary and "scoring URL    http://127.0.0.1:" in summary
    assert [m.version for m in backend.list_models("diabetes_regression_model.pkl")] == [1]
    assert backend.find_dataset("diabetes_ds").version == 1
    assert not (backend.root / "deployments" / "diabetes-local" / "service.json").exists()
