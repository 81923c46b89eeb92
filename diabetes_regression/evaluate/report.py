"""Evaluation report: pictures and figures comparing the new and the production model.

The evaluate step predicts the same test rows with the new model ("new") and, when there is
one, the production model ("production"), and writes this report as run artifacts under
REPORT_FOLDER. The file names do not change from run to run, so ``mlflow ui`` can show the
same picture of two runs side by side:

- a regressor ("value"): ``predicted_vs_actual.png`` and ``residuals.png``, one panel per
  model on the same axes limits (scikit-learn's PredictionErrorDisplay);
- a binary classifier ("probability"): ``roc_curve.png`` (both models on one axes) and
  ``confusion_matrix.png`` (one panel per model, the same label order);
- ``evaluation_report.json``: the kind, the number of test rows, per model the metrics it was
  given and the figures behind the pictures, and the picture file names. Regression figures:
  residual (actual - predicted) mean, standard deviation (over all rows, ddof 0) and the
  largest absolute error. Classifier figures: roc_auc and the confusion matrix
  (``{"labels": [...], "counts": [[...]]}``, rows the actual label, columns the predicted
  one, both in ``labels`` order). A figure that is not a finite number is written as null.

Scatter plots draw at most MAX_DRAWN_POINTS rows (a seeded choice, the same rows for every
model); every figure is computed on all rows. Drawing uses matplotlib's Figure API, which
renders with Agg and touches no pyplot state. No platform import: the step logs the files.
"""
import io
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
from sklearn.metrics import (ConfusionMatrixDisplay, PredictionErrorDisplay, RocCurveDisplay,
                             confusion_matrix, roc_auc_score)
from sklearn.utils.multiclass import unique_labels

from diabetes_regression.training.prediction import (LABELS_KEY, PROBABILITY, RESULT_KEY,
                                                     VALUE, output_kind, predict)

LOGGER = logging.getLogger(__name__)
REPORT_FOLDER = "evaluation"
REPORT_JSON = "evaluation_report.json"
NEW, PRODUCTION = "new", "production"
MODELS = (NEW, PRODUCTION)
PICTURES = {VALUE: ("predicted_vs_actual.png", "residuals.png"),
            PROBABILITY: ("roc_curve.png", "confusion_matrix.png")}
COLOURS = {NEW: "tab:blue", PRODUCTION: "tab:orange"}
# Scatter plots of more rows than this draw a seeded sample of them.
MAX_DRAWN_POINTS = 5000
SEED = 0
DPI = 80
PANEL_SIZE = (5.0, 4.6)

Outputs = Mapping[str, Mapping[str, np.ndarray]]
Metrics = Mapping[str, Mapping[str, float]]


class ReportError(ValueError):
    """The report's inputs do not describe the same test rows predicted by known models."""


def model_outputs(model: Any, features: Any) -> Dict[str, np.ndarray]:
    """What the report needs of one model: ``prediction.predict`` with a classifier's labels."""
    kind = output_kind(model)
    return predict(model, features, labels=kind == PROBABILITY, kind=kind)


def finite_or_none(value: Any) -> Any:
    """A number as a float, or None if it is NaN or infinite: strict JSON has no NaN, so the
    report writes null for a figure that is not a finite number (r2 of one row, say)."""
    number = float(value)
    return number if math.isfinite(number) else None


# --- checking the inputs -------------------------------------------------------------------

def check_models(outputs: Outputs, metrics: Metrics) -> List[str]:
    """The model labels in report order (new first), or ReportError naming what is wrong."""
    if NEW not in outputs:
        raise ReportError(f"no outputs for the {NEW!r} model (got: "
                          f"{', '.join(map(repr, outputs)) or 'none'}); pass the new model's "
                          "predictions on the test rows")
    unknown = sorted(set(outputs) - set(MODELS))
    if unknown:
        raise ReportError(f"unknown model labels {unknown}: the report compares "
                          f"{NEW!r} and {PRODUCTION!r} only")
    if set(metrics) != set(outputs):
        raise ReportError(f"metrics are given for {sorted(metrics)} but outputs for "
                          f"{sorted(outputs)}: pass the metrics of each model that predicted")
    return [label for label in MODELS if label in outputs]


def check_truth(y_true: Any, kind: str) -> np.ndarray:
    """The actual values as a 1-D array, or ReportError: an empty or misshapen test set."""
    if kind not in PICTURES:
        raise ReportError(f"unknown output kind {kind!r}: expected {VALUE!r} (a regressor) or "
                          f"{PROBABILITY!r} (a binary classifier), see prediction.output_kind")
    truth = np.asarray(y_true)
    if truth.ndim != 1:
        raise ReportError(f"the actual values have shape {truth.shape}: pass one value per "
                          "test row (a 1-D array)")
    if truth.size == 0:
        raise ReportError("the test set is empty: the report needs at least one test row")
    if kind == VALUE:
        _check_finite(truth, "the actual values")
    return truth


def check_output(label: str, output: Mapping[str, np.ndarray], rows: int,
                 kind: str) -> Tuple[np.ndarray, Any]:
    """One model's (result, labels or None) for ``rows`` test rows, or ReportError."""
    if RESULT_KEY not in output:
        raise ReportError(f"the {label} model's outputs have no {RESULT_KEY!r}: pass what "
                          "prediction.predict returned (see model_outputs)")
    wants_labels = kind == PROBABILITY
    if (LABELS_KEY in output) != wants_labels:
        raise ReportError(
            f"the {label} model's outputs {'lack' if wants_labels else 'carry'} "
            f"{LABELS_KEY!r}, so it is not a {'binary classifier' if wants_labels else 'regressor'}"
            f" as the kind {kind!r} says: compare models of the same kind")
    result = _column(output[RESULT_KEY], rows, f"the {label} model's {RESULT_KEY}")
    _check_finite(result, f"the {label} model's {RESULT_KEY}")
    if not wants_labels:
        return result, None
    if result.min() < 0 or result.max() > 1:
        raise ReportError(f"the {label} model's {RESULT_KEY} are not probabilities (range "
                          f"{result.min():.3g} to {result.max():.3g}): pass the positive-class "
                          "probability that prediction.predict answers")
    return result, _column(output[LABELS_KEY], rows, f"the {label} model's {LABELS_KEY}")


def check_metrics(label: str, metrics: Mapping[str, float]) -> Dict[str, Any]:
    """One model's metrics as JSON numbers (non-finite as None), or ReportError."""
    try:
        return {str(name): finite_or_none(value) for name, value in metrics.items()}
    except (TypeError, ValueError, AttributeError) as err:
        raise ReportError(f"the {label} model's metrics must map names to numbers (as "
                          f"get_model_metrics returns): {err}") from err


def _column(values: Any, rows: int, what: str) -> np.ndarray:
    """``values`` as a 1-D array of ``rows`` entries, or ReportError naming ``what``."""
    array = np.asarray(values)
    if array.ndim != 1 or len(array) != rows:
        raise ReportError(f"{what} has shape {array.shape} but the test set has {rows} rows: "
                          "predict the same test rows the actual values are for")
    return array


def _check_finite(values: np.ndarray, what: str) -> None:
    """ReportError unless ``values`` are numbers, all finite."""
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise ReportError(f"{what} are not real numbers (dtype {values.dtype})")
    if not np.isfinite(values).all():
        raise ReportError(f"{what} contain {int((~np.isfinite(values)).sum())} NaN or infinite "
                          "values: the report needs a finite number per row")


# --- the figures ----------------------------------------------------------------------------

def regression_figures(truth: np.ndarray, predicted: np.ndarray) -> Dict[str, Any]:
    """Residual (actual - predicted) mean and standard deviation, and the largest |error|."""
    residuals = truth.astype(float) - predicted
    return {"residual_mean": finite_or_none(residuals.mean()),
            "residual_std": finite_or_none(residuals.std()),
            "max_abs_error": finite_or_none(np.abs(residuals).max())}


def class_order(truth: np.ndarray, predicted: Sequence[np.ndarray]) -> np.ndarray:
    """The labels in the actual values and every model's predictions, sorted (scikit-learn's
    order); ReportError if they mix types or are more than the two of a binary classifier."""
    try:
        order = unique_labels(truth, *predicted)
    except ValueError as err:
        raise ReportError(f"the actual and predicted labels do not mix: {err}") from err
    if len(order) > 2:
        raise ReportError(f"the actual and predicted labels hold {len(order)} classes "
                          f"({order.tolist()}): the report is for a binary classifier")
    return order


def roc_auc(truth: np.ndarray, probability: np.ndarray) -> Any:
    """ROC AUC of the positive-class probability; None when the test rows hold one class."""
    if len(np.unique(truth)) < 2:
        return None
    return finite_or_none(roc_auc_score(truth, probability))


def classifier_figures(truth: np.ndarray, probability: np.ndarray, labels: np.ndarray,
                       order: np.ndarray) -> Dict[str, Any]:
    """ROC AUC, and the confusion matrix counts (rows actual, columns predicted) in ``order``."""
    counts = confusion_matrix(truth, labels, labels=order)
    return {"roc_auc": roc_auc(truth, probability),
            "confusion_matrix": {"labels": order.tolist(), "counts": counts.tolist()}}


def build_report(y_true: Any, outputs: Outputs, kind: str,
                 metrics: Metrics) -> Tuple[Dict[str, Any], Dict[str, Tuple]]:
    """The JSON document, and the checked arrays to draw: ``{label: (result, labels)}``."""
    truth = check_truth(y_true, kind)
    models = check_models(outputs, metrics)
    arrays = {label: check_output(label, outputs[label], len(truth), kind) for label in models}
    report: Dict[str, Any] = {"kind": kind, "test_rows": int(len(truth)), "models": {}}
    if kind == VALUE:
        report["drawn_rows"] = min(len(truth), MAX_DRAWN_POINTS)
        figures = {label: regression_figures(truth, result)
                   for label, (result, _) in arrays.items()}
    else:
        order = class_order(truth, [labels for _, labels in arrays.values()])
        figures = {label: classifier_figures(truth, result, labels, order)
                   for label, (result, labels) in arrays.items()}
    for label in models:
        report["models"][label] = {"metrics": check_metrics(label, metrics[label]),
                                   "figures": figures[label]}
    report["pictures"] = list(PICTURES[kind])
    return report, arrays


# --- the pictures ---------------------------------------------------------------------------

def drawn_rows(rows: int, limit: int = MAX_DRAWN_POINTS, seed: int = SEED) -> np.ndarray:
    """Indices of the rows a scatter plot draws: all, or a seeded sorted sample of ``limit``."""
    if rows <= limit:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


def padded(low: float, high: float, share: float = 0.05) -> Tuple[float, float]:
    """The range widened by ``share`` on each side (by 1 if it is a single value)."""
    pad = (high - low) * share or 1.0
    return low - pad, high + pad


def new_figure(panels: int) -> Tuple[Any, List[Any]]:
    """A figure with ``panels`` axes side by side (the Figure API: Agg, no pyplot state).

    Fixed margins rather than a layout engine, which would double the time to draw.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(PANEL_SIZE[0] * panels, PANEL_SIZE[1]))
    grid = {"left": 0.16 / panels, "right": 1 - 0.04 / panels, "bottom": 0.12, "top": 0.86,
            "wspace": 0.4}
    return figure, list(figure.subplots(1, panels, squeeze=False, gridspec_kw=grid)[0])


def _scatter_style(label: str, drawn: int) -> Dict[str, Any]:
    """Scatter keywords: the model's colour, smaller and fainter points when there are many."""
    return {"color": COLOURS[label], "alpha": 0.8 if drawn <= 500 else 0.3,
            "s": 20 if drawn <= 500 else 6}


def draw_predicted_vs_actual(truth: np.ndarray, arrays: Mapping[str, Tuple],
                             report: Mapping[str, Any]) -> Any:
    """Actual against predicted values, a panel per model, one square range for all."""
    from matplotlib.ticker import AutoLocator

    rows = drawn_rows(len(truth))
    values = [truth] + [result for result, _ in arrays.values()]
    low, high = padded(min(v.min() for v in values), max(v.max() for v in values))
    figure, panels = new_figure(len(arrays))
    for axes, (label, (result, _)) in zip(panels, arrays.items()):
        display = PredictionErrorDisplay.from_predictions(
            truth[rows], result[rows], kind="actual_vs_predicted", subsample=None, ax=axes,
            scatter_kwargs=_scatter_style(label, len(rows)))
        display.line_.set_data([low, high], [low, high])
        axes.set_aspect("equal", adjustable="box")
        axes.set_xlim(low, high)
        axes.set_ylim(low, high)
        axes.xaxis.set_major_locator(AutoLocator())
        axes.yaxis.set_major_locator(AutoLocator())
        error = report["models"][label]["figures"]["max_abs_error"]
        axes.set_title(f"{label} model: max |error| {error:.3g}")
    _note_sample(figure, len(rows), len(truth))
    return figure


def draw_residuals(truth: np.ndarray, arrays: Mapping[str, Tuple],
                   report: Mapping[str, Any]) -> Any:
    """Residuals against predicted values, a panel per model, the same limits for all."""
    rows = drawn_rows(len(truth))
    predictions = [result for result, _ in arrays.values()]
    largest = max(np.abs(truth - result).max() for result in predictions)
    x_low, x_high = padded(min(p.min() for p in predictions), max(p.max() for p in predictions))
    figure, panels = new_figure(len(arrays))
    for axes, (label, (result, _)) in zip(panels, arrays.items()):
        display = PredictionErrorDisplay.from_predictions(
            truth[rows], result[rows], kind="residual_vs_predicted", subsample=None, ax=axes,
            scatter_kwargs=_scatter_style(label, len(rows)))
        display.line_.set_data([x_low, x_high], [0, 0])
        axes.set_xlim(x_low, x_high)
        axes.set_ylim(*padded(-largest, largest))
        figures = report["models"][label]["figures"]
        axes.set_title(f"{label} model: residual mean {figures['residual_mean']:.3g}, "
                       f"std {figures['residual_std']:.3g}")
    _note_sample(figure, len(rows), len(truth))
    return figure


def _note_sample(figure: Any, drawn: int, rows: int) -> None:
    """Say on the figure when its scatter plots draw a sample of the rows."""
    if drawn < rows:
        figure.suptitle(f"{drawn} of {rows} test rows drawn (figures use all rows)")


def draw_roc_curve(truth: np.ndarray, arrays: Mapping[str, Tuple],
                   report: Mapping[str, Any]) -> Any:
    """Every model's ROC curve on one axes, or a note when the test rows hold one class."""
    figure, (axes,) = new_figure(1)
    order = report["models"][NEW]["figures"]["confusion_matrix"]["labels"]
    if report["models"][NEW]["figures"]["roc_auc"] is None:
        only = np.unique(truth).tolist()[0]
        axes.text(0.5, 0.5, f"no ROC curve: the test rows hold one class ({only!r})",
                  ha="center", va="center", wrap=True)
        axes.set_axis_off()
        return figure
    for index, (label, (result, _)) in enumerate(arrays.items()):
        RocCurveDisplay.from_predictions(
            truth, result, pos_label=order[-1], name=f"{label} model", ax=axes,
            curve_kwargs={"color": COLOURS[label]}, plot_chance_level=index == len(arrays) - 1)
    axes.set_title(f"ROC curve, positive class {order[-1]!r}")
    return figure


def draw_confusion_matrix(truth: np.ndarray, arrays: Mapping[str, Tuple],
                          report: Mapping[str, Any]) -> Any:
    """Each model's confusion matrix (the counts in the report), a panel per model, on one
    colour scale so the panels compare."""
    matrices = {label: report["models"][label]["figures"]["confusion_matrix"] for label in arrays}
    largest = max(max(max(row) for row in matrix["counts"]) for matrix in matrices.values()) or 1
    figure, panels = new_figure(len(arrays))
    for axes, (label, matrix) in zip(panels, matrices.items()):
        counts = np.asarray(matrix["counts"])
        display = ConfusionMatrixDisplay(counts, display_labels=matrix["labels"]).plot(
            ax=axes, colorbar=False, values_format="d", im_kw={"vmin": 0, "vmax": largest})
        # scikit-learn picks each text colour on its panel's own range: use the shared one.
        for (row, column), text in np.ndenumerate(display.text_):
            text.set_color(display.im_.cmap(0.0 if counts[row, column] > largest / 2 else 1.0))
        axes.set_title(f"{label} model")
    return figure


DRAWERS = {VALUE: (draw_predicted_vs_actual, draw_residuals),
           PROBABILITY: (draw_roc_curve, draw_confusion_matrix)}


def png_bytes(figure: Any) -> bytes:
    """The figure rendered as PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all (a temporary file, then a rename)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def write_evaluation_report(folder: Path, y_true: Any, outputs: Outputs, kind: str,
                            metrics: Metrics) -> List[Path]:
    """Write the pictures and the JSON report into ``folder``; return their paths, JSON first.

    ``outputs`` maps "new" (and "production" when there is one) to what ``model_outputs``
    (``prediction.predict``) answered on the test rows whose actual values are ``y_true``;
    ``kind`` is ``prediction.VALUE`` or ``prediction.PROBABILITY``; ``metrics`` maps the same
    labels to each model's ``get_model_metrics`` on those rows. Everything is checked before
    anything is written (ReportError); the JSON is written last, so it names only pictures
    that exist.
    """
    report, arrays = build_report(y_true, outputs, kind, metrics)
    truth = np.asarray(y_true)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pictures = [write_atomically(folder / name, png_bytes(draw(truth, arrays, report)))
                for name, draw in zip(PICTURES[kind], DRAWERS[kind])]
    # allow_nan=False: every figure went through finite_or_none, so NaN fails here loudly.
    document = json.dumps(report, indent=2, allow_nan=False).encode("utf-8")
    written = [write_atomically(folder / REPORT_JSON, document), *pictures]
    LOGGER.info("Evaluation report of %d test rows (%s) written to %s: %s", len(truth),
                ", ".join(report["models"]), folder, ", ".join(p.name for p in written))
    return written
