"""Benchmark: wall time of the whole local loop and of each stage, against a baseline.

    make benchmark          (or: python -m benchmarks.benchmark_local_loop [--no-large])

The baseline is the least a loop could cost on this machine: one Python process
that reads the sample CSV, splits it and fits the model with the model package's own
functions, predicts and dumps it. Everything is measured in the same run, in a fresh
temporary store, and printed with its ratio to the baseline. The goal for the whole loop
(environment built, store warm) is 10 s or less on a 2-core machine.

Then the large-data case (benchmarks.benchmark_large_data): the training pipeline on a
generated 1,000,000-row CSV file against one process reading and fitting it, time and peak
memory (goal: 2x and 1.5x at most). The loop's figures take about three minutes on 2 cores,
the large-data case about two more; ``--no-large`` skips it. Nothing here asserts a time.
"""
import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from benchmarks import benchmark_large_data
from ml_service.backends.local import LocalBackend
from ml_service.local_loop import run_loop
from ml_service.paths import PROJECT_ROOT
from ml_service.util.cli import configure_logging
from ml_service.util.env_variables import ScoringSettings, TrainingSettings

LOGGER = logging.getLogger(__name__)

BASELINE = """
import sys, joblib, pandas as pd
from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.train import split_data, train_model
data = split_data(pd.read_csv(sys.argv[1]))
model = train_model(data, load_parameters().training)
model.predict(data["test"]["X"][:2])
joblib.dump(model, sys.argv[2])
"""


def wall(argv: List[str], env: Dict[str, str]) -> float:
    """Run a command to completion; return its wall time in seconds."""
    started = time.monotonic()
    subprocess.run(argv, env=env, cwd=PROJECT_ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def measure(repeats: int) -> Tuple[List[Tuple[str, float]], Dict[str, float]]:
    """Time the baseline and the loop in fresh stores; return (rows, stage timings)."""
    rows: List[Tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        env = {**os.environ, "MLOPS_ROOT": str(folder / "store")}
        loop = [sys.executable, "-m", "ml_service.local_loop"]
        rows.append(("make run, fresh store (creates the MLflow database)", wall(loop, env)))
        csv = next((folder / "store" / "datasets").rglob("data.csv"))
        baseline = [sys.executable, "-c", BASELINE, str(csv), str(folder / "baseline.pkl")]
        rows.insert(0, ("baseline: one process reads, splits, fits, predicts, dumps",
                        min(wall(baseline, env) for _ in range(repeats))))
        rows.append(("make run, warm store (best of %d)" % repeats,
                     min(wall(loop, env) for _ in range(repeats))))
        plain = {**env, "MLOPS_STEP_LAUNCHER": "process"}
        rows.append(("make run, warm store, steps as plain processes",
                     min(wall(loop, plain) for _ in range(repeats))))
        backend = LocalBackend(folder / "store", TrainingSettings().experiment_name)
        summary = run_loop(backend, TrainingSettings(), ScoringSettings())
    return rows, summary.timings


def report(rows: List[Tuple[str, float]], timings: Dict[str, float]) -> str:
    """The figures as a table, each with its ratio to the baseline."""
    baseline = rows[0][1]
    lines = [f"{'what':<58} {'seconds':>8} {'x baseline':>11}"]
    lines += [f"{name:<58} {seconds:>8.2f} {seconds / baseline:>11.1f}" for name, seconds in rows]
    lines.append("stages of one warm loop, in process (interpreter start not included):")
    lines += [f"  {name:<56} {seconds:>8.2f} {seconds / baseline:>11.1f}"
              for name, seconds in timings.items()]
    return "\n".join(lines)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """How many repeats to take the best of, and whether to run the large-data case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (best kept)")
    parser.add_argument("--no-large", dest="large", action="store_false",
                        help="skip the 1,000,000-row case (about two minutes)")
    parser.add_argument("--rows", type=int, default=benchmark_large_data.ROWS,
                        help="rows in the large case's CSV file")
    return parser.parse_args(argv)


def main(argv: Optional[list] = None) -> int:
    """Measure and print."""
    args = parse_args(argv)
    configure_logging(logging.WARNING)
    rows, timings = measure(max(1, args.repeats))
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(report(rows, timings))
    if args.large:
        print(f"large data: {args.rows:,} rows, the training pipeline against one process "
              f"(best of {max(1, args.repeats)})")
        print(benchmark_large_data.run(max(1, args.rows), max(1, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
