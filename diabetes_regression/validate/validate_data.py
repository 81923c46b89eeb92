"""Validate Data step: check the training data before it is registered or trained on.

The first step of the training pipeline. Given --data_file_path, it checks that file and
registers it as a new dataset version only if it passed; otherwise it checks the registered
version --dataset_version. The production model's training data (the dataset version in its
tags) is the reference for the schema and distribution-shift checks; without a production
model those two are skipped. The rules are the ``validation`` section of parameters.json.

It logs a report to its run (data_validation/validation_report.json, and a picture of each
shifted feature, data_validation/shift_<feature>.png), writes the dataset version to train on
into --step_output for the train step, and fails with one line naming every problem::

    python diabetes_regression/validate/validate_data.py --step_output out/ \\
        --data_file_path my.csv
"""
import argparse
import csv
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from diabetes_regression.parameters import ValidationParameters, load_parameters
from diabetes_regression.training.train import DataValidationError
from diabetes_regression.validate.validation import ValidationResult, validate_frame
from ml_service.backends import get_backend
from ml_service.backends.base import Backend, DatasetVersion, StepRun
from ml_service.backends.local import read_csv
from ml_service.errors import DatasetNotFoundError
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import TrainingSettings, load_dotenv_file

LOGGER = logging.getLogger(__name__)
NONE = "none"
# The data edge to the train step: which dataset version passed.
EDGE_FILE = "validated_data.json"
# The run artifacts: a folder with the report and the pictures.
ARTIFACT_FOLDER = "data_validation"
REPORT_FILE = "validation_report.json"
# Tags on the pipeline run (the local loop's summary shows the second).
STATUS_TAG = "data_validation"
SUMMARY_TAG = "data_validation_summary"
# Bins of the pictures of a shifted feature.
HISTOGRAM_BINS = 30


class ValidatedDataError(ValueError):
    """The validate step's record is missing or unreadable."""


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the validate step's arguments (the dataset ones are the train step's)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name",
                        help="registered model whose production version is the reference "
                             "(default: MODEL_NAME)")
    parser.add_argument("--dataset_name", help="dataset name (default: DATASET_NAME)")
    parser.add_argument("--dataset_version", default="latest",
                        help="dataset version to check (a number or 'latest')")
    parser.add_argument("--data_file_path", default=NONE,
                        help="CSV file to check, then register as a new dataset version")
    parser.add_argument("--step_output", type=Path,
                        help=f"folder to write {EDGE_FILE} into (the train step's input)")
    parser.add_argument("--run_id", help="pipeline run to join, when not started by one")
    parser.add_argument("--parameters", type=Path, help="parameters.json to use")
    return parser.parse_args(argv)


def given(value: Optional[str]) -> Optional[str]:
    """The argument's value, or None for MLOpsPython's placeholder 'none'."""
    return value if value and value.strip().lower() != NONE else None


def read_data_file(path: Path) -> Tuple[pd.DataFrame, List[str]]:
    """Read a CSV file and its raw header row (pandas renames a repeated column name).

    Register the file with this frame (``register_dataset(..., frame=frame)``) so that it
    is not parsed again."""
    frame = read_csv(path)
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    return frame, header


def find_reference(backend: Backend,
                   model_name: str) -> Tuple[Optional[pd.DataFrame], Dict[str, Any]]:
    """The production model's training data and what it is; None with the reason if none."""
    production = backend.get_production_model(model_name)
    if production is None:
        return None, {"reason": "no production model to compare with"}
    info: Dict[str, Any] = {"model_name": production.name,
                            "model_version": production.version}
    name = production.tags.get("dataset_name")
    version = production.tags.get("dataset_version")
    if not name or not version:
        info["reason"] = "the production model has no dataset_name/dataset_version tags"
        return None, info
    info.update({"dataset_name": name, "dataset_version": version})
    dataset = backend.find_dataset(name, version)
    if dataset is None:
        info["reason"] = f"dataset {name} version {version} is no longer registered"
        return None, info
    reference = backend.load_dataset(dataset)
    info["rows"] = len(reference)
    return reference, info


def histogram_density(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The density of the values over the bins (what ``hist(density=True)`` draws), counted
    on every value."""
    counts, _ = np.histogram(values, bins=edges)
    return counts / (values.size * np.diff(edges))


def plot_shift(values: np.ndarray, reference: np.ndarray, feature: str,
               figures: Dict[str, Any], path: Path) -> Path:
    """Draw the feature's distribution in the new and the production data into a PNG file.

    The histograms are counted with numpy on every row and drawn as HISTOGRAM_BINS steps
    each, so a million rows cost matplotlib no more than a hundred."""
    # The Figure API needs no pyplot and no global backend: it renders with Agg.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.subplots()
    low = min(values.min(), reference.min())
    high = max(values.max(), reference.max())
    edges = np.histogram_bin_edges([low, high], bins=HISTOGRAM_BINS)
    axes.stairs(histogram_density(reference, edges), edges, fill=True, alpha=0.5,
                label=f"production model's data ({reference.size} rows)")
    axes.stairs(histogram_density(values, edges), edges, fill=True, alpha=0.5,
                label=f"new data ({values.size} rows)")
    axes.set_title(f"{feature}: PSI {figures['psi']:.3g}, KS {figures['ks']:.3g} "
                   f"(p={figures['ks_pvalue']:.2g})")
    axes.set_xlabel(feature)
    axes.set_ylabel("density")
    axes.legend()
    figure.savefig(path, format="png", dpi=80)
    return path


def write_report(folder: Path, result: ValidationResult, rules: ValidationParameters,
                 context: Dict[str, Any], frame: pd.DataFrame,
                 reference: Optional[pd.DataFrame]) -> List[Path]:
    """Write the JSON report and a picture per shifted feature into ``folder``; return them."""
    report = {**result.report(rules), **context}
    path = folder / REPORT_FILE
    path.write_text(json.dumps(report, indent=2, allow_nan=False), encoding="utf-8")
    written = [path]
    figures = result.check("distribution_shift").details.get("features", {})
    frame = frame.loc[:, ~frame.columns.duplicated()]
    for feature in result.shifted_features():
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", feature)
        written.append(plot_shift(frame[feature].to_numpy(dtype=float),
                                  reference[feature].to_numpy(dtype=float), feature,
                                  figures[feature], folder / f"shift_{safe}.png"))
    return written


def log_report(run: StepRun, result: ValidationResult, rules: ValidationParameters,
               context: Dict[str, Any], frame: pd.DataFrame,
               reference: Optional[pd.DataFrame]) -> None:
    """Write the report and pictures, and log them as artifacts of the step's run."""
    with tempfile.TemporaryDirectory(prefix="data-validation-") as folder:
        for path in write_report(Path(folder), result, rules, context, frame, reference):
            run.log_artifact(path, ARTIFACT_FOLDER)


OUTCOMES = {"pass": "passed", "warn": "passed with warnings", "fail": "failed"}
COUNTED = {"pass": "passed", "warn": "warned", "fail": "failed", "skipped": "skipped"}


def summarise(result: ValidationResult, data: str, reference: Dict[str, Any]) -> str:
    """One line: the outcome, the data, the checks counted by status."""
    counts: Dict[str, int] = {}
    for check in result.checks:
        counts[check.status] = counts.get(check.status, 0) + 1
    counted = ", ".join(f"{n} {COUNTED[status]}" for status, n in counts.items())
    line = f"{OUTCOMES[result.status]}: {data}, checks: {counted}"
    if "reason" in reference:
        line += f" (schema and shift: {reference['reason']})"
    return line


def write_validated_data(folder: Path, dataset: DatasetVersion,
                         result: ValidationResult) -> Path:
    """Write the dataset version that passed into the step output, whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / EDGE_FILE
    document = {"dataset_name": dataset.name, "dataset_version": dataset.version,
                "status": result.status, "warnings": result.warnings}
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{EDGE_FILE}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    return target


def read_validated_data(folder: Path) -> Tuple[str, int]:
    """The dataset name and version the validate step passed, from its output folder."""
    path = Path(folder) / EDGE_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ValidatedDataError(f"no {EDGE_FILE} in {folder}: the validate step writes it "
                                 "when the data passed; pass its output folder") from err
    except (OSError, ValueError) as err:
        raise ValidatedDataError(f"{path} is not readable JSON: {err}") from err
    if not isinstance(document, dict) or not isinstance(document.get("dataset_name"), str) \
            or isinstance(document.get("dataset_version"), bool) \
            or not isinstance(document.get("dataset_version"), int):
        raise ValidatedDataError(f"{path}: expected dataset_name (text) and dataset_version "
                                 "(a number); run the validate step again")
    return document["dataset_name"], document["dataset_version"]


def load_data(backend: Backend, dataset_name: str, version: str,
              file_path: Optional[str]) -> Tuple[pd.DataFrame, Optional[List[str]],
                                                 Optional[DatasetVersion], str]:
    """The data to check: (frame, raw header or None, its dataset version if registered,
    a description)."""
    if file_path and Path(file_path).is_file():
        frame, header = read_data_file(Path(file_path))
        return frame, header, None, f"file {file_path}"
    if file_path:
        # A path on the Azure ML datastore: read as it is, registered only once it passed.
        return backend.read_data_file(file_path), None, None, f"file {file_path}"
    dataset = backend.find_dataset(dataset_name, version)
    if dataset is None:
        raise DatasetNotFoundError(
            f"dataset {dataset_name!r} version {version!r} is not registered; register it "
            "(make run registers the sample) or pass --data_file_path")
    return (backend.load_dataset(dataset), None, dataset,
            f"dataset {dataset.name} version {dataset.version}")


def rules_as_params(rules: ValidationParameters) -> Dict[str, Any]:
    """The rules as flat run parameters (``validation.shift.threshold`` ...)."""
    shift = rules.shift
    return {"validation.min_rows": rules.min_rows,
            "validation.min_target_std": rules.min_target_std,
            "validation.max_target_correlation": rules.max_target_correlation,
            "validation.shift.statistic": shift.statistic,
            "validation.shift.threshold": shift.threshold,
            "validation.shift.bins": shift.bins,
            "validation.shift.action": shift.action}


def validate(args: argparse.Namespace) -> int:
    """The step: load the data and the reference, check, report, register if it passed."""
    load_dotenv_file()
    settings = TrainingSettings.from_env()
    rules = load_parameters(args.parameters).validation
    model_name = args.model_name or settings.model_name
    dataset_name = args.dataset_name or settings.dataset_name
    file_path = given(args.data_file_path)
    backend = get_backend(training=settings)
    with backend.step_run("validate", run_id=args.run_id) as run:
        run.log_params(rules_as_params(rules))
        frame, header, dataset, data = load_data(backend, dataset_name, args.dataset_version,
                                                 file_path)
        reference, reference_info = find_reference(backend, model_name)
        if reference is None:
            LOGGER.info("Schema and shift not checked: %s", reference_info["reason"])
        result = validate_frame(frame, rules, reference, header)
        context = {"data": data, "reference": reference_info}
        log_report(run, result, rules, context, frame, reference)
        summary = summarise(result, data, reference_info)
        run.set_pipeline_tags({STATUS_TAG: result.status, SUMMARY_TAG: summary})
        for warning in result.warnings:
            LOGGER.warning("Data warning: %s", warning)
        if result.problems:
            raise DataValidationError("invalid data: " + "; ".join(result.problems))
        if dataset is None:
            # The frame read above: the file is not parsed a second time.
            dataset = backend.register_dataset(dataset_name, Path(file_path),
                                               description="registered by the validate step "
                                                           "after the data passed",
                                               frame=frame)
        if args.step_output is not None:
            write_validated_data(args.step_output, dataset, result)
    LOGGER.info("Data %s; the train step uses dataset %s version %d", summary, dataset.name,
                dataset.version)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of the validate step."""
    args = parse_args(argv)
    return run_cli(lambda: validate(args))


if __name__ == "__main__":
    sys.exit(main())
