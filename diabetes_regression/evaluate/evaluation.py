"""Pure evaluation gate: is the new model better than the production model?

Champion and challenger are measured on the same rows with the same metric function: the
new run's test split, scored by the model package's ``get_model_metrics``. A production
model that cannot score those rows (other features, another kind of model) is
"incompatible", and ``evaluation.on_incompatible_production`` decides.
"""
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional

from diabetes_regression.parameters import EvaluationParameters
from diabetes_regression.training.prediction import PredictionError, output_kind


class MetricMissingError(ValueError):
    """A metric the gate needs is absent or not a finite number."""


class IncompatibleProductionError(ValueError):
    """The production model cannot score the new run's test data, and the gate says fail."""


@dataclass(frozen=True)
class Decision:
    """The outcome of the gate, with the values it compared."""

    register: bool
    reason: str
    metric: str
    new_value: float
    production_value: Optional[float] = None

    @property
    def outcome(self) -> str:
        """``register`` or ``not_registered``: the word logged with the pipeline run."""
        return "register" if self.register else "not_registered"


def metric_value(metrics: Mapping[str, float], metric: str, owner: str) -> float:
    """Return a finite metric from a mapping, or raise MetricMissingError naming its owner."""
    if metric not in metrics:
        known = ", ".join(sorted(metrics)) or "none"
        raise MetricMissingError(
            f"the {owner} has no metric {metric!r} (it has: {known}); check "
            "evaluation.metric in parameters.json against what the train step logs")
    value = metrics[metric]
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise MetricMissingError(f"the {owner}'s metric {metric!r} is not a number: {value!r}") \
            from err
    if not math.isfinite(value):
        raise MetricMissingError(f"the {owner}'s metric {metric!r} is not finite: {value}")
    return value


def compare_models(new_metrics: Mapping[str, float],
                   production_metrics: Optional[Mapping[str, float]],
                   gate: EvaluationParameters) -> Decision:
    """Decide whether to register the new model.

    Args:
        new_metrics: metrics of the newly trained model.
        production_metrics: metrics of the production model, or None when there is none.
        gate: the metric, its direction and the minimum improvement.

    Returns:
        A Decision: register when there is no production model or when the new model
        beats it by more than ``min_improvement`` in the configured direction.
    """
    new = metric_value(new_metrics, gate.metric, "new model")
    if production_metrics is None:
        return Decision(True, "there is no production model yet", gate.metric, new)
    production = metric_value(production_metrics, gate.metric, "production model")
    improvement = new - production if gate.higher_is_better else production - new
    direction = "higher" if gate.higher_is_better else "lower"
    if improvement > gate.min_improvement:
        reason = (f"new {gate.metric} {new:.6g} is better ({direction} is better) than "
                  f"production {production:.6g} by {improvement:.6g}")
        return Decision(True, reason, gate.metric, new, production)
    reason = (f"new {gate.metric} {new:.6g} is not better ({direction} is better) than "
              f"production {production:.6g} by more than {gate.min_improvement:.6g}")
    return Decision(False, reason, gate.metric, new, production)


def score_production(production: Any, new: Any, data: Mapping[str, Any],
                     get_metrics: Callable[[Any, Mapping[str, Any]], Dict[str, float]]
                     ) -> Dict[str, float]:
    """The production model's metrics on the new run's test data, by ``get_metrics``.

    Raises IncompatibleProductionError (with "incompatible" wording, not yet a decision)
    naming why the production model cannot be scored there.
    """
    try:
        kinds = output_kind(production), output_kind(new)
    except PredictionError as err:
        raise IncompatibleProductionError(str(err)) from err
    if kinds[0] != kinds[1]:
        raise IncompatibleProductionError(f"it answers a {kinds[0]} per row, the new model a "
                                          f"{kinds[1]}")
    try:
        return dict(get_metrics(production, data))
    except Exception as err:  # a foreign model can fail in any way on these rows
        raise IncompatibleProductionError(f"{type(err).__name__}: {err}") from err


def decide_incompatible(new_metrics: Mapping[str, float], why: str, version: Any,
                        gate: EvaluationParameters) -> Decision:
    """The outcome when the production model cannot score the new run's test data: register
    the new model, or raise IncompatibleProductionError, as the gate says."""
    new = metric_value(new_metrics, gate.metric, "new model")
    problem = f"the production model (version {version}) cannot score this run's test data: {why}"
    if gate.on_incompatible_production == "fail":
        raise IncompatibleProductionError(
            f"{problem}. evaluation.on_incompatible_production is 'fail': to replace it with "
            "the new model, set it to 'register' in parameters.json; to start over, use a "
            "fresh store (make clean, locally)")
    return Decision(True, f"{problem}; registering, as evaluation.on_incompatible_production "
                    "is 'register'", gate.metric, new)
