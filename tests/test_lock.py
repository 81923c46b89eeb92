"""The locks: what `make` installs and what the Azure ML conda files pin, checked against the
pyproject.toml files without the network; `make lock` in a copy of the project."""
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.util.lock_environments import (environments_of, pip_requirements,
                                               read_environments)
from tests.conftest import makefile_variable

pytestmark = pytest.mark.process
# The uv that the dev dependencies install, beside this interpreter.
UV = Path(sys.executable).parent / "uv"


def make(folder: Path, target: str) -> subprocess.CompletedProcess:
    """`make <target>` in ``folder`` with this environment's uv, offline (tests never reach a
    package index; `make test` fills uv's cache with the index pages of the locked packages,
    so an offline `make lock` can add a package the lock already holds)."""
    env = {**os.environ, "UV_OFFLINE": "1"}
    return subprocess.run(["make", "--no-print-directory", "-s", target, f"UV={UV}"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """What `make check-lock` and `make lock` read, copied: the Makefile, the locked projects
    and their conda files, and the package that writes them."""
    for name in ("Makefile", "pyproject.toml", "uv.lock"):
        shutil.copy2(PROJECT_ROOT / name, tmp_path / name)
    shutil.copytree(PROJECT_ROOT / "ml_service", tmp_path / "ml_service",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for environment in environments_of(PROJECT_ROOT):
        for name in (environment.conda_file, environment.pyproject(), environment.lock_file()):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, tmp_path / name)
    return tmp_path


def add_dependency(pyproject: Path, requirement: str) -> None:
    """Add a requirement to a pyproject.toml's dependencies, as a user would."""
    text = pyproject.read_text()
    first = tomllib.loads(text)["project"]["dependencies"][0]
    pyproject.write_text(text.replace(f'"{first}",', f'"{first}",\n    "{requirement}",', 1))


def dev_dependency(project: Path, name: str) -> str:
    """The pinned requirement of one of the project's dev dependencies."""
    dev = tomllib.loads((project / "pyproject.toml").read_text())
    return next(d for d in dev["project"]["optional-dependencies"]["dev"]
                if d.startswith(f"{name}=="))


def outside_pip_list(text: str) -> list:
    """The conda file's lines that are not its pip list's items."""
    items = {f'"{r}"' for r in pip_requirements(text)}
    return [line for line in text.splitlines() if line.strip().lstrip("- ") not in items]


def test_the_locks_hold_what_pyproject_asks_for_and_the_conda_files_what_the_locks_hold():
    done = make(PROJECT_ROOT, "check-lock")
    assert done.returncode == 0, done.stderr
    environments = environments_of(PROJECT_ROOT)
    # The Azure ML environments the project declares: its own resolution and the batch one.
    assert {e.project for e in environments} >= {"."} and len(environments) >= 2


def test_a_lock_that_pyproject_no_longer_matches_is_refused_with_the_fix(project):
    add_dependency(project / "pyproject.toml", "tqdm==4.67.1")
    done = make(project, "check-lock")
    assert done.returncode != 0
    assert ("uv.lock does not match pyproject.toml (its dependencies changed): "
            "run 'make lock' and commit uv.lock") in done.stderr
    assert "Traceback" not in done.stderr


def test_a_conda_file_edited_by_hand_is_refused_naming_it(project):
    environment = environments_of(project)[0]
    path = project / environment.conda_file
    text = path.read_text()
    pinned = pip_requirements(text)[0]
    path.write_text(text.replace(f'"{pinned}"', f'"{pinned}.1"', 1))
    done = make(project, "check-lock")
    assert done.returncode != 0
    assert f"{environment.conda_file}: its pip list is not what " \
           f"{environment.lock_file()} holds" in done.stderr
    assert f"edit {environment.pyproject()} and run 'make lock'" in done.stderr


def test_adding_a_dependency_is_one_edit_and_make_lock(project):
    """A package the lock already holds (a dev dependency), so the resolution runs offline;
    a package new to the lock resolves the same way, from the index."""
    added = dev_dependency(project, "hypothesis")
    environments = environments_of(project)
    before = {e.conda_file: (project / e.conda_file).read_text() for e in environments}
    add_dependency(project / "pyproject.toml", added)
    assert make(project, "check-lock").returncode != 0

    done = make(project, "lock")
    assert done.returncode == 0, done.stderr
    assert make(project, "check-lock").returncode == 0
    lock = tomllib.loads((project / "uv.lock").read_text())
    own = next(p for p in lock["package"] if p.get("source", {}).get("editable") == ".")
    assert "hypothesis" in {d["name"] for d in own["dependencies"]}
    for environment in environments:
        text = (project / environment.conda_file).read_text()
        # The environment of the project's own dependencies gains it; the batch
        # environment, a resolution of its own, does not; nothing else in the files moves.
        assert (added in pip_requirements(text)) == (environment.project == ".")
        assert outside_pip_list(text) == outside_pip_list(before[environment.conda_file])


def test_a_second_resolution_is_locked_and_written_the_same_way(project):
    batch = next(e for e in environments_of(project) if e.project != ".")
    added = dev_dependency(project, "hypothesis")
    assert added not in pip_requirements((project / batch.conda_file).read_text())
    add_dependency(project / batch.pyproject(), added)
    done = make(project, "check-lock")
    assert done.returncode != 0
    assert f"{batch.lock_file()} does not match {batch.pyproject()}" in done.stderr
    done = make(project, "lock")
    assert done.returncode == 0, done.stderr
    assert added in pip_requirements((project / batch.conda_file).read_text())
    assert make(project, "check-lock").returncode == 0


def test_the_table_of_environments_is_refused_when_it_cannot_be_read():
    with pytest.raises(ConfigurationError, match=r"no \[tool.mlops.azureml-environments\] table"):
        read_environments("[project]\nname = 'x'\n")


def test_the_makefile_installs_the_uv_that_the_dev_dependencies_pin():
    dev = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    pinned = [d for d in dev["project"]["optional-dependencies"]["dev"] if d.startswith("uv==")]
    assert pinned == [f"uv=={makefile_variable('UV_VERSION')}"]
    version = subprocess.run([str(UV), "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[1]
    assert version == makefile_variable("UV_VERSION")
