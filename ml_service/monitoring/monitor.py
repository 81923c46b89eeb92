"""Compare what a deployed model saw with the data it was trained on, and report drift.

    python -m ml_service.monitoring.monitor [--service NAME] [--model_version N]
                                            [--since YYYY-MM-DD] [--until YYYY-MM-DD]
                                            [--source local|appinsights|mdc]
                                            [--workspace_id ID] [--collected_dir DIR]
                                            [--report_dir DIR] [--register] [--retrain]

Reads the requests the local service collected (ml_service/monitoring/collector.py) for the
production model version (or ``--model_version``) between ``--since`` and ``--until`` (UTC
days, both included; every day by default), and compares them with the dataset version that
model was trained on (its ``dataset_name`` / ``dataset_version`` tags):

- each feature with the Validate Data step's shift statistics (PSI, the KS distance and its
  p-value; one implementation, diabetes_regression/validate/validation.py), under the rule
  ``monitoring.shift`` of parameters.json (``validation.shift`` by default);
- the predictions with the model's own predictions on its test rows, under the same rule;
- values outside the training data's range and missing values, per feature; rows whose width
  is not the model's (schema violations).

The report is an MLflow run in the ``monitoring`` experiment: ``monitoring_report.json``
(every figure), a PNG per drifted feature (and of the predictions when they drifted), and
``monitoring_report.html``, one self-contained page; or the same files in ``--report_dir``.
A summary is printed.

``--source appinsights`` reads the records the service logged to Application Insights on
Azure ML v1 instead (appinsights.py; ``--workspace_id`` or LOG_ANALYTICS_WORKSPACE_ID names
its Log Analytics workspace); ``--source mdc`` reads what SDK v2's data collector kept for an
online deployment, downloaded to ``--collected_dir`` (mdc.py) or, without it on the azureml-v2
backend, fetched from the workspace's datastore for the deployment that serves the endpoint
``--service`` (default ONLINE_ENDPOINT_NAME; mdc_download.py). With an Azure ML backend the
model and its dataset come from the workspace, and the report goes to ``--report_dir``.

``--register`` registers the window's collected rows as the next version of the dataset
``<model>_scoring_inputs`` (the model name without its file extension), for labelling and
retraining. ``--retrain``: when drift is found, the training pipeline runs as `make run`
runs it, on the latest version of the dataset the model was trained on, and its decision is
printed.

Exit codes: 0 no drift, 3 drift found, 1 error (nothing collected in the window is one, and
so are fewer rows than ``monitoring.min_rows``, below which the statistics are noise).
"""
import argparse
import base64
import dataclasses
import datetime as dt
import html
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from diabetes_regression.evaluate.report import new_figure, png_bytes, write_atomically
from diabetes_regression.parameters import ShiftRule, load_parameters
from diabetes_regression.training.model_files import find_model, load_model
from diabetes_regression.training.prediction import RESULT_KEY, output_kind, predict
from diabetes_regression.training.train import TARGET_COLUMN, split_data
from diabetes_regression.validate.validation import shift_statistics
from ml_service.backends.base import ModelVersion
from ml_service.errors import MLOpsError
from ml_service.monitoring import appinsights
from ml_service.monitoring.collected import Collected, read_collected
from ml_service.monitoring.mdc import read_mdc
from ml_service.util.cli import run_cli
from ml_service.util.deploy_local import production_or_version
from ml_service.util.env_variables import (BackendSettings, OnlineEndpointSettings,
                                           ScoringSettings, TrainingSettings)

LOGGER = logging.getLogger(__name__)
EXIT_DRIFT = 3
LOCAL, APPINSIGHTS, MDC = "local", "appinsights", "mdc"
EXPERIMENT = "monitoring"
REPORT_FOLDER = "monitoring"
REPORT_JSON = "monitoring_report.json"
REPORT_HTML = "monitoring_report.html"
PREDICTIONS = "predictions"
BINS = 30


class MonitoringError(MLOpsError):
    """The monitor cannot compare: no model, no training data, or nothing collected."""


# -- pure parts: collected rows, figures, pictures, the page ---------------------------------
def collected_rows(records: Sequence[Mapping[str, Any]], width: int
                   ) -> Tuple[np.ndarray, np.ndarray, int]:
    """The collected input rows of the model's width, their predictions, and how many rows
    had another width (schema violations, left out)."""
    rows: List[list] = []
    predictions: List[float] = []
    violations = 0
    for record in records:
        inputs = record["inputs"]
        outputs = record["outputs"].get(RESULT_KEY, [])
        for index, row in enumerate(inputs):
            if not isinstance(row, list) or len(row) != width or index >= len(outputs):
                violations += 1
                continue
            rows.append(row)
            predictions.append(outputs[index])
    matrix = np.array(rows, dtype=float).reshape(len(rows), width)
    return matrix, np.array(predictions, dtype=float), violations


def drift_figures(current: pd.DataFrame, reference: pd.DataFrame, predictions: np.ndarray,
                  reference_predictions: np.ndarray, rule: ShiftRule) -> Dict[str, Any]:
    """Every figure of the report (JSON-ready)."""
    features: Dict[str, Dict[str, Any]] = {}
    for column in reference.columns:
        values = current[column].to_numpy(dtype=float)
        known = reference[column].to_numpy(dtype=float)
        present, known = values[~np.isnan(values)], known[~np.isnan(known)]
        figures = (shift_statistics(present, known, rule) if present.size and known.size
                   else {"psi": None, "ks": None, "ks_pvalue": None, "shifted": False})
        low, high = (float(known.min()), float(known.max())) if known.size else (None, None)
        outside = int(((present < low) | (present > high)).sum()) if known.size else 0
        features[str(column)] = {**figures, "missing": int(np.isnan(values).sum()),
                                 "out_of_range": outside, "training_range": [low, high],
                                 "mean": _mean(present), "training_mean": _mean(known)}
    prediction = shift_statistics(predictions, reference_predictions, rule)
    drifted = [name for name, figures in features.items() if figures["shifted"]]
    return {"statistic": rule.statistic, "threshold": rule.threshold, "bins": rule.bins,
            "rows": int(len(current)), "training_rows": int(len(reference)),
            "features": features, "predictions": {**prediction,
                                                  "mean": _mean(predictions),
                                                  "test_mean": _mean(reference_predictions)},
            "drifted_features": drifted,
            "drift": bool(drifted or prediction["shifted"])}


def _mean(values: np.ndarray) -> Optional[float]:
    return float(np.mean(values)) if values.size else None


def draw_distributions(name: str, current: np.ndarray, reference: np.ndarray,
                       statistic: str, value: float) -> bytes:
    """A PNG of a feature's (or the predictions') distribution now and at training, as
    densities over the same bins."""
    figure, (axes,) = new_figure(1)
    both = np.concatenate([current, reference])
    edges = np.histogram_bin_edges(both, bins=BINS)
    axes.hist(reference, bins=edges, density=True, alpha=0.5, label="training",
              color="tab:blue")
    axes.hist(current, bins=edges, density=True, alpha=0.5, label="collected",
              color="tab:orange")
    axes.set_title(f"{name}: {statistic} {value:.3g}")
    axes.set_xlabel(name)
    axes.set_ylabel("density")
    axes.legend()
    return png_bytes(figure)


def picture_name(name: str) -> str:
    """A file name for a feature's picture (any column name)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return f"drift_{safe}.png"


def html_page(report: Mapping[str, Any], pictures: Mapping[str, bytes]) -> str:
    """One page, readable offline: the summary, every figure, the pictures inline."""
    statistic = report["statistic"]
    rows = "".join(
        f"<tr{' class=drift' if f['shifted'] else ''}><td>{html.escape(name)}</td>"
        f"<td>{_show(f[statistic])}</td><td>{_show(f['ks_pvalue'])}</td>"
        f"<td>{f['out_of_range']}</td><td>{f['missing']}</td>"
        f"<td>{_show(f['mean'])}</td><td>{_show(f['training_mean'])}</td>"
        f"<td>{'yes' if f['shifted'] else 'no'}</td></tr>"
        for name, f in report["features"].items())
    prediction = report["predictions"]
    images = "".join(
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,"
        f"{base64.b64encode(data).decode('ascii')}'><figcaption>{html.escape(name)}"
        "</figcaption></figure>" for name, data in pictures.items())
    verdict = "Drift found" if report["drift"] else "No drift"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{verdict}: {html.escape(report['model'])} v{html.escape(str(report['version']))}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}td:first-child{{text-align:left}}
tr.drift{{background:#fde2e1}}figure{{display:inline-block;margin:1em}}</style></head><body>
<h1>{verdict}</h1>
<p>Service <b>{html.escape(report['service'])}</b>, model <b>{html.escape(report['model'])}</b>
version <b>{html.escape(str(report['version']))}</b>, {report['rows']} collected rows from
{report['requests']} requests ({html.escape(report['window'])}) against {report['training_rows']}
training rows of {html.escape(report['dataset'])}. A feature drifts when its {statistic} is over
{report['threshold']:g}. Schema violations: {report['schema_violations']}.</p>
<table><tr><th>feature</th><th>{statistic}</th><th>KS p-value</th><th>out of range</th>
<th>missing</th><th>mean</th><th>training mean</th><th>drifted</th></tr>{rows}
<tr{' class=drift' if prediction['shifted'] else ''}><td><i>predictions</i></td>
<td>{_show(prediction[statistic])}</td><td>{_show(prediction['ks_pvalue'])}</td><td></td><td></td>
<td>{_show(prediction['mean'])}</td><td>{_show(prediction['test_mean'])}</td>
<td>{'yes' if prediction['shifted'] else 'no'}</td></tr></table>
{images}
</body></html>
"""


def _show(value: Any) -> str:
    return "" if value is None else f"{value:.4g}"


def summary(report: Mapping[str, Any], where: str) -> str:
    """The lines printed at the end."""
    statistic = report["statistic"]
    drifted = ", ".join(f"{name} ({statistic} {report['features'][name][statistic]:.3g})"
                        for name in report["drifted_features"]) or "none"
    prediction = report["predictions"]
    return "\n".join([
        f"monitor: {'DRIFT' if report['drift'] else 'no drift'} for {report['model']} "
        f"v{report['version']} on {report['service']} ({report['window']})",
        f"  rows: {report['rows']} from {report['requests']} requests "
        f"(schema violations: {report['schema_violations']}); training rows: "
        f"{report['training_rows']}",
        f"  features drifted ({statistic} > {report['threshold']:g}): {drifted}",
        f"  predictions: {statistic} {prediction[statistic]:.3g}"
        f"{' (drifted)' if prediction['shifted'] else ''}",
        f"  report: {where}"])


def write_report(folder: Path, report: Mapping[str, Any], current: pd.DataFrame,
                 reference: pd.DataFrame, predictions: np.ndarray,
                 reference_predictions: np.ndarray) -> List[Path]:
    """The JSON, the pictures of what drifted and the page, in ``folder``."""
    statistic = report["statistic"]
    pictures: Dict[str, bytes] = {}
    for name in report["drifted_features"]:
        pictures[name] = draw_distributions(
            name, current[name].dropna().to_numpy(dtype=float),
            reference[name].dropna().to_numpy(dtype=float), statistic,
            report["features"][name][statistic])
    if report["predictions"]["shifted"]:
        pictures[PREDICTIONS] = draw_distributions(
            PREDICTIONS, predictions, reference_predictions, statistic,
            report["predictions"][statistic])
    files = [write_atomically(folder / picture_name(name), data)
             for name, data in pictures.items()]
    document = {**report, "pictures": {name: picture_name(name) for name in pictures}}
    files.append(write_atomically(folder / REPORT_JSON,
                                  json.dumps(document, indent=2).encode("utf-8")))
    files.append(write_atomically(folder / REPORT_HTML,
                                  html_page(report, pictures).encode("utf-8")))
    return files


# -- the parts that read the store -----------------------------------------------------------
def training_frame(backend: Any, model: ModelVersion) -> Tuple[str, pd.DataFrame]:
    """The dataset version the model was trained on (its tags), loaded."""
    name, version = model.tags.get("dataset_name"), model.tags.get("dataset_version")
    if not name or not version:
        raise MonitoringError(f"{model.name} v{model.version} has no dataset_name / "
                              "dataset_version tags (it was not trained by the pipeline): "
                              "nothing to compare with")
    dataset = backend.find_dataset(name, version)
    if dataset is None:
        raise MonitoringError(f"{model.name} v{model.version} was trained on dataset {name} "
                              f"version {version}, which is not registered here")
    return f"{name} v{version}", backend.load_dataset(dataset)


def window_text(since: Optional[dt.date], until: Optional[dt.date]) -> str:
    """The window as the summary says it."""
    return f"{since.isoformat() if since else 'first day'} to " \
           f"{until.isoformat() if until else 'today'}"


def check_options(args: argparse.Namespace, backend_kind: str) -> None:
    """Refuse, before any work, what this backend and source cannot do."""
    if backend_kind != "local":
        wanted = (("--source appinsights (SDK v1) or mdc (SDK v2)",
                   args.source in (APPINSIGHTS, MDC)),
                  ("--report_dir", bool(args.report_dir)))
        needed = [option for option, given in wanted if not given]
        if needed:
            raise MonitoringError(f"MLOPS_BACKEND={backend_kind}: the records are in "
                                  "Application Insights or the data collector's blobs and the "
                                  "report goes to a folder: pass " + " and ".join(needed))
        if args.retrain:
            raise MonitoringError(f"MLOPS_BACKEND={backend_kind}: --retrain runs the local "
                                  "pipeline; on Azure ML, run ml_service.pipelines."
                                  "run_train_pipeline on exit code 3 (the scheduled pipelines "
                                  "do)")
    if args.source == APPINSIGHTS and not workspace_id(args):
        raise MonitoringError(f"--source appinsights needs the Log Analytics workspace id of "
                              f"the service's Application Insights: --workspace_id or "
                              f"{appinsights.WORKSPACE_VARIABLE}")
    if args.collected_dir and args.source != MDC:
        raise MonitoringError("--collected_dir is the data collector's folder of one online "
                              "deployment: pass it with --source mdc")
    if fetches_mdc(args) and backend_kind != "azureml-v2":
        raise MonitoringError("--source mdc reads the data collector's files of one online "
                              "deployment: pass --collected_dir, the folder downloaded from the "
                              "workspace's blob store (modelDataCollector/<endpoint>/"
                              "<deployment>/), or set MLOPS_BACKEND=azureml-v2 to fetch them")


def workspace_id(args: argparse.Namespace) -> str:
    """The Log Analytics workspace to query."""
    return (args.workspace_id or os.environ.get(appinsights.WORKSPACE_VARIABLE, "")).strip()


def collected_records(args: argparse.Namespace, backend: Any, service: str,
                      model: Any) -> Collected:
    """The window's records, from the local store, Application Insights or the data
    collector's files (whose records are the deployment's, so the model's)."""
    if fetches_mdc(args):
        return fetch_mdc(args, backend, service, model)
    if args.source == MDC:
        return read_mdc(Path(args.collected_dir), model.name, model.version, args.since,
                        args.until)
    if args.source == APPINSIGHTS:
        return appinsights.read_app_insights(appinsights.logs_client(), workspace_id(args),
                                             args.since, args.until, service)
    return read_collected(backend.collected_dir(), service, args.since, args.until)


def fetches_mdc(args: argparse.Namespace) -> bool:
    """Whether the data collector's files are fetched from the workspace (--source mdc
    without --collected_dir)."""
    return args.source == MDC and not args.collected_dir


def default_service(args: argparse.Namespace) -> str:
    """The service judged without --service: the production online endpoint when the data
    collector's files are fetched, else the local service."""
    if fetches_mdc(args):
        return OnlineEndpointSettings.from_env().endpoint_name
    return ScoringSettings.from_env().service_name


def fetch_mdc(args: argparse.Namespace, backend: Any, endpoint: str, model: Any) -> Collected:
    """The window's records that the data collector kept for the deployment serving the
    online endpoint, fetched from the workspace's datastore into a temporary folder; that
    deployment must serve the model judged."""
    from ml_service.backends.azureml_v2 import make_credential
    from ml_service.monitoring import mdc_download

    serving = mdc_download.serving_deployment(backend.client, endpoint)
    if str(serving.model_version) != str(model.version):
        raise MonitoringError(
            f"online endpoint {endpoint} is served by deployment {serving.deployment} with "
            f"{model.name} version {serving.model_version}, not version {model.version}: pass "
            f"--model_version {serving.model_version} to judge what it serves")
    credential = make_credential(backend.workspace)
    container = mdc_download.default_container(backend.client, credential)
    with tempfile.TemporaryDirectory(prefix="mdc-") as folder:
        mdc_download.download_collected(container, serving, Path(folder), args.since,
                                        args.until)
        return read_mdc(Path(folder), model.name, model.version, args.since, args.until)


def run_monitor(args: argparse.Namespace) -> int:
    """Compare, report, print; 0 or EXIT_DRIFT."""
    from ml_service.backends import get_backend

    settings = BackendSettings.from_env()
    check_options(args, settings.kind)
    training = TrainingSettings.from_env()
    backend = get_backend(settings, training)
    service = args.service or default_service(args)
    model = production_or_version(backend, training.model_name, args.model_version)
    dataset, frame = training_frame(backend, model)
    collected = collected_records(args, backend, service, model)
    records = [r for r in collected.records
               if r["model"] == model.name and str(r["version"]) == str(model.version)]
    window = window_text(args.since, args.until)
    if not records:
        raise MonitoringError(
            f"nothing collected for {model.name} v{model.version} on service {service!r} "
            f"({window}; {len(collected.records)} records of other versions): deploy it "
            "(make run) and send it requests, or widen --since / --until")
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as folder:
        loaded = load_model(find_model(backend.download_model(model, Path(folder))))
    reference = frame.drop(columns=[TARGET_COLUMN])
    rows, predictions, violations = collected_rows(records, reference.shape[1])
    monitoring = load_parameters().monitoring
    if len(rows) < monitoring.min_rows:
        raise MonitoringError(
            f"only {len(rows)} rows collected for {model.name} v{model.version} on service "
            f"{service!r} ({window}); the monitor judges at least monitoring.min_rows "
            f"({monitoring.min_rows}), as its statistics are noise below that: wait for more "
            "requests or widen --since / --until")
    current = pd.DataFrame(rows, columns=reference.columns)
    test = split_data(frame)["test"]["X"]
    reference_predictions = predict(loaded, test, False, output_kind(loaded))[RESULT_KEY]
    rule = monitoring.shift
    report = {**drift_figures(current, reference, predictions, reference_predictions, rule),
              "service": service, "model": model.name, "version": str(model.version),
              "dataset": dataset, "window": window, "requests": len(records),
              "schema_violations": violations, "torn_lines_skipped": collected.torn}
    where = publish_report(args, settings, report, current, reference, predictions,
                           reference_predictions)
    print(summary(report, str(where)))
    if args.register:
        registered = register_inputs(backend, model, current)
        print(f"  registered the collected rows as {registered.name} version "
              f"{registered.version}")
    if args.retrain and report["drift"]:
        print(f"  retrained: {retrain(backend, training, model.tags['dataset_name'])}")
    return EXIT_DRIFT if report["drift"] else 0


def publish_report(args: argparse.Namespace, settings: BackendSettings,
                   report: Dict[str, Any], *arrays: Any) -> Path:
    """Write the report to --report_dir, or else as a run of the local store's monitoring
    experiment; return the page's path."""
    from ml_service.backends.local import LocalBackend

    if args.report_dir:
        folder = Path(args.report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        write_report(folder, report, *arrays)
        return folder / REPORT_HTML
    reports = LocalBackend(settings.root, EXPERIMENT)
    with reports.step_run("monitor") as run, \
            tempfile.TemporaryDirectory(prefix="mlops-monitor-") as folder:
        for path in write_report(Path(folder), report, *arrays):
            run.log_artifact(path, REPORT_FOLDER)
        run.log_metric("rows", report["rows"])
        run.log_metric("drifted_features", len(report["drifted_features"]))
        run.set_pipeline_tags({"drift": str(report["drift"]).lower(),
                               "service": report["service"], "model": report["model"],
                               "model_version": report["version"]})
        return reports.artifact_path(run.id, f"{REPORT_FOLDER}/{REPORT_HTML}")


def inputs_dataset_name(model_name: str) -> str:
    """The dataset that keeps a model's collected inputs."""
    return f"{Path(model_name).stem}_scoring_inputs"


def register_inputs(backend: Any, model: ModelVersion, current: pd.DataFrame) -> Any:
    """Register the collected rows as the next version of the model's inputs dataset."""
    with tempfile.TemporaryDirectory(prefix="mlops-inputs-") as folder:
        path = Path(folder) / "scoring_inputs.csv"
        current.to_csv(path, index=False)
        return backend.register_dataset(
            inputs_dataset_name(model.name), path,
            description=f"inputs collected by {model.name} v{model.version}")


def retrain(backend: Any, training: TrainingSettings, dataset_name: str) -> str:
    """Run the training pipeline as `make run` does, on the latest version of the dataset
    the monitored model was trained on; return what it decided."""
    from ml_service.local_loop import describe_decision
    from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
    from ml_service.pipelines.local_executor import execute

    pipeline = build_training_pipeline(dataclasses.replace(training, dataset_name=dataset_name))
    result = execute(pipeline, backend, {},
                     tags={**training.build_tags(), "trigger": "drift"})
    tags = backend.get_run_tags(result.run_id)
    return (f"pipeline run {result.run_id} ({result.status}): "
            f"{describe_decision(tags, tags.get('registered_model_version'))}")


def day(text: str) -> dt.date:
    """A ``YYYY-MM-DD`` option."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day such as 2026-12-01") from None


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", help="the local service (default: LOCAL_DEPLOYMENT_NAME "
                                          "or the local loop's); with --source mdc on "
                                          "azureml-v2, the online endpoint (default: "
                                          "ONLINE_ENDPOINT_NAME)")
    parser.add_argument("--model_version", type=int,
                        help="the model version to check (default: production)")
    parser.add_argument("--since", type=day, help="first UTC day, YYYY-MM-DD")
    parser.add_argument("--until", type=day, help="last UTC day, YYYY-MM-DD")
    parser.add_argument("--source", choices=(LOCAL, APPINSIGHTS, MDC), default=LOCAL,
                        help="where the records are: the local store (default), Application "
                             "Insights (Azure ML v1) or the data collector's files (v2)")
    parser.add_argument("--workspace_id", help="the Log Analytics workspace of the service's "
                                               "Application Insights (default: "
                                               f"{appinsights.WORKSPACE_VARIABLE})")
    parser.add_argument("--collected_dir", help="--source mdc: the online deployment's "
                                                "folder of collected data, downloaded "
                                                "(default on azureml-v2: fetched)")
    parser.add_argument("--report_dir", help="write the report to this folder (default: an "
                                             "MLflow run in the local store)")
    parser.add_argument("--register", action="store_true",
                        help="register the collected rows as a dataset version")
    parser.add_argument("--retrain", action="store_true",
                        help="on drift, run the training pipeline on the latest dataset")
    args = parser.parse_args(argv)
    if args.since and args.until and args.since > args.until:
        parser.error(f"--since {args.since} is after --until {args.until}")
    return args


def main(argv: Optional[list] = None) -> int:
    """Entry point: 0 no drift, 3 drift, 1 error."""
    args = parse_args(argv)
    return run_cli(lambda: run_monitor(args))


if __name__ == "__main__":
    sys.exit(main())
