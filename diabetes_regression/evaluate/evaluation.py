"""Pure evaluation gate: is the new model better than the production model?"""
import math
from dataclasses import dataclass
from typing import Mapping, Optional

from diabetes_regression.parameters import EvaluationParameters


class MetricMissingError(ValueError):
    """A metric the gate needs is absent or not a finite number."""


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
