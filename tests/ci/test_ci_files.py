"""The CI/CD YAML passes the offline checks, and each kind of mistake is caught, naming the file."""
import shutil

import pytest

from ml_service.paths import PROJECT_ROOT
from ml_service.util import check_ci_files
from ml_service.util.check_ci_files import check_all

COPIED = (".pipelines", ".github", "environment_setup", "ml_service", "diabetes_regression")


@pytest.fixture(scope="module")
def problems_in_repository():
    return check_all(PROJECT_ROOT)


def test_the_repository_passes(problems_in_repository):
    assert [str(p) for p in problems_in_repository] == []


def test_every_pipeline_kind_is_covered():
    files = {str(p.relative_to(PROJECT_ROOT)) for p in check_ci_files.yaml_files(PROJECT_ROOT)}
    assert {".pipelines/diabetes_regression-ci.yml", ".pipelines/diabetes_regression-cd.yml",
            ".pipelines/pr.yml", ".pipelines/code-quality-template.yml",
            ".github/workflows/ci.yml", ".github/workflows/cd.yml",
            ".github/workflows/pr.yml"} <= files


@pytest.fixture
def copy(tmp_path):
    """The files the checks read, copied so that one can be broken."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        if (PROJECT_ROOT / name).exists():
            shutil.copytree(PROJECT_ROOT / name, tmp_path / name, ignore=ignore)
    for name in ("README.md", ".yamllint.yml"):
        if (PROJECT_ROOT / name).exists():
            shutil.copy2(PROJECT_ROOT / name, tmp_path / name)
    return tmp_path


BREAKAGES = [
    (".pipelines/diabetes_regression-ci.yml", "        steps:\n", "        stpes:\n",
     "check-jsonschema"),
    (".pipelines/pr.yml", "template: code-quality-template.yml",
     "template: code-quality-templat.yml", "template 'code-quality-templat.yml' does not exist"),
    (".pipelines/diabetes_regression-cd.yml", "--service $(ACI_DEPLOYMENT_NAME)",
     "--service $(ACI_DEPLOYMENT_NAM)", "variable $(ACI_DEPLOYMENT_NAM) is not defined"),
    (".pipelines/diabetes_regression-ci.yml", "ml_service.pipelines.run_train_pipeline",
     "ml_service.pipelines.run_training_pipeline",
     "module 'ml_service.pipelines.run_training_pipeline' does not exist"),
    (".github/workflows/ci.yml", "runs-on:", "run-on:", "check-jsonschema"),
    ("diabetes_regression/conda_dependencies.yml", "channels:\n", "channels:\nchannels:\n",
     "key-duplicates"),
    (".pipelines/code-quality-template.yml", "    displayName: Lint (flake8)\n",
     "    displayName: Lint (flake8)\n    displayName: again\n", "key-duplicates"),
]


@pytest.mark.parametrize("path, old, new, message", BREAKAGES, ids=lambda v: str(v)[:40])
def test_a_broken_file_fails_naming_it(copy, path, old, new, message):
    target = copy / path
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    problems = check_all(copy)
    assert problems, "the breakage went unnoticed"
    assert all(p.path == path for p in problems), [str(p) for p in problems]
    assert any(message in p.message for p in problems), [str(p) for p in problems]


def test_an_undocumented_variable_group_variable_fails(copy):
    readme = copy / "README.md"
    readme.write_text(readme.read_text().replace("| `WORKSPACE_SVC_CONNECTION` |", "| x |"))
    problems = check_all(copy)
    assert problems and all("$(WORKSPACE_SVC_CONNECTION) is not defined" in p.message
                            for p in problems)


def test_main_exits_1_and_names_the_file(copy, capsys):
    (copy / ".pipelines" / "pr.yml").write_text("trigger: none\njobs:\n  - job: x\n    stpes: []\n")
    assert check_ci_files.main(["--root", str(copy)]) == 1
    assert ".pipelines/pr.yml:" in capsys.readouterr().out
