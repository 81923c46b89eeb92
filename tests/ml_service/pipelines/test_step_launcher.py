"""The fork-based runner must start a step exactly as `python script.py` would."""
import contextlib
import gc
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines import step_launcher
from ml_service.pipelines.definition import PipelineDefinition, Step
from ml_service.pipelines.local_executor import ForkRunner, ProcessRunner, make_runner
from tests.conftest import measured
from tests.processes import alive, parent_of

PROBE = """
import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "name": __name__,
                  "path0": sys.path[0], "on_path": os.environ["EXTRA"] in sys.path,
                  "var": os.environ.get("PROBE_VAR"), "stdin": sys.stdin.read()}))
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def fork_runner():
    """One warm launcher for the tests of how it starts a step: each step is still a child
    forked for it alone, and warming up costs seconds of imports per launcher. Coverage
    measures it and its children here (the session's warm launcher is not measured)."""
    runner = ForkRunner(measured())
    yield runner
    runner.close()


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
    result = runner.run([sys.executable, str(probe), str(code), "--flag"], tmp_path, env, log)
    first, second = log.read_text().splitlines()
    return result, json.loads(first), second


@pytest.mark.process
@pytest.mark.parametrize("code", [0, 3])
def test_fork_and_process_runners_start_steps_the_same_way(fork_runner, probe, tmp_path, code):
    fork_code, fork_seen, fork_err = run_probe(fork_runner, probe, tmp_path, code)
    process_code, process_seen, process_err = run_probe(ProcessRunner(), probe, tmp_path, code)
    assert fork_code == process_code == code
    assert fork_seen == process_seen
    assert fork_seen["name"] == "__main__" and fork_seen["path0"] == str(probe.parent)
    assert fork_seen["on_path"] is True and fork_seen["var"] == "x"
    assert fork_seen["argv"] == [str(code), "--flag"] and fork_seen["stdin"] == ""
    assert fork_err == process_err == "to stderr"


@pytest.mark.process
def test_an_exception_in_a_forked_step_exits_1_with_the_traceback(fork_runner, tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("raise RuntimeError('boom')\n")
    assert fork_runner.run([sys.executable, str(script)], tmp_path, {}, tmp_path / "log") == 1
    log = (tmp_path / "log").read_text()
    assert "RuntimeError: boom" in log and str(script) in log
    assert "step_launcher" not in log  # only the step's own frames, as python shows them


def test_the_launcher_choice():
    assert isinstance(make_runner({"MLOPS_STEP_LAUNCHER": "process"}), ProcessRunner)
    with pytest.raises(ConfigurationError, match="MLOPS_STEP_LAUNCHER='thread'"):
        make_runner({"MLOPS_STEP_LAUNCHER": "thread"})


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_libraries_a_step_imports_are_found_by_reading_its_imports(tmp_path):
    write(tmp_path / "pkg" / "__init__.py", "import json\n")
    write(tmp_path / "pkg" / "mod.py",
          "from . import sub\nimport fakelib.part\ntry:\n    import optlib\n"
          "except ImportError:\n    optlib = None\n\n\ndef later():\n    import lazylib\n")
    write(tmp_path / "pkg" / "sub.py", "from .mod import later\nfrom collections import abc\n")
    write(tmp_path / "steps" / "helper.py", "import wave\n")
    script = write(tmp_path / "steps" / "step.py",
                   "import helper\nfrom pkg.mod import later\nif later:\n    import colorsys\n")
    broken = write(tmp_path / "steps" / "broken.py", "import tabnanny\ndef (:\n")
    found = step_launcher.library_imports([script, broken], [tmp_path])
    # Project modules (pkg, helper) are read, never listed; what a function imports
    # when it is called (lazylib) is not imported at start.
    assert set(found) == {"wave", "colorsys", "json", "fakelib.part", "optlib", "collections",
                          "collections.abc"}


@pytest.mark.process
def test_the_launcher_imports_what_the_pipeline_steps_import_before_they_run(tmp_path):
    # tabnanny: a standard module nothing else here imports.
    write(tmp_path / "probe.py", "import sys\nprint('tabnanny' in sys.modules)\nimport tabnanny\n")
    step = Step("probe", "probe.py", ())
    pipeline = PipelineDefinition("p", tmp_path, (), (), (step,))
    seen = {}
    for runner in (ForkRunner({}, pipeline), ProcessRunner()):
        log = tmp_path / f"{type(runner).__name__}.log"
        try:
            assert runner.run([sys.executable, str(tmp_path / "probe.py")], tmp_path, {},
                              log) == 0
        finally:
            runner.close()
        seen[type(runner).__name__] = log.read_text().strip()
    assert seen == {"ForkRunner": "True", "ProcessRunner": "False"}


def serve_twice(tmp_path, late_warm_up):
    script = write(tmp_path / "ok.py", "import sys\nsys.exit(int(sys.argv[1]))\n")
    requests = "".join(json.dumps({"argv": [str(script), str(code)], "cwd": str(tmp_path),
                                   "env": {}, "log": str(tmp_path / f"{code}.log")}) + "\n"
                       for code in (0, 4))
    replies = io.StringIO()
    try:
        step_launcher.serve(io.StringIO(requests), replies, late_warm_up)
    finally:
        gc.unfreeze()
    return [json.loads(line)["code"] for line in replies.getvalue().splitlines()]


@pytest.mark.process
def test_the_late_warm_up_runs_once_while_the_first_step_runs(tmp_path):
    calls = []
    assert serve_twice(tmp_path, lambda: calls.append(1)) == [0, 4]
    assert calls == [1]


@pytest.mark.process
def test_a_failing_late_warm_up_is_reported_and_the_steps_still_run(tmp_path, capfd):
    def broken():
        raise RuntimeError("warm-up broke")

    assert serve_twice(tmp_path, broken) == [0, 4]
    assert "RuntimeError: warm-up broke" in capfd.readouterr().err


def test_the_late_warm_up_makes_mlflows_package_map_once_for_every_step():
    from mlflow.utils import requirements_utils

    step_launcher.warm_up_late()
    # What saving a model otherwise computes in the train step (about a second).
    assert requirements_utils._MODULES_TO_PACKAGES is not None


@pytest.mark.process
def test_the_executor_starts_the_launcher_before_it_imports_pandas_or_mlflow():
    code = ("import sys, ml_service.pipelines.local_executor; "
            "print(sorted({'pandas', 'mlflow', 'sklearn'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=PROJECT_ROOT)
    assert done.stdout.strip() == "[]"


LEAVES_WORK_BEHIND = """
import atexit, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

handle = open(sys.argv[1] + ".unclosed", "w")


def late(name):
    time.sleep(0.3)
    with open(sys.argv[1] + "." + name, "w") as out:
        out.write(name)


def main():
    handle.write("flushed at exit")
    threading.Thread(target=late, args=("thread",)).start()
    ThreadPoolExecutor(1).submit(late, "pool")
    atexit.register(print, "atexit ran")
    sys.exit(int(sys.argv[2]))


main()
"""


@pytest.mark.process
@pytest.mark.parametrize("code", [0, 5])
def test_a_forked_step_ends_as_python_ends_a_script(fork_runner, tmp_path, code):
    # Threads finish, atexit handlers run, a file left open is flushed: nothing the step
    # wrote is lost because the launcher forked it.
    script = write(tmp_path / "behind.py", LEAVES_WORK_BEHIND)
    seen = {}
    for runner in (fork_runner, ProcessRunner()):
        name = type(runner).__name__
        out = tmp_path / name
        assert runner.run([sys.executable, str(script), str(out), str(code)], tmp_path, {},
                          tmp_path / f"{name}.log") == code
        seen[name] = {suffix: (tmp_path / f"{name}.{suffix}").read_text()
                      for suffix in ("unclosed", "thread", "pool")}
        seen[name]["log"] = (tmp_path / f"{name}.log").read_text().strip()
    assert seen["ForkRunner"] == seen["ProcessRunner"] == {
        "unclosed": "flushed at exit", "thread": "thread", "pool": "pool", "log": "atexit ran"}


# A step that says who it is, then runs for longer than the test.
SLEEPER = "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
# An executor's part: run the step with a runner, as execute() does.
EXECUTOR = """
import os, sys
from pathlib import Path
from ml_service.pipelines.local_executor import ForkRunner, ProcessRunner
runner = ForkRunner(os.environ) if sys.argv[1] == "fork" else ProcessRunner()
runner.run([sys.executable, *sys.argv[2:]], Path.cwd(), dict(os.environ),
           Path.cwd() / "step.log")
"""


@pytest.mark.process
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("launcher, killed", [
    ("fork", "executor"), ("fork", "launcher"), ("process", "executor")])
def test_a_step_ends_when_the_process_that_started_it_is_killed(tmp_path, launcher, killed):
    script, said = write(tmp_path / "sleeper.py", SLEEPER), tmp_path / "step.pid"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    executor = subprocess.Popen([sys.executable, "-c", EXECUTOR, launcher, str(script),
                                 str(said)], cwd=tmp_path, env=env, start_new_session=True,
                                stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (said.exists() and said.read_text()):
            assert executor.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        step = int(said.read_text())
        parent = parent_of(step)
        os.kill(executor.pid if killed == "executor" else parent, signal.SIGKILL)
        executor.wait(timeout=30)
        deadline = time.monotonic() + 10
        while alive(step) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(step)
    finally:
        # The executor's group holds the launcher and the step: none outlives the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(executor.pid, signal.SIGKILL)
        executor.wait()
