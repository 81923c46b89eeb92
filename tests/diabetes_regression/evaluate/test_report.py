"""The evaluation report: its pictures are PNG files, its JSON is strict and its figures are
the ones scikit-learn computes independently from the same predictions."""
import json

import numpy as np
import pytest
from matplotlib.image import imread
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import confusion_matrix, roc_auc_score

from diabetes_regression.evaluate import report
from diabetes_regression.evaluate.report import (NEW, PRODUCTION, REPORT_JSON, ReportError,
                                                 build_report, drawn_rows, model_outputs,
                                                 write_evaluation_report)
from diabetes_regression.training.prediction import PROBABILITY, VALUE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROWS = 120
WEIGHTS = np.array([1.0, -2.0, 0.5, 3.0])


def strict_json(text):
    """Parse JSON, refusing NaN and Infinity (which json.loads accepts by default)."""
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def get_model_metrics(model, data):
    """The test's own metrics (the report passes through whatever the package gives)."""
    answer = model_outputs(model, data["test"]["X"])["result"]
    return {"mean_abs_error": float(np.mean(np.abs(answer - data["test"]["y"])))}


def make_case(kind, with_production):
    """Two models fitted on different generated rows, and their inputs to the report."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3 * ROWS, len(WEIGHTS)))
    y = X @ WEIGHTS + rng.normal(scale=2.0, size=len(X))
    if kind == PROBABILITY:
        y = (y > 0).astype(int)
        new, production = LogisticRegression(), LogisticRegression(C=0.001)
    else:
        new, production = Ridge(alpha=1.0), Ridge(alpha=500.0)
    new.fit(X[:ROWS], y[:ROWS])
    production.fit(X[ROWS:2 * ROWS], y[ROWS:2 * ROWS])
    test = {"test": {"X": X[2 * ROWS:], "y": y[2 * ROWS:]}}
    models = {NEW: new, PRODUCTION: production} if with_production else {NEW: new}
    outputs = {label: model_outputs(model, test["test"]["X"]) for label, model in models.items()}
    metrics = {label: get_model_metrics(model, test) for label, model in models.items()}
    return test["test"]["y"], outputs, metrics


CASES = [(kind, with_production) for kind in (VALUE, PROBABILITY)
         for with_production in (False, True)]


@pytest.fixture(scope="module", params=CASES,
                ids=[f"{kind}-{'both' if both else 'new only'}" for kind, both in CASES])
def written(request, tmp_path_factory):
    """A report written once per case: (folder, paths, y_true, outputs, metrics, kind)."""
    kind, with_production = request.param
    y_true, outputs, metrics = make_case(kind, with_production)
    folder = tmp_path_factory.mktemp("report") / report.REPORT_FOLDER
    paths = write_evaluation_report(folder, y_true, outputs, kind, metrics)
    return folder, paths, y_true, outputs, metrics, kind


def test_writes_the_json_and_valid_pngs_under_stable_names(written):
    folder, paths, _, _, _, kind = written
    document = strict_json((folder / REPORT_JSON).read_text(encoding="utf-8"))
    assert [p.name for p in paths] == [REPORT_JSON, *document["pictures"]]
    assert document["pictures"] == list(report.PICTURES[kind])
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)
    for picture in paths[1:]:
        assert picture.read_bytes()[:8] == PNG_SIGNATURE
        pixels = imread(picture)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels.std() > 0, f"{picture.name} is blank"


def test_json_holds_the_metrics_passed_in_and_independent_figures(written):
    folder, _, y_true, outputs, metrics, kind = written
    document = strict_json((folder / REPORT_JSON).read_text(encoding="utf-8"))
    assert document["kind"] == kind and document["test_rows"] == len(y_true)
    assert list(document["models"]) == [label for label in (NEW, PRODUCTION) if label in outputs]
    for label, output in outputs.items():
        entry = document["models"][label]
        assert entry["metrics"] == metrics[label]
        if kind == VALUE:
            residuals = y_true - output["result"]
            assert entry["figures"] == pytest.approx({
                "residual_mean": np.mean(residuals), "residual_std": np.std(residuals),
                "max_abs_error": np.max(np.abs(residuals))})
        else:
            assert entry["figures"]["roc_auc"] == pytest.approx(
                roc_auc_score(y_true, output["result"]))
            assert entry["figures"]["confusion_matrix"] == {
                "labels": [0, 1],
                "counts": confusion_matrix(y_true, output["labels"], labels=[0, 1]).tolist()}


def test_the_two_models_differ_in_the_report():
    y_true, outputs, metrics = make_case(VALUE, with_production=True)
    document, _ = build_report(y_true, outputs, VALUE, metrics)
    figures = [document["models"][label]["figures"] for label in (NEW, PRODUCTION)]
    assert figures[0]["residual_std"] < figures[1]["residual_std"]


def test_non_finite_metrics_are_written_as_null():
    y_true, outputs, metrics = make_case(VALUE, with_production=False)
    document, _ = build_report(y_true, outputs, VALUE,
                               {NEW: {**metrics[NEW], "r2": float("nan"), "x": np.inf}})
    assert document["models"][NEW]["metrics"]["r2"] is None
    assert document["models"][NEW]["metrics"]["x"] is None
    strict_json(json.dumps(document, allow_nan=False))


def test_one_class_test_set_has_no_roc_auc_but_still_its_pictures(tmp_path):
    y_true = np.array(["yes"] * 5)
    output = {"result": np.linspace(0.2, 0.9, 5), "labels": np.array(["no", "yes"] * 2 + ["no"])}
    paths = write_evaluation_report(tmp_path, y_true, {NEW: output}, PROBABILITY,
                                    {NEW: {"mse": 0.6}})
    document = strict_json(paths[0].read_text(encoding="utf-8"))
    figures = document["models"][NEW]["figures"]
    assert figures["roc_auc"] is None
    assert figures["confusion_matrix"] == {"labels": ["no", "yes"], "counts": [[0, 0], [3, 2]]}
    assert all(p.read_bytes()[:8] == PNG_SIGNATURE for p in paths[1:])


def test_scatter_plots_draw_a_seeded_sample_of_many_rows():
    assert drawn_rows(10, limit=20).tolist() == list(range(10))
    sample = drawn_rows(1000, limit=50)
    assert len(sample) == len(set(sample.tolist())) == 50
    assert np.all(np.diff(sample) > 0) and sample.max() < 1000
    assert np.array_equal(sample, drawn_rows(1000, limit=50))


def test_model_outputs_answers_labels_for_a_classifier_only():
    _, outputs, _ = make_case(PROBABILITY, with_production=False)
    assert set(outputs[NEW]) == {"result", "labels"}
    _, outputs, _ = make_case(VALUE, with_production=False)
    assert set(outputs[NEW]) == {"result"}


def good_value_inputs():
    y_true = np.arange(4.0)
    return y_true, {NEW: {"result": y_true + 1}}, {NEW: {"mse": 1.0}}


@pytest.mark.parametrize("change, message", [
    (lambda y, o, k, m: (y[:3], o, k, m), "3 rows"),
    (lambda y, o, k, m: (y, o, "label", m), "unknown output kind 'label'"),
    (lambda y, o, k, m: (y[:0], {NEW: {"result": y[:0]}}, k, m), "test set is empty"),
    (lambda y, o, k, m: (y, {PRODUCTION: o[NEW]}, k, {PRODUCTION: m[NEW]}),
     "no outputs for the 'new' model"),
    (lambda y, o, k, m: (y, {**o, "staging": o[NEW]}, k, m), "unknown model labels"),
    (lambda y, o, k, m: (y, o, k, {}), "metrics are given for"),
    (lambda y, o, k, m: (y, o, k, {NEW: {"mse": "low"}}), "must map names to numbers"),
    (lambda y, o, k, m: (y.reshape(2, 2), o, k, m), "one value per test row"),
    (lambda y, o, k, m: (y, {NEW: {"result": y + np.nan}}, k, m), "NaN or infinite"),
    (lambda y, o, k, m: (y, {NEW: {"labels": y}}, k, m), "have no 'result'"),
    (lambda y, o, k, m: (y, {NEW: {"result": y, "labels": y}}, k, m), "not a regressor"),
    (lambda y, o, k, m: (y, o, PROBABILITY, m), "not a binary classifier"),
    (lambda y, o, k, m: (y % 2, {NEW: {"result": y, "labels": y % 2}}, PROBABILITY, m),
     "not probabilities"),
    (lambda y, o, k, m: (y, {NEW: {"result": y / 4, "labels": y}}, PROBABILITY, m),
     "4 classes"),
    (lambda y, o, k, m: (y.astype(str), {NEW: {"result": y / 4, "labels": y}}, PROBABILITY, m),
     "do not mix"),
])
def test_bad_input_is_named_and_writes_nothing(tmp_path, change, message):
    y_true, outputs, metrics = good_value_inputs()
    arguments = change(y_true, outputs, VALUE, metrics)
    with pytest.raises(ReportError, match=message):
        write_evaluation_report(tmp_path / "out", *arguments)
    assert not (tmp_path / "out").exists()
    assert issubclass(ReportError, ValueError)
