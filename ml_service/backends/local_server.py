"""Run a scoring script locally in azureml-inference-server-http, as Azure ML's containers do.

A service is a folder holding the model (``model/``), the server's log and a
record (``service.json``) with the process id and URL.
"""
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional

from ml_service.errors import DeploymentError
from ml_service.paths import PROJECT_ROOT

LOGGER = logging.getLogger(__name__)
RECORD = "service.json"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    """Ask the OS for a free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(entry_script: Path, model_dir: Path, port: int) -> list:
    """The azmlinfsrv command line serving one scoring script and model folder."""
    executable = Path(sys.executable).with_name("azmlinfsrv")
    return [str(executable), "--entry_script", str(entry_script),
            "--model_dir", str(model_dir), "--port", str(port)]


def start_server(entry_script: Path, service_dir: Path, port: int = 0,
                 timeout_s: float = STARTUP_TIMEOUT_S) -> Dict[str, Any]:
    """Start the server in the background and wait until it answers; return its record."""
    entry_script = Path(entry_script).resolve()
    if not entry_script.is_file():
        raise DeploymentError(f"no scoring script at {entry_script}")
    port = port or free_port()
    log_path = service_dir / "server.log"
    service_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # The scoring script imports from the project's one import root.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            server_command(entry_script, service_dir / "model", port),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    LOGGER.info("Starting the scoring server on %s (pid %d, log %s)", base_url,
                process.pid, log_path)
    try:
        wait_until_healthy(base_url, process, log_path, timeout_s)
    except BaseException:
        # A failed start, or Ctrl-C while waiting: stop what was started, leave no orphan.
        terminate(process.pid)
        raise
    return {"pid": process.pid, "port": port, "url": base_url,
            "scoring_uri": f"{base_url}/score", "log": str(log_path)}


def wait_until_healthy(base_url: str, process: subprocess.Popen, log_path: Path,
                       timeout_s: float) -> None:
    """Poll the liveness route until it answers 200; fail fast if the server exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DeploymentError(
                f"the scoring server exited with code {process.returncode} while starting; "
                f"its log ({log_path}) ends with:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(base_url + "/", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise DeploymentError(f"the scoring server did not answer on {base_url} within "
                          f"{timeout_s:.0f} s; see {log_path}")


def write_record(service_dir: Path, record: Dict[str, Any]) -> None:
    """Write the service record atomically."""
    tmp = service_dir / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(service_dir / RECORD)


def read_record(service_dir: Path) -> Optional[Dict[str, Any]]:
    """Return the service record, or None if there is no service."""
    path = service_dir / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DeploymentError(f"{path} is corrupt ({err}); delete {service_dir}") from err


def is_running(record: Dict[str, Any]) -> bool:
    """True while the recorded server process is alive."""
    return _is_our_server(int(record.get("pid", 0)))


def stop_server(service_dir: Path) -> bool:
    """Stop the service recorded in a folder and forget it; return False if no recorded
    server was running (no record, or its process is gone)."""
    record = read_record(service_dir)
    if record is None:
        return False
    running = is_running(record)
    if running:
        LOGGER.info("Stopping the scoring server (pid %d)", int(record["pid"]))
        terminate(int(record["pid"]))
    (service_dir / RECORD).unlink(missing_ok=True)
    return running


def _is_our_server(pid: int) -> bool:
    """True if the process exists and (where /proc tells) is azmlinfsrv, not a reused pid."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        return b"azmlinfsrv" in cmdline.read_bytes()
    return True


def terminate(pid: int) -> None:
    """Stop a server's whole process group: SIGTERM, then SIGKILL after a grace period."""
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
