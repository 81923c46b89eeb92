"""Pure data checks for the example model's training data: no platform import, no I/O.

Each check takes a data frame (and the rules from ``parameters.json``, and the production
model's training data as a reference where it needs one) and returns a ``Check``: its
status, the problems or warnings it found as short phrases, and the figures behind them.
``validate_frame`` runs them all; the step script turns the result into a report and an
exit code.
"""
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp, kstwo

from diabetes_regression.parameters import ShiftRule, ValidationParameters
from diabetes_regression.training.train import TARGET_COLUMN, TEST_SIZE

PASS, WARN, FAIL, SKIPPED = "pass", "warn", "fail", "skipped"
# The fewest rows in each part of the split that training and scoring can use (r2 needs 2).
MIN_ROWS_PER_PART = 2
# Empty PSI bins get this share, so the logarithm stays finite.
PSI_FLOOR = 1e-4
# Up to this many rows in the larger sample scipy's ks_2samp computes the exact p-value.
KS_EXACT_MAX_ROWS = 10000
# pandas reads a repeated header name "x" as "x.1", "x.2", ...
MANGLED = re.compile(r"^(?P<base>.+)\.(?P<n>[1-9][0-9]*)$")


@dataclass(frozen=True)
class Check:
    """The outcome of one check: status, messages (problems or warnings), figures."""

    name: str
    status: str
    messages: Tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form of the check in the report."""
        return {"status": self.status, "messages": list(self.messages),
                "details": _json_safe(self.details)}


@dataclass(frozen=True)
class ValidationResult:
    """Every check run on one data frame, in order."""

    checks: Tuple[Check, ...]
    rows: int
    columns: Tuple[str, ...]

    @property
    def problems(self) -> List[str]:
        """The messages of the failed checks: each one fails the step."""
        return [m for c in self.checks if c.status == FAIL for m in c.messages]

    @property
    def warnings(self) -> List[str]:
        """The messages of the checks that only warn."""
        return [m for c in self.checks if c.status == WARN for m in c.messages]

    @property
    def status(self) -> str:
        """``fail`` if any check failed, else ``warn`` if any warned, else ``pass``."""
        return FAIL if self.problems else WARN if self.warnings else PASS

    def check(self, name: str) -> Check:
        """The check of that name."""
        return next(c for c in self.checks if c.name == name)

    def shifted_features(self) -> List[str]:
        """The features whose distribution moved away from the reference."""
        features = self.check("distribution_shift").details.get("features", {})
        return [name for name, figures in features.items() if figures.get("shifted")]

    def report(self, rules: ValidationParameters) -> Dict[str, Any]:
        """The JSON-ready report: outcome, problems, warnings, every check and the rules."""
        return {"status": self.status, "rows": self.rows, "columns": list(self.columns),
                "problems": self.problems, "warnings": self.warnings,
                "checks": {c.name: c.to_dict() for c in self.checks},
                "rules": _json_safe(_rules_dict(rules))}


def duplicated_names(header: Sequence[str]) -> List[str]:
    """The column names that occur more than once in a header, in first-seen order."""
    seen: Dict[str, int] = {}
    for name in header:
        seen[name] = seen.get(name, 0) + 1
    return [name for name, count in seen.items() if count > 1]


def renamed_duplicates(columns: Sequence[str], header: Optional[Sequence[str]]) -> List[str]:
    """The columns pandas made up for repeated header names ("x.1" for a second "x")."""
    columns = [str(c) for c in columns]
    if header is not None:
        repeated = set(duplicated_names(header))
        originals = set(header)
    else:
        # Without the raw header, "x.1" beside "x" is taken for a renamed repeat.
        repeated = set(columns)
        originals = set()
    found = []
    for name in columns:
        match = MANGLED.match(name)
        if match and name not in originals and match.group("base") in repeated:
            found.append(name)
    return found


def check_duplicated_columns(columns: Sequence[str],
                             header: Optional[Sequence[str]] = None) -> Check:
    """Fail when a column name is repeated (seen in the raw header: pandas renames repeats)."""
    renamed = renamed_duplicates(columns, header)
    if header is not None:
        names = duplicated_names(header)
    else:
        names = list(dict.fromkeys(duplicated_names([str(c) for c in columns])
                                   + [MANGLED.match(n).group("base") for n in renamed]))
    if not names:
        return Check("duplicated_columns", PASS)
    return Check("duplicated_columns", FAIL,
                 (f"duplicated column names: {', '.join(names)}",),
                 {"names": names, "read_as": renamed})


def rows_needed(rules: ValidationParameters, test_size: float = TEST_SIZE) -> int:
    """The fewest rows that pass: ``min_rows``, and enough for both parts of the split."""
    rows = MIN_ROWS_PER_PART
    while True:
        test_rows = math.ceil(test_size * rows)
        if min(test_rows, rows - test_rows) >= MIN_ROWS_PER_PART:
            return max(rows, rules.min_rows)
        rows += 1


def check_rows(frame: pd.DataFrame, rules: ValidationParameters) -> Check:
    """Fail when there are no rows, or too few for the train/test split."""
    needed = rows_needed(rules)
    details = {"rows": len(frame), "needed": needed, "test_size": TEST_SIZE}
    if frame.empty:
        return Check("rows", FAIL, ("the dataset has no rows (only a header)",), details)
    if len(frame) < needed:
        return Check("rows", FAIL,
                     (f"too few rows for the train/test split: {len(frame)} "
                      f"(at least {needed}, validation.min_rows {rules.min_rows})",), details)
    return Check("rows", PASS, details=details)


def check_columns(frame: pd.DataFrame) -> Check:
    """Fail when the target or every feature is missing, or a column is not numeric."""
    messages = []
    columns = [str(c) for c in frame.columns]
    if TARGET_COLUMN not in columns:
        messages.append(f"the target column {TARGET_COLUMN!r} is missing "
                        f"(columns: {', '.join(columns) or 'none'})")
    if not [c for c in columns if c != TARGET_COLUMN]:
        messages.append("there are no feature columns")
    # A header-only file has no values: pandas reads its columns as text, wrongly.
    non_numeric = [] if frame.empty else [
        str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        messages.append(f"non-numeric columns: {', '.join(non_numeric)}")
    details = {"target": TARGET_COLUMN, "non_numeric": non_numeric}
    return Check("columns", FAIL if messages else PASS, tuple(messages), details)


def check_missing_values(frame: pd.DataFrame) -> Check:
    """Fail when a column has missing (NaN) or infinite values; count them per column."""
    missing = {str(c): int(n) for c, n in frame.isna().sum().items() if n}
    infinite = {}
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column]):
            count = int(np.isinf(frame[column].to_numpy(dtype=float)).sum())
            if count:
                infinite[str(column)] = count
    messages = []
    if missing:
        messages.append(f"missing values (NaN) in columns: {', '.join(missing)}")
    if infinite:
        messages.append(f"infinite values in columns: {', '.join(infinite)}")
    return Check("missing_values", FAIL if messages else PASS, tuple(messages),
                 {"missing": missing, "infinite": infinite})


def _usable(series: pd.Series) -> bool:
    """A numeric column with only finite values."""
    return (pd.api.types.is_numeric_dtype(series) and not series.empty
            and bool(np.isfinite(series.to_numpy(dtype=float)).all()))


def check_schema(frame: pd.DataFrame, reference: Optional[pd.DataFrame]) -> Check:
    """Fail when the columns, their order or their kinds differ from the reference data."""
    if reference is None:
        return Check("schema", SKIPPED, details={"reason": "no production model to compare with"})
    expected = [str(c) for c in reference.columns]
    actual = [str(c) for c in frame.columns]
    messages = []
    missing = [c for c in expected if c not in actual]
    unexpected = [c for c in actual if c not in expected]
    if missing:
        messages.append(f"columns missing compared with the production data: "
                        f"{', '.join(missing)}")
    if unexpected:
        messages.append(f"columns not in the production data: {', '.join(unexpected)}")
    common = [c for c in actual if c in expected]
    if common != [c for c in expected if c in actual]:
        messages.append("columns in another order than in the production data "
                        f"(expected {', '.join(expected)})")
    changed = []
    if not frame.empty and not reference.empty:
        changed = [c for c in common if _kind(frame[c]) != _kind(reference[c])]
    if changed:
        messages.append("column types differ from the production data: " + ", ".join(
            f"{c} is {_kind(frame[c])} (was {_kind(reference[c])})" for c in changed))
    details = {"expected": {c: str(reference[c].dtype) for c in expected},
               "actual": {c: str(frame[c].dtype) for c in actual}}
    return Check("schema", FAIL if messages else PASS, tuple(messages), details)


def _kind(series: pd.Series) -> str:
    return "numeric" if pd.api.types.is_numeric_dtype(series) else "text"


def check_target_variance(frame: pd.DataFrame, rules: ValidationParameters) -> Check:
    """Fail when the target is (nearly) constant: no model can learn anything from it."""
    if TARGET_COLUMN not in frame.columns or len(frame) < MIN_ROWS_PER_PART \
            or not _usable(frame[TARGET_COLUMN]):
        return Check("target_variance", SKIPPED,
                     details={"reason": "no usable target column or too few rows"})
    target = frame[TARGET_COLUMN].to_numpy(dtype=float)
    std = float(np.std(target))
    details = {"std": std, "distinct_values": int(np.unique(target).size),
               "min_target_std": rules.min_target_std}
    if std <= rules.min_target_std:
        return Check("target_variance", FAIL,
                     (f"the target {TARGET_COLUMN!r} has (near) zero variance: std {std:.3g} "
                      f"<= validation.min_target_std {rules.min_target_std:g}",), details)
    return Check("target_variance", PASS, details=details)


def check_leakage(frame: pd.DataFrame, rules: ValidationParameters) -> Check:
    """Fail when a feature is identical to the target or (almost) perfectly correlated with it."""
    if TARGET_COLUMN not in frame.columns or len(frame) < MIN_ROWS_PER_PART \
            or not _usable(frame[TARGET_COLUMN]) \
            or float(np.std(frame[TARGET_COLUMN].to_numpy(dtype=float))) == 0:
        return Check("leakage", SKIPPED,
                     details={"reason": "no usable, varying target column or too few rows"})
    target = frame[TARGET_COLUMN].to_numpy(dtype=float)
    # Pearson's r from centred vectors: one pass per feature, no covariance matrix copies.
    centred_target = target - target.mean()
    target_norm = float(np.sqrt(centred_target @ centred_target))
    correlations: Dict[str, Optional[float]] = {}
    messages = []
    for column in frame.columns:
        if column == TARGET_COLUMN or not _usable(frame[column]):
            continue
        values = frame[column].to_numpy(dtype=float)
        if np.array_equal(values, target):
            correlations[str(column)] = 1.0
            messages.append(f"feature {column!r} is identical to the target "
                            f"{TARGET_COLUMN!r} (leakage)")
            continue
        centred = values - values.mean()
        norm = float(np.sqrt(centred @ centred))
        if norm == 0:
            correlations[str(column)] = None
            continue
        r = float(np.clip((centred @ centred_target) / (norm * target_norm), -1.0, 1.0))
        correlations[str(column)] = r
        if abs(r) >= rules.max_target_correlation:
            messages.append(f"feature {column!r} is correlated with the target "
                            f"{TARGET_COLUMN!r} at r={r:.4f} (|r| >= "
                            f"validation.max_target_correlation {rules.max_target_correlation:g}:"
                            " leakage)")
    details = {"correlations": correlations,
               "max_target_correlation": rules.max_target_correlation}
    return Check("leakage", FAIL if messages else PASS, tuple(messages), details)


def population_stability_index(values: np.ndarray, reference: np.ndarray, bins: int) -> float:
    """PSI of ``values`` against ``reference``, over the reference's quantile bins."""
    return psi_of_sorted(np.sort(values), np.sort(reference), bins)


def psi_of_sorted(values: np.ndarray, reference: np.ndarray, bins: int) -> float:
    """PSI of sorted ``values`` against sorted ``reference``: each bin's share is counted
    with a search per bin edge instead of a search per value."""
    inner = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(np.append(inner, reference[0]))
    # A value equal to an edge falls in the bin that edge closes.
    expected = bin_shares(reference, edges)
    actual = bin_shares(values, edges)
    expected = np.maximum(expected, PSI_FLOOR)
    actual = np.maximum(actual, PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def bin_shares(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The share of the sorted values in each bin (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    at_or_below = np.searchsorted(ordered, edges, side="right")
    counts = np.diff(np.concatenate(([0], at_or_below, [ordered.size])))
    return counts / ordered.size


def ks_distance(values: np.ndarray, reference: np.ndarray) -> float:
    """The two-sided KS distance of two sorted samples, as scipy's ks_2samp computes it (the
    largest gap between the two empirical distribution functions), with one merge of the
    sorted samples instead of a binary search per value."""
    merged = np.concatenate([values, reference])
    order = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
    in_values = np.cumsum(order < values.size)
    in_reference = np.arange(1, merged.size + 1) - in_values
    differences = in_values / values.size - in_reference / reference.size
    # The distribution functions are compared after the last of equal values.
    ordered = merged[order]
    differences = differences[np.append(ordered[1:] != ordered[:-1], True)]
    below = np.clip(-differences.min(), 0, 1)
    above = differences.max()
    return float(below if below > above else above)


def ks_test(values: np.ndarray, reference: np.ndarray) -> Tuple[float, float]:
    """The two-sided two-sample KS distance and p-value of sorted samples, equal to scipy's
    ks_2samp: exact p-values for small samples (scipy's own), else Smirnov's asymptotic one,
    which needs only the distance."""
    if max(values.size, reference.size) <= KS_EXACT_MAX_ROWS:
        result = ks_2samp(values, reference)
        return float(result.statistic), float(result.pvalue)
    distance = ks_distance(values, reference)
    larger, smaller = sorted([float(values.size), float(reference.size)], reverse=True)
    effective = larger * smaller / (larger + smaller)
    return distance, float(np.clip(kstwo.sf(distance, np.round(effective)), 0, 1))


def shift_statistics(values: np.ndarray, reference: np.ndarray, rule: ShiftRule) -> Dict[str, Any]:
    """PSI, the KS distance and its p-value, and whether the rule's statistic is over its
    threshold. Each sample is sorted once, for both statistics."""
    values, reference = np.sort(values), np.sort(reference)
    distance, pvalue = ks_test(values, reference)
    figures = {"psi": psi_of_sorted(values, reference, rule.bins),
               "ks": distance, "ks_pvalue": pvalue}
    figures["shifted"] = bool(figures[rule.statistic] > rule.threshold)
    return figures


def check_shift(frame: pd.DataFrame, reference: Optional[pd.DataFrame],
                rules: ValidationParameters) -> Check:
    """Warn or fail (validation.shift.action) for each feature whose distribution moved away
    from the reference's by more than the threshold."""
    rule = rules.shift
    if reference is None:
        return Check("distribution_shift", SKIPPED,
                     details={"reason": "no production model to compare with"})
    features: Dict[str, Dict[str, Any]] = {}
    for column in frame.columns:
        if column == TARGET_COLUMN or column not in reference.columns:
            continue
        if not _usable(frame[column]) or not _usable(reference[column]):
            continue
        features[str(column)] = shift_statistics(frame[column].to_numpy(dtype=float),
                                                 reference[column].to_numpy(dtype=float), rule)
    details = {"statistic": rule.statistic, "threshold": rule.threshold,
               "action": rule.action, "features": features}
    shifted = [name for name, figures in features.items() if figures["shifted"]]
    if not shifted:
        return Check("distribution_shift", PASS, details=details)
    listed = ", ".join(f"{name} ({rule.statistic} {features[name][rule.statistic]:.3g})"
                       for name in shifted)
    message = (f"distribution shift from the production data: {listed} > "
               f"validation.shift.threshold {rule.threshold:g}")
    return Check("distribution_shift", FAIL if rule.action == FAIL else WARN, (message,),
                 details)


def validate_frame(frame: pd.DataFrame, rules: ValidationParameters,
                   reference: Optional[pd.DataFrame] = None,
                   header: Optional[Sequence[str]] = None) -> ValidationResult:
    """Run every check on the data; ``header`` is the file's raw header row when known,
    ``reference`` the production model's training data when there is one."""
    columns = tuple(str(c) for c in frame.columns)
    duplicates = check_duplicated_columns(columns, header)
    # The other checks see each name once: pandas' made-up copies are left out.
    renamed = set(duplicates.details.get("read_as", ()))
    keep = np.array([str(c) not in renamed for c in frame.columns], dtype=bool) \
        & ~frame.columns.duplicated()
    frame = frame.loc[:, keep]
    rows = check_rows(frame, rules)
    checks = [duplicates, check_columns(frame), rows, check_missing_values(frame),
              check_schema(frame, reference)]
    if rows.status == PASS:
        checks += [check_target_variance(frame, rules), check_leakage(frame, rules),
                   check_shift(frame, reference, rules)]
    else:
        reason = {"reason": "too few rows"}
        checks += [Check(name, SKIPPED, details=reason)
                   for name in ("target_variance", "leakage", "distribution_shift")]
    return ValidationResult(tuple(checks), len(frame), columns)


def _rules_dict(rules: ValidationParameters) -> Dict[str, Any]:
    return {"min_rows": rules.min_rows, "min_target_std": rules.min_target_std,
            "max_target_correlation": rules.max_target_correlation,
            "shift": {"statistic": rules.shift.statistic, "threshold": rules.shift.threshold,
                      "bins": rules.shift.bins, "action": rules.shift.action}}


def _json_safe(value: Any) -> Any:
    """The value with numpy numbers made plain and non-finite floats made None (valid JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
