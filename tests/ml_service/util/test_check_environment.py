"""The compute environment check, offline: its pure parts on tiny inputs, and the whole
check of one environment with a stand-in for pip that writes a canned report."""
import json
import sys
import textwrap

import pytest

from ml_service.errors import ConfigurationError
from ml_service.util import check_environment as check
from ml_service.util.check_environment import (ComputeEnvironment, Problem, find_problems,
                                               module_distributions, namespace_index,
                                               read_conda_requirements, resolved_distributions,
                                               third_party_imports)
from ml_service.util.imports import imported_modules

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
CONDA = f"""name: env
dependencies:
  - python={PYTHON}
  - pip
  - pip:
      - requests==2.34.2
      - PyYAML==6.0.4
"""
# The part of pip's --report that the check reads (pip writes much more).
REPORT = {"version": "1", "install": [
    {"metadata": {"name": "requests", "version": "2.34.2"}},
    {"metadata": {"name": "PyYAML", "version": "6.0.4"}},
    {"metadata": {"name": "azureml_core", "version": "1.61.0.post4"}},
]}
TOP_LEVEL = {"requests": ["requests"], "yaml": ["PyYAML"], "sklearn": ["scikit-learn"],
             "azureml": ["azureml-core", "azureml-pipeline-core", "azureml-dataprep"]}
FILES = [("azureml-core", ["azureml/core/__init__.py", "azureml/core/run.py",
                           "azureml/data/__init__.py", "azureml_core-1.61.dist-info/RECORD"]),
         ("azureml-pipeline-core", ["azureml/pipeline/core/__init__.py"]),
         ("azureml-dataprep", ["azureml/dataprep/__init__.py", "azureml/dataprep/api/x.py"])]


@pytest.fixture
def tree(tmp_path):
    """A project with one package and a script: imports at module level, inside a function,
    through the package's __init__, and one from the standard library."""
    def write(path, text):
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))

    write("pkg/__init__.py", "import yaml\n")
    write("pkg/helpers.py", """\
        import json


        def fetch():
            import requests
            from azureml.pipeline.core import Pipeline
            return requests, Pipeline
        """)
    write("pkg/unused.py", "import sklearn\n")
    write("scripts/step.py", "import sys\nfrom pkg.helpers import fetch\n")
    return tmp_path


def test_the_conda_file_gives_the_python_pin_and_the_pip_requirements():
    assert read_conda_requirements(CONDA) == (PYTHON, ["requests==2.34.2", "PyYAML==6.0.4"])


@pytest.mark.parametrize("text, message", [
    ("name: x\ndependencies:\n  - pip:\n      - a==1\n", "do not pin python"),
    ("name: x\ndependencies:\n  - python=3.11\n", "no pip requirements"),
    ("name: x\n", "no 'dependencies' list"),
    ("dependencies: [python=3.11\n", "not valid YAML"),
])
def test_a_conda_file_without_what_the_check_needs_is_refused(text, message):
    with pytest.raises(ConfigurationError, match=f"env.yml: .*{message}"):
        read_conda_requirements(text, "env.yml")


def test_pips_report_gives_the_resolved_distributions_by_canonical_name():
    assert resolved_distributions(REPORT) == {"requests": "2.34.2", "pyyaml": "6.0.4",
                                              "azureml-core": "1.61.0.post4"}
    assert resolved_distributions({"install": []}) == {}


def test_imports_are_found_at_module_level_and_inside_functions():
    source = textwrap.dedent("""\
        import os, numpy as np
        from a.b import c, d


        def later():
            import pandas
            from .sibling import x
        """)
    assert imported_modules(source) == {"os", "numpy", "a.b", "a.b.c", "a.b.d", "pandas"}


def test_third_party_imports_follow_the_projects_own_modules(tree):
    found = third_party_imports(tree / "scripts" / "step.py", tree, project_packages=("pkg",))
    # sklearn is imported only by a module the script never reaches.
    assert found == {"sys", "json", "yaml", "requests", "azureml.pipeline.core"}


def test_a_namespace_package_is_split_by_the_files_of_its_distributions():
    index = namespace_index(FILES)
    assert index["azureml.pipeline.core"] == {"azureml-pipeline-core"}
    assert index["azureml.dataprep.api"] == {"azureml-dataprep"}
    assert "azureml_core-1.61.dist-info" not in index
    assert module_distributions("azureml.pipeline.core", TOP_LEVEL, index) == {
        "azureml-pipeline-core"}
    assert module_distributions("azureml.core.run", TOP_LEVEL, index) == {"azureml-core"}
    assert module_distributions("yaml", TOP_LEVEL, index) == {"pyyaml"}
    assert module_distributions("json", TOP_LEVEL, index) == set()
    assert module_distributions("nowhere", TOP_LEVEL, index) is None


def test_a_module_whose_distribution_does_not_resolve_is_named(tree):
    needs = {"scripts/step.py": third_party_imports(tree / "scripts" / "step.py", tree,
                                                    project_packages=("pkg",))}
    problems = find_problems("env.yml", needs, resolved_distributions(REPORT), TOP_LEVEL,
                             namespace_index(FILES))
    assert problems == [Problem("env.yml", "scripts/step.py", "azureml.pipeline.core",
                                "azureml-pipeline-core")]
    assert str(problems[0]) == ("env.yml: scripts/step.py imports azureml.pipeline.core, but "
                                "azureml-pipeline-core does not resolve from it")


def test_every_needed_distribution_resolved_means_no_problem():
    needs = {"s.py": {"requests", "yaml", "azureml.core", "os"}}
    assert find_problems("env.yml", needs, resolved_distributions(REPORT), TOP_LEVEL,
                         namespace_index(FILES)) == []


def test_a_module_no_installed_distribution_provides_is_a_problem():
    problems = find_problems("env.yml", {"s.py": {"mystery.mod"}}, {}, TOP_LEVEL, {})
    assert [(p.module, p.distribution) for p in problems] == [
        ("mystery.mod", "a distribution not installed in this venv")]


@pytest.fixture
def fake_pip(tmp_path):
    """A stand-in for ``python -m pip``: writes REPORT where --report says, or fails."""
    script = tmp_path / "fake_pip.py"
    script.write_text(textwrap.dedent(f"""\
        import json, sys
        args = sys.argv[1:]
        if "fail" in open(args[args.index("-r") + 1]).read():
            sys.stderr.write("ERROR: No matching distribution found for fail==9\\n")
            sys.exit(1)
        with open(args[args.index("--report") + 1], "w") as report:
            json.dump({json.dumps(REPORT)}, report)
        """))
    return [sys.executable, str(script)]


def test_one_environment_is_resolved_and_checked(tree, fake_pip):
    (tree / "env.yml").write_text(CONDA)
    environment = ComputeEnvironment("env.yml", ("scripts/step.py",))
    count, problems = check.check_environment(environment, tree, fake_pip, TOP_LEVEL,
                                              namespace_index(FILES), ("pkg",))
    assert count == 3
    assert [p.distribution for p in problems] == ["azureml-pipeline-core"]


def test_a_plugin_no_script_imports_must_resolve_too(tree, fake_pip):
    (tree / "env.yml").write_text(CONDA)
    environment = ComputeEnvironment("env.yml", (), {"azureml-mlflow": "MLflow's azureml:// "
                                                                       "tracking",
                                                     "PyYAML": "the loader"})
    problems = check.check_environment(environment, tree, fake_pip, TOP_LEVEL, {}, ("pkg",))[1]
    assert [str(p) for p in problems] == [
        "env.yml: MLflow's azureml:// tracking needs azureml-mlflow, but it does not resolve "
        "from it"]


@pytest.mark.parametrize("conda, message", [
    (CONDA + "      - fail==9\n", "env.yml: the requirements do not resolve: ERROR: No matching"),
    (CONDA.replace(f"python={PYTHON}", "python=3.9"), "pins python=3.9"),
])
def test_an_environment_that_cannot_be_checked_is_named(tree, fake_pip, conda, message):
    (tree / "env.yml").write_text(conda)
    with pytest.raises(ConfigurationError, match=message):
        check.check_environment(ComputeEnvironment("env.yml", ("scripts/step.py",)), tree,
                                fake_pip, TOP_LEVEL, {})


def test_the_environments_are_the_projects_conda_files_and_scripts():
    environments = {e.conda_file: e.scripts for e in check.compute_environments()}
    steps = ("diabetes_regression/validate/validate_data.py",
             "diabetes_regression/training/train_aml.py",
             "diabetes_regression/evaluate/evaluate_model.py",
             "diabetes_regression/register/register_model.py")
    assert environments == {
        "diabetes_regression/conda_dependencies.yml": steps + (
            "diabetes_regression/scoring/score.py",),
        "diabetes_regression/batchscore_conda_dependencies.yml": (
            "diabetes_regression/scoring/parallel_batchscore.py",
            "diabetes_regression/scoring/batchscore_copy_output.py"),
        "diabetes_regression/conda_dependencies_v2.yml": steps,
    }
    plugins = {e.conda_file: set(e.plugins) for e in check.compute_environments()}
    assert plugins["diabetes_regression/conda_dependencies_v2.yml"] == {"azureml-mlflow",
                                                                        "azureml-fsspec"}


def test_the_report_is_read_as_pip_writes_it(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(REPORT))
    assert set(resolved_distributions(json.loads(path.read_text()))) == {
        "requests", "pyyaml", "azureml-core"}
