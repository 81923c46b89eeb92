"""Lock every environment of the project and write the Azure ML conda files from the locks.

    python -m ml_service.util.lock_environments check   # make check-lock
    python -m ml_service.util.lock_environments lock    # make lock
    python -m ml_service.util.lock_environments cache   # fill uv's cache for an offline lock

pyproject.toml's ``[tool.mlops.azureml-environments]`` table names each conda file used on
Azure ML and the uv project whose lock writes its pip list: ``"."`` is this project's own
dependencies (the dev extra left out), resolved in ``uv.lock`` together with everything the
laptop and CI install; another folder is a resolution of its own (the batch scoring
environment, whose pandas < 2 cannot share the project's resolution). The conda file's other
lines (name, channels, python pin, comments) are its own; its pip list is the lock's, every
package of the environment at its locked version, never edited by hand.

``check`` refuses a lock that its pyproject.toml no longer matches and a conda file whose pip
list is not what its lock gives, naming the file and the fix (``make lock``). ``lock``
updates the locks, then rewrites the pip lists. ``cache`` asks the package index for every
locked package's pages, so that a later ``uv lock --offline`` can add a dependency the lock
already holds.

Standard library only: make runs it with the machine's Python, before the project's
environment exists.
"""
import argparse
import logging
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.util.cli import run_cli

LOGGER = logging.getLogger(__name__)
TABLE = ("tool", "mlops", "azureml-environments")
TABLE_NAME = "[" + ".".join(TABLE) + "]"
PIP_LIST = re.compile(r"^(?P<indent>\s*)-\s*pip\s*:\s*$")
EXTRAS = re.compile(r"^\s*(?P<name>[A-Za-z0-9_.-]+)\s*\[(?P<extras>[^\]]+)\]")
LIST_ITEM = re.compile(r"^(?P<indent>\s*)-\s+(?P<value>.*?)\s*$")
# uv export: every locked package of one project, pinned, with its environment markers
# (pip evaluates them on the compute), without hashes (conda's pip list carries none).
EXPORT = ("export", "--locked", "--format", "requirements.txt", "--no-hashes", "--no-header",
          "--no-annotate", "--no-emit-project", "--quiet")
UV_TIMEOUT = 600


@dataclass(frozen=True)
class LockedEnvironment:
    """A conda file used on Azure ML and the uv project (folder) whose lock fills it."""

    conda_file: str
    project: str

    def lock_file(self) -> str:
        """The lock, relative to the repository root."""
        return _relative(self.project, "uv.lock")

    def pyproject(self) -> str:
        """The dependency declaration, relative to the repository root."""
        return _relative(self.project, "pyproject.toml")


def _relative(project: str, name: str) -> str:
    return name if project in ("", ".") else f"{project.rstrip('/')}/{name}"


# -- pure parts: the table, the conda file's pip list -----------------------------------------
def read_environments(pyproject_text: str, source: str = "pyproject.toml"
                      ) -> List[LockedEnvironment]:
    """The locked environments that pyproject.toml's table declares."""
    try:
        table = tomllib.loads(pyproject_text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigurationError(f"{source}: not valid TOML: {err}") from err
    for key in TABLE:
        table = table.get(key) if isinstance(table, dict) else None
    if not isinstance(table, dict) or not table:
        raise ConfigurationError(f"{source}: no {TABLE_NAME} table; it names each Azure ML "
                                 "conda file and the uv project that locks it, e.g. "
                                 '"model/conda_dependencies.yml" = "."')
    environments = []
    for conda_file, project in table.items():
        if not isinstance(project, str) or Path(project).is_absolute() or ".." in \
                Path(project).parts or Path(conda_file).is_absolute():
            raise ConfigurationError(f"{source}: {TABLE_NAME} {conda_file!r} = {project!r}: "
                                     "give the conda file and the uv project folder relative "
                                     "to the repository root")
        environments.append(LockedEnvironment(conda_file, project))
    return environments


def _pip_list_span(lines: Sequence[str], source: str) -> Tuple[int, int, str]:
    """(first line, end line, item indentation) of the conda file's pip list."""
    starts = [i for i, line in enumerate(lines) if PIP_LIST.match(line)]
    if len(starts) != 1:
        raise ConfigurationError(f"{source}: expected one '- pip:' list under dependencies, "
                                 f"found {len(starts)}")
    outer = len(PIP_LIST.match(lines[starts[0]]).group("indent"))
    end = starts[0] + 1
    indent = None
    while end < len(lines):
        item = LIST_ITEM.match(lines[end])
        if not lines[end].strip() or lines[end].lstrip().startswith("#"):
            end += 1
            continue
        if not item or len(item.group("indent")) <= outer:
            break
        indent = indent or item.group("indent")
        end += 1
    while end > starts[0] + 1 and not lines[end - 1].strip():
        end -= 1  # blank lines after the list belong to what follows
    return starts[0] + 1, end, indent or " " * (outer + 4)


def pip_requirements(text: str, source: str = "conda file") -> List[str]:
    """The requirements of a conda file's pip list, as written (quotes removed)."""
    lines = text.splitlines()
    first, end, _ = _pip_list_span(lines, source)
    found = []
    for line in lines[first:end]:
        item = LIST_ITEM.match(line)
        if item:
            found.append(item.group("value").strip('"'))
    return found


def with_pip_requirements(text: str, requirements: Iterable[str],
                          source: str = "conda file") -> str:
    """The conda file with its pip list replaced by ``requirements``; nothing else changes."""
    lines = text.splitlines()
    first, end, indent = _pip_list_span(lines, source)
    items = []
    for requirement in requirements:
        if '"' in requirement or "\\" in requirement or "\n" in requirement:
            raise ConfigurationError(f"{source}: cannot write the requirement {requirement!r}")
        items.append(f'{indent}- "{requirement}"')
    return "\n".join([*lines[:first], *items, *lines[end:]]) + "\n"


def parse_export(output: str) -> List[str]:
    """The requirement lines of ``uv export``'s requirements.txt output."""
    return [line.strip() for line in output.splitlines()
            if line.strip() and not line.lstrip().startswith(("#", "-"))]


def canonical_name(name: str) -> str:
    """A distribution name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_extras(pyproject_text: str) -> Dict[str, str]:
    """Canonical name -> ``[extras]`` of each dependency the project asks for with extras."""
    dependencies = tomllib.loads(pyproject_text).get("project", {}).get("dependencies", [])
    found = {}
    for dependency in dependencies:
        match = EXTRAS.match(dependency)
        if match:
            extras = ",".join(e.strip() for e in match.group("extras").split(","))
            found[canonical_name(match.group("name"))] = f"[{extras}]"
    return found


def with_extras(requirements: Iterable[str], extras: Mapping[str, str]) -> List[str]:
    """The exported requirements with the extras the project asked for written back.

    uv export pins the packages an extra pulls in but drops the extra from the name; the
    Azure ML SDK looks for it there (ParallelRunStep warns unless it finds, say,
    ``azureml-dataset-runtime[fuse,pandas]`` in the pip list).
    """
    written = []
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        written.append(name + extras.get(canonical_name(name), "") + requirement[len(name):])
    return written


# -- the parts that run uv -----------------------------------------------------------------------
class Uv:
    """The uv executable, run on one project folder with the machine's Python."""

    def __init__(self, executable: str, python: str, root: Path = PROJECT_ROOT):
        self.executable = executable
        self.python = python
        self.root = Path(root)

    def run(self, args: Sequence[str], project: str) -> subprocess.CompletedProcess:
        """Run one uv command on a project; never downloads a Python."""
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        command = [self.executable, *args, "--project", str(self.root / project)]
        try:
            return subprocess.run(command, capture_output=True, text=True, env=env,
                                  timeout=UV_TIMEOUT, check=False)
        except FileNotFoundError as err:
            raise ConfigurationError(f"uv not found at {self.executable}: run make, which "
                                     "installs it, or pass --uv") from err

    def lock_is_current(self, project: str) -> bool:
        """Whether the project's lock matches its pyproject.toml (offline first: a lock
        that matches needs no index)."""
        check = ["lock", "--check", "--quiet", "--python", self.python]
        return (self.run([*check, "--offline"], project).returncode == 0
                or self.run(check, project).returncode == 0)

    def locked_requirements(self, project: str) -> List[str]:
        """Every package the project's lock installs, pinned, with the extras its
        pyproject.toml asks for."""
        done = self.run(EXPORT, project)
        if done.returncode != 0:
            raise ConfigurationError(f"{_relative(project, 'uv.lock')}: uv export failed: "
                                     f"{_last_lines(done.stderr)}")
        pyproject = self.root / _relative(project, "pyproject.toml")
        return with_extras(parse_export(done.stdout),
                           declared_extras(pyproject.read_text(encoding="utf-8")))

    def lock(self, project: str, refresh: bool = False) -> None:
        """Lock the project (resolving only what its pyproject.toml changed)."""
        args = ["lock", "--python", self.python] + (["--check", "--refresh"] if refresh else [])
        done = self.run(args, project)
        if done.returncode != 0:
            raise ConfigurationError(f"{_relative(project, 'pyproject.toml')}: uv lock failed: "
                                     f"{_last_lines(done.stderr)}")


def _last_lines(text: str, count: int = 6) -> str:
    return " | ".join([line for line in text.splitlines() if line.strip()][-count:])


def environments_of(root: Path) -> List[LockedEnvironment]:
    """The locked environments declared in the repository's pyproject.toml."""
    path = Path(root) / "pyproject.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigurationError(f"{path}: cannot read it: {err.strerror}") from err
    return read_environments(text, str(path))


def projects(environments: Iterable[LockedEnvironment]) -> List[str]:
    """The uv projects, root first, each once."""
    return sorted({e.project for e in environments}, key=lambda p: (p not in ("", "."), p))


def find_drift(uv: Uv, environments: Sequence[LockedEnvironment]) -> List[str]:
    """What does not agree: stale locks, then conda files whose pip list is not the lock's."""
    problems = []
    stale = set()
    for project in projects(environments):
        if not uv.lock_is_current(project):
            stale.add(project)
            lock = _relative(project, "uv.lock")
            problems.append(f"{lock} does not match {_relative(project, 'pyproject.toml')} "
                            f"(its dependencies changed): run 'make lock' and commit {lock}")
    locked: Dict[str, List[str]] = {}
    for environment in environments:
        if environment.project in stale:
            continue
        if environment.project not in locked:
            locked[environment.project] = uv.locked_requirements(environment.project)
        path = uv.root / environment.conda_file
        try:
            written = pip_requirements(path.read_text(encoding="utf-8"), str(path))
        except OSError as err:
            raise ConfigurationError(f"{path}: cannot read it: {err.strerror}") from err
        if written != locked[environment.project]:
            problems.append(_conda_drift(environment, written, locked[environment.project]))
    return problems


def _conda_drift(environment: LockedEnvironment, written: List[str],
                 locked: List[str]) -> str:
    extra = sorted(set(written) - set(locked))
    missing = sorted(set(locked) - set(written))
    shown = "; ".join(part for part in (
        f"not in the lock: {', '.join(extra[:3])}" if extra else "",
        f"missing: {', '.join(missing[:3])}" if missing else "",
        "" if extra or missing else "order differs") if part)
    return (f"{environment.conda_file}: its pip list is not what {environment.lock_file()} "
            f"holds ({shown}): it is written from the lock; edit "
            f"{environment.pyproject()} and run 'make lock'")


def write_conda_files(uv: Uv, environments: Sequence[LockedEnvironment]) -> List[str]:
    """Rewrite each conda file's pip list from its lock; return the files that changed.

    Every new text is computed before any file is written, and each file is replaced in one
    step, so an error or a kill leaves each file either as it was or complete.
    """
    locked = {p: uv.locked_requirements(p) for p in projects(environments)}
    updates = {}
    for environment in environments:
        path = uv.root / environment.conda_file
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigurationError(f"{path}: cannot read it: {err.strerror}") from err
        new = with_pip_requirements(text, locked[environment.project], str(path))
        if new != text:
            updates[path] = new
    for path, text in updates.items():
        _replace(path, text)
    return [str(path.relative_to(uv.root)) for path in updates]


def _replace(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- commands ----------------------------------------------------------------------------------
def check(uv: Uv) -> int:
    """``check``: 0 when every lock and conda file agrees, 1 naming each one that does not."""
    environments = environments_of(uv.root)
    problems = find_drift(uv, environments)
    for problem in problems:
        LOGGER.error("%s", problem)
    if not problems:
        LOGGER.info("every lock matches its pyproject.toml and every conda file its lock (%s)",
                    ", ".join(e.conda_file for e in environments))
    return 1 if problems else 0


def lock(uv: Uv) -> int:
    """``lock``: update every lock, then the conda files' pip lists."""
    environments = environments_of(uv.root)
    for project in projects(environments):
        uv.lock(project)
        LOGGER.info("locked %s", _relative(project, "uv.lock"))
    for changed in write_conda_files(uv, environments):
        LOGGER.info("wrote the pip list of %s from its lock", changed)
    return 0


def cache(uv: Uv) -> int:
    """``cache``: fetch the index pages of every locked package into uv's cache."""
    for project in projects(environments_of(uv.root)):
        uv.lock(project, refresh=True)
    return 0


COMMANDS = {"check": check, "lock": lock, "cache": cache}


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--uv", default="uv", help="the uv executable (default: uv on PATH)")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python 3.11 to resolve for (default: this one)")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT,
                        help="repository root (default: this checkout)")
    return parser.parse_args(argv)


def main(argv: Optional[list] = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    return run_cli(lambda: COMMANDS[args.command](Uv(args.uv, args.python, args.root)))


if __name__ == "__main__":
    sys.exit(main())
