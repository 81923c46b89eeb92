"""Benchmark: how often the monitor cries wolf, and how often it sees a real shift.

    python -m benchmarks.benchmark_monitor [--windows 20] [--training-rows 442]

Draws a training frame and independent windows of scoring inputs from the model package's
data generator (``make_example_frame``: the same distribution, other seeds), trains the model
on the training frame with parameters.json's hyperparameters, and runs the monitor's
comparison (``drift_figures``, under ``monitoring.shift``) on each window:

- false alarms: windows from the training distribution that the monitor calls drift;
- detections: the same windows with one feature shifted by one of its standard deviations,
  once per feature: how often that feature is named.

Prints both as counts and shares per window size, smaller windows than the monitor judges
(``monitoring.min_rows``) included, to show why it does not. No store and no server: the figures are
the monitor's own decision on the same inputs it would read from the store.
"""
import argparse
import logging
import sys
from typing import Dict, Optional, Sequence


from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.prediction import RESULT_KEY, predict
from diabetes_regression.training.train import (TARGET_COLUMN, make_example_frame,
                                                split_data, train_model)
from ml_service.monitoring.monitor import drift_figures
from ml_service.util.cli import configure_logging

LOGGER = logging.getLogger(__name__)
WINDOW_ROWS = (100, 200, 300, 1000)
FEATURES = 10


def rates(windows: int, training_rows: int, window_rows: int) -> Dict[str, float]:
    """False alarms and detections over ``windows`` seeded windows of ``window_rows`` rows."""
    parameters = load_parameters()
    rule = parameters.monitoring.shift
    frame = make_example_frame(rows=training_rows, features=FEATURES, seed=0)
    data = split_data(frame)
    model = train_model(data, parameters.training)
    reference = frame.drop(columns=[TARGET_COLUMN])
    reference_predictions = predict(model, data["test"]["X"])[RESULT_KEY]
    alarms = detected = shifted_trials = 0
    for seed in range(1, windows + 1):
        window = make_example_frame(rows=window_rows, features=FEATURES,
                                    seed=seed).drop(columns=[TARGET_COLUMN])
        figures = drift_figures(window, reference, predict(model, window.to_numpy())[RESULT_KEY],
                                reference_predictions, rule)
        alarms += figures["drift"]
        for column in window.columns:
            moved = window.copy()
            moved[column] += reference[column].std()
            found = drift_figures(moved, reference, predict(model, moved.to_numpy())[RESULT_KEY],
                                  reference_predictions, rule)
            detected += column in found["drifted_features"]
            shifted_trials += 1
    return {"false_alarms": alarms, "windows": windows, "detected": detected,
            "shifted_trials": shifted_trials}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=20, help="windows per size (default 20)")
    parser.add_argument("--training-rows", type=int, default=442,
                        help="rows of the training frame (default 442, the sample data's)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Measure each window size; print the table."""
    args = parse_args(argv)
    configure_logging()
    rule = load_parameters().monitoring.shift
    print(f"monitor: {rule.statistic} > {rule.threshold:g} over {rule.bins} bins, windows of "
          f"at least {load_parameters().monitoring.min_rows} rows judged; "
          f"{args.training_rows} training rows, {FEATURES} features, {args.windows} seeded "
          "windows per size")
    print("| window rows | false alarms (no shift) | named the feature shifted by 1 sd |")
    print("|---:|---:|---:|")
    for rows in WINDOW_ROWS:
        found = rates(args.windows, args.training_rows, rows)
        print(f"| {rows} | {found['false_alarms']} of {found['windows']} "
              f"({found['false_alarms'] / found['windows']:.0%}) | {found['detected']} of "
              f"{found['shifted_trials']} ({found['detected'] / found['shifted_trials']:.0%}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
