"""Benchmark: wall time of the whole local loop and of each stage, against a baseline.

    make benchmark          (or: python -m benchmarks.benchmark_local_loop)

The baseline is the least a loop could cost on this machine: one Python process
that reads the sample CSV, fits the model, predicts and dumps it. Everything is
measured in the same run, in a fresh temporary store, and printed with its
ratio to the baseline. The goal for the whole loop (environment built, store
warm) is 10 s or less on a 2-core machine. Nothing here asserts a time.
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

from ml_service.backends.local import LocalBackend
from ml_service.local_loop import run_loop
from ml_service.paths import PROJECT_ROOT
from ml_service.util.cli import configure_logging
from ml_service.util.env_variables import ScoringSettings, TrainingSettings

LOGGER = logging.getLogger(__name__)

BASELINE = """
import sys, joblib, pandas as pd
from sklearn.linear_model import Ridge
frame = pd.read_csv(sys.argv[1])
X, y = frame.drop(columns=["Y"]).values, frame["Y"].values
model = Ridge(alpha=0.5).fit(X, y)
model.predict(X[:2])
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
        rows.insert(0, ("baseline: one process reads, fits, predicts, dumps",
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
    """How many repeats to take the best of."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (best kept)")
    return parser.parse_args(argv)


def main(argv: Optional[list] = None) -> int:
    """Measure and print."""
    args = parse_args(argv)
    configure_logging(logging.WARNING)
    rows, timings = measure(max(1, args.repeats))
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(report(rows, timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
