"""Every environment that loads the model on Azure ML installs what the model needs.

The model package's MLflow flavour names the packages a saved model needs (its library at
the version that trains it here, and cloudpickle). The training steps (SDK v1 and v2), the
scoring image and batch scoring all load models, so each conda file that pyproject.toml's
``[tool.mlops.azureml-environments]`` table declares must pin them: a library missing there
only shows on Azure ML, when a step or a deployment fails to load the model.
"""
import re

import pytest

from diabetes_regression.training import model_files
from ml_service.paths import PROJECT_ROOT
from ml_service.util.lock_environments import canonical_name, environments_of, pip_requirements

PIN = re.compile(r"^\s*(?P<name>[A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*==\s*(?P<version>[^\s;]+)")


def pins(requirements):
    """Canonical name -> pinned version, of the requirements pinned with ``==``."""
    found = {}
    for requirement in requirements:
        match = PIN.match(requirement)
        if match:
            found[canonical_name(match["name"])] = match["version"]
    return found


def missing_pins(needed, conda_text):
    """The needed requirements that a conda file's pip list does not pin at their version (a
    flavour's requirements are pins; anything else counts as missing)."""
    pinned = pins(pip_requirements(conda_text))
    return [requirement for requirement in needed
            if not pins([requirement]) or not pins([requirement]).items() <= pinned.items()]


@pytest.mark.parametrize("environment", environments_of(PROJECT_ROOT),
                         ids=lambda environment: environment.conda_file)
def test_each_azure_ml_environment_pins_what_the_model_needs(environment):
    needed = model_files.pip_requirements()
    assert needed, f"{model_files.MLFLOW_FLAVOR} names no requirement"
    missing = missing_pins(needed, (PROJECT_ROOT / environment.conda_file).read_text())
    assert not missing, (f"{environment.conda_file} does not pin {', '.join(missing)}: add it "
                         f"to {environment.pyproject()} and run make lock")


def test_a_conda_file_without_the_library_is_caught():
    conda = 'dependencies:\n  - pip:\n      - "cloudpickle==2.2.1"\n      - "numpy==2.3.2"\n'
    assert missing_pins(["somelib==1.0", "cloudpickle==2.2.1"], conda) == ["somelib==1.0"]
    assert missing_pins(["cloudpickle==2.2.2"], conda) == ["cloudpickle==2.2.2"]
    assert missing_pins(["unpinned"], conda) == ["unpinned"]
