"""The project's own files agree with each other."""
import re
import tomllib
from pathlib import Path

import pytest

from ml_service.paths import PROJECT_ROOT
from ml_service.util.lock_environments import environments_of
from ml_service.util.env_variables import (BatchScoringSettings, EnvironmentV2Settings,
                                           TrainingSettings)


# The only pins of the batch scoring environment that differ from pyproject.toml, and why.
BATCH_ONLY_PINS = {
    "azureml-dataset-runtime": "ParallelRunStep reads a tabular input with its fuse,pandas extras",
    "pandas": "azureml-dataset-runtime[pandas] requires pandas < 2 (the project pins 3)",
    "numpy": "azureml-dataset-runtime[pandas] requires numpy < 2 (the project pins 2)",
}

# The only pins of the SDK v2 steps' environment that differ from pyproject.toml, and why.
V2_ONLY_PINS = {
    "azureml-fsspec": "pandas reads a data asset's azureml:// path in a v2 command job",
    "azureml-mlflow": "MLflow's azureml:// tracking and registry in a v2 command job",
    "mlflow": "azureml-mlflow 1.62 requires mlflow-skinny <= 3.15.0 (the project pins 3.17)",
    "pandas": "mlflow 3.15 requires pandas < 3 (the project pins 3)",
}


def direct_pins(pyproject: Path) -> dict:
    """Name -> version of each dependency a pyproject.toml pins (extras left out)."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return dict(re.findall(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)",
                           "\n".join(dependencies), re.MULTILINE))


@pytest.mark.parametrize("conda_file, allowed", [
    (BatchScoringSettings().conda_file, BATCH_ONLY_PINS),
    (EnvironmentV2Settings().conda_file, V2_ONLY_PINS),
], ids=["batch scoring", "SDK v2 steps"])
def test_environments_locked_apart_differ_only_where_they_must(conda_file, allowed):
    """The batch scoring and SDK v2 environments are locked on their own (each conda file is
    written from its lock and checked against it by tests/test_lock.py); what they ask for
    differs from the project only where a platform package requires."""
    declared = direct_pins(PROJECT_ROOT / "pyproject.toml")
    environments = {e.conda_file: e for e in environments_of(PROJECT_ROOT)}
    project = environments[conda_file].project
    assert project not in ("", ".")
    pins = direct_pins(PROJECT_ROOT / project / "pyproject.toml")
    assert {"scikit-learn", "joblib", "azureml-core"} <= set(pins)
    differing = {name for name, version in pins.items() if declared.get(name) != version}
    assert differing == set(allowed), differing ^ set(allowed)


def test_env_example_documents_every_setting():
    read = set(re.findall(r'"([A-Z][A-Z0-9_]{3,})"', (PROJECT_ROOT / "ml_service" / "util" /
                                                      "env_variables.py").read_text()))
    read.add("MLOPS_STEP_LAUNCHER")  # read by the local executor
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=",
                                (PROJECT_ROOT / ".env.example").read_text(), re.MULTILINE))
    assert {"WORKSPACE_NAME", "AML_COMPUTE_CLUSTER_NAME", "BUILD_BUILDID"} <= read
    # AZUREML_RUN_ID is set by Azure ML itself; STANDARD_DS2_V2 is a default value.
    assert read - {"AZUREML_RUN_ID", "STANDARD_DS2_V2"} <= documented, read - documented
    assert TrainingSettings().model_name in (PROJECT_ROOT / ".env.example").read_text()


def test_readme_opens_with_the_two_commands():
    head = (PROJECT_ROOT / "README.md").read_text().splitlines()[:5]
    assert any(line.strip().startswith("make run") for line in head)
    assert any(line.strip().startswith("make test") for line in head)
