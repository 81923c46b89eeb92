"""Which registered environment version the steps and the scoring service get, across runs.

A rehearsal: the real ``azureml.core.Environment`` builds, serialises (``register``) and
deserialises (``list``) the environments; only its REST client (``EnvironmentClient``) is
replaced, by an autospec of the real class whose methods act on an in-memory store of the
records the environment service keeps. State carries over from one call of
``get_environment`` to the next, as it does from one pipeline run to the next.
"""
import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional
from unittest import mock

import pytest
import yaml
from azureml._restclient.environment_client import EnvironmentClient
from azureml.core import environment as sdk_environment

from ml_service.paths import PROJECT_ROOT
from ml_service.util import manage_environment, workspace as workspace_module
from ml_service.util.env_variables import BatchScoringSettings, EnvironmentSettings
from ml_service.util.manage_environment import get_environment
from tests.azureml_offline import offline_workspace

TRAINING = EnvironmentSettings()
BATCH = BatchScoringSettings().environment_settings()
CURATED = "AzureML-sklearn-1.5"
NEW_PACKAGE = "tabulate==0.9.0"
ENV_VARIABLES = ("AML_ENV_NAME", "AML_ENV_TRAIN_CONDA_DEP_FILE", "AML_REBUILD_ENVIRONMENT")


class FakeEnvironmentService:
    """The environment service: every version of every environment, as JSON records."""

    def __init__(self) -> None:
        self.records: Dict[str, List[dict]] = {}
        self.registrations = 0
        # A workspace lists Microsoft's curated environments beside the project's own.
        self._store(CURATED, {"python": {"userManagedDependencies": True,
                                         "interpreterPath": "python",
                                         "condaDependencies": None},
                              "EnvironmentVariables": {}, "Docker": {}, "Spark": {},
                              "InferencingStackVersion": None, "r": None})

    def _store(self, name: str, body: dict, version: Optional[str] = None) -> dict:
        versions = self.records.setdefault(name, [])
        number = version or str(len(versions) + 1)
        record = {"name": name, "version": number,
                  "assetId": f"azureml://locations/westeurope/workspaces/ws/environments/"
                             f"{name}/versions/{number}",
                  "python": body["python"], "environmentVariables": body["EnvironmentVariables"],
                  "docker": body["Docker"], "spark": body["Spark"],
                  "databricks": {"mavenLibraries": [], "pypiLibraries": [],
                                 "rcranLibraries": [], "jarLibraries": [], "eggLibraries": []},
                  "inferencingStackVersion": body["InferencingStackVersion"], "r": body["r"]}
        versions.append(record)
        return record

    def register(self, environment_dict: dict) -> dict:
        """PUT .../environments/{name}[/versions/{version}]: the body the client sends."""
        self.registrations += 1
        body = {"Name": environment_dict["name"], "python": environment_dict["python"],
                "EnvironmentVariables": environment_dict["environmentVariables"],
                "Docker": environment_dict["docker"], "Spark": environment_dict["spark"],
                "InferencingStackVersion": environment_dict.get("inferencingStackVersion"),
                "r": environment_dict.get("r")}
        # What crosses the wire is JSON, not the SDK's objects.
        body = json.loads(json.dumps(body))
        return copy.deepcopy(self._store(body["Name"], body, environment_dict["version"]))

    def list(self) -> List[dict]:
        """GET .../environments/: the latest version of each environment."""
        return [copy.deepcopy(versions[-1]) for versions in self.records.values()]

    def get(self, name: str, version: Optional[str] = None) -> dict:
        """GET .../environments/{name}[/versions/{version}]."""
        for record in reversed(self.records.get(name, [])):
            if version is None or record["version"] == str(version):
                return copy.deepcopy(record)
        raise Exception("Error retrieving the environment definition. Code: 404\n: "
                        f"environment {name} version {version} not found")

    def versions(self, name: str) -> List[str]:
        return [record["version"] for record in self.records.get(name, [])]

    def pip_packages(self, name: str, version: str) -> List[str]:
        dependencies = self.get(name, version)["python"]["condaDependencies"]["dependencies"]
        return next(d["pip"] for d in dependencies if isinstance(d, dict))


@pytest.fixture
def service(monkeypatch) -> FakeEnvironmentService:
    fake = FakeEnvironmentService()
    client = mock.create_autospec(EnvironmentClient, spec_set=True)
    client.return_value._register_environment_definition.side_effect = fake.register
    client.return_value._list_definitions.side_effect = fake.list
    client.return_value._get_environment_definition.side_effect = fake.get
    monkeypatch.setattr(sdk_environment, "EnvironmentClient", client)
    return fake


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root holding copies of the training and batch scoring conda files."""
    for settings in (TRAINING, BATCH):
        target = tmp_path / settings.conda_file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_ROOT / settings.conda_file, target)
    return tmp_path


def edit_pip(project: Path, settings: EnvironmentSettings,
             change: Callable[[List[str]], None]) -> None:
    """Change the pip list of a conda file in the project (its comments are lost)."""
    path = project / settings.conda_file
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict)))
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


def add_package(pip: List[str]) -> None:
    pip.append(NEW_PACKAGE)


def remove_package(pip: List[str]) -> None:
    pip.remove(next(p for p in pip if p.startswith("joblib==")))


def change_pin(pip: List[str]) -> None:
    pip[pip.index(next(p for p in pip if p.startswith("joblib==")))] = "joblib==1.4.2"


@pytest.mark.parametrize("settings", [TRAINING, BATCH], ids=["training", "batch"])
def test_a_version_is_reused_until_the_conda_file_changes(service, project, settings, caplog):
    caplog.set_level(logging.INFO, logger=manage_environment.__name__)
    workspace = offline_workspace()
    first = get_environment(workspace, settings, project)
    assert (first.name, first.version) == (settings.name, "1")

    caplog.clear()
    again = get_environment(workspace, settings, project)
    assert again.version == "1"
    assert service.versions(settings.name) == ["1"]
    assert f"Using registered environment {settings.name} version 1" in caplog.text

    edit_pip(project, settings, add_package)
    caplog.clear()
    changed = get_environment(workspace, settings, project)
    assert changed.version == "2"
    assert NEW_PACKAGE in changed.python.conda_dependencies.pip_packages
    assert NEW_PACKAGE in service.pip_packages(settings.name, "2")
    assert NEW_PACKAGE not in service.pip_packages(settings.name, "1")
    assert f"Registered environment {settings.name} version 2" in caplog.text
    assert f"added {NEW_PACKAGE}" in caplog.text

    assert get_environment(workspace, settings, project).version == "2"
    assert service.versions(settings.name) == ["1", "2"]


@pytest.mark.parametrize("change", [add_package, remove_package, change_pin])
def test_every_change_of_the_packages_registers_a_new_version(service, project, change):
    workspace = offline_workspace()
    get_environment(workspace, TRAINING, project)
    edit_pip(project, TRAINING, change)
    assert get_environment(workspace, TRAINING, project).version == "2"


def test_comments_and_layout_alone_do_not_make_a_new_version(service, project):
    workspace = offline_workspace()
    get_environment(workspace, TRAINING, project)
    # Same dependencies, other text: no comments, other quoting and indentation.
    edit_pip(project, TRAINING, lambda pip: None)
    assert get_environment(workspace, TRAINING, project).version == "1"
    assert service.registrations == 1


def test_training_and_scoring_share_one_environment_and_batch_has_its_own(service, project):
    workspace = offline_workspace()
    # The training pipeline is published, then the model deployed (score.py's environment).
    assert get_environment(workspace, TRAINING, project).version == "1"
    batch = get_environment(workspace, BATCH, project)
    assert (batch.name, batch.version) == (BATCH.name, "1")
    assert get_environment(workspace, EnvironmentSettings.from_env({}), project).version == "1"

    # A package score.py needs is added: the next deployment gets a version that has it.
    edit_pip(project, TRAINING, add_package)
    scoring = get_environment(workspace, EnvironmentSettings.from_env({}), project)
    assert scoring.version == "2"
    assert NEW_PACKAGE in scoring.python.conda_dependencies.pip_packages
    assert get_environment(workspace, TRAINING, project).version == "2"
    # The batch scoring environment is built from its own file, which did not change.
    assert get_environment(workspace, BATCH, project).version == "1"
    assert NEW_PACKAGE not in service.pip_packages(BATCH.name, "1")


def test_a_workspace_set_up_before_a_package_was_added_gets_it(service, project):
    workspace = offline_workspace()
    edit_pip(project, TRAINING, lambda pip: pip.remove(next(p for p in pip
                                                            if p.startswith("matplotlib"))))
    get_environment(workspace, TRAINING, project)
    shutil.copyfile(PROJECT_ROOT / TRAINING.conda_file, project / TRAINING.conda_file)
    environment = get_environment(workspace, TRAINING, project)
    assert environment.version == "2"
    assert any(p.startswith("matplotlib==") for p in service.pip_packages(TRAINING.name, "2"))


def test_rebuild_registers_a_new_version_even_from_the_same_file(service, project, caplog):
    caplog.set_level(logging.INFO, logger=manage_environment.__name__)
    workspace = offline_workspace()
    get_environment(workspace, TRAINING, project)
    rebuild = EnvironmentSettings.from_env({"AML_REBUILD_ENVIRONMENT": "true"})
    assert get_environment(workspace, rebuild, project).version == "2"
    assert get_environment(workspace, rebuild, project).version == "3"
    assert "rebuild" in caplog.text
    batch = BatchScoringSettings().environment_settings(rebuild.rebuild)
    get_environment(workspace, BATCH, project)
    assert get_environment(workspace, batch, project).version == "2"
    assert get_environment(workspace, TRAINING, project).version == "3"


def test_the_rebuild_option_registers_a_new_version(service, monkeypatch, tmp_path):
    for name in ENV_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in (("SUBSCRIPTION_ID", "sub"), ("RESOURCE_GROUP", "rg"),
                        ("WORKSPACE_NAME", "ws")):
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env file
    workspace = offline_workspace()
    monkeypatch.setattr(workspace_module, "get_workspace", lambda settings: workspace)
    assert manage_environment.main([]) == 0
    assert manage_environment.main([]) == 0
    assert service.versions(TRAINING.name) == ["1"]
    assert manage_environment.main(["--rebuild"]) == 0
    assert service.versions(TRAINING.name) == ["1", "2"]


def test_the_curated_environments_listed_beside_it_are_left_alone(service, project):
    get_environment(offline_workspace(), TRAINING, project)
    assert service.versions(CURATED) == ["1"]
    assert sorted(service.records) == sorted([CURATED, TRAINING.name])
