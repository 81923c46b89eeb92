"""The CI/CD YAML passes the offline checks, and each kind of mistake is caught, naming the file."""
import re
import shutil

import pytest
import yaml

from ml_service.paths import PROJECT_ROOT
from ml_service.util import check_ci_files
from ml_service.util.check_ci_files import VARIABLE_GROUP_PAGE, check_all, check_path_filters

COPIED = (".pipelines", ".github", "environment_setup", "ml_service", "diabetes_regression")


@pytest.fixture(scope="module")
def problems_in_repository():
    return check_all(PROJECT_ROOT)


@pytest.mark.process
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
    for name in (".yamllint.yml", str(VARIABLE_GROUP_PAGE)):
        if (PROJECT_ROOT / name).exists():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
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
    (".pipelines/diabetes_regression-ci.yml", "      - ml_service/**\n", "      - ml_service/*\n",
     "trigger path filter 'ml_service/*' (include) matches only the files directly in "
     "ml_service/, none in its subfolders: use 'ml_service/**'"),
    (".pipelines/pr.yml", "      - tests/**\n", "      - tests/*\n",
     "pr path filter 'tests/*'"),
]


@pytest.mark.process
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


@pytest.mark.process
def test_an_undocumented_variable_group_variable_fails(copy):
    page = copy / VARIABLE_GROUP_PAGE
    page.write_text(page.read_text().replace("| `WORKSPACE_SVC_CONNECTION` |", "| x |"))
    problems = check_all(copy)
    assert problems and all("$(WORKSPACE_SVC_CONNECTION) is not defined" in p.message
                            for p in problems)


@pytest.mark.process
def test_main_exits_1_and_names_the_file(copy, capsys):
    (copy / ".pipelines" / "pr.yml").write_text("trigger: none\njobs:\n  - job: x\n    stpes: []\n")
    assert check_ci_files.main(["--root", str(copy)]) == 1
    assert ".pipelines/pr.yml:" in capsys.readouterr().out


@pytest.mark.parametrize("document", [
    {"trigger": {"paths": {"include": ["src/*"]}}},
    {"pr": {"paths": {"include": ["docs/", "src/*"]}}},
    {"trigger": {"paths": {"exclude": ["src/*"]}}},
    {"resources": {"repositories": [{"repository": "tools", "trigger": {
        "paths": {"include": ["src/*"]}}}]}},
], ids=["trigger-include", "pr-include", "trigger-exclude", "repository-resource"])
def test_a_path_filter_ending_in_slash_star_is_refused(document):
    problems = check_path_filters(PROJECT_ROOT, PROJECT_ROOT / ".pipelines" / "x.yml", document)
    assert [p.path for p in problems] == [".pipelines/x.yml"]
    assert "'src/*'" in problems[0].message and "use 'src/**'" in problems[0].message


@pytest.mark.parametrize("pattern", ["src/**", "src/*.py", "src/**/*.py", "*", "README.md"])
def test_a_recursive_or_a_file_pattern_is_accepted(pattern):
    document = {"trigger": {"paths": {"include": [pattern]}}, "pr": "none"}
    assert check_path_filters(PROJECT_ROOT, PROJECT_ROOT / "x.yml", document) == []


# A project module run with MLOPS_BACKEND=azureml signs in through the Azure CLI's login
# (the checks that never reach Azure excepted: the web app's smoke test only loads its page).
AZURE_MODULE = re.compile(
    r"python3?\s+-m\s+ml_service\.(?!util\.check_ci_files\b|util\.azure_validate\b"
    r"|util\.smoke_test_webapp\b)")


def plain_script_steps(node):
    """Every Azure DevOps step that runs a script outside AzureCLI@2 (script:, bash:)."""
    if isinstance(node, dict):
        if isinstance(node.get("script"), str) or isinstance(node.get("bash"), str):
            yield node.get("script") or node.get("bash")
        for value in node.values():
            yield from plain_script_steps(value)
    elif isinstance(node, list):
        for value in node:
            yield from plain_script_steps(value)


def test_every_azure_devops_step_that_calls_azure_runs_in_azure_cli():
    files = [p for p in check_ci_files.yaml_files(PROJECT_ROOT)
             if check_ci_files.WORKFLOW_DIR not in str(p)]
    found = [(str(path.relative_to(PROJECT_ROOT)), script) for path in files
             for script in plain_script_steps(yaml.safe_load(path.read_text()))
             if AZURE_MODULE.search(script)]
    assert found == [], "run these in AzureCLI@2, which signs az in for the step"


def test_every_workflow_step_that_calls_azure_runs_after_azure_login():
    for path in sorted((PROJECT_ROOT / check_ci_files.WORKFLOW_DIR).glob("*.yml")):
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            signed_in = False
            for step in job.get("steps", []):
                signed_in |= str(step.get("uses", "")).startswith("azure/login@")
                if AZURE_MODULE.search(str(step.get("run", ""))):
                    assert signed_in, f"{path.name}, job {name}: {step.get('name')} runs " \
                                      "before azure/login"
