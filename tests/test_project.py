"""The project's own files agree with each other."""
import re
import tomllib

from ml_service.paths import PROJECT_ROOT
from ml_service.util.env_variables import BatchScoringSettings, TrainingSettings


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


# The only pins of the batch scoring environment that differ from pyproject.toml, and why.
BATCH_ONLY_PINS = {
    "azureml-dataset-runtime": "ParallelRunStep reads a tabular input with its fuse,pandas extras",
    "pandas": "azureml-dataset-runtime[pandas] requires pandas < 2 (the project pins 3)",
    "numpy": "azureml-dataset-runtime[pandas] requires numpy < 2 (the project pins 2)",
}


def test_batch_scoring_pins_differ_only_where_the_dataset_runtime_requires():
    declared = pins("\n".join(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
                              ["project"]["dependencies"]))
    text = (PROJECT_ROOT / BatchScoringSettings().conda_file).read_text()
    batch = dict(re.findall(r"^\s*-\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", text,
                            re.MULTILINE))
    assert {"scikit-learn", "joblib", "azureml-core"} <= set(batch)
    differing = {name for name, version in batch.items() if declared.get(name) != version}
    assert differing == set(BATCH_ONLY_PINS), differing ^ set(BATCH_ONLY_PINS)


def test_env_example_documents_every_setting():
    read = set(re.findall(r'"([A-Z][A-Z0-9_]{3,})"', (PROJECT_ROOT / "ml_service" / "util" /
                                                      "env_variables.py").read_text()))
    read.add("MLOPS_STEP_LAUNCHER")  # read by the local executor
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", (PROJECT_ROOT / ".env.example").read_text(),
                                re.MULTILINE))
    assert {"WORKSPACE_NAME", "AML_COMPUTE_CLUSTER_NAME", "BUILD_BUILDID"} <= read
    # AZUREML_RUN_ID is set by Azure ML itself; STANDARD_DS2_V2 is a default value.
    assert read - {"AZUREML_RUN_ID", "STANDARD_DS2_V2"} <= documented, read - documented
    assert TrainingSettings().model_name in (PROJECT_ROOT / ".env.example").read_text()


def test_readme_opens_with_the_two_commands():
    head = (PROJECT_ROOT / "README.md").read_text().splitlines()[:5]
    assert any(line.strip().startswith("make run") for line in head)
    assert any(line.strip().startswith("make test") for line in head)
