"""uv.lock: what `make` installs, checked against pyproject.toml without the network."""
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ml_service.paths import PROJECT_ROOT
from tests.conftest import makefile_variable

pytestmark = pytest.mark.process
# The uv that the dev dependencies install, beside this interpreter.
UV = Path(sys.executable).parent / "uv"


def check_lock(folder: Path) -> subprocess.CompletedProcess:
    """`make check-lock` in ``folder`` with this environment's uv, offline (tests never
    reach a package index)."""
    env = {**os.environ, "UV_OFFLINE": "1"}
    return subprocess.run(["make", "--no-print-directory", "-s", "check-lock", f"UV={UV}"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_the_lock_holds_what_pyproject_asks_for():
    done = check_lock(PROJECT_ROOT)
    assert done.returncode == 0, done.stderr


def test_a_lock_that_pyproject_no_longer_matches_is_refused_with_the_fix(tmp_path):
    for name in ("Makefile", "pyproject.toml", "uv.lock"):
        shutil.copy2(PROJECT_ROOT / name, tmp_path / name)
    project = (tmp_path / "pyproject.toml").read_text()
    first = tomllib.loads(project)["project"]["dependencies"][0]
    # A library added to the dependencies and not locked.
    (tmp_path / "pyproject.toml").write_text(
        project.replace(f'"{first}",', f'"{first}",\n    "tqdm==4.67.1",', 1))
    done = check_lock(tmp_path)
    assert done.returncode != 0
    assert done.stderr.splitlines()[0] == makefile_variable("LOCK_DRIFT")
    assert "run 'make lock'" in done.stderr


def test_the_makefile_installs_the_uv_that_the_dev_dependencies_pin():
    dev = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    pinned = [d for d in dev["project"]["optional-dependencies"]["dev"] if d.startswith("uv==")]
    assert pinned == [f"uv=={makefile_variable('UV_VERSION')}"]
    version = subprocess.run([str(UV), "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[1]
    assert version == makefile_variable("UV_VERSION")
