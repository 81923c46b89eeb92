"""Offline: the real Azure ML SDK v1 configuration objects, built from the repository's files.

No workspace and no service call: these are the objects the Azure ML scripts hand to
the service, checked for the values the files give them, and bad files refused.
"""
import logging
import re
import tomllib
from pathlib import Path

import pytest
from azureml.core import Environment
from azureml.core.compute.amlcompute import AmlComputeProvisioningConfiguration
from azureml.core.model import InferenceConfig
from azureml.core.webservice.aci import AciServiceDeploymentConfiguration
from azureml.core.webservice.aks import AksServiceDeploymentConfiguration

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.util import attach_compute, create_scoring_image, manage_environment
from ml_service.util.attach_compute import compute_provisioning_config
from ml_service.util.deployment_configs import (SCORING_SOURCE_NAME, aci_deployment_config,
                                                aks_deployment_config, load_config,
                                                staged_inference_config)
from ml_service.util.env_variables import ComputeSettings, EnvironmentSettings
from ml_service.util.lock_environments import canonical_name
from ml_service.util.manage_environment import build_environment

SCORING = PROJECT_ROOT / "diabetes_regression" / "scoring"
ACI_FILE = SCORING / "deployment_config_aci.yml"
AKS_FILE = SCORING / "deployment_config_aks.yml"
INFERENCE_FILE = SCORING / "inference_config.yml"
SETTINGS_VARIABLES = (
    "AML_COMPUTE_CLUSTER_NAME", "AML_COMPUTE_CLUSTER_CPU_SKU", "AML_CLUSTER_MIN_NODES",
    "AML_CLUSTER_MAX_NODES", "AML_CLUSTER_PRIORITY", "AML_ENV_NAME",
    "AML_ENV_TRAIN_CONDA_DEP_FILE", "AML_REBUILD_ENVIRONMENT", "MODEL_NAME",
)


@pytest.fixture(scope="module")
def environment() -> Environment:
    """The project's environment, built from diabetes_regression/conda_dependencies.yml."""
    return build_environment(EnvironmentSettings())


@pytest.fixture
def write(tmp_path: Path):
    """Write a file in the temporary folder and return its path."""
    def write_file(text: str, name: str = "config.yml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return write_file


@pytest.fixture
def default_settings(monkeypatch, tmp_path: Path) -> None:
    """No Azure ML setting from the machine or a .env file: the defaults apply."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def locked_versions() -> dict:
    """Canonical package name -> the versions uv.lock holds for it."""
    versions: dict = {}
    for package in tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())["package"]:
        versions.setdefault(canonical_name(package["name"]), set()).add(package["version"])
    return versions


# -- compute ---------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [
    ComputeSettings.from_env({}),
    ComputeSettings(cluster_name="gpu", vm_size="STANDARD_NC6", min_nodes=1, max_nodes=2,
                    priority="dedicated"),
])
def test_compute_provisioning_config_carries_the_settings(settings):
    config = compute_provisioning_config(settings)
    assert isinstance(config, AmlComputeProvisioningConfiguration)
    assert config.vm_size == settings.vm_size
    assert config.vm_priority == settings.priority
    assert config.scale_settings.minimum_node_count == settings.min_nodes
    assert config.scale_settings.maximum_node_count == settings.max_nodes
    assert config.scale_settings.idle_seconds_before_scaledown == \
        attach_compute.IDLE_SECONDS_BEFORE_SCALEDOWN


def test_default_compute_is_a_small_low_priority_cluster_that_scales_to_zero():
    config = compute_provisioning_config(ComputeSettings.from_env({}))
    assert (config.vm_size, config.vm_priority) == ("STANDARD_DS2_V2", "lowpriority")
    assert config.scale_settings.minimum_node_count == 0


@pytest.mark.parametrize("settings, message", [
    (ComputeSettings(min_nodes=3, max_nodes=2),
     "AML_CLUSTER_MAX_NODES=2: the Azure ML SDK refuses them: Invalid provisioning "
     "configuration, max nodes count must be greater than or equal to min nodes count"),
    (ComputeSettings(max_nodes=-1), "max nodes count must be greater than or equal to 0"),
    (ComputeSettings(priority="spot"), "AML_CLUSTER_PRIORITY='spot'"),
    (ComputeSettings(vm_size=" "), "AML_COMPUTE_CLUSTER_CPU_SKU is empty"),
])
def test_invalid_compute_settings_are_refused(settings, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        compute_provisioning_config(settings)


# -- environment -----------------------------------------------------------------------------

def test_environment_is_built_from_the_conda_file_with_the_locked_pins(environment):
    conda = environment.python.conda_dependencies
    assert environment.name == EnvironmentSettings().name == "diabetes_regression_training_env"
    assert conda.get_python_version() == "3.11"
    assert environment.python.user_managed_dependencies is False
    pip = set(conda.pip_packages)
    locked = locked_versions()
    pinned = {canonical_name(name): version for name, version in
              (re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;]+)", pin).groups()
               for pin in pip)}
    unlocked = {name for name, version in pinned.items() if version not in locked.get(name, ())}
    assert not unlocked, f"not at the version uv.lock holds: {unlocked}"
    # Every package the project's own dependencies pull in, not only those it names.
    assert len(pinned) > len(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
                             ["project"]["dependencies"])
    # What the scoring container and the steps cannot run without.
    for package in ("azureml-core", "azureml-inference-server-http", "scikit-learn", "joblib"):
        assert any(pin.startswith(f"{package}==") for pin in pip), package


@pytest.mark.parametrize("text, message", [
    (None, "cannot read it: No such file or directory"),
    ("name: x\ndependencies: [python=3.11\n", "not valid YAML: line 3, column 1"),
    ("name: x\n", "no 'dependencies' list"),
    ("name: x\ndependencies:\n  - pip\n  - python-dateutil\n", "dependencies do not pin python"),
])
def test_bad_conda_files_are_refused_naming_the_file(write, tmp_path, text, message):
    path = write(text, "conda.yml") if text is not None else tmp_path / "missing.yml"
    with pytest.raises(ConfigurationError, match=re.escape(message)) as raised:
        build_environment(EnvironmentSettings(conda_file=path.name), project_root=tmp_path)
    assert str(path) in str(raised.value)


# -- inference configuration -----------------------------------------------------------------

def test_inference_config_runs_score_py_from_a_staged_folder(environment):
    with staged_inference_config(INFERENCE_FILE, environment) as config:
        assert isinstance(config, InferenceConfig)
        assert config.entry_script == "diabetes_regression/scoring/score.py"
        staged = Path(config.source_directory)
        assert staged.name == SCORING_SOURCE_NAME and not staged.is_relative_to(PROJECT_ROOT)
        assert config.environment is environment
        assert (staged / config.entry_script).read_bytes() == \
            (PROJECT_ROOT / config.entry_script).read_bytes()
    assert not staged.exists()


def test_the_scoring_environment_carries_the_inference_baseline(environment, caplog):
    """azureml-defaults (the inference server, azureml-core and the dataset runtime's fuse
    mounts) is what the SDK checks for when it builds the inference configuration."""
    caplog.set_level(logging.WARNING, logger="azureml.core.model")
    with staged_inference_config(INFERENCE_FILE, environment):
        pass
    assert "azureml-defaults not detected" not in caplog.text
    assert any(pin.startswith("azureml-defaults==")
               for pin in environment.python.conda_dependencies.pip_packages)


def test_an_environment_without_the_baseline_is_warned_about(write, caplog):
    conda = write("name: x\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n"
                  "      - azureml-core==1.61.0.post4\n", "conda.yml")
    bare = build_environment(EnvironmentSettings(conda_file=conda.name),
                             project_root=conda.parent)
    caplog.set_level(logging.WARNING, logger="azureml.core.model")
    with staged_inference_config(INFERENCE_FILE, bare):
        pass
    assert "azureml-defaults not detected" in caplog.text


@pytest.mark.parametrize("text, message", [
    ("entryScript: diabetes_regression/scoring/nope.py\n",
     "entryScript 'diabetes_regression/scoring/nope.py': no such file"),
    ("entryScript: ../outside.py\n", "is not inside the project"),
    ("entryScript: score.py\nsourceDirectory: .\n", "unknown key 'sourceDirectory'"),
    ("description: x\n", "entryScript is missing"),
    ("entryscript: score.py\n", "unknown key 'entryscript'"),
    ("entryScript: score.py\ncondaFile: conda.yml\n",
     "unknown key 'condaFile'; the environment is passed in"),
    ("entryScript: broken.py\n", "cannot follow the imports of entryScript"),
    ("entryScript: score.txt\n", "the Azure ML SDK refuses the configuration"),
])
def test_bad_inference_configs_are_refused_naming_the_file(write, tmp_path, environment, text,
                                                           message):
    project = tmp_path / "project"
    project.mkdir()
    (project / "score.py").write_text("def init():\n    pass\n")
    (project / "broken.py").write_text("def init(:\n")
    (project / "score.txt").write_text("")
    (tmp_path / "outside.py").write_text("")
    path = write(text)
    with pytest.raises(ConfigurationError, match=re.escape(message)) as raised:
        with staged_inference_config(path, environment, project_root=project):
            pass  # pragma: no cover
    assert str(path) in str(raised.value)


# -- deployment configurations ---------------------------------------------------------------

def test_aci_deployment_config_from_the_repository_file():
    raw = load_config(ACI_FILE)
    config = aci_deployment_config(ACI_FILE)
    assert isinstance(config, AciServiceDeploymentConfiguration)
    assert config.cpu_cores == raw["containerResourceRequirements"]["cpu"] == 1
    assert config.memory_gb == raw["containerResourceRequirements"]["memoryInGB"] == 1
    assert config.auth_enabled is True
    assert config.ssl_enabled is False
    assert config.enable_app_insights is True


def test_aks_deployment_config_from_the_repository_file():
    raw = load_config(AKS_FILE)
    config = aks_deployment_config(AKS_FILE)
    assert isinstance(config, AksServiceDeploymentConfiguration)
    assert config.autoscale_enabled is True and config.num_replicas is None
    assert (config.autoscale_min_replicas, config.autoscale_max_replicas) == (1, 3)
    assert config.autoscale_refresh_seconds == raw["autoScaler"]["refreshPeriodInSeconds"]
    assert config.autoscale_target_utilization == raw["autoScaler"]["targetUtilization"]
    assert config.cpu_cores == raw["containerResourceRequirements"]["cpu"] == 0.5
    assert config.memory_gb == raw["containerResourceRequirements"]["memoryInGB"] == 1
    assert config.auth_enabled is True and not config.token_auth_enabled
    assert config.enable_app_insights is True
    assert config.scoring_timeout_ms == raw["scoringTimeoutMs"]
    assert config.replica_max_concurrent_requests == 1
    assert config.max_request_wait_time == raw["maxQueueWaitMs"]


ACI = aci_deployment_config
AKS = aks_deployment_config


@pytest.mark.parametrize("loader, text, message", [
    (ACI, "computeType: ACI\nauthEnabeld: true\n", "unknown key 'authEnabeld'"),
    (AKS, "computeType: AKS\nautoScaler:\n  minReplica: 1\n",
     "unknown key 'autoScaler.minReplica'"),
    (ACI, "computeType: AKS\n", "computeType is 'AKS'; this loader builds ACI"),
    (AKS, "computeType: ACI\n", "computeType is 'ACI'; this loader builds AKS"),
    (ACI, "containerResourceRequirements:\n  cpu: 1\n", "computeType is None"),
    (ACI, "computeType: ACI\ncontainerResourceRequirements:\n  cpu: -1\n",
     "Invalid configuration, cpu_cores must be positive. "
     "(cpu_cores is containerResourceRequirements.cpu)"),
    (AKS, "computeType: AKS\ncontainerResourceRequirements:\n  cpu: -0.5\n",
     "cpu_cores must be greater than zero. (cpu_cores is containerResourceRequirements.cpu)"),
    (AKS, "computeType: AKS\nnumReplicas: 2\nautoScaler:\n  autoscaleEnabled: true\n",
     "autoscale enabled and num_replicas provided. (num_replicas is numReplicas)"),
    (ACI, "computeType: ACI\ncontainerResourceRequirements:\n  cpu: one\n",
     "containerResourceRequirements.cpu must be a number, not 'one'"),
    (AKS, "computeType: AKS\nauthEnabled: 'yes'\n", "authEnabled must be a boolean"),
    (ACI, "computeType: ACI\ncontainerResourceRequirements: 2\n",
     "containerResourceRequirements must be a mapping"),
    (ACI, "computeType: ACI\nkeys:\n  primaryKey: secret\n", "auth keys are secrets"),
    (ACI, "computeType: ACI\ncontainerResourceRequirements: [cpu\n",
     "not valid YAML: line 3, column 1"),
    (AKS, "- computeType: AKS\n", "expected a mapping of keys to values, found a list"),
    (AKS, "", "found an empty file"),
])
def test_bad_deployment_configs_are_refused_naming_the_file(write, loader, text, message):
    path = write(text)
    with pytest.raises(ConfigurationError, match=re.escape(message)) as raised:
        loader(path)
    assert str(raised.value).startswith(f"{path}: ")


def test_aci_ssl_files_are_found_from_the_project_root(write, tmp_path):
    (tmp_path / "cert.pem").write_text("cert")
    (tmp_path / "key.pem").write_text("key")
    text = ("computeType: ACI\nsslEnabled: true\nsslCertificate: cert.pem\nsslKey: {key}\n"
            "cname: scoring.example.com\n")
    config = aci_deployment_config(write(text.format(key="key.pem")), project_root=tmp_path)
    assert config.ssl_enabled is True
    assert config.ssl_cert_pem_file == str(tmp_path / "cert.pem")
    assert config.ssl_key_pem_file == str(tmp_path / "key.pem")
    with pytest.raises(ConfigurationError, match="unable to find SSL key pem file .*nope.pem"):
        aci_deployment_config(write(text.format(key="nope.pem")), project_root=tmp_path)


def test_a_missing_deployment_config_is_named(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read the configuration file"):
        aci_deployment_config(tmp_path / "nope.yml")


# -- the scripts, offline --------------------------------------------------------------------

@pytest.mark.parametrize("script, argv", [
    (attach_compute, []),
    (manage_environment, []),
    (manage_environment, ["--rebuild"]),
    (create_scoring_image, ["--model_version", "3"]),
])
def test_scripts_validate_the_repository_configuration_offline(default_settings, script, argv):
    assert script.main(["--validate_only", *argv]) == 0


@pytest.mark.parametrize("script, variable, value, message", [
    (attach_compute, "AML_CLUSTER_PRIORITY", "spot", "AML_CLUSTER_PRIORITY='spot'"),
    (attach_compute, "AML_CLUSTER_MIN_NODES", "9", "AML_CLUSTER_MIN_NODES=9 is above"),
    (manage_environment, "AML_ENV_TRAIN_CONDA_DEP_FILE", "missing.yml", "missing.yml"),
    (create_scoring_image, "AML_ENV_TRAIN_CONDA_DEP_FILE", "missing.yml", "missing.yml"),
])
def test_scripts_stop_on_bad_settings_before_any_service_call(default_settings, monkeypatch,
                                                              caplog, script, variable,
                                                              value, message):
    monkeypatch.setenv(variable, value)
    # No workspace variables are set: reaching the workspace would fail with another message.
    assert script.main([]) == 1
    assert "ConfigurationError" in caplog.text and message in caplog.text


def test_create_scoring_image_stops_on_a_bad_inference_config(default_settings, write, caplog):
    path = write("entryScript: score.py\nruntime: python\n", "inference_config.yml")
    assert create_scoring_image.main(["--inference_config", str(path)]) == 1
    assert f"{path}: unknown key 'runtime'" in caplog.text


def test_image_location_is_written_whole(tmp_path):
    target = tmp_path / "out" / "image_location.txt"
    create_scoring_image.write_image_location(target, "registry.azurecr.io/package:1")
    assert target.read_text() == "registry.azurecr.io/package:1"
    assert [p.name for p in target.parent.iterdir()] == ["image_location.txt"]


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_model_version_must_be_a_positive_number(value, capsys):
    with pytest.raises(SystemExit):
        create_scoring_image.parse_args(["--model_version", value])
    assert "is not a whole number >= 1" in capsys.readouterr().err
