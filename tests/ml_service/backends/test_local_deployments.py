"""Local deployments never orphan a server: concurrent deploys, an interrupted deploy, stop,
and stop or a new deploy after the server's leader or its worker was killed. What a service
answers is collected once per request, through a kill, and never at the cost of an answer."""
import json
import logging
import os
import signal
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests

from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.model_files import save_model
from diabetes_regression.training.train import TARGET_COLUMN, split_data, train_model
from ml_service.backends import local_server
from ml_service.monitoring.collected import read_collected
from ml_service.pipelines.diabetes_regression_pipeline import scoring_service_spec
from ml_service.util import deploy_local
from tests.conftest import make_frame
from tests.processes import alive, group_members, stat_fields

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
    """Whatever a test asserts, no server of the service outlives it: not even a worker
    whose leader was killed (out of its group's reach once the leader is gone)."""
    yield
    service_dir = backend.root / "deployments" / SERVICE
    for pid in servers_of(service_dir):
        local_server.terminate(pid)
    deadline = time.monotonic() + 10
    while serving_processes(service_dir) and time.monotonic() < deadline:
        for pid in serving_processes(service_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def serving_processes(service_dir: Path) -> dict:
    """{pid: (parent pid, process group)} of every azmlinfsrv process serving this service's
    model folder: servers and their workers, which carry the same command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat_fields(int(entry.name))
        if fields is not None and any(b"azmlinfsrv" in part for part in cmdline) \
                and str(service_dir / "model").encode() in cmdline:
            found[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return found


def servers_of(service_dir: Path) -> list:
    """Process ids of the azmlinfsrv servers serving this service's model folder (the main
    processes: their workers are left out)."""
    found = serving_processes(service_dir)
    return sorted(pid for pid, (parent, _) in found.items() if parent not in found)


def kill_hard(pid: int) -> None:
    """kill -9 one process (not its group), as an out-of-memory kill does; reap it if it is
    this process's child, as a shell would."""
    os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        wait_until(lambda: not alive(pid))


def wait_until(condition, limit_s: float = 30.0) -> None:
    """Poll until ``condition()`` holds; fail the test after ``limit_s`` seconds."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"still not true after {limit_s:.0f} s"
        time.sleep(0.05)


def answers(url: str) -> bool:
    """True if a server answers the liveness route at ``url``."""
    try:
        with urllib.request.urlopen(url + "/", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


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


def deployed_group(backend, production) -> tuple:
    """Deploy the service; return its record and the live processes of its group, once the
    server's worker is up (gunicorn forks it after the master)."""
    backend.deploy_model(production, SERVICE, scoring_service_spec())
    record = local_server.read_record(backend.root / "deployments" / SERVICE)
    wait_until(lambda: len(group_members(record["pid"])) >= 2)
    return record, group_members(record["pid"])


def test_stop_after_a_kill_of_the_leader_ends_its_worker(backend, production, caplog):
    record, members = deployed_group(backend, production)
    leader = record["pid"]
    kill_hard(leader)
    orphans = group_members(leader)
    assert orphans and leader not in orphans  # the worker is left, holding the port
    caplog.set_level(logging.INFO)
    assert deploy_local.main(["stop", "--service", SERVICE]) == 0
    assert group_members(leader) == []
    assert f"Service '{SERVICE}' stopped" in caplog.text
    assert (f"Stopped the scoring server's processes {', '.join(map(str, orphans))} "
            f"(process group {leader}; its leader had ended)") in caplog.text
    assert local_server.read_record(backend.root / "deployments" / SERVICE) is None


def test_stop_after_a_kill_of_the_worker_ends_the_leader(backend, production):
    record, members = deployed_group(backend, production)
    leader = record["pid"]
    kill_hard(next(pid for pid in members if pid != leader))
    assert deploy_local.main(["stop", "--service", SERVICE]) == 0
    assert group_members(leader) == []
    assert local_server.read_record(backend.root / "deployments" / SERVICE) is None


def test_a_fixed_port_is_free_again_for_the_next_deploy(backend, production, capsys,
                                                        monkeypatch):
    port = local_server.free_port()
    monkeypatch.setenv("LOCAL_SCORING_PORT", str(port))
    argv = ["deploy", "--service", SERVICE, "--model_name", MODEL]
    assert deploy_local.main(argv) == 0
    first = local_server.read_record(backend.root / "deployments" / SERVICE)
    wait_until(lambda: len(group_members(first["pid"])) >= 2)
    kill_hard(first["pid"])
    # The new deploy replaces the service: the old worker goes, and its port with it.
    assert deploy_local.main(argv) == 0
    url = capsys.readouterr().out.strip().splitlines()[-1]
    assert url == f"http://127.0.0.1:{port}/score"
    assert group_members(first["pid"]) == []
    second = local_server.read_record(backend.root / "deployments" / SERVICE)
    assert second["pid"] != first["pid"] and answers(second["url"])
    assert servers_of(backend.root / "deployments" / SERVICE) == [second["pid"]]


# -- what the service sees is collected ----------------------------------------------------------
def score_concurrently(url: str, body: dict, prefix: str, clients: int = 8,
                       each: int = 25) -> dict:
    """Send ``clients`` x ``each`` requests at once, each with an x-request-id of its own;
    return {request id: answer} of those answered 200 (none is expected to fail but after a
    kill)."""
    answered, lock = {}, threading.Lock()

    def client(number):
        with requests.Session() as session:
            for request in range(each):
                request_id = f"{prefix}-{number}-{request}"
                try:
                    response = session.post(url, json=body, timeout=30,
                                            headers={"x-request-id": request_id})
                except requests.RequestException:
                    return
                if response.status_code == 200:
                    with lock:
                        answered[request_id] = response.json()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answered


def collected_ids(backend) -> Counter:
    return Counter(r["id"] for r in read_collected(backend.collected_dir(), SERVICE).records)


def feature_rows(count: int = 3) -> list:
    """Rows of the width the production fixture's model takes, from the same generator."""
    return make_frame(rows=count).drop(columns=[TARGET_COLUMN]).to_numpy().tolist()


def test_concurrent_clients_of_two_workers_are_each_collected_once_and_a_kill_loses_nothing(
        backend, production, monkeypatch):
    monkeypatch.setenv("WORKER_COUNT", "2")
    body = {"data": feature_rows()}
    url = backend.deploy_model(production, SERVICE, scoring_service_spec()).scoring_uri
    refused = requests.post(url, json={"data": [[1.0]]}, timeout=30,
                            headers={"x-request-id": "refused"})
    answered = score_concurrently(url, body, "first")
    assert refused.status_code == 400 and len(answered) == 200
    wait_until(lambda: set(answered) <= set(collected_ids(backend)))
    records = read_collected(backend.collected_dir(), SERVICE).records
    counts = Counter(r["id"] for r in records)
    assert set(counts) == set(answered) and set(counts.values()) == {1}  # refused: not kept
    record = records[0]
    assert (record["model"], record["version"]) == (production.name, str(production.version))
    assert record["inputs"] == body["data"]
    assert record["outputs"] == answered[record["id"]]

    # kill -9 of the whole server while clients are sending: what was written stays readable.
    leader = local_server.read_record(backend.root / "deployments" / SERVICE)["pid"]
    sending = threading.Thread(target=score_concurrently, args=(url, body, "killed", 4, 100))
    sending.start()
    wait_until(lambda: any(i.startswith("killed") for i in collected_ids(backend)))
    os.killpg(leader, signal.SIGKILL)
    sending.join(timeout=120)
    after_kill = collected_ids(backend)
    assert set(answered) <= set(after_kill) and set(after_kill.values()) == {1}

    # A new deploy (the restart) collects again, beside what the killed one wrote.
    url = backend.deploy_model(production, SERVICE, scoring_service_spec()).scoring_uri
    again = score_concurrently(url, body, "again", clients=2, each=5)
    wait_until(lambda: set(again) <= set(collected_ids(backend)))
    final = collected_ids(backend)
    assert set(after_kill) | set(again) == set(final) and set(final.values()) == {1}
    # One file per server process and start: the killed server's files stay as they were.
    assert read_collected(backend.collected_dir(), SERVICE).files >= 2


def test_a_store_that_cannot_be_written_still_answers_every_request(backend, production):
    backend.collected_dir().parent.mkdir(parents=True, exist_ok=True)
    backend.collected_dir().write_text("a file where the collector's folder would be")
    url = backend.deploy_model(production, SERVICE, scoring_service_spec()).scoring_uri
    assert len(score_concurrently(url, {"data": feature_rows()}, "x", clients=4, each=10)) == 40
    log = Path(local_server.read_record(backend.root / "deployments" / SERVICE)["log"])
    warning = "scoring data collection cannot write"
    wait_until(lambda: warning in log.read_text())
    assert log.read_text().count(warning) == 1


def test_the_sdk_v2_collector_runs_in_local_capture_mode_under_the_local_server(
        backend, production, monkeypatch):
    """MLOPS_COLLECTOR=mdc: the same score.py hands each answered request to
    azureml-ai-monitoring's collectors, which, in local capture mode, log the model_inputs
    and model_outputs frames with the request's id as their correlation id."""
    for name, value in (("MLOPS_COLLECTOR", "mdc"), ("AZUREML_MDC_ENABLED", "true"),
                        ("AZUREML_MDC_LOCAL_CAPTURE", "true")):
        monkeypatch.setenv(name, value)
    url = backend.deploy_model(production, SERVICE, scoring_service_spec()).scoring_uri
    rows = feature_rows()[:2]
    answer = requests.post(url, json={"data": rows}, timeout=30,
                           headers={"x-request-id": "mdc-1"})
    assert answer.status_code == 200
    log = backend.root / "deployments" / SERVICE / "server.log"
    captured = {}

    def both_captured():
        for line in log.read_text().splitlines():
            parts = [part.strip() for part in line.split(" | ")]
            if "local.capture" in parts and "mdc-1" in parts:
                captured[parts[-3]] = json.loads(parts[-1])
        return set(captured) == {"model_inputs", "model_outputs"}
    wait_until(both_captured)
    # pandas writes the frames as JSON with 10 significant digits.
    assert np.allclose([list(row.values()) for row in captured["model_inputs"]], rows,
                       rtol=1e-9)
    assert np.allclose([row["result"] for row in captured["model_outputs"]],
                       answer.json()["result"], rtol=1e-9)


def test_a_local_online_endpoint_rolls_a_second_version_out_blue_green(backend, production):
    """The rollout on local services: blue serves version 1, then version 2 goes to green,
    takes the traffic in steps and blue is deleted; the endpoint's traffic is a file."""
    from ml_service.backends.local_online import LocalOnlineEndpoint
    from ml_service.util.online_rollout import RolloutSettings, roll_out

    # The production fixture's model reads the generated frame's width.
    endpoint = LocalOnlineEndpoint(backend, "online", MODEL, scoring_service_spec(),
                                   {"data": feature_rows(2)})
    try:
        endpoint.ensure_exists()
        roll_out(endpoint, production.version)
        assert endpoint.state().traffic == {"blue": 100}
        version_2 = backend.register_model(
            MODEL, backend.download_model(production, backend.root.parent / "copy"),
            backend.start_pipeline_run("p", {}), {}).version
        steps = roll_out(endpoint, version_2, RolloutSettings(mirror_percent=10,
                                                              traffic_steps=(50, 100)))
        assert steps == [f"create green with version {version_2}", "mirror 10 % to green",
                         "smoke test green", "50 % to green", "100 % to green", "delete blue"]
        state = endpoint.state()
        assert (state.deployments, state.traffic) == ({"green": version_2},
                                                      {"green": 100, "blue": 0})
        assert endpoint.scoring_uri() == backend.get_deployment("online-green").scoring_uri
        assert backend.get_deployment("online-blue") is None
    finally:
        for slot in ("blue", "green"):
            backend.delete_deployment(f"online-{slot}")
