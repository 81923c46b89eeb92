"""Model parameters and gate thresholds, read from ``parameters.json``."""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

DEFAULT_PATH = Path(__file__).resolve().parent / "parameters.json"
# A scoring request's body limit when parameters.json does not set one: 1 MiB.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_ROWS = 1000


class ParametersError(ValueError):
    """parameters.json is missing, malformed or incomplete."""


INCOMPATIBLE_ACTIONS = ("register", "fail")


@dataclass(frozen=True)
class EvaluationParameters:
    """How a new model is compared with the production model.

    Both are scored on the new run's test data with the current metric function. When the
    production model cannot score that data (other features, another kind of model),
    ``on_incompatible_production`` says what happens: ``register`` the new model, or
    ``fail`` the evaluate step.
    """

    metric: str
    higher_is_better: bool
    min_improvement: float = 0.0
    on_incompatible_production: str = "register"


@dataclass(frozen=True)
class ScoringParameters:
    """A sample request for the scoring service and its limits: rows, and body bytes."""

    sample: Dict[str, Any]
    max_rows: int
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


SHIFT_STATISTICS = ("psi", "ks")
SHIFT_ACTIONS = ("warn", "fail")


@dataclass(frozen=True)
class ShiftRule:
    """When a feature's distribution has moved from the production model's training data.

    ``statistic`` is ``psi`` (population stability index over ``bins`` quantile bins of the
    reference) or ``ks`` (the two-sample Kolmogorov-Smirnov distance, 0 to 1); a feature whose
    statistic exceeds ``threshold`` has shifted, which warns or fails as ``action`` says.
    """

    statistic: str = "psi"
    threshold: float = 0.25
    bins: int = 10
    action: str = "warn"


@dataclass(frozen=True)
class ValidationParameters:
    """The rules of the data validation step."""

    min_rows: int = 20
    min_target_std: float = 1e-6
    max_target_correlation: float = 0.99
    shift: ShiftRule = field(default_factory=ShiftRule)


@dataclass(frozen=True)
class MonitoringParameters:
    """What the scoring service collects (a share of the answered requests, a queue of
    records waiting to be written, megabytes per day and server process)."""

    sample_rate: float = 1.0
    queue_size: int = 10000
    max_mb_per_day: float = 100.0
    # When a feature or the predictions drifted (make monitor); validation.shift's by default.
    shift: Optional[ShiftRule] = None
    # Fewer collected rows than this are not judged: PSI over 10 bins is noise below it
    # (make benchmark-monitor measures the false alarms per window size).
    min_rows: int = 200


@dataclass(frozen=True)
class Parameters:
    """Everything in parameters.json, checked."""

    training: Dict[str, Any]
    evaluation: EvaluationParameters
    registration_tags: Tuple[str, ...]
    scoring: ScoringParameters
    source: str = ""
    validation: ValidationParameters = field(default_factory=ValidationParameters)
    monitoring: MonitoringParameters = field(default_factory=MonitoringParameters)


REQUIRED = "required"


@dataclass(frozen=True)
class Key:
    """A key of parameters.json and what it does: docs/configuration.md is generated from
    KEYS (make docs), and the sections that refuse unknown keys know theirs from it."""

    name: str
    kind: str
    default: Any
    effect: str


KEYS = (
    Key("training", "object", REQUIRED, "The model's hyperparameters, handed to the training "
        "code as they are and logged with the run"),
    Key("evaluation.metric", "metric name", REQUIRED, "The metric a new model is compared with "
        "the production model on (both scored on the new run's test data)"),
    Key("evaluation.higher_is_better", "true or false", REQUIRED,
        "Whether a larger value of the metric is better"),
    Key("evaluation.min_improvement", "number >= 0", EvaluationParameters.min_improvement,
        "How much the new model must beat the production model by to be registered"),
    Key("evaluation.on_incompatible_production", " or ".join(INCOMPATIBLE_ACTIONS),
        EvaluationParameters.on_incompatible_production, "When the production model cannot "
        "score the new test data (other features, another kind of model): register the new "
        "model, or fail the evaluate step"),
    Key("registration.tags", "list of metric names", [], "The run's metrics copied to the "
        "registered model as tags"),
    Key("validation.min_rows", "whole number >= 1", ValidationParameters.min_rows,
        "The fewest rows the data validation step passes"),
    Key("validation.min_target_std", "number >= 0", ValidationParameters.min_target_std,
        "The data validation step fails a target whose standard deviation is at most this "
        "(nothing to learn)"),
    Key("validation.max_target_correlation", "number in (0, 1]",
        ValidationParameters.max_target_correlation, "The data validation step fails a "
        "feature this correlated with the target (leakage)"),
    Key("validation.shift.statistic", " or ".join(SHIFT_STATISTICS), ShiftRule.statistic,
        "How a feature's shift from the production model's training data is measured: "
        "population stability index, or the Kolmogorov-Smirnov distance"),
    Key("validation.shift.threshold", "number > 0 (< 1 for ks)", ShiftRule.threshold,
        "A feature whose statistic exceeds this has shifted"),
    Key("validation.shift.bins", "whole number >= 2", ShiftRule.bins,
        "Quantile bins of the reference for psi"),
    Key("validation.shift.action", " or ".join(SHIFT_ACTIONS), ShiftRule.action,
        "What a shifted feature does to the data validation step"),
    Key("monitoring.sample_rate", "number in (0, 1]", MonitoringParameters.sample_rate,
        "The share of answered requests the scoring service collects"),
    Key("monitoring.queue_size", "whole number >= 1", MonitoringParameters.queue_size,
        "Collected records waiting to be written; a full queue drops (and counts) records"),
    Key("monitoring.max_mb_per_day", "number > 0", MonitoringParameters.max_mb_per_day,
        "Megabytes of records each server process writes per day, at most"),
    Key("monitoring.min_rows", "whole number >= 1", MonitoringParameters.min_rows,
        "`make monitor` judges no window with fewer collected rows (below it the statistics "
        "are noise)"),
    Key("monitoring.shift", "shift rule", "validation.shift", "When a feature or the "
        "predictions drifted (`make monitor`): the keys of validation.shift, each missing one "
        "taking validation.shift's"),
    Key("scoring.sample", "request", REQUIRED, "A request such as `{\"data\": [[...]]}`: the "
        "smoke tests send it and the scoring API's description shows it"),
    Key("scoring.max_rows", "whole number >= 1", DEFAULT_MAX_ROWS,
        "The most rows one scoring request may hold"),
    Key("scoring.max_body_bytes", "whole number >= 1", DEFAULT_MAX_BODY_BYTES,
        "The largest scoring request body, in bytes"),
)


def keys_in(section: str) -> Tuple[str, ...]:
    """The keys KEYS gives a section (``validation``, ``validation.shift``), in order."""
    prefix = section + "."
    children = (key.name[len(prefix):].split(".")[0] for key in KEYS
                if key.name.startswith(prefix))
    return tuple(dict.fromkeys(children))


def load_parameters(path: Optional[Path] = None) -> Parameters:
    """Read and check parameters.json; raise ParametersError naming the problem."""
    path = Path(path) if path else DEFAULT_PATH
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ParametersError(f"{path}: file not found") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ParametersError(f"{path}: not valid JSON ({err}); fix the file") from err
    try:
        return parse_parameters(raw, source=str(path))
    except ParametersError as err:
        raise ParametersError(f"{path}: {err}") from None


def parse_parameters(raw: Any, source: str = "") -> Parameters:
    """Check a decoded parameters document and return it typed."""
    if not isinstance(raw, dict):
        raise ParametersError("the document must be a JSON object")
    root = raw
    training = _section(root.get("training"), "training")
    evaluation = _section(root.get("evaluation"), "evaluation")
    registration = _section(root.get("registration"), "registration")
    scoring = _section(root.get("scoring"), "scoring")

    metric = evaluation.get("metric")
    if not isinstance(metric, str) or not metric:
        raise ParametersError("evaluation.metric must be a metric name such as \"mse\"")
    higher = evaluation.get("higher_is_better")
    if not isinstance(higher, bool):
        raise ParametersError("evaluation.higher_is_better must be true or false")
    min_improvement = evaluation.get("min_improvement", 0.0)
    if not _is_number(min_improvement) or min_improvement < 0:
        raise ParametersError("evaluation.min_improvement must be a number >= 0")
    on_incompatible = evaluation.get("on_incompatible_production", "register")
    if on_incompatible not in INCOMPATIBLE_ACTIONS:
        raise ParametersError("evaluation.on_incompatible_production must be one of "
                              + ", ".join(INCOMPATIBLE_ACTIONS))

    tags = registration.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise ParametersError("registration.tags must be a list of metric names")

    sample = scoring.get("sample")
    if not isinstance(sample, dict) or not isinstance(sample.get("data"), list):
        raise ParametersError("scoring.sample must be a request such as {\"data\": [[...]]}")
    max_rows = scoring.get("max_rows", DEFAULT_MAX_ROWS)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ParametersError("scoring.max_rows must be a whole number >= 1")
    max_body_bytes = scoring.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    if (isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int)
            or max_body_bytes < 1):
        raise ParametersError("scoring.max_body_bytes must be a whole number >= 1")

    return Parameters(
        training=dict(training),
        evaluation=EvaluationParameters(metric, higher, float(min_improvement),
                                        on_incompatible),
        registration_tags=tuple(tags),
        scoring=ScoringParameters(sample=sample, max_rows=max_rows,
                                  max_body_bytes=max_body_bytes),
        source=source,
        validation=parse_validation(root.get("validation", {})),
        monitoring=parse_monitoring(root.get("monitoring", {}),
                                    parse_validation(root.get("validation", {})).shift),
    )


def parse_monitoring(raw: Any, validation_shift: ShiftRule = ShiftRule()
                     ) -> MonitoringParameters:
    """Check the optional ``monitoring`` section; a missing key takes its default, and the
    drift rule (``shift``) validation's."""
    section = _known_keys(_section(raw, "monitoring"), "monitoring", keys_in("monitoring"))
    defaults = MonitoringParameters()
    rate = section.get("sample_rate", defaults.sample_rate)
    if not _is_number(rate) or not 0 < rate <= 1:
        raise ParametersError("monitoring.sample_rate must be a number in (0, 1]: the share "
                              "of answered requests collected")
    queue_size = section.get("queue_size", defaults.queue_size)
    if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
        raise ParametersError("monitoring.queue_size must be a whole number >= 1")
    max_mb = section.get("max_mb_per_day", defaults.max_mb_per_day)
    if not _is_number(max_mb) or max_mb <= 0:
        raise ParametersError("monitoring.max_mb_per_day must be a number > 0")
    min_rows = section.get("min_rows", defaults.min_rows)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise ParametersError("monitoring.min_rows must be a whole number >= 1")
    shift = parse_shift(section.get("shift", {}), "monitoring.shift", validation_shift)
    return MonitoringParameters(float(rate), queue_size, float(max_mb), shift, min_rows)


def parse_validation(raw: Any) -> ValidationParameters:
    """Check the optional ``validation`` section; a missing key takes its default."""
    section = _known_keys(_section(raw, "validation"), "validation", keys_in("validation"))
    defaults = ValidationParameters()
    min_rows = section.get("min_rows", defaults.min_rows)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise ParametersError("validation.min_rows must be a whole number >= 1")
    min_std = section.get("min_target_std", defaults.min_target_std)
    if not _is_number(min_std) or min_std < 0:
        raise ParametersError("validation.min_target_std must be a number >= 0")
    max_correlation = section.get("max_target_correlation", defaults.max_target_correlation)
    if not _is_number(max_correlation) or not 0 < max_correlation <= 1:
        raise ParametersError("validation.max_target_correlation must be a number in (0, 1]")
    shift = parse_shift(section.get("shift", {}), "validation.shift", defaults.shift)
    return ValidationParameters(min_rows=min_rows, min_target_std=float(min_std),
                                max_target_correlation=float(max_correlation),
                                shift=shift)


def parse_shift(raw: Any, name: str, defaults: ShiftRule) -> ShiftRule:
    """Check a shift rule (``validation.shift``, ``monitoring.shift``); a missing key takes
    its default."""
    # monitoring.shift takes the keys of validation.shift.
    shift = _known_keys(_section(raw, name), name, keys_in("validation.shift"))
    statistic = shift.get("statistic", defaults.statistic)
    if statistic not in SHIFT_STATISTICS:
        raise ParametersError(f"{name}.statistic must be one of " + ", ".join(SHIFT_STATISTICS))
    threshold = shift.get("threshold", defaults.threshold)
    if not _is_number(threshold) or threshold <= 0 or (statistic == "ks" and threshold >= 1):
        raise ParametersError(f"{name}.threshold must be a number > 0 "
                              "(and < 1 for the ks statistic)")
    bins = shift.get("bins", defaults.bins)
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ParametersError(f"{name}.bins must be a whole number >= 2")
    action = shift.get("action", defaults.action)
    if action not in SHIFT_ACTIONS:
        raise ParametersError(f"{name}.action must be one of " + ", ".join(SHIFT_ACTIONS))
    return ShiftRule(statistic, float(threshold), bins, action)


def _known_keys(section: Mapping[str, Any], name: str,
                known: Tuple[str, ...]) -> Mapping[str, Any]:
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ParametersError(f"{name} has unknown key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(known)}")
    return section


def _section(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        raise ParametersError(f"the section {name!r} is missing")
    if not isinstance(value, dict):
        raise ParametersError(f"{name} must be a JSON object")
    return value


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
