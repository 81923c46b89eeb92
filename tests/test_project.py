"""The project's own files agree with each other."""
import re
import tomllib

from ml_service.paths import PROJECT_ROOT
from ml_service.util.env_variables import TrainingSettings


def pins(lines):
    return dict(re.findall(r"^\s*-?\s*\"?([A-Za-z0-9_.-]+)==([^\s\",]+)", lines, re.MULTILINE))


def test_conda_pins_agree_with_the_dependency_declaration():
    declared = pins("\n".join(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
                              ["project"]["dependencies"]))
    conda = pins((PROJECT_ROOT / "diabetes_regression" / "conda_dependencies.yml").read_text())
    assert conda, "no pins found in conda_dependencies.yml"
    for name, version in conda.items():
        assert declared.get(name) == version, f"{name}: conda {version}, pyproject " \
                                              f"{declared.get(name)}"


def test_env_example_documents_every_setting():
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", (PROJECT_ROOT / ".env.example").read_text(),
                                re.MULTILINE))
    assert {"MODEL_NAME", "EXPERIMENT_NAME", "DATASET_NAME", "TRAINING_PIPELINE_NAME",
            "RUN_EVALUATION", "ALLOW_RUN_CANCEL", "BUILD_BUILDID", "BUILD_BUILDURI",
            "MLOPS_BACKEND", "MLOPS_ROOT", "LOCAL_DEPLOYMENT_NAME", "LOCAL_SCORING_PORT",
            "MLOPS_STEP_LAUNCHER"} <= documented
    assert TrainingSettings().model_name in (PROJECT_ROOT / ".env.example").read_text()


def test_readme_opens_with_the_two_commands():
    head = (PROJECT_ROOT / "README.md").read_text().splitlines()[:5]
    assert any(line.strip().startswith("make run") for line in head)
    assert any(line.strip().startswith("make test") for line in head)
