"""Evaluate step: compare the new model with the production model.

"Not better" is an outcome, not an error: it is logged with both values, the
pipeline run is cancelled when --allow_run_cancel is true (so the register
step does not run), and the step exits 0.

The new model's metrics come from the record the train step wrote beside the model
(--step_input), so a train step that Azure ML reused still gets evaluated; without
--step_input (by hand, with --run_id) they come from the pipeline run.
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

from diabetes_regression.evaluate.evaluation import compare_models
from diabetes_regression.parameters import load_parameters
from ml_service.backends import get_backend
from ml_service.errors import RunNotFoundError
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import TrainingSettings, load_dotenv_file, parse_bool
from ml_service.util.training_record import read_training_record, record_on_pipeline_run

LOGGER = logging.getLogger(__name__)
OUTCOME_TAG = "evaluation"
REASON_TAG = "evaluation_reason"


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse MLOpsPython's evaluate-step arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_id", help="pipeline run to evaluate, when not started by one")
    parser.add_argument("--model_name", help="registered model name (default: MODEL_NAME)")
    parser.add_argument("--allow_run_cancel",
                        help="cancel the pipeline run when the model is not better "
                             "(true/false, default: ALLOW_RUN_CANCEL)")
    parser.add_argument("--step_input", type=Path,
                        help="folder written by the train step (default: read the metrics "
                             "from the pipeline run)")
    parser.add_argument("--parameters", type=Path, help="parameters.json to use")
    return parser.parse_args(argv)


def evaluate(args: argparse.Namespace) -> int:
    """The step: decide, record the decision, cancel the pipeline if asked."""
    load_dotenv_file()
    settings = TrainingSettings.from_env()
    gate = load_parameters(args.parameters).evaluation
    model_name = args.model_name or settings.model_name
    allow_cancel = (parse_bool(args.allow_run_cancel, "--allow_run_cancel")
                    if args.allow_run_cancel else settings.allow_run_cancel)
    backend = get_backend(training=settings)
    with backend.step_run("evaluate", run_id=args.run_id) as run:
        if args.step_input is not None:
            record = read_training_record(args.step_input)
            record_on_pipeline_run(run, record)
            new_metrics = dict(record.metrics)
        else:
            new_metrics = run.get_pipeline_metrics()
        production = backend.get_production_model(model_name)
        production_metrics = None
        if production is not None:
            if not production.run_id:
                raise RunNotFoundError(f"production model {model_name} version "
                                       f"{production.version} has no run to read metrics from")
            production_metrics = backend.get_run_metrics(production.run_id)
        decision = compare_models(new_metrics, production_metrics, gate)
        tags = {OUTCOME_TAG: decision.outcome, REASON_TAG: decision.reason}
        if production is not None:
            tags["production_model_version"] = str(production.version)
        run.set_pipeline_tags(tags)
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
