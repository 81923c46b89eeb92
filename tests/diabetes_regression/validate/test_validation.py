"""The pure data checks, one by one, on tiny inline frames."""
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from diabetes_regression.parameters import ShiftRule, ValidationParameters
from diabetes_regression.training.train import TARGET_COLUMN as Y
from diabetes_regression.validate.validation import (FAIL, PASS, SKIPPED, WARN,
                                                     check_duplicated_columns, check_leakage,
                                                     check_missing_values, check_rows,
                                                     check_schema, check_shift,
                                                     check_target_variance, duplicated_names,
                                                     ks_test, population_stability_index,
                                                     renamed_duplicates, rows_needed,
                                                     shift_statistics, validate_frame)
from tests.conftest import feature_names, make_frame, with_two_features_swapped

RULES = ValidationParameters()
X0, X1, X2, X3 = feature_names()


def test_a_good_frame_passes_every_check_and_the_report_is_json():
    # Two samples of one distribution (PSI's noise is about (bins - 1)(1/n + 1/m)).
    frame = make_frame(rows=500)
    result = validate_frame(frame, RULES, reference=make_frame(rows=500, seed=1),
                            header=list(frame))
    assert result.status == PASS and result.problems == [] and result.warnings == []
    assert {c.name: c.status for c in result.checks} == {
        "duplicated_columns": PASS, "columns": PASS, "rows": PASS, "missing_values": PASS,
        "schema": PASS, "target_variance": PASS, "leakage": PASS, "distribution_shift": PASS}
    report = json.loads(json.dumps(result.report(RULES), allow_nan=False))
    assert report["rows"] == 500 and report["rules"]["shift"]["statistic"] == "psi"


def test_without_a_reference_schema_and_shift_are_skipped_with_the_reason():
    result = validate_frame(make_frame(), RULES)
    for name in ("schema", "distribution_shift"):
        check = result.check(name)
        assert check.status == SKIPPED
        assert check.details["reason"] == "no production model to compare with"


@pytest.mark.parametrize("header, duplicated", [
    (["a", "b", Y], []),
    (["a", "a", Y], ["a"]),
    (["a", "b", "a", "b", "a"], ["a", "b"]),
    ([], []),
])
def test_duplicated_names(header, duplicated):
    assert duplicated_names(header) == duplicated


@pytest.mark.parametrize("columns, header, renamed", [
    (["x", "x.1", Y], ["x", "x", Y], ["x.1"]),
    (["x", "x.1", Y], ["x", "x.1", Y], []),  # a real column named x.1
    (["x", "x.1", Y], None, ["x.1"]),        # no header: x.1 beside x is taken for a copy
    (["x", "y.1", Y], None, []),
])
def test_renamed_duplicates(columns, header, renamed):
    assert renamed_duplicates(columns, header) == renamed


def test_duplicated_columns_come_from_the_raw_header():
    frame = pd.read_csv(pd.io.common.StringIO(f"x,x,{Y}\n1,2,3\n"))
    assert list(frame.columns) == ["x", "x.1", Y]
    check = check_duplicated_columns(list(frame.columns), ["x", "x", Y])
    assert check.status == FAIL and check.messages == ("duplicated column names: x",)
    assert check.details["read_as"] == ["x.1"]


def test_the_other_checks_do_not_see_the_renamed_copies():
    frame = make_frame()
    frame.insert(1, f"{X0}.1", frame[X0])
    header = [c if c != f"{X0}.1" else X0 for c in frame.columns]
    result = validate_frame(frame, RULES, reference=make_frame(), header=header)
    assert result.problems == [f"duplicated column names: {X0}"]


@pytest.mark.parametrize("rows, status, message", [
    (0, FAIL, "the dataset has no rows (only a header)"),
    (1, FAIL, "too few rows for the train/test split: 1 (at least 20"),
    (19, FAIL, "too few rows for the train/test split: 19"),
    (20, PASS, ""),
])
def test_rows(rows, status, message):
    check = check_rows(make_frame(rows=60).iloc[:rows], RULES)
    assert check.status == status and message in " ".join(check.messages)


def test_rows_needed_covers_the_split_even_when_min_rows_is_lower():
    assert rows_needed(replace(RULES, min_rows=1), test_size=0.2) == 6  # 2 test and 4 train
    assert rows_needed(replace(RULES, min_rows=1), test_size=0.5) == 4
    assert rows_needed(replace(RULES, min_rows=50)) == 50


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=[Y]), f"the target column '{Y}' is missing"),
    (lambda f: f[[Y]], "there are no feature columns"),
    (lambda f: f.assign(**{X0: "a"}), f"non-numeric columns: {X0}"),
])
def test_columns(change, message):
    result = validate_frame(change(make_frame()), RULES)
    assert result.check("columns").status == FAIL
    assert any(message in p for p in result.problems)


def test_a_header_only_frame_is_not_called_non_numeric():
    header = list(make_frame().columns)
    frame = pd.read_csv(pd.io.common.StringIO(",".join(header) + "\n"))
    result = validate_frame(frame, RULES, header=header)
    assert result.problems == ["the dataset has no rows (only a header)"]


@pytest.mark.parametrize("change, message", [
    (lambda f: f.assign(**{X1: [np.nan] + [1.0] * 59}), f"missing values (NaN) in columns: {X1}"),
    (lambda f: f.assign(**{Y: np.nan}), f"missing values (NaN) in columns: {Y}"),
    (lambda f: f.assign(**{X2: np.inf}), f"infinite values in columns: {X2}"),
])
def test_missing_values(change, message):
    check = check_missing_values(change(make_frame()))
    assert check.status == FAIL and message in check.messages


def test_missing_values_are_counted():
    check = check_missing_values(make_frame().assign(**{X1: [np.nan] * 3 + [1.0] * 57}))
    assert check.details["missing"] == {X1: 3}


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=[X1]), f"columns missing compared with the production data: {X1}"),
    (lambda f: f.assign(extra=1.0), "columns not in the production data: extra"),
    (with_two_features_swapped, "columns in another order"),
    (lambda f: f.assign(**{X3: "a"}), f"column types differ from the production data: {X3} is "
                                      "text (was numeric)"),
])
def test_schema_against_the_production_data(change, message):
    check = check_schema(change(make_frame()), make_frame(seed=1))
    assert check.status == FAIL and any(message in m for m in check.messages)


def test_schema_accepts_integers_where_there_were_floats():
    frame = make_frame().assign(**{X0: lambda f: f[X0].round().astype(int)})
    assert check_schema(frame, make_frame()).status == PASS


@pytest.mark.parametrize("target, status", [
    (1.0, FAIL),
    (lambda f: 1.0 + np.arange(len(f)) * 1e-9, FAIL),
    (lambda f: f[Y], PASS),
])
def test_target_variance(target, status):
    check = check_target_variance(make_frame().assign(**{Y: target}), RULES)
    assert check.status == status
    if status == FAIL:
        assert f"the target '{Y}' has (near) zero variance" in check.messages[0]


def test_target_variance_is_skipped_when_the_target_is_unusable():
    assert check_target_variance(make_frame().assign(**{Y: np.nan}), RULES).status == SKIPPED


@pytest.mark.parametrize("leak, message", [
    (lambda f: f[Y], f"feature 'leak' is identical to the target '{Y}' (leakage)"),
    (lambda f: 3 * f[Y] - 7, f"feature 'leak' is correlated with the target '{Y}' at r=1.0000"),
    (lambda f: -f[Y], "at r=-1.0000"),
])
def test_leakage(leak, message):
    check = check_leakage(make_frame().assign(leak=leak), RULES)
    assert check.status == FAIL and message in check.messages[0]


def test_a_strong_but_honest_feature_is_not_leakage():
    frame = make_frame()
    # The target plus noise as large as the target itself: strong, not the target.
    check = check_leakage(frame.assign(honest=frame[Y] + np.random.default_rng(0).normal(
        scale=frame[Y].std(), size=len(frame))), RULES)
    assert check.status == PASS and check.details["correlations"]["honest"] < 0.9


def test_psi_is_zero_for_the_same_data_and_large_for_moved_data():
    values = np.random.default_rng(0).normal(size=500)
    assert population_stability_index(values, values, 10) == pytest.approx(0)
    assert population_stability_index(values + 2, values, 10) > 1


def psi_by_searching_every_value(values, reference, bins):
    """PSI as first written: every value searched among the bin edges."""
    inner = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(np.append(inner, reference.min()))
    expected = np.bincount(np.searchsorted(edges, reference, side="left"),
                           minlength=edges.size + 1) / reference.size
    actual = np.bincount(np.searchsorted(edges, values, side="left"),
                         minlength=edges.size + 1) / values.size
    expected, actual = np.maximum(expected, 1e-4), np.maximum(actual, 1e-4)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


SAMPLES = {
    "small, exact p-value": lambda rng: (rng.normal(size=300), rng.normal(0.2, size=500)),
    "large": lambda rng: (rng.normal(size=30_000), rng.normal(0.01, size=12_000)),
    "large with ties": lambda rng: (rng.integers(0, 7, 20_000).astype(float),
                                    rng.integers(0, 8, 11_000).astype(float)),
    "large, identical": lambda rng: (np.arange(15_000.0), np.arange(15_000.0)),
    "large against small": lambda rng: (rng.normal(size=10_001), rng.normal(size=40)),
    "edges on values": lambda rng: (np.repeat([0.0, 1.0, 2.0], 5_000),
                                    np.repeat([0.0, 1.0, 2.0, 3.0], [100, 5_000, 9_000, 1])),
}


@pytest.mark.parametrize("sample", SAMPLES.values(), ids=SAMPLES)
def test_the_shift_statistics_equal_scipys_and_the_first_psi(sample):
    values, reference = sample(np.random.default_rng(0))
    scipy = ks_2samp(values, reference)
    assert ks_test(np.sort(values), np.sort(reference)) == (float(scipy.statistic),
                                                            float(scipy.pvalue))
    figures = shift_statistics(values, reference, ShiftRule())
    assert figures["psi"] == psi_by_searching_every_value(values, reference, 10)
    assert (figures["ks"], figures["ks_pvalue"]) == (scipy.statistic, scipy.pvalue)
    assert population_stability_index(values, reference, 10) == figures["psi"]


def test_psi_sees_a_change_in_a_two_valued_feature():
    reference = np.array([0.0, 1.0] * 50)
    moved = np.array([0.0] * 90 + [1.0] * 10)
    assert population_stability_index(moved, reference, 10) > 0.25


@pytest.mark.parametrize("rule, status", [
    (ShiftRule(action="warn"), WARN),
    (ShiftRule(action="fail"), FAIL),
    (ShiftRule(statistic="ks", threshold=0.3, action="fail"), FAIL),
    (ShiftRule(threshold=100.0, action="fail"), PASS),
])
def test_shift_warns_or_fails_as_the_rule_says(rule, status):
    reference = make_frame(rows=200)
    moved = make_frame(rows=200, seed=1).assign(**{X2: lambda f: f[X2] + 3})
    check = check_shift(moved, reference, replace(RULES, shift=rule))
    assert check.status == status
    assert check.details["features"][X2]["shifted"] is (status != PASS)
    assert not check.details["features"][X0]["shifted"]
    if status != PASS:
        assert check.messages[0].startswith(
            f"distribution shift from the production data: {X2} ({rule.statistic} ")


def test_a_warning_does_not_fail_the_result():
    reference = make_frame(rows=200)
    moved = make_frame(rows=200, seed=1).assign(**{X2: lambda f: f[X2] + 3})
    result = validate_frame(moved, RULES, reference=reference)
    assert result.status == WARN and result.problems == [] and len(result.warnings) == 1
    assert result.shifted_features() == [X2]


def test_every_problem_is_listed():
    frame = make_frame().assign(**{Y: 1.0, X1: np.nan})
    result = validate_frame(frame, RULES, reference=make_frame().drop(columns=[X3]))
    assert result.problems == [
        f"missing values (NaN) in columns: {X1}",
        f"columns not in the production data: {X3}",
        f"the target '{Y}' has (near) zero variance: std 0 <= validation.min_target_std 1e-06"]


def test_too_few_rows_skips_the_statistics():
    result = validate_frame(make_frame(rows=3), RULES, reference=make_frame())
    assert [c.status for c in result.checks[-3:]] == [SKIPPED] * 3
    assert len(result.problems) == 1 and result.problems[0].startswith("too few rows")
