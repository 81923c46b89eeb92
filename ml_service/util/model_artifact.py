"""Hand the model a CI build registered to the CD pipeline, as a build artifact.

    python -m ml_service.util.model_artifact publish --output_dir DIR [--build_id ID]
    python -m ml_service.util.model_artifact fetch --artifact_dir DIR

``publish`` looks for the model version the build registered (tag BuildId) and
writes ``model.json`` to the folder, with the model file beside it. If the
evaluation found the new model no better there is none: ``model.json`` then
says ``"registered": false`` with the reason, and the command still exits 0.
``fetch`` reads ``model.json`` back and checks the version is registered. Both
set pipeline variables for the next steps (MODEL_REGISTERED, and MODEL_NAME and
MODEL_VERSION when there is a model), in Azure DevOps (``##vso``) and GitHub
Actions (``$GITHUB_OUTPUT``) form, so deployment steps run only for a new model.
"""
import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Dict, Mapping, Optional

from ml_service.backends import get_backend
from ml_service.backends.base import Backend, ModelVersion
from ml_service.errors import ConfigurationError, ModelNotFoundError
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import TrainingSettings, load_dotenv_file

LOGGER = logging.getLogger(__name__)
MODEL_JSON = "model.json"
# The pipeline variables this script sets (read by ml_service.util.check_ci_files).
PIPELINE_VARIABLES = ("MODEL_REGISTERED", "MODEL_NAME", "MODEL_VERSION")


def find_build_model(backend: Backend, name: str, build_id: str) -> Optional[ModelVersion]:
    """The model version registered by a build (tag BuildId), or None."""
    found = [m for m in backend.list_models(name) if m.tags.get("BuildId") == build_id]
    return found[-1] if found else None


def set_variables(values: Mapping[str, str], env: Mapping[str, str] = os.environ) -> None:
    """Pass values to the next pipeline steps: Azure DevOps logging commands and GitHub outputs."""
    for name, value in values.items():
        print(f"##vso[task.setvariable variable={name};isOutput=true]{value}")
        print(f"##vso[task.setvariable variable={name}]{value}")
    github_output = env.get("GITHUB_OUTPUT")
    if github_output:
        with open(github_output, "a", encoding="utf-8") as out:
            out.writelines(f"{name}={value}\n" for name, value in values.items())


def write_artifact(backend: Backend, model: Optional[ModelVersion], folder: Path,
                   reason: str = "") -> Path:
    """Write model.json (and the model file, if there is a model); return model.json."""
    folder.mkdir(parents=True, exist_ok=True)
    record: Dict[str, object] = {"registered": False, "reason": reason}
    if model is not None:
        model_file = backend.download_model(model, folder)
        record = {"registered": True, "name": model.name, "version": model.version,
                  "run_id": model.run_id, "file": model_file.name, "tags": dict(model.tags)}
    tmp = folder / (MODEL_JSON + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    return tmp.replace(folder / MODEL_JSON)


def read_artifact(folder: Path) -> Dict[str, object]:
    """Read model.json from an artifact folder, or raise naming what is wrong."""
    path = folder / MODEL_JSON
    try:
        record = json.loads(path.read_text())
        if record.get("registered", True):
            record["version"] = int(record["version"])
            str(record["name"])
    except FileNotFoundError as err:
        raise ModelNotFoundError(f"no {MODEL_JSON} in {folder}: the CI build registered no "
                                 "model, or the artifact was not downloaded there") from err
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigurationError(f"{path} is not a model record: {err}") from err
    return record


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the action and its folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", required=True)
    publish = actions.add_parser("publish", help="write the build's model to a folder")
    publish.add_argument("--output_dir", type=Path, required=True)
    publish.add_argument("--build_id", help="CI build id (default: BUILD_BUILDID)")
    fetch = actions.add_parser("fetch", help="read the model record from an artifact")
    fetch.add_argument("--artifact_dir", type=Path, required=True)
    return parser.parse_args(argv)


def publish_or_fetch(args: argparse.Namespace) -> int:
    """Carry out the action."""
    load_dotenv_file()
    training = TrainingSettings.from_env()
    backend = get_backend(training=training)
    if args.action == "fetch":
        record = read_artifact(args.artifact_dir)
        if not record.get("registered", True):
            LOGGER.info("Not registered: the training build registered no new model (%s); "
                        "nothing to deploy", record.get("reason", "no reason recorded"))
            set_variables({"MODEL_REGISTERED": "false"})
            return 0
        model = backend.get_model(str(record["name"]), int(record["version"]))
        LOGGER.info("Model artifact: %s version %d", model.name, model.version)
        set_variables({"MODEL_REGISTERED": "true", "MODEL_NAME": model.name,
                       "MODEL_VERSION": str(model.version)})
        return 0
    build_id = training.build_version(args.build_id, "it names the build whose model to "
                                                     "publish", option="--build_id")
    model = find_build_model(backend, training.model_name, build_id)
    if model is None:
        reason = (f"build {build_id} registered no new {training.model_name}: the evaluation "
                  "found it no better than production")
        write_artifact(backend, None, args.output_dir, reason)
        LOGGER.info("Not registered: %s", reason)
        set_variables({"MODEL_REGISTERED": "false"})
        return 0
    path = write_artifact(backend, model, args.output_dir)
    LOGGER.info("Model %s version %d written to %s", model.name, model.version, path.parent)
    set_variables({"MODEL_REGISTERED": "true", "MODEL_NAME": model.name,
                   "MODEL_VERSION": str(model.version)})
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of the model artifact script."""
    args = parse_args(argv)
    return run_cli(lambda: publish_or_fetch(args))


if __name__ == "__main__":
    sys.exit(main())
