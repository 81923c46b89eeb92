"""Azure ML SDK v1 inference and deployment configurations, built from the repository's YAML files.

None of these functions calls the service: they read files and build SDK objects
(staged_inference_config also stages the scoring service's files in a temporary
folder, removed when it is done). The deployment files use the field names of the SDK v1 deployment
configuration schema (``computeType``, ``containerResourceRequirements``,
``autoScaler``, ...); every key is checked, so a misspelled one is an error
naming the file and the key instead of a silently ignored setting.
"""
import math
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple,
                    Union)

import yaml
from azureml.core import Environment
from azureml.core.model import InferenceConfig
from azureml.core.webservice import AciWebservice, AksWebservice
from azureml.core.webservice.aci import AciServiceDeploymentConfiguration
from azureml.core.webservice.aks import AksServiceDeploymentConfiguration
from azureml.exceptions import UserErrorException, WebserviceException

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.util.imports import follow_imports

ConfigPath = Union[str, Path]

BOOL, INT, NUMBER, TEXT, PATH = "a boolean", "a whole number", "a number", "a string", "a path"


class Field(NamedTuple):
    """A YAML key: the SDK keyword argument it sets and the kind of value it takes."""

    argument: str
    kind: str


# A nested mapping mirrors a nested YAML section.
Schema = Mapping[str, Union[Field, "Schema"]]

ACI_SCHEMA: Schema = {
    "containerResourceRequirements": {"cpu": Field("cpu_cores", NUMBER),
                                      "memoryInGB": Field("memory_gb", NUMBER)},
    "location": Field("location", TEXT),
    "authEnabled": Field("auth_enabled", BOOL),
    "sslEnabled": Field("ssl_enabled", BOOL),
    "sslCertificate": Field("ssl_cert_pem_file", PATH),
    "sslKey": Field("ssl_key_pem_file", PATH),
    "cname": Field("ssl_cname", TEXT),
    "appInsightsEnabled": Field("enable_app_insights", BOOL),
    "dnsNameLabel": Field("dns_name_label", TEXT),
    "vaultBaseUrl": Field("cmk_vault_base_url", TEXT),
    "keyName": Field("cmk_key_name", TEXT),
    "keyVersion": Field("cmk_key_version", TEXT),
    "vnetName": Field("vnet_name", TEXT),
    "subnetName": Field("subnet_name", TEXT),
}

AKS_SCHEMA: Schema = {
    "autoScaler": {"autoscaleEnabled": Field("autoscale_enabled", BOOL),
                   "minReplicas": Field("autoscale_min_replicas", INT),
                   "maxReplicas": Field("autoscale_max_replicas", INT),
                   "refreshPeriodInSeconds": Field("autoscale_refresh_seconds", INT),
                   "targetUtilization": Field("autoscale_target_utilization", INT)},
    "containerResourceRequirements": {"cpu": Field("cpu_cores", NUMBER),
                                      "memoryInGB": Field("memory_gb", NUMBER),
                                      "cpuLimit": Field("cpu_cores_limit", NUMBER),
                                      "memoryInGBLimit": Field("memory_gb_limit", NUMBER)},
    "gpuCores": Field("gpu_cores", INT),
    "numReplicas": Field("num_replicas", INT),
    "authEnabled": Field("auth_enabled", BOOL),
    "tokenAuthEnabled": Field("token_auth_enabled", BOOL),
    "appInsightsEnabled": Field("enable_app_insights", BOOL),
    "dataCollection": {"storageEnabled": Field("collect_model_data", BOOL)},
    "scoringTimeoutMs": Field("scoring_timeout_ms", INT),
    "maxConcurrentRequestsPerContainer": Field("replica_max_concurrent_requests", INT),
    "maxQueueWaitMs": Field("max_request_wait_time", INT),
    "livenessProbeRequirements": {"periodSeconds": Field("period_seconds", INT),
                                  "initialDelaySeconds": Field("initial_delay_seconds", INT),
                                  "timeoutSeconds": Field("timeout_seconds", INT),
                                  "successThreshold": Field("success_threshold", INT),
                                  "failureThreshold": Field("failure_threshold", INT)},
    "namespace": Field("namespace", TEXT),
    "computeTargetName": Field("compute_target_name", TEXT),
}

INFERENCE_SCHEMA: Schema = {
    "entryScript": Field("entry_script", TEXT),
    "description": Field("description", TEXT),
}
# Not an SDK argument: the files the entry script reads at run time (its imports are found).
DATA_FILES_KEY = "dataFiles"

# The scoring service's source directory is uploaded whole (a plain tar: .amlignore is not
# applied), so it is a staged copy of the files score.py needs, and must stay small.
SCORING_SOURCE_LIMIT_BYTES = 1024 * 1024
# Its folder name: Azure ML unpacks the upload under this name (AZUREML_SOURCE_DIRECTORY).
SCORING_SOURCE_NAME = "scoring_source"

# Keys of the v1 schemas that this project refuses on purpose, and why.
REFUSED_DEPLOYMENT_KEYS = {
    "keys": "auth keys are secrets: keep them out of committed files (Azure ML generates them)",
}
ENVIRONMENT_IS_PASSED = ("the environment is passed in, built from AML_ENV_NAME and "
                         "AML_ENV_TRAIN_CONDA_DEP_FILE (one definition for training and scoring)")
REFUSED_INFERENCE_KEYS = {key: ENVIRONMENT_IS_PASSED for key in (
    "environment", "condaFile", "runtime", "extraDockerfileSteps", "baseImage",
    "baseImageRegistry", "enableGpu", "cudaVersion")}
REFUSED_INFERENCE_KEYS["sourceDirectory"] = (
    "the source directory is staged: entryScript, the project modules it imports and "
    f"{DATA_FILES_KEY}, nothing else (a whole folder would upload .env and .venv)")


def load_config(path: ConfigPath) -> Dict[str, Any]:
    """Read a YAML configuration file that must hold a mapping."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigurationError(f"{path}: cannot read the configuration file: "
                                 f"{err.strerror or err}") from err
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigurationError(f"{path}: not valid YAML: {describe_yaml_error(err)}") from err
    if not isinstance(config, dict):
        found = "an empty file" if config is None else f"a {type(config).__name__}"
        raise ConfigurationError(f"{path}: expected a mapping of keys to values, found {found}")
    return config


def describe_yaml_error(err: yaml.YAMLError) -> str:
    """PyYAML's complaint in one line, with the line and column where it noticed it."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"{where}{problem}"


def _check_value(value: Any, kind: str, path: ConfigPath, key: str) -> Any:
    """Return the value if it is of the kind the key takes, else raise ConfigurationError."""
    if kind == BOOL:
        valid = isinstance(value, bool)
    elif kind == INT:
        valid = isinstance(value, int) and not isinstance(value, bool)
    elif kind == NUMBER:
        valid = (isinstance(value, (int, float)) and not isinstance(value, bool)
                 and math.isfinite(value))
    else:
        valid = isinstance(value, str) and bool(value.strip())
    if not valid:
        raise ConfigurationError(f"{path}: {key} must be {kind}, not {value!r}")
    return value


def _arguments(config: Mapping[str, Any], schema: Schema, path: ConfigPath,
               refused: Mapping[str, str], prefix: str = "") -> Dict[str, Any]:
    """Map a (section of a) YAML file to SDK keyword arguments, refusing unknown keys."""
    arguments: Dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        spec = schema.get(key)
        if spec is None:
            reason = refused.get(key) or f"expected one of {', '.join(schema)}"
            raise ConfigurationError(f"{path}: unknown key {name!r}; {reason}")
        if isinstance(spec, Field):
            # An empty value (``key:``) leaves the SDK default.
            if value is not None:
                arguments[spec.argument] = _check_value(value, spec.kind, path, name)
        elif isinstance(value, dict):
            arguments.update(_arguments(value, spec, path, refused, f"{name}."))
        elif value is not None:
            raise ConfigurationError(f"{path}: {name} must be a mapping, not {value!r}")
    return arguments


def _yaml_keys(schema: Schema, prefix: str = "") -> Dict[str, str]:
    """SDK keyword argument -> YAML key, to name the key in the SDK's own messages."""
    keys: Dict[str, str] = {}
    for key, spec in schema.items():
        if isinstance(spec, Field):
            keys[spec.argument] = f"{prefix}{key}"
        else:
            keys.update(_yaml_keys(spec, f"{prefix}{key}."))
    return keys


def _sdk_refusal(path: ConfigPath, err: Exception, schema: Schema) -> ConfigurationError:
    """A ConfigurationError naming the file, the SDK's reason and the YAML keys it concerns."""
    message = " ".join(str(getattr(err, "message", err)).split())
    named = [f"{argument} is {key}" for argument, key in _yaml_keys(schema).items()
             if re.search(rf"\b{argument}\b", message)]
    hint = f" ({'; '.join(named)})" if named else ""
    return ConfigurationError(f"{path}: the Azure ML SDK refuses the configuration: "
                              f"{message}{hint}")


def _deployment_arguments(path: ConfigPath, compute_type: str,
                          schema: Schema) -> Dict[str, Any]:
    """Read a deployment configuration file of one compute type into keyword arguments."""
    config = load_config(path)
    found = config.pop("computeType", None)
    if not isinstance(found, str) or found.strip().upper() != compute_type:
        raise ConfigurationError(f"{path}: computeType is {found!r}; this loader builds "
                                 f"{compute_type} deployment configurations "
                                 f"(computeType: {compute_type})")
    return _arguments(config, schema, path, REFUSED_DEPLOYMENT_KEYS)


def _build(factory: Callable[..., Any], arguments: Mapping[str, Any], path: ConfigPath,
           schema: Schema) -> Any:
    """Call an SDK factory, turning its refusal into a ConfigurationError naming the file."""
    try:
        return factory(**arguments)
    except WebserviceException as err:
        raise _sdk_refusal(path, err, schema) from err


def aci_deployment_config(path: ConfigPath,
                          project_root: Path = PROJECT_ROOT) -> AciServiceDeploymentConfiguration:
    """Build the ACI deployment configuration from its YAML file (computeType: ACI)."""
    arguments = _deployment_arguments(path, "ACI", ACI_SCHEMA)
    for argument in ("ssl_cert_pem_file", "ssl_key_pem_file"):
        if argument in arguments:
            arguments[argument] = str(Path(project_root) / arguments[argument])
    return _build(AciWebservice.deploy_configuration, arguments, path, ACI_SCHEMA)


def aks_deployment_config(path: ConfigPath) -> AksServiceDeploymentConfiguration:
    """Build the AKS deployment configuration from its YAML file (computeType: AKS)."""
    arguments = _deployment_arguments(path, "AKS", AKS_SCHEMA)
    return _build(AksWebservice.deploy_configuration, arguments, path, AKS_SCHEMA)


class ScoringSource(NamedTuple):
    """What the scoring service runs: its entry script and every file it needs, relative."""

    entry_script: str
    files: List[str]
    arguments: Dict[str, Any]


def project_imports(script: Path, project_root: Path = PROJECT_ROOT) -> List[Path]:
    """The project modules a script imports, transitively, with their packages' __init__.py."""
    return follow_imports(script, project_root)[0]


def _project_file(path: ConfigPath, key: str, value: str, project_root: Path) -> str:
    """A file's path relative to the project root, checked to exist inside it."""
    full = (project_root / value).resolve()
    if not full.is_file():
        raise ConfigurationError(f"{path}: {key} {value!r}: no such file {full}")
    if not full.is_relative_to(project_root):
        # Only the staged folder is uploaded: a file outside the project cannot be staged.
        raise ConfigurationError(f"{path}: {key} {value!r} is not inside the project "
                                 f"{project_root}")
    return full.relative_to(project_root).as_posix()


def scoring_source(path: ConfigPath, project_root: Path = PROJECT_ROOT) -> ScoringSource:
    """Read the inference YAML file: the entry script, the files it needs, the SDK arguments."""
    root = Path(project_root).resolve()
    config = load_config(path)
    data_files = config.pop(DATA_FILES_KEY, None) or []
    if not isinstance(data_files, list):
        raise ConfigurationError(f"{path}: {DATA_FILES_KEY} must be a list of paths, "
                                 f"not {data_files!r}")
    arguments = _arguments(config, INFERENCE_SCHEMA, path, REFUSED_INFERENCE_KEYS)
    if "entry_script" not in arguments:
        raise ConfigurationError(f"{path}: entryScript is missing")
    entry_script = _project_file(path, "entryScript", arguments.pop("entry_script"), root)
    files = {entry_script: None}
    try:
        modules = project_imports(root / entry_script, root)
    except SyntaxError as err:
        raise ConfigurationError(f"{path}: cannot follow the imports of entryScript: "
                                 f"{err.filename}, line {err.lineno}: {err.msg}") from err
    for module in modules:
        files[module.relative_to(root).as_posix()] = None
    for value in data_files:
        _check_value(value, PATH, path, DATA_FILES_KEY)
        files[_project_file(path, DATA_FILES_KEY, value, root)] = None
    return ScoringSource(entry_script, sorted(files), arguments)


@contextmanager
def staged_scoring_source(files: Iterable[str], project_root: Path = PROJECT_ROOT,
                          limit_bytes: int = SCORING_SOURCE_LIMIT_BYTES) -> Iterator[Path]:
    """A temporary folder holding only ``files`` (relative paths, same layout); removed after."""
    root = Path(project_root).resolve()
    with tempfile.TemporaryDirectory(prefix="mlops-scoring-") as temporary:
        staged = Path(temporary) / SCORING_SOURCE_NAME
        total = 0
        for name in files:
            relative = PurePosixPath(name)
            if relative.is_absolute() or ".." in relative.parts:
                raise ConfigurationError(f"cannot stage {name!r}: not a path inside the project")
            target = staged.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root.joinpath(*relative.parts), target)
            total += target.stat().st_size
        if total > limit_bytes:
            raise ConfigurationError(f"the scoring service's files take {total} bytes, over the "
                                     f"{limit_bytes}-byte limit of its upload: "
                                     f"{', '.join(sorted(files))}")
        yield staged


@contextmanager
def staged_inference_config(path: ConfigPath, environment: Environment,
                            project_root: Path = PROJECT_ROOT) -> Iterator[InferenceConfig]:
    """The inference configuration of a YAML file, its source directory staged while in use.

    The SDK tars the whole source directory when the model is deployed or packaged, so
    the configuration must be used inside the ``with`` block; the folder is removed after.
    """
    source = scoring_source(path, project_root)
    with staged_scoring_source(source.files, project_root) as staged:
        try:
            config = InferenceConfig(environment=environment, entry_script=source.entry_script,
                                     source_directory=str(staged), **source.arguments)
        except (WebserviceException, UserErrorException) as err:
            raise _sdk_refusal(path, err, INFERENCE_SCHEMA) from err
        yield config
