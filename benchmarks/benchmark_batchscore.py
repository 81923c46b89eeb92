"""Benchmark: the local batch scorer against a one-process baseline, on a million rows.

    python -m benchmarks.benchmark_batchscore [--rows 1000000] [--repeats 3]

In a temporary folder: a CSV file of ``--rows`` rows with the feature columns of the model
package's sample, and a local store with a model trained on the sample and registered
as the production model. Then, each the best of ``--repeats`` runs:

- baseline: one process reads the CSV with pandas, predicts, writes the CSV;
- the local batch scorer (ml_service.pipelines.local_batchscore, in process: model from
  the store, worker pool, scoring, atomic output) with 1 worker, 2 workers and all cores;
- the whole command, ``python -m ml_service.pipelines.local_batchscore``, all cores
  (interpreter start and imports included).

It prints wall time and rows per second for each, the ratio of the all-cores scorer's
time to the baseline's (goal: 1.5 or less) and the 2-worker speed over the 1-worker
speed (goal: 1.6 or more on 2 cores). Nothing here asserts a time; on a shared machine
take the figures of an otherwise idle one.
"""
import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
import pandas as pd

from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.model_files import load_model, save_model
from diabetes_regression.training.prediction import RESULT_KEY, predict
from diabetes_regression.training.train import (TARGET_COLUMN, load_sample_data, split_data,
                                                train_model)
from ml_service.backends.local import LocalBackend
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines.local_batchscore import score_csv_with_registry
from ml_service.util.cli import configure_logging
from ml_service.util.env_variables import TrainingSettings

LOGGER = logging.getLogger(__name__)
MODEL_NAME = TrainingSettings().model_name


def write_scoring_csv(path: Path, rows: int, seed: int = 0) -> None:
    """Rows of the sample's feature columns, on the sample's scale, full precision."""
    sample = load_sample_data().drop(columns=[TARGET_COLUMN])
    rng = np.random.default_rng(seed)
    values = rng.normal(sample.mean().to_numpy(), sample.std().to_numpy(),
                        size=(rows, sample.shape[1]))
    pd.DataFrame(values, columns=sample.columns).to_csv(path, index=False)


def register_production_model(root: Path) -> LocalBackend:
    """A local store whose production model is trained on the sample."""
    backend = LocalBackend(root)
    model = train_model(split_data(load_sample_data()), load_parameters().training)
    model_path = save_model(model, root.parent, MODEL_NAME)
    run_id = backend.start_pipeline_run("benchmark", {})
    version = backend.register_model(MODEL_NAME, model_path, run_id, tags={})
    backend.set_production_model(MODEL_NAME, version.version)
    return backend


def baseline(input_path: Path, output_path: Path, model_path: Path) -> None:
    """The least a batch scorer could do in one process: read, predict, write."""
    model = load_model(model_path)
    frame = pd.read_csv(input_path)
    frame["prediction"] = predict(model, frame.to_numpy())[RESULT_KEY]
    frame.to_csv(output_path, index=False)


def best_of(repeats: int, action: Callable[[], None], output: Path) -> float:
    """The shortest wall time of ``repeats`` runs (the output removed between runs)."""
    times = []
    for _ in range(repeats):
        output.unlink(missing_ok=True)
        started = time.monotonic()
        action()
        times.append(time.monotonic() - started)
    return min(times)


def measure(rows: int, repeats: int) -> List[Tuple[str, float]]:
    """Time the baseline, the scorer with 1, 2 and all workers, and the whole command."""
    cores = os.cpu_count() or 1
    results: List[Tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data, output = folder / "scoring.csv", folder / "scored.csv"
        started = time.monotonic()
        write_scoring_csv(data, rows)
        LOGGER.warning("wrote %d rows (%.0f MB) in %.1f s", rows, data.stat().st_size / 1e6,
                       time.monotonic() - started)
        backend = register_production_model(folder / "store")
        model_path = folder / MODEL_NAME
        results.append(("baseline: one process reads, predicts, writes",
                        best_of(repeats, lambda: baseline(data, output, model_path), output)))
        for workers in sorted({1, 2, cores}):
            def scorer(workers: int = workers) -> None:
                score_csv_with_registry(backend, MODEL_NAME, "production", data, output,
                                        workers=workers)
            results.append((f"local batch scorer, {workers} worker(s)",
                            best_of(repeats, scorer, output)))
        command = [sys.executable, "-m", "ml_service.pipelines.local_batchscore", "--input",
                   str(data), "--output", str(output)]
        env = {**os.environ, "MLOPS_ROOT": str(folder / "store")}
        results.append((f"python -m ...local_batchscore, {cores} workers (whole command)",
                        best_of(repeats, lambda: subprocess.run(
                            command, env=env, cwd=PROJECT_ROOT, check=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), output)))
    return results


def report(rows: int, results: List[Tuple[str, float]]) -> str:
    """The figures as a table, then the two ratios and their goals."""
    cores = os.cpu_count() or 1
    times = dict(results)
    base = results[0][1]
    lines = [f"{'what':<62} {'seconds':>8} {'rows/s':>10} {'x baseline':>10}"]
    lines += [f"{name:<62} {seconds:>8.2f} {rows / seconds:>10,.0f} {seconds / base:>10.2f}"
              for name, seconds in results]
    one = times["local batch scorer, 1 worker(s)"]
    every = times[f"local batch scorer, {cores} worker(s)"]
    two = times["local batch scorer, 2 worker(s)"]
    lines.append(f"all-cores scorer time / baseline time: {every / base:.2f} (goal: <= 1.5)")
    lines.append(f"2-worker speed / 1-worker speed:       {one / two:.2f} (goal: >= 1.6)")
    if cores > 2:
        lines.append(f"{cores}-worker speed / 1-worker speed:       {one / every:.2f}")
    return "\n".join(lines)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Rows to score and repeats to take the best of."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the CSV file")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (best kept)")
    return parser.parse_args(argv)


def main(argv: Optional[list] = None) -> int:
    """Measure and print."""
    args = parse_args(argv)
    configure_logging(logging.WARNING)
    results = measure(max(1, args.rows), max(1, args.repeats))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {args.rows:,} rows, "
          f"best of {args.repeats}, load average {load:.2f}")
    print(report(args.rows, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
