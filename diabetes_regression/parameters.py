"""Model parameters and gate thresholds, read from ``parameters.json``."""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

DEFAULT_PATH = Path(__file__).resolve().parent / "parameters.json"
# A scoring request's body limit when parameters.json does not set one: 1 MiB.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


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
    max_rows = scoring.get("max_rows", 1000)
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
    section = _known_keys(_section(raw, "monitoring"), "monitoring",
                          ("sample_rate", "queue_size", "max_mb_per_day", "min_rows",
                           "shift"))
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
    section = _known_keys(_section(raw, "validation"), "validation",
                          ("min_rows", "min_target_std", "max_target_correlation", "shift"))
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
    shift = _known_keys(_section(raw, name), name, ("statistic", "threshold", "bins", "action"))
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
