"""Model parameters and gate thresholds, read from ``parameters.json``."""
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

DEFAULT_PATH = Path(__file__).resolve().parent / "parameters.json"


class ParametersError(ValueError):
    """parameters.json is missing, malformed or incomplete."""


@dataclass(frozen=True)
class EvaluationParameters:
    """How a new model is compared with the production model."""

    metric: str
    higher_is_better: bool
    min_improvement: float = 0.0


@dataclass(frozen=True)
class ScoringParameters:
    """A sample request for the scoring service and its row limit."""

    sample: Dict[str, Any]
    max_rows: int


@dataclass(frozen=True)
class Parameters:
    """Everything in parameters.json, checked."""

    training: Dict[str, Any]
    evaluation: EvaluationParameters
    registration_tags: Tuple[str, ...]
    scoring: ScoringParameters
    source: str = ""


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

    tags = registration.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise ParametersError("registration.tags must be a list of metric names")

    sample = scoring.get("sample")
    if not isinstance(sample, dict) or not isinstance(sample.get("data"), list):
        raise ParametersError("scoring.sample must be a request such as {\"data\": [[...]]}")
    max_rows = scoring.get("max_rows", 1000)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ParametersError("scoring.max_rows must be a whole number >= 1")

    return Parameters(
        training=dict(training),
        evaluation=EvaluationParameters(metric, higher, float(min_improvement)),
        registration_tags=tuple(tags),
        scoring=ScoringParameters(sample=sample, max_rows=max_rows),
        source=source,
    )


def _section(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        raise ParametersError(f"the section {name!r} is missing")
    if not isinstance(value, dict):
        raise ParametersError(f"{name} must be a JSON object")
    return value


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
