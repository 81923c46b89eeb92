"""Start step processes fast: import the heavy libraries once, fork one child per step.

A step's process otherwise spends about three seconds importing MLflow,
scikit-learn and pandas before it does any work. The launcher imports them
once: the platform's own (WARM_MODULES) and every library the pipeline's step
scripts import, found by reading their import statements and those of the
project modules they import (so a model of another library is warmed too);
for each step it forks a child that runs the step script as
``__main__`` with the step's arguments, working directory, environment and
``sys.path``, exactly as ``python script.py`` would, with its output in the
step's log file. Every step is still its own process.

It speaks JSON lines: a request on stdin, ``{"code": N}`` on stdout when the
step's process has ended. Set ``MLOPS_STEP_LAUNCHER=process`` to start plain
``python script.py`` processes instead; where ``os.fork`` does not exist
(Windows) that is what happens.
"""
import argparse
import ast
import atexit
import builtins
import ctypes
import gc
import importlib
import importlib.machinery
import json
import os
import signal
import sys
import threading
import traceback
import types
from pathlib import Path
from typing import Any, Dict, Iterable, List, NoReturn, Optional, Sequence, Set

# Imported once in the launcher: what the local backend loads inside its functions.
# No project module is imported here, so every step runs the project's code as it is on
# disk.
WARM_MODULES = (
    "numpy", "pandas", "pyarrow.parquet", "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store",
    "sqlalchemy.dialects.sqlite", "alembic.command", "alembic.config", "pyarrow.pandas_compat",
    "dotenv",
)
# Only later steps need these (saving and loading models): imported while the first runs.
LATE_WARM_MODULES = ("mlflow.models", "mlflow.pyfunc")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Looked up before any fork: a child may call it between fork and exec.
_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


def end_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM to this process when its parent, ``parent``, ends
    (Linux only): a launcher whose executor was killed, or a step whose launcher was, must
    not run on with nothing left to record what it does. Safe between fork and exec."""
    if _LIBC is None:
        return
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it ended before the request took effect
        os._exit(1)


def warm_up(modules: Iterable[str] = WARM_MODULES) -> None:
    """Import the libraries the steps need; one that fails to import is left to the step
    (``a.b`` where b is a name in module a, not a module, is skipped)."""
    for name in modules:
        parent, _, child = name.rpartition(".")
        if parent and hasattr(sys.modules.get(parent), child):
            continue
        try:
            importlib.import_module(name)
        except Exception:  # the step that imports it reports the error
            pass


def top_level_imports(tree: ast.Module) -> Iterable[ast.stmt]:
    """The import statements a module runs when it is imported: those of its body, also
    under if/try/with, not those inside functions or classes (imported when called)."""
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            pending[:0] = [child for child in ast.iter_child_nodes(node)
                           if isinstance(child, ast.stmt)]


def project_file(name: str, roots: Sequence[Path]) -> Optional[Path]:
    """The file of module ``name`` under one of ``roots`` (a package's __init__.py), or None
    when it is not a project module."""
    parts = name.split(".")
    for root in roots:
        base = root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def imported_names(node: ast.stmt, module: str, is_package: bool) -> List[str]:
    """The absolute module names an import statement in ``module`` may load: for
    ``from a import b``, both ``a`` and ``a.b`` (b may be a submodule)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]


def library_imports(scripts: Iterable[Path], roots: Sequence[Path]) -> List[str]:
    """Every library module the scripts import when they start, directly or through the
    project modules (those under ``roots``) they import, in the order first met.

    The files are read, never run; a file that does not parse is skipped (its step will
    say why). Project modules themselves are not in the list.
    """
    libraries: Dict[str, None] = {}
    seen: Set[Path] = set()
    pending = [(Path(script), "__main__", False) for script in scripts]
    while pending:
        path, module, is_package = pending.pop(0)
        if path in seen:
            continue
        seen.add(path)
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            continue
        local_roots = [path.parent, *roots] if module == "__main__" else list(roots)
        for node in top_level_imports(tree):
            for name in filter(None, imported_names(node, module, is_package)):
                if project_file(name.split(".")[0], local_roots) is None:
                    libraries[name] = None
                    continue
                # A project module, and the packages above it, which import first.
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:depth])
                    found = project_file(prefix, local_roots)
                    if found is not None:
                        pending.append((found, prefix, found.name == "__init__.py"))
    return list(libraries)


def warm_up_late() -> None:
    """What only later steps need, done while the first step runs on the other core.

    Saving a model makes MLflow map every installed package to its modules (about a
    second, to check the model's requirements): made here once, every later step has it.
    """
    warm_up(LATE_WARM_MODULES)
    try:
        from mlflow.utils.requirements_utils import _init_packages_to_modules_map
    except ImportError:
        return
    _init_packages_to_modules_map()


def child_sys_path(script: str, env: Dict[str, str], base: List[str]) -> List[str]:
    """sys.path as ``python script.py`` builds it: script folder, PYTHONPATH, then the rest."""
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return [os.path.dirname(os.path.abspath(script)), *extra,
            *[p for p in base if p not in extra]]


def run_child(request: Dict[str, Any], base_path: List[str], launcher: int) -> None:
    """In the forked child: become the step's process, run the script, exit with its code."""
    code = 1
    main_module = types.ModuleType("__main__")
    try:
        end_with_parent(launcher)
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
        run_as_main(script, main_module)
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if not isinstance(done.code, (int, type(None))):
            print(done.code, file=sys.stderr)
    except BaseException as failure:  # the step's own: reported as python would report it
        frames = failure.__traceback__
        while frames is not None and frames.tb_frame.f_code.co_filename == __file__:
            frames = frames.tb_next  # the launcher's own frames are not the step's
        traceback.print_exception(type(failure), failure, frames)
        code = 1
    finally:
        leave(code, main_module)


def run_as_main(script: str, module: types.ModuleType) -> None:
    """Run the file as ``python script.py`` runs it: as module ``__main__``, with its
    ``__file__`` and loader, in ``module``, kept so that leave() can finalise it."""
    loader = importlib.machinery.SourceFileLoader("__main__", script)
    module.__dict__.update({"__file__": script, "__cached__": None, "__builtins__": builtins,
                            "__spec__": None, "__package__": None, "__loader__": loader})
    sys.modules["__main__"] = module
    with open(script, "rb") as source:
        code = compile(source.read(), script, "exec")
    exec(code, module.__dict__)


def leave(code: int, main_module: types.ModuleType) -> NoReturn:
    """End the child as the interpreter ends ``python script.py``, then exit with ``code``:
    wait for the step's threads (a thread pool it did not shut down finishes its work), run
    the atexit handlers, clear the script's globals (a file it left open is flushed and
    closed), flush the streams. The child never returns to the launcher's loop."""
    try:
        threading._shutdown()  # what the interpreter does first on its way out
        atexit._run_exitfuncs()
        main_module.__dict__.clear()
    except BaseException:  # as python would: reported, the exit code kept
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def serve(requests_in, replies_out, late_warm_up=warm_up_late) -> None:
    """Fork one child per request and reply with its exit code, until stdin closes;
    ``late_warm_up`` runs once, in the launcher, while the first child runs."""
    base_path = sys.path[1:]  # without the launcher's own working directory
    launcher = os.getpid()
    for line in requests_in:
        if not line.strip():
            continue
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            run_child(request, base_path, launcher)
        if late_warm_up is not None:
            try:
                late_warm_up()
            except Exception:  # only a warm-up: the steps import what they need anyway
                traceback.print_exc()
            late_warm_up = None
            # What the warm-up made lives as long as the launcher: no collection looks at
            # it again, in the launcher or in the children that inherit it.
            gc.freeze()
        _, status = os.waitpid(pid, 0)
        replies_out.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
        replies_out.flush()


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """The step scripts to warm up for and the folder their imports resolve from."""
    parser = argparse.ArgumentParser(description="Fork step processes from a warm parent.")
    parser.add_argument("--source_directory", type=Path, default=Path.cwd(),
                        help="where the scripts' project imports resolve (their PYTHONPATH)")
    parser.add_argument("scripts", nargs="*", type=Path,
                        help="the step scripts, whose library imports are warmed")
    return parser.parse_args(argv)


def main(argv: Optional[list] = None) -> int:
    """Entry point of the launcher process (started by the local executor)."""
    args = parse_args(argv)
    end_with_parent(os.getppid())
    warm_up([*WARM_MODULES, *library_imports(args.scripts, [args.source_directory])])
    gc.freeze()
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
