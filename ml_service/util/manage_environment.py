"""Register the Azure ML environment of the project, or reuse the registered one.

    python -m ml_service.util.manage_environment [--rebuild] [--validate_only]

One environment serves the training steps and the scoring service: AML_ENV_NAME,
built from the conda file AML_ENV_TRAIN_CONDA_DEP_FILE (relative to the
repository root); the batch scoring pipeline has its own name and file. The
registered version is reused while its conda dependencies equal the file's
(compared parsed, so comments and layout do not count); when the file changed,
a new version is registered. With AML_REBUILD_ENVIRONMENT=true (or --rebuild) a
new version is registered from the file even if it did not change.
--validate_only builds the environment from the file and stops, without
contacting Azure ML.
"""
import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Optional

import yaml
from azureml.core import Environment, Workspace
from azureml.exceptions import UserErrorException

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.util.cli import run_cli
from ml_service.util.deployment_configs import describe_yaml_error
from ml_service.util.env_variables import (EnvironmentSettings, WorkspaceSettings,
                                           load_dotenv_file)

LOGGER = logging.getLogger(__name__)
# A conda match spec for python itself ("python=3.11", "python >=3.11"), not "python-dateutil".
PYTHON_PIN = re.compile(r"python(\s|[=<>!~])")


def _check_conda_file(conda_file: Path) -> None:
    """Refuse a conda file that is missing, not YAML, or does not pin Python.

    Azure ML would otherwise fail later, in the image build, or silently pick its
    own default Python version.
    """
    try:
        spec = yaml.safe_load(conda_file.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigurationError(f"conda file {conda_file}: cannot read it: "
                                 f"{err.strerror or err} (AML_ENV_TRAIN_CONDA_DEP_FILE)") from err
    except yaml.YAMLError as err:
        raise ConfigurationError(f"conda file {conda_file}: not valid YAML: "
                                 f"{describe_yaml_error(err)}") from err
    dependencies = spec.get("dependencies") if isinstance(spec, dict) else None
    if not isinstance(dependencies, list):
        raise ConfigurationError(f"conda file {conda_file}: no 'dependencies' list")
    if not any(isinstance(d, str) and PYTHON_PIN.match(d.strip()) for d in dependencies):
        raise ConfigurationError(f"conda file {conda_file}: dependencies do not pin python "
                                 "(add e.g. 'python=3.11')")


def build_environment(settings: EnvironmentSettings,
                      project_root: Path = PROJECT_ROOT) -> Environment:
    """Build the (unregistered) environment from its conda file; no service call."""
    conda_file = Path(project_root) / settings.conda_file
    _check_conda_file(conda_file)
    try:
        return Environment.from_conda_specification(settings.name, str(conda_file))
    except UserErrorException as err:
        raise ConfigurationError(f"conda file {conda_file}: Azure ML refuses it: "
                                 f"{err.message}") from err


def conda_specification(environment: Environment) -> dict:
    """The environment's conda dependencies as plain data (what the service stores)."""
    conda = environment.python.conda_dependencies
    return conda.as_dict() if conda is not None else {}


def describe_change(registered: Environment, wanted: Environment) -> str:
    """Say how the wanted environment's conda dependencies differ from the registered one's."""
    def packages(environment: Environment) -> set:
        conda = environment.python.conda_dependencies
        return set(conda.conda_packages) | set(conda.pip_packages) if conda is not None else set()

    old, new = packages(registered), packages(wanted)
    changes = [f"{verb} {', '.join(sorted(names))}"
               for verb, names in (("added", new - old), ("removed", old - new)) if names]
    return "; ".join(changes) or "same packages, other conda settings"


def get_environment(workspace: Workspace, settings: EnvironmentSettings,
                    project_root: Path = PROJECT_ROOT) -> Environment:
    """Return the registered environment built from the conda file.

    The latest registered version is reused when its conda dependencies equal the file's;
    a new version is registered when none exists, the file changed, or a rebuild is asked.
    """
    return register_or_reuse(workspace, build_environment(settings, project_root), settings)


def register_or_reuse(workspace: Workspace, wanted: Environment,
                      settings: EnvironmentSettings) -> Environment:
    """The latest registered version of ``wanted`` when its conda dependencies equal
    ``wanted``'s and no rebuild is asked; else ``wanted`` registered as a new version."""
    if settings.rebuild:
        reason = "a rebuild was asked for (AML_REBUILD_ENVIRONMENT or --rebuild)"
    else:
        # Environment.get raises a bare Exception when the name is unknown: list instead.
        # A v1 environment keeps no tags through registration, so compare the contents.
        registered = Environment.list(workspace).get(settings.name)
        if registered is None:
            reason = "none was registered"
        elif conda_specification(registered) == conda_specification(wanted):
            LOGGER.info("Using registered environment %s version %s: its conda dependencies "
                        "match %s", registered.name, registered.version, settings.conda_file)
            return registered
        else:
            reason = (f"version {registered.version} was built from other conda dependencies "
                      f"({describe_change(registered, wanted)})")
    environment = wanted.register(workspace)
    LOGGER.info("Registered environment %s version %s from %s: %s", environment.name,
                environment.version, settings.conda_file, reason)
    return environment


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true",
                        help="register a new version from the conda file "
                             "(default: AML_REBUILD_ENVIRONMENT)")
    parser.add_argument("--validate_only", action="store_true",
                        help="build the environment from the conda file and stop; no Azure ML")
    return parser.parse_args(argv)


def manage_environment(args: argparse.Namespace) -> int:
    """Validate the environment, then (unless --validate_only) reuse or register it."""
    load_dotenv_file()
    settings = EnvironmentSettings.from_env()
    if args.rebuild:
        settings = EnvironmentSettings(settings.name, settings.conda_file, rebuild=True)
    environment = build_environment(settings)
    pip = environment.python.conda_dependencies.pip_packages
    LOGGER.info("Environment %s from %s: Python %s, %d pip packages", settings.name,
                settings.conda_file, environment.python.conda_dependencies.get_python_version(),
                len(list(pip)))
    if args.validate_only:
        return 0
    from ml_service.util.workspace import get_workspace

    register_or_reuse(get_workspace(WorkspaceSettings.from_env()), environment, settings)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point: register or reuse the Azure ML environment."""
    args = parse_args(argv)
    return run_cli(lambda: manage_environment(args))


if __name__ == "__main__":
    sys.exit(main())
