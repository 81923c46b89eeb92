"""The fork-based runner must start a step exactly as `python script.py` would."""
import json
import sys

import pytest

from ml_service.errors import ConfigurationError
from ml_service.pipelines.local_executor import ForkRunner, ProcessRunner, make_runner

PROBE = """
import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "name": __name__,
                  "path0": sys.path[0], "on_path": os.environ["EXTRA"] in sys.path,
                  "var": os.environ.get("PROBE_VAR"), "stdin": sys.stdin.read()}))
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture
def probe(tmp_path):
    script = tmp_path / "scripts" / "probe.py"
    script.parent.mkdir()
    script.write_text(PROBE)
    return script


def run_probe(runner, probe, tmp_path, code):
    extra = tmp_path / "extra"
    env = {"PROBE_VAR": "x", "EXTRA": str(extra), "PYTHONPATH": str(extra),
           "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    log = tmp_path / f"{type(runner).__name__}.log"
    try:
        result = runner.run([sys.executable, str(probe), str(code), "--flag"], tmp_path, env, log)
    finally:
        runner.close()
    first, second = log.read_text().splitlines()
    return result, json.loads(first), second


@pytest.mark.parametrize("code", [0, 3])
def test_fork_and_process_runners_start_steps_the_same_way(probe, tmp_path, code):
    fork_code, fork_seen, fork_err = run_probe(ForkRunner({}), probe, tmp_path, code)
    process_code, process_seen, process_err = run_probe(ProcessRunner(), probe, tmp_path, code)
    assert fork_code == process_code == code
    assert fork_seen == process_seen
    assert fork_seen["name"] == "__main__" and fork_seen["path0"] == str(probe.parent)
    assert fork_seen["on_path"] is True and fork_seen["var"] == "x"
    assert fork_seen["argv"] == [str(code), "--flag"] and fork_seen["stdin"] == ""
    assert fork_err == process_err == "to stderr"


def test_an_exception_in_a_forked_step_exits_1_with_the_traceback(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("raise RuntimeError('boom')\n")
    runner = ForkRunner({})
    try:
        assert runner.run([sys.executable, str(script)], tmp_path, {}, tmp_path / "log") == 1
    finally:
        runner.close()
    assert "RuntimeError: boom" in (tmp_path / "log").read_text()


def test_the_launcher_choice():
    assert isinstance(make_runner({"MLOPS_STEP_LAUNCHER": "process"}), ProcessRunner)
    with pytest.raises(ConfigurationError, match="MLOPS_STEP_LAUNCHER='thread'"):
        make_runner({"MLOPS_STEP_LAUNCHER": "thread"})
