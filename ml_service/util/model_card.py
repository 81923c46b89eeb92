"""Write the model card the web app shows: what the production model is, takes and scored.

    python -m ml_service.util.model_card --out DIR [--model_version N]
                                         [--evaluation_dir DIR] [--monitoring_dir DIR]

The card is a folder: ``card.json`` and the pictures it names. ``card.json`` holds the
model's name and version, when it became production, its metrics and the dataset version it
was trained on (its registry tags), what it answers (a value, or a probability and a label),
the request limit (``scoring.max_rows``), its input fields, and the evaluation and monitoring
reports when there are ones. The input fields come from the model itself: the feature names
it was saved with (its MLflow metadata), the types of its MLflow signature, and an example
value each from the model package's scoring sample (else from the model's input example), so
a model swapped in gets its own form and nothing here names a column.

On the local backend the evaluation report is the evaluate step's of the pipeline run that
registered the model, and the monitoring report the local store's latest for that version.
On Azure ML, pass the folders you downloaded (``--evaluation_dir``, ``--monitoring_dir``).
The web app (ml_service/webapp) reads the card and never imports the model package, MLflow or
an SDK, so it runs on a small App Service plan.
"""
import argparse
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ml_service.errors import ConfigurationError

LOGGER = logging.getLogger(__name__)
CARD_JSON = "card.json"
PICTURES = "pictures"
NUMERIC = {"float64", "float32", "double", "float", "int64", "int32", "long", "integer"}


def input_fields(metadata: Mapping[str, Any], signature: Optional[Mapping[str, Any]],
                 width: int, example: Sequence[Any]) -> List[Dict[str, Any]]:
    """One field per feature: its name, whether it is a whole number, and an example."""
    names = [str(name) for name in (metadata or {}).get("feature_names") or []]
    if len(names) != width:
        names = [f"feature_{index + 1}" for index in range(width)]
    dtypes = signature_dtypes(signature, width)
    return [{"name": name, "type": "integer" if dtype.startswith(("int", "long")) else "number",
             "example": example[index] if index < len(example) else 0}
            for index, (name, dtype) in enumerate(zip(names, dtypes))]


def signature_dtypes(signature: Optional[Mapping[str, Any]], width: int) -> List[str]:
    """The input dtypes of an MLflow signature (a tensor or one per column), one per feature;
    "float64" where the signature does not say."""
    specs = (signature or {}).get("inputs") or []
    if isinstance(specs, str):
        specs = json.loads(specs)
    if len(specs) == 1 and specs[0].get("type") == "tensor":
        return [str(specs[0]["tensor-spec"]["dtype"])] * width
    if len(specs) == width:
        return [str(spec.get("type", "float64")) for spec in specs]
    return ["float64"] * width


def model_description(model_dir: Path) -> Dict[str, Any]:
    """The feature names, the signature and the first input example of an MLflow model."""
    from mlflow.models import Model

    found = Model.load(str(model_dir))
    example: List[Any] = []
    example_file = model_dir / "input_example.json"
    if example_file.is_file():
        loaded = json.loads(example_file.read_text())
        rows = loaded.get("inputs", loaded.get("data", [])) if isinstance(loaded, dict) \
            else loaded
        example = list(rows[0]) if rows else []
    return {"metadata": found.metadata or {},
            "signature": found.signature.to_dict() if found.signature else None,
            "example": example}


def copy_pictures(source: Optional[Path], report_json: str, target: Path,
                  prefix: str) -> Optional[Dict[str, Any]]:
    """A report's JSON and its PNG pictures, copied into the card; None without a report."""
    if source is None or not (source / report_json).is_file():
        return None
    report = json.loads((source / report_json).read_text())
    pictures = []
    for picture in sorted(source.glob("*.png")):
        name = f"{prefix}-{picture.name}"
        shutil.copy2(picture, target / PICTURES / name)
        pictures.append(name)
    return {"report": report, "pictures": pictures}


def write_card(target: Path, card: Mapping[str, Any]) -> Path:
    """card.json, written whole or not at all."""
    path = target / CARD_JSON
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(card, indent=2, default=str))
    os.replace(partial, path)
    return path


def build_card(backend: Any, model: Any, out: Path, evaluation_dir: Optional[Path] = None,
               monitoring_dir: Optional[Path] = None, scoring_uri: Optional[str] = None
               ) -> Path:
    """Write the card of one model version into ``out`` (replaced whole); return card.json.
    ``scoring_uri``: where the version is served, for a web app packaged with the card."""
    from diabetes_regression.evaluate.report import REPORT_JSON
    from diabetes_regression.parameters import load_parameters
    from diabetes_regression.training.model_files import find_model, load_model
    from diabetes_regression.training.prediction import output_kind
    from ml_service.monitoring.monitor import REPORT_JSON as MONITORING_JSON

    scoring = load_parameters().scoring
    out = Path(out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / PICTURES).mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="mlops-card-") as folder:
        model_dir = find_model(backend.download_model(model, Path(folder)))
        loaded = load_model(model_dir)
        described = model_description(model_dir) if model_dir.is_dir() else {
            "metadata": {}, "signature": None, "example": []}
    width = int(loaded.n_features_in_)
    rows = scoring.sample.get("data") or []
    example = rows[0] if rows and len(rows[0]) == width else described["example"]
    tags = dict(model.tags)
    metric_names = [name for name in tags if _is_number(tags[name]) and name not in (
        "dataset_version",)]
    card = {
        "model": model.name, "version": int(model.version),
        "production_since": tags.get("production_since"),
        "dataset": {"name": tags.get("dataset_name"), "version": tags.get("dataset_version")},
        "metrics": {name: float(tags[name]) for name in sorted(metric_names)},
        "kind": output_kind(loaded), "max_rows": scoring.max_rows,
        "fields": input_fields(described["metadata"], described["signature"], width, example),
        "evaluation": copy_pictures(evaluation_dir or local_evaluation_dir(backend, model),
                                    REPORT_JSON, staging, "evaluation"),
        "monitoring": copy_pictures(monitoring_dir or local_monitoring_dir(backend, model),
                                    MONITORING_JSON, staging, "monitoring"),
        **({"scoring_uri": scoring_uri} if scoring_uri else {}),
    }
    write_card(staging, card)
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)
    return out / CARD_JSON


def _is_number(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def local_evaluation_dir(backend: Any, model: Any) -> Optional[Path]:
    """The evaluate step's report of the pipeline run that registered the model (local)."""
    from ml_service.backends.local import LocalBackend

    if not isinstance(backend, LocalBackend) or not model.run_id:
        return None
    from ml_service.local_loop import find_report

    found = find_report(backend, model.run_id)
    return Path(found) if found else None


def local_monitoring_dir(backend: Any, model: Any) -> Optional[Path]:
    """The local store's latest monitoring report of this model version, if any."""
    from ml_service.backends.local import LocalBackend
    from ml_service.monitoring.monitor import EXPERIMENT, REPORT_FOLDER

    if not isinstance(backend, LocalBackend):
        return None
    reports = LocalBackend(backend.root, EXPERIMENT)
    experiment = reports.client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return None
    runs = reports.client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.model = '{model.name}' and tags.model_version = "
                      f"'{model.version}'", order_by=["attributes.start_time DESC"],
        max_results=1)
    if not runs:
        return None
    folder = reports.artifact_path(runs[0].info.run_id, REPORT_FOLDER)
    return folder if folder.is_dir() else None


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the card's folder (replaced whole)")
    parser.add_argument("--model_version", type=int,
                        help="the model version (default: production)")
    parser.add_argument("--evaluation_dir", type=Path,
                        help="the evaluation report's folder (default: found in the local "
                             "store)")
    parser.add_argument("--monitoring_dir", type=Path,
                        help="the latest monitoring report's folder (default: found in the "
                             "local store)")
    return parser.parse_args(argv)


def main(argv: Optional[list] = None) -> int:
    """Write the card and print card.json's path."""
    from ml_service.backends import get_backend
    from ml_service.util.cli import run_cli
    from ml_service.util.deploy_local import production_or_version
    from ml_service.util.env_variables import TrainingSettings, load_dotenv_file

    def write() -> int:
        args = parse_args(argv)
        for folder in (args.evaluation_dir, args.monitoring_dir):
            if folder is not None and not folder.is_dir():
                raise ConfigurationError(f"{folder}: no such folder; pass the folder that "
                                         "holds the report's JSON and pictures")
        load_dotenv_file()
        training = TrainingSettings.from_env()
        backend = get_backend(training=training)
        model = production_or_version(backend, training.model_name, args.model_version)
        print(build_card(backend, model, Path(args.out), args.evaluation_dir,
                         args.monitoring_dir))
        return 0

    return run_cli(write)


if __name__ == "__main__":
    raise SystemExit(main())
