"""The local store's first use: concurrent and killed initialisations never leave it unusable."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml_service.backends.local import LocalBackend
from ml_service.util.env_variables import TrainingSettings

pytestmark = pytest.mark.integration
MODEL = TrainingSettings.model_name
RUNS_AT_ONCE = 8
# Seconds after the child starts initialising; initialising takes about a second here.
KILL_MOMENTS = (0.0, 0.05, 0.15, 0.3, 0.6, 1.2)

INITIALISE = """
import sys
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # imported before 'ready'
from ml_service.backends.local import LocalBackend
print("ready", flush=True)
sys.stdin.readline()
LocalBackend(sys.argv[1]).client.search_experiments()
print("done", flush=True)
"""


def child_env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLOPS_PIPELINE_RUN_ID",)}
    env.update(MLOPS_ROOT=str(root), RUN_EVALUATION="false")
    return env


@pytest.mark.heavy(rank=4)
@pytest.mark.system
def test_runs_started_at_once_on_a_fresh_store_all_succeed(tmp_path, csv_file):
    root = tmp_path / "fresh"
    assert not (root / "mlflow.db").exists()
    command = [sys.executable, "-m", "ml_service.pipelines.local_executor",
               "--data_file_path", str(csv_file)]
    runs = [subprocess.Popen(command, cwd=tmp_path, env=child_env(root),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(RUNS_AT_ONCE)]
    failures = [run.communicate(timeout=600)[1] for run in runs if run.wait(timeout=600) != 0]
    assert not failures, failures[0][-2000:]
    versions = [m.version for m in LocalBackend(root).list_models(MODEL)]
    assert sorted(versions) == list(range(1, RUNS_AT_ONCE + 1))


@pytest.mark.parametrize("delay", KILL_MOMENTS)
def test_a_kill_while_initialising_leaves_a_usable_store(tmp_path, delay):
    root = tmp_path / "store"
    child = subprocess.Popen([sys.executable, "-c", INITIALISE, str(root)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=child_env(root))
    try:
        assert child.stdout.readline().strip() == "ready"
        child.stdin.write("go\n")
        child.stdin.flush()
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    # Whatever the moment, the next run initialises or opens the store and works.
    backend = LocalBackend(root)
    run_id = backend.start_pipeline_run("after a kill", {})
    model = tmp_path / MODEL
    model.write_bytes(b"model")
    registered = backend.register_model(MODEL, model, run_id, {})
    backend.set_production_model(MODEL, registered.version)
    assert backend.get_production_model(MODEL).version == 1
    assert not list(root.glob(".mlflow.db.init-*"))
