"""Evaluate step: compare the new model with the production model on the same data.

Both are scored on the rows the train step held out (its test split, written beside the
model) with the model package's metric function, so the comparison holds when the
dataset or the metric changed since the production model was trained. "Not better" is an
outcome, not an error: it is logged with both values, the pipeline run is cancelled when
--allow_run_cancel is true (so the register step does not run), and the step exits 0.
A production model that cannot score the rows (other features, another kind of model)
is handled as ``evaluation.on_incompatible_production`` says. The evaluation report
(pictures and a JSON of their figures, both models side by side) is attached to the step's
run under ``evaluation/``.

The new model's metrics come from the record the train step wrote beside the model
(--step_input), so a train step that Azure ML reused still gets evaluated.
"""
import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from diabetes_regression.evaluate.evaluation import (Decision, IncompatibleProductionError,
                                                     compare_models, decide_incompatible,
                                                     score_production)
from diabetes_regression.evaluate.report import (NEW, PRODUCTION, REPORT_FOLDER, model_outputs,
                                                 write_evaluation_report)
from diabetes_regression.parameters import EvaluationParameters, load_parameters
from diabetes_regression.training.model_files import (MODEL_FOLDER, ModelFileError,
                                                      load_model)
from diabetes_regression.training.prediction import output_kind
from diabetes_regression.training.train import get_model_metrics
from ml_service.backends import get_backend
from ml_service.backends.base import Backend, ModelVersion, StepRun
from ml_service.errors import ModelNotFoundError
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import TrainingSettings, load_dotenv_file, parse_bool
from ml_service.util.training_record import (read_test_split, read_training_record,
                                             record_on_pipeline_run)

LOGGER = logging.getLogger(__name__)
OUTCOME_TAG = "evaluation"
REASON_TAG = "evaluation_reason"
PRODUCTION_METRIC_PREFIX = "production_"
STEP_RUN_NAME = "evaluate"


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse MLOpsPython's evaluate-step arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_id", help="pipeline run to evaluate, when not started by one")
    parser.add_argument("--model_name", help="registered model name (default: MODEL_NAME)")
    parser.add_argument("--allow_run_cancel",
                        help="cancel the pipeline run when the model is not better "
                             "(true/false, default: ALLOW_RUN_CANCEL)")
    parser.add_argument("--step_input", type=Path, required=True,
                        help="folder written by the train step: the model, its record and "
                             "its test split")
    parser.add_argument("--parameters", type=Path, help="parameters.json to use")
    return parser.parse_args(argv)


def load_step_model(folder: Path) -> Any:
    """The new model from the train step's folder; ModelNotFoundError naming the folder."""
    try:
        return load_model(folder / MODEL_FOLDER)
    except ModelFileError as err:
        raise ModelNotFoundError(f"{err}; pass the train step's output folder as "
                                 "--step_input") from err


def load_production(backend: Backend, production: ModelVersion) -> Any:
    """Download and load the production model."""
    with tempfile.TemporaryDirectory(prefix="evaluate-production-") as folder:
        path = backend.download_model(production, Path(folder))
        try:
            return load_model(path)
        except ModelFileError as err:
            raise ModelNotFoundError(f"production model {production.name} version "
                                     f"{production.version}: {err}") from err


def challenge(backend: Backend, production: ModelVersion, new_model: Any,
              data: Dict[str, Any], new_metrics: Dict[str, float],
              gate: EvaluationParameters) -> Tuple[Decision, Optional[Any], Dict[str, float]]:
    """Score the production model on the new run's test data and decide: (decision, the
    production model when it could be scored, its metrics there)."""
    model = load_production(backend, production)
    try:
        production_metrics = score_production(model, new_model, data, get_model_metrics)
    except IncompatibleProductionError as err:
        LOGGER.warning("The production model (version %d) cannot score this run's test "
                       "data: %s", production.version, err)
        return decide_incompatible(new_metrics, str(err), production.version, gate), None, {}
    LOGGER.info("Production model version %d on this run's test data: %s", production.version,
                ", ".join(f"{k}={v:.4g}" for k, v in production_metrics.items()))
    return compare_models(new_metrics, production_metrics, gate), model, production_metrics


def log_report(run: StepRun, data: Dict[str, Any], models: Dict[str, Tuple[Any, Dict]]) -> None:
    """Write the evaluation report (pictures and JSON) and attach it to the step's run.

    A report that cannot be drawn or attached, whatever the cause (matplotlib missing
    from an older environment, a drawing or upload failure), is a warning, not a failed
    evaluation: the decision stands on the metrics.
    """
    features, target = data["test"]["X"], data["test"]["y"]
    try:
        outputs = {label: model_outputs(model, features) for label, (model, _) in models.items()}
        kinds = {output_kind(model) for model, _ in models.values()}
        with tempfile.TemporaryDirectory(prefix="evaluation-report-") as folder:
            report = Path(folder) / REPORT_FOLDER
            write_evaluation_report(report, target, outputs, kinds.pop(),
                                    {label: metrics for label, (_, metrics) in models.items()})
            run.log_artifact(report)
    # Exception, not BaseException: KeyboardInterrupt and SystemExit still end the step.
    except Exception as err:
        LOGGER.warning("The evaluation report was not written (%s: %s); the decision stands "
                       "on the metrics", type(err).__name__, err)
        return
    LOGGER.info("Evaluation report: %s/ (%s) on the evaluate run %s", REPORT_FOLDER,
                ", ".join(sorted(models)), run.id)


def evaluate(args: argparse.Namespace) -> int:
    """The step: score both models on the test split, decide, report, record, cancel if
    asked."""
    load_dotenv_file()
    settings = TrainingSettings.from_env()
    gate = load_parameters(args.parameters).evaluation
    model_name = args.model_name or settings.model_name
    allow_cancel = (parse_bool(args.allow_run_cancel, "--allow_run_cancel")
                    if args.allow_run_cancel else settings.allow_run_cancel)
    backend = get_backend(training=settings)
    with backend.step_run(STEP_RUN_NAME, run_id=args.run_id) as run:
        record = read_training_record(args.step_input)
        record_on_pipeline_run(run, record)
        new_metrics = dict(record.metrics)
        features, target = read_test_split(args.step_input)
        data = {"test": {"X": features, "y": target}}
        new_model = load_step_model(args.step_input)
        models = {NEW: (new_model, new_metrics)}
        production = backend.get_production_model(model_name)
        if production is None:
            decision = compare_models(new_metrics, None, gate)
        else:
            decision, production_model, production_metrics = challenge(
                backend, production, new_model, data, new_metrics, gate)
            if production_model is not None:
                models[PRODUCTION] = (production_model, production_metrics)
        tags = {OUTCOME_TAG: decision.outcome, REASON_TAG: decision.reason}
        if production is not None:
            tags["production_model_version"] = str(production.version)
        if decision.production_value is not None:
            run.log_metric(PRODUCTION_METRIC_PREFIX + decision.metric, decision.production_value)
        run.set_pipeline_tags(tags)
        log_report(run, data, models)
        if decision.register:
            LOGGER.info("Decision: register, because %s", decision.reason)
        else:
            LOGGER.info("Decision: not registered, because %s", decision.reason)
            if allow_cancel:
                LOGGER.info("Cancelling the pipeline run %s: the register step will not run",
                            run.pipeline_run_id)
                run.cancel_pipeline(decision.reason)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of the evaluate step."""
    args = parse_args(argv)
    return run_cli(lambda: evaluate(args))


if __name__ == "__main__":
    sys.exit(main())
