"""Stopping a local service stops only the processes of its own server, with stand-ins: small
processes whose command line names azmlinfsrv and a model folder, as the server's do."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml_service.backends import local_server
from ml_service.errors import DeploymentError
from tests.processes import alive

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds processes in /proc")
STAND_IN = ("import signal, sys, time\n"
            "if sys.argv[-1] == 'ignore': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")


@pytest.fixture
def start_stand_in():
    """Start a stand-in in a process group of its own: ``start(*arguments)`` -> its pid.
    Whatever the test asserts, none outlives it."""
    started = []

    def start(*arguments: str) -> int:
        process = subprocess.Popen([sys.executable, "-c", STAND_IN, *arguments],
                                   stdout=subprocess.PIPE, start_new_session=True)
        started.append(process)
        assert process.stdout.readline() == b"ready\n"
        return process.pid

    yield start
    for process in started:
        process.kill()
        process.wait()
        process.stdout.close()


@pytest.fixture
def service_dir(tmp_path) -> Path:
    """A service folder: its model folder, and a record written by the test."""
    folder = tmp_path / "deployments" / "svc"
    (folder / "model").mkdir(parents=True)
    return folder


def record(service_dir: Path, pid: int) -> None:
    local_server.write_record(service_dir, {"pid": pid, "scoring_uri": "http://127.0.0.1:1/"})


def test_stop_ends_the_recorded_server_of_this_service(service_dir, start_stand_in, caplog):
    pid = start_stand_in("azmlinfsrv", "--model_dir", str(service_dir / "model"))
    record(service_dir, pid)
    caplog.set_level("INFO")
    assert local_server.stop_server(service_dir) is True
    assert not alive(pid)
    assert f"Stopped the scoring server's processes {pid} (process group {pid})" in caplog.text
    assert local_server.read_record(service_dir) is None


@pytest.mark.parametrize("arguments", [
    pytest.param(("azmlinfsrv", "--model_dir", "/elsewhere/model"), id="another-store"),
    pytest.param(("--model_dir", "MODEL"), id="not-azmlinfsrv"),
])
def test_stop_leaves_alone_a_process_that_is_not_this_services_server(
        service_dir, start_stand_in, arguments):
    # A recorded pid (and group) reused by another process once the server had ended.
    pid = start_stand_in(*(str(service_dir / "model") if a == "MODEL" else a
                           for a in arguments))
    record(service_dir, pid)
    assert local_server.stop_server(service_dir) is False
    assert alive(pid)
    assert local_server.read_record(service_dir) is None


def test_stop_kills_a_server_that_ignores_sigterm(service_dir, start_stand_in, monkeypatch):
    monkeypatch.setattr(local_server, "STOP_TIMEOUT_S", 0.3)
    pid = start_stand_in("azmlinfsrv", "--model_dir", str(service_dir / "model"), "ignore")
    record(service_dir, pid)
    started = time.monotonic()
    assert local_server.stop_server(service_dir) is True
    assert not alive(pid) and time.monotonic() - started < 5


def test_stop_keeps_the_record_of_a_server_that_does_not_end(service_dir, start_stand_in,
                                                             monkeypatch):
    class SignalsLost:
        """The os module, but no signal reaches its target (as for a process stuck in the
        kernel, which not even SIGKILL ends)."""

        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def kill(pid, sig):
            pass

    monkeypatch.setattr(local_server, "os", SignalsLost())
    monkeypatch.setattr(local_server, "STOP_TIMEOUT_S", 0.2)
    monkeypatch.setattr(local_server, "KILL_TIMEOUT_S", 0.2)
    pid = start_stand_in("azmlinfsrv", "--model_dir", str(service_dir / "model"))
    record(service_dir, pid)
    with pytest.raises(DeploymentError, match=f"pids {pid} of the scoring server .* did not "
                                              "end on SIGKILL; its record is kept"):
        local_server.stop_server(service_dir)
    assert local_server.read_record(service_dir)["pid"] == pid
    assert alive(pid)  # ended by the fixture
