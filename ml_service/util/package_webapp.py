"""Package the web app for App Service: its code, the model card and its pinned requirements.

    python -m ml_service.util.package_webapp --out model_app.zip [--model_version N]
                                             [--service NAME] [--key_file PATH]

The zip holds ``ml_service/webapp`` (and ``ml_service/__init__.py``), ``model_card/`` (the
card of the production model, or version N, written by ml_service.util.model_card with the
scoring URI of the service that serves it) and ``requirements.txt``: Flask, requests and
gunicorn with everything they need, at the versions uv.lock pins, which App Service's build
installs. The infrastructure templates set WEBAPP_MODEL_CARD=model_card and the start command.

The service is the one CD deployed last: the AKS service on SDK v1 (AKS_DEPLOYMENT_NAME), the
production online endpoint on SDK v2 (ONLINE_ENDPOINT_NAME), the local service locally; or
``--service``. ``--key_file`` writes the service's key to that file (created with mode 0600)
for the pipeline to put in Key Vault, when the service has one; the key is never printed.
"""
import argparse
import logging
import os
import re
import tempfile
import tomllib
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from ml_service.errors import ConfigurationError, DeploymentError
from ml_service.paths import PROJECT_ROOT

LOGGER = logging.getLogger(__name__)
# What the app imports (ml_service/webapp/app.py) and what serves it on App Service.
APP_REQUIREMENTS = ("flask", "requests", "gunicorn")
CARD_FOLDER = "model_card"
WEBAPP_SOURCE = PROJECT_ROOT / "ml_service" / "webapp"
SKIPPED = re.compile(r"(__pycache__|\.pyc$)")


def canonical(name: str) -> str:
    """A package name as the lock writes it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_requirements(lock: Path, wanted: Iterable[str]) -> List[str]:
    """``name==version`` of the wanted packages and everything they depend on (on Linux), at
    the versions the lock pins, sorted."""
    packages = {canonical(p["name"]): p for p in tomllib.loads(lock.read_text())["package"]}
    pinned: Dict[str, str] = {}
    pending = [canonical(name) for name in wanted]
    while pending:
        name = pending.pop()
        if name in pinned:
            continue
        if name not in packages:
            raise ConfigurationError(f"{lock} has no package {name!r}: run make lock")
        package = packages[name]
        pinned[name] = package["version"]
        for dependency in package.get("dependencies", []):
            marker = dependency.get("marker", "")
            if "sys_platform == 'win32'" in marker or "platform_system == 'Windows'" in marker:
                continue
            pending.append(canonical(dependency["name"]))
    return [f"{name}=={version}" for name, version in sorted(pinned.items())]


def default_service(backend_name: str) -> str:
    """The service CD deployed last on this backend."""
    from ml_service.util.env_variables import (AzureScoringSettings, OnlineEndpointSettings,
                                               ScoringSettings)

    if backend_name == "azureml":
        return AzureScoringSettings.from_env().aks_service_name
    if backend_name == "azureml-v2":
        return OnlineEndpointSettings.from_env().endpoint_name
    return ScoringSettings.from_env().service_name


def write_zip(out: Path, card_dir: Path, requirements: List[str]) -> Path:
    """The package, written whole or not at all."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as package:
        package.write(PROJECT_ROOT / "ml_service" / "__init__.py", "ml_service/__init__.py")
        for path in sorted(WEBAPP_SOURCE.rglob("*")):
            if path.is_file() and not SKIPPED.search(str(path)):
                package.write(path, str(path.relative_to(PROJECT_ROOT)))
        for path in sorted(card_dir.rglob("*")):
            if path.is_file():
                package.write(path, f"{CARD_FOLDER}/{path.relative_to(card_dir)}")
        package.writestr("requirements.txt", "\n".join(requirements) + "\n")
    os.replace(partial, out)
    return out


def write_key(path: Path, key: Optional[str]) -> bool:
    """The service's key, in a file readable by this user only; nothing (False) when the
    service checks no key (a local one, or one with authentication off)."""
    if not key:
        LOGGER.info("The service checks no key: %s not written", path)
        return False
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key)
    return True


def package(backend: object, model: object, service: str, out: Path,
            key_file: Optional[Path] = None) -> Path:
    """Card, code and requirements of the web app for the service serving the model."""
    from ml_service.util.model_card import build_card

    deployment = backend.get_deployment(service)
    if deployment is None:
        raise DeploymentError(f"no service {service!r} is up: deploy the model first (the CD "
                              "stages before this one do)")
    served = (deployment.model_name, int(deployment.model_version))
    if served != (model.name, int(model.version)):
        LOGGER.warning("%s serves %s version %s, not version %s", service,
                       deployment.model_name, deployment.model_version, model.version)
    requirements = locked_requirements(PROJECT_ROOT / "uv.lock", APP_REQUIREMENTS)
    with tempfile.TemporaryDirectory(prefix="mlops-app-") as folder:
        card = build_card(backend, model, Path(folder) / CARD_FOLDER,
                          scoring_uri=deployment.scoring_uri).parent
        written = write_zip(out, card, requirements)
    if key_file is not None:
        write_key(key_file, deployment.key)
    return written


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the zip to write")
    parser.add_argument("--model_version", type=int, help="default: the production version")
    parser.add_argument("--service", help="the service the app calls (default: the one CD "
                                          "deployed last on this backend)")
    parser.add_argument("--key_file", type=Path, help="write the service's key here (0600)")
    return parser.parse_args(argv)


def main(argv: Optional[list] = None) -> int:
    """Package and print the zip's path."""
    from ml_service.backends import get_backend
    from ml_service.util.cli import run_cli
    from ml_service.util.deploy_local import production_or_version
    from ml_service.util.env_variables import TrainingSettings, load_dotenv_file

    def run() -> int:
        args = parse_args(argv)
        load_dotenv_file()
        training = TrainingSettings.from_env()
        backend = get_backend(training=training)
        model = production_or_version(backend, training.model_name, args.model_version)
        service = args.service or default_service(backend.name)
        print(package(backend, model, service, args.out, args.key_file))
        return 0

    return run_cli(run)


if __name__ == "__main__":
    raise SystemExit(main())
