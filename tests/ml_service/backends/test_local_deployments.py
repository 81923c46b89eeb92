"""Local deployments never orphan a server: concurrent deploys, an interrupted deploy, stop."""
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.model_files import save_model
from diabetes_regression.training.train import split_data, train_model
from ml_service.backends import local_server
from ml_service.pipelines.diabetes_regression_pipeline import scoring_service_spec
from ml_service.util import deploy_local
from tests.conftest import make_frame

pytestmark = pytest.mark.integration
MODEL = "model.pkl"
SERVICE = "svc"


@pytest.fixture
def production(backend, tmp_path):
    """A registered production model trained by the model package on generated data."""
    path = save_model(train_model(split_data(make_frame()), load_parameters().training),
                      tmp_path)
    run_id = backend.start_pipeline_run("p", {})
    version = backend.register_model(MODEL, path, run_id, {}).version
    backend.set_production_model(MODEL, version)
    return backend.get_model(MODEL, version)


@pytest.fixture(autouse=True)
def no_server_left(backend):
    """Whatever a test asserts, no server of the service outlives it."""
    yield
    service_dir = backend.root / "deployments" / SERVICE
    for pid in servers_of(service_dir):
        local_server.terminate(pid)


def servers_of(service_dir: Path) -> list:
    """Process ids of the azmlinfsrv servers serving this service's model folder (the main
    processes: their workers, which carry the same command line, are left out)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"azmlinfsrv" in part for part in cmdline) \
                and str(service_dir / "model").encode() in cmdline:
            stat = (entry / "stat").read_text()
            found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return sorted(pid for pid, parent in found.items() if parent not in found)


def wait_for_command_line(pid: int, limit_s: float = 30.0) -> None:
    """Wait until a process just started shows its command line in /proc.

    Popen returns once the child has called exec, but some kernels (gVisor's, for one) show
    an empty /proc/<pid>/cmdline for a moment afterwards; servers_of would miss the server.
    """
    deadline = time.monotonic() + limit_s
    cmdline = Path(f"/proc/{pid}/cmdline")
    while cmdline.exists() and not cmdline.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_two_deploys_at_once_leave_one_recorded_server(backend, production):
    service_dir = backend.root / "deployments" / SERVICE
    errors = []

    def deploy():
        try:
            backend.deploy_model(production, SERVICE, scoring_service_spec())
        except Exception as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=deploy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    record = local_server.read_record(service_dir)
    assert servers_of(service_dir) == [record["pid"]]
    assert backend.delete_deployment(SERVICE) is True
    assert servers_of(service_dir) == []


def test_an_interrupted_deploy_stops_the_server_it_started(backend, production, monkeypatch):
    service_dir = backend.root / "deployments" / SERVICE

    def interrupted(base_url, process, log_path, timeout_s):
        wait_for_command_line(process.pid)
        assert servers_of(service_dir) == [process.pid]
        raise KeyboardInterrupt

    monkeypatch.setattr(local_server, "wait_until_healthy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        backend.deploy_model(production, SERVICE, scoring_service_spec())
    assert servers_of(service_dir) == []
    assert local_server.read_record(service_dir) is None


def test_stop_says_was_not_running_when_the_recorded_server_is_gone(backend, caplog):
    service_dir = backend.root / "deployments" / SERVICE
    service_dir.mkdir(parents=True)
    gone = os.getpid() + 100_000  # beyond the default pid range: no such process
    local_server.write_record(service_dir, {"pid": gone, "scoring_uri": "http://127.0.0.1:1/"})
    caplog.set_level(logging.INFO)
    assert deploy_local.main(["stop", "--service", SERVICE]) == 0
    assert f"Service '{SERVICE}' was not running" in caplog.text
    assert local_server.read_record(service_dir) is None
