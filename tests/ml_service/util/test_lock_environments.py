"""The Azure ML conda files' pip lists, written from the locks: the pure parts, a failed
write that leaves every file as it was, and `make check-lock` / `make lock` (the module's
commands) on a copy of the repository's projects, offline."""
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.util import check_environment
from ml_service.util import lock_environments
from ml_service.util.lock_environments import (LockedEnvironment, Uv, declared_extras,
                                               environments_of, parse_export,
                                               pip_requirements, projects, read_environments,
                                               with_extras, with_pip_requirements,
                                               write_conda_files)

UV = str(Path(sys.executable).parent / "uv")
CONDA = """\
# A comment that stays.
name: model_env
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
      - scikit-learn==1.0
      # a comment inside the list goes with it

      - "numpy==1.0"

variables:
  - kept
"""


def test_the_pip_list_is_read_as_written():
    assert pip_requirements(CONDA) == ["scikit-learn==1.0", "numpy==1.0"]


def test_only_the_pip_list_is_replaced():
    locked = ["numpy==2.0", "pywin32==312 ; sys_platform == 'win32'"]
    written = with_pip_requirements(CONDA, locked)
    assert pip_requirements(written) == locked
    assert written == CONDA.replace(
        "      - scikit-learn==1.0\n      # a comment inside the list goes with it\n\n"
        '      - "numpy==1.0"\n',
        '      - "numpy==2.0"\n      - "pywin32==312 ; sys_platform == \'win32\'"\n')
    assert with_pip_requirements(written, locked) == written


def test_an_empty_pip_list_is_filled_under_it():
    text = "dependencies:\n  - python=3.11\n  - pip:\n"
    expected = 'dependencies:\n  - python=3.11\n  - pip:\n      - "a==1"\n'
    assert with_pip_requirements(text, ["a==1"]) == expected


@pytest.mark.parametrize("text, message", [
    ("dependencies:\n  - python=3.11\n",
     "expected one '- pip:' list under dependencies, found 0"),
    ("dependencies:\n  - pip:\n    - a\n  - pip:\n    - b\n", "found 2"),
])
def test_a_conda_file_without_one_pip_list_is_refused(text, message):
    with pytest.raises(ConfigurationError, match=message):
        with_pip_requirements(text, ["a==1"], "env.yml")


def test_a_requirement_that_cannot_be_written_is_refused():
    with pytest.raises(ConfigurationError, match="cannot write the requirement"):
        with_pip_requirements(CONDA, ['a==1 ; os_name == "nt"'])


def test_the_export_keeps_requirements_and_the_extras_the_project_asked_for():
    output = ("# generated\nazureml-dataset-runtime==1.0\nfusepy==3.0 ; sys_platform == 'linux'"
              "\n-e .\n\npandas==1.5\n")
    pyproject = ('[project]\ndependencies = ["azureml_dataset.runtime[ fuse, pandas ]==1.0", '
                 '"pandas==1.5"]\n')
    assert declared_extras(pyproject) == {"azureml-dataset-runtime": "[fuse,pandas]"}
    assert with_extras(parse_export(output), declared_extras(pyproject)) == [
        "azureml-dataset-runtime[fuse,pandas]==1.0", "fusepy==3.0 ; sys_platform == 'linux'",
        "pandas==1.5"]


def test_the_table_names_each_conda_file_and_its_project():
    text = ('[tool.mlops.azureml-environments]\n"m/env.yml" = "."\n'
            '"m/batch.yml" = "m/batch"\n')
    assert read_environments(text) == [LockedEnvironment("m/env.yml", "."),
                                       LockedEnvironment("m/batch.yml", "m/batch")]
    assert LockedEnvironment("m/batch.yml", "m/batch").lock_file() == "m/batch/uv.lock"
    assert LockedEnvironment("m/env.yml", ".").pyproject() == "pyproject.toml"


@pytest.mark.parametrize("text, message", [
    ("[tool.mlops\n", "not valid TOML"),
    ("[tool.mlops.azureml-environments]\n", r"no \[tool.mlops.azureml-environments\] table"),
    ('[tool.mlops.azureml-environments]\n"env.yml" = "../elsewhere"\n',
     "relative to the repository root"),
    ('[tool.mlops.azureml-environments]\n"env.yml" = 1\n', "relative to the repository root"),
])
def test_a_bad_table_is_refused_naming_the_file(text, message):
    with pytest.raises(ConfigurationError, match=message) as raised:
        read_environments(text, "my/pyproject.toml")
    assert "my/pyproject.toml" in str(raised.value)


@pytest.mark.process
def test_a_lock_that_cannot_be_exported_leaves_every_conda_file_as_it_was(tmp_path):
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy2(PROJECT_ROOT / name, tmp_path / name)
    (tmp_path / "unlocked").mkdir()
    (tmp_path / "unlocked" / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "0"\ndependencies = []\n')
    for name in ("env.yml", "batch.yml"):
        (tmp_path / name).write_text(CONDA)
    environments = [LockedEnvironment("env.yml", "."),
                    LockedEnvironment("batch.yml", "unlocked")]
    with pytest.raises(ConfigurationError, match="unlocked/uv.lock: uv export failed"):
        write_conda_files(Uv(UV, sys.executable, tmp_path), environments)
    assert [(tmp_path / name).read_text() for name in ("env.yml", "batch.yml")] == [CONDA] * 2
    assert write_conda_files(Uv(UV, sys.executable, tmp_path), environments[:1]) == ["env.yml"]
    assert "scikit-learn==1.0" not in pip_requirements((tmp_path / "env.yml").read_text())


@pytest.mark.process
def test_the_ci_check_finds_the_conda_files_written_from_the_locks():
    environments = check_environment.compute_environments()
    uv = Uv(UV, sys.executable, PROJECT_ROOT)
    assert check_environment.lock_problems(environments, uv) == []
    unlisted = check_environment.ComputeEnvironment("model/other_conda.yml", ("x.py",))
    assert check_environment.lock_problems([unlisted], uv) == [
        "model/other_conda.yml: used on Azure ML compute but not written from a lock: add it "
        "to pyproject.toml's [tool.mlops.azureml-environments] and run 'make lock'"]


@pytest.fixture
def locked_copy(tmp_path, monkeypatch):
    """The repository's uv projects (pyproject.toml, uv.lock) and conda files, copied; uv
    kept offline (it reads the index pages from its cache)."""
    monkeypatch.setenv("UV_OFFLINE", "1")
    environments = environments_of(PROJECT_ROOT)
    names = [e.conda_file for e in environments] + [
        str(Path(project) / name) for project in projects(environments)
        for name in ("pyproject.toml", "uv.lock")]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, tmp_path / name)
    return tmp_path


def run_locks(command, root):
    return lock_environments.main([command, "--uv", UV, "--python", sys.executable,
                                   "--root", str(root)])


@pytest.mark.process
def test_check_lock_names_a_hand_edited_conda_file_and_make_lock_writes_it_back(
        locked_copy, caplog):
    conda = locked_copy / environments_of(locked_copy)[0].conda_file
    original = conda.read_text()
    assert run_locks("check", locked_copy) == 0
    dropped = pip_requirements(original)[0]
    kept = [line for line in original.splitlines(keepends=True) if dropped not in line]
    assert len(kept) == len(original.splitlines()) - 1
    conda.write_text("".join(kept))
    assert run_locks("check", locked_copy) == 1
    assert (f"{conda.relative_to(locked_copy)}: its pip list is not what" in caplog.text
            and f"missing: {dropped}" in caplog.text and "run 'make lock'" in caplog.text)
    assert run_locks("lock", locked_copy) == 0
    assert conda.read_text() == original
    assert run_locks("check", locked_copy) == 0


@pytest.mark.process
def test_check_lock_names_a_lock_its_pyproject_no_longer_matches(locked_copy, caplog):
    pyproject = locked_copy / "pyproject.toml"
    text = pyproject.read_text()
    first = tomllib.loads(text)["project"]["dependencies"][0]
    edited = "".join(line for line in text.splitlines(keepends=True)
                     if line.strip() != f'"{first}",')
    assert len(edited) < len(text)
    pyproject.write_text(edited)
    assert run_locks("check", locked_copy) == 1
    assert ("uv.lock does not match pyproject.toml (its dependencies changed): run 'make lock' "
            "and commit uv.lock") in caplog.text
