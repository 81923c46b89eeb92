"""Start step processes fast: import the heavy libraries once, fork one child per step.

A step's process otherwise spends about three seconds importing MLflow,
scikit-learn and pandas before it does any work. The launcher imports them
once; for each step it forks a child that runs the step script as
``__main__`` with the step's arguments, working directory, environment and
``sys.path``, exactly as ``python script.py`` would, with its output in the
step's log file. Every step is still its own process.

It speaks JSON lines: a request on stdin, ``{"code": N}`` on stdout when the
step's process has ended. Set ``MLOPS_STEP_LAUNCHER=process`` to start plain
``python script.py`` processes instead; where ``os.fork`` does not exist
(Windows) that is what happens.
"""
import json
import os
import runpy
import sys
import traceback
from typing import Any, Dict, List

# Imported once in the launcher. No project module is imported here, so every
# step runs the project's code as it is on disk.
WARM_MODULES = (
    "numpy", "pandas", "joblib", "sklearn.linear_model", "sklearn.metrics",
    "sklearn.model_selection", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store", "dotenv",
)


def warm_up() -> None:
    """Import the libraries the steps need; one that fails to import is left to the step."""
    for name in WARM_MODULES:
        try:
            __import__(name)
        except ImportError:
            pass


def child_sys_path(script: str, env: Dict[str, str], base: List[str]) -> List[str]:
    """sys.path as ``python script.py`` builds it: script folder, PYTHONPATH, then the rest."""
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return [os.path.dirname(os.path.abspath(script)), *extra,
            *[p for p in base if p not in extra]]


def run_child(request: Dict[str, Any], base_path: List[str]) -> None:
    """In the forked child: become the step's process, run the script, exit with its code."""
    code = 1
    try:
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if os.environ.get("PYTHONUNBUFFERED"):
            # What the variable does to a new interpreter's streams.
            for stream in (sys.stdout, sys.stderr):
                stream.reconfigure(line_buffering=True, write_through=True)
        script = request["argv"][0]
        sys.path[:] = child_sys_path(script, request["env"], base_path)
        sys.argv = list(request["argv"])
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if not isinstance(done.code, (int, type(None))):
            print(done.code, file=sys.stderr)
    except BaseException:  # the step's own failure: report it as python would
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def serve(requests_in, replies_out) -> None:
    """Fork one child per request and reply with its exit code, until stdin closes."""
    base_path = sys.path[1:]  # without the launcher's own working directory
    for line in requests_in:
        if not line.strip():
            continue
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            run_child(request, base_path)
        _, status = os.waitpid(pid, 0)
        replies_out.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
        replies_out.flush()


def main(argv: Any = None) -> int:
    """Entry point of the launcher process (started by the local executor)."""
    warm_up()
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
