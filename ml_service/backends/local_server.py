"""Run a scoring script locally in azureml-inference-server-http, as Azure ML's containers do.

A service is a folder holding the model (``model/``), the server's log and a
record (``service.json``) with the process id and URL. The server runs in a
process group of its own, led by the recorded process (gunicorn's master) with
its workers: stopping a service stops every process of that group still serving
the service's model folder, whether or not the leader is alive (a killed master
leaves its workers running, holding the port).
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
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ml_service.errors import DeploymentError
from ml_service.paths import PROJECT_ROOT

LOGGER = logging.getLogger(__name__)
RECORD = "service.json"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
KILL_TIMEOUT_S = 2.0
PROC = Path("/proc")


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
                 timeout_s: float = STARTUP_TIMEOUT_S,
                 environment: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Start the server in the background and wait until it answers; return its record.
    ``environment`` adds variables to the server's (e.g. the collector's)."""
    entry_script = Path(entry_script).resolve()
    if not entry_script.is_file():
        raise DeploymentError(f"no scoring script at {entry_script}")
    port = port or free_port()
    service_dir = Path(service_dir).resolve()
    log_path = service_dir / "server.log"
    service_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(environment or {})}
    # This server checks no key: score.py writes API descriptions that declare none into the
    # service's folder, which the server reads them from.
    env.update({"MLOPS_SCORING_AUTH": "none", "AML_APP_ROOT": str(service_dir)})
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
    """Stop the service recorded in a folder and forget it; return False if nothing of it
    was running (no record, or no process of its server left).

    Every process of the recorded server's group that still serves this folder's model is
    stopped, whether or not the recorded leader is alive; the record is forgotten only once
    they are gone.
    """
    record = read_record(service_dir)
    if record is None:
        return False
    pgid = int(record.get("pid", 0))
    stopped, left = stop_group(pgid, Path(service_dir).resolve() / "model")
    if left:
        raise DeploymentError(f"pids {', '.join(map(str, left))} of the scoring server in "
                              f"{service_dir} did not end on SIGKILL; its record is kept")
    if stopped:
        LOGGER.info("Stopped the scoring server's processes %s (process group %d%s)",
                    ", ".join(map(str, stopped)), pgid,
                    "" if pgid in stopped else "; its leader had ended")
    (Path(service_dir) / RECORD).unlink(missing_ok=True)
    return bool(stopped)


def server_processes(pgid: int, model_dir: Path) -> List[int]:
    """The pids in process group ``pgid`` that are azmlinfsrv serving ``model_dir``.

    The command line is checked, not only the group: a group id outlives its leader, and
    may be reused once the group is empty. Without /proc (macOS) only the leader can be
    found, by its pid.
    """
    if pgid <= 0:
        return []
    if not PROC.is_dir():
        return [pgid] if _is_our_server(pgid) else []
    return sorted(pid for pid in _all_pids() if _serves(pid, pgid, model_dir))


def stop_group(pgid: int, model_dir: Path) -> Tuple[List[int], List[int]]:
    """Stop the processes of group ``pgid`` serving ``model_dir``: SIGTERM, then SIGKILL
    to those left after the grace period. Return (the pids signalled, the pids left)."""
    if not PROC.is_dir():
        found = server_processes(pgid, model_dir)
        if found:
            terminate(pgid)
        return found, server_processes(pgid, model_dir)

    def find() -> List[int]:
        _reap(pgid)
        return server_processes(pgid, model_dir)

    return _term_then_kill(find, os.kill, "Scoring server pids")


def _term_then_kill(find: Callable[[], List[int]], send: Callable[[int, int], None],
                    warn_as: Optional[str] = None) -> Tuple[List[int], List[int]]:
    """SIGTERM to each pid ``find()`` returns, then SIGKILL to those it still returns after
    STOP_TIMEOUT_S, polling until none is left; ``send(pid, sig)`` signals one. Each pid is
    signalled once a round, also one found later in it (a worker the master respawned).
    Return (the pids signalled, the pids left after KILL_TIMEOUT_S); with ``warn_as``, the
    pids left after a round are logged as a warning under that name."""
    signalled: Set[int] = set()
    left: List[int] = []
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, KILL_TIMEOUT_S)):
        sent: Set[int] = set()
        deadline = time.monotonic() + wait_s
        while True:
            left = find()
            for pid in set(left) - sent:
                try:
                    send(pid, sig)
                except ProcessLookupError:  # ended since it was found
                    pass
            sent.update(left)
            signalled.update(left)
            if not left:
                return sorted(signalled), []
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if warn_as:
            LOGGER.warning("%s %s did not end on %s", warn_as, ", ".join(map(str, left)),
                           sig.name)
    return sorted(signalled), left


def _all_pids() -> List[int]:
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


def _reap(pid: int) -> None:
    """Collect the exit status of a process of ours that ended (the leader, when this
    process started it), so that it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _serves(pid: int, pgid: int, model_dir: Path) -> bool:
    """True if process ``pid`` is in group ``pgid`` and is azmlinfsrv serving ``model_dir``
    (False once it has ended)."""
    fields = _stat_fields(pid)
    if fields is None or int(fields[2]) != pgid or fields[0] == "Z":
        return False
    try:
        cmdline = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:  # ended meanwhile
        return False
    names_server = any(os.path.basename(part) == b"azmlinfsrv" for part in cmdline)
    return names_server and _argument(cmdline, b"--model_dir") == os.fsencode(model_dir)


def _stat_fields(pid: int) -> Optional[List[str]]:
    """The fields of /proc/<pid>/stat after the command name (state, parent, group, ...),
    or None if there is no such process (or it is not ours to read)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold anything: the fields follow the last ")".
    fields = stat.rsplit(")", 1)[-1].split()
    return fields if len(fields) >= 3 else None


def _argument(cmdline: List[bytes], option: bytes) -> Optional[bytes]:
    """The value following ``option`` on a command line, or None."""
    for index, part in enumerate(cmdline[:-1]):
        if part == option:
            return cmdline[index + 1]
    return None


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
    _term_then_kill(lambda: [pid] if _alive(pid) else [], os.killpg)


def _alive(pid: int) -> bool:
    """True while a process is left in the group ``pid`` leads (or led); one that ended,
    waiting to be reaped by its parent, is not counted."""
    _reap(pid)
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    if not PROC.is_dir():
        return True
    return any(fields is not None and int(fields[2]) == pid and fields[0] != "Z"
               for fields in map(_stat_fields, _all_pids()))


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
