"""Benchmark: the training pipeline on a 1,000,000-row CSV against reading and fitting it once.

    python -m benchmarks.benchmark_large_data [--rows 1000000] [--repeats 3]

(``make benchmark`` runs it after the loop's figures; ``--no-large`` skips it there.)

In a temporary folder, a seeded CSV file of ``--rows`` rows like the model package's sample
(its rows drawn at random, each value moved by a tenth of its column's standard deviation,
written at full precision: about 230 MB for a million rows). Then, taking turns, each the
best of ``--repeats`` runs:

- baseline: one process reads the file with pandas' default ``read_csv`` and fits the model
  with the model package's ``split_data`` and ``train_model(data, load_parameters().training)``;
- ``python -m ml_service.pipelines.local_executor --data_file_path big.csv`` with
  ``RUN_EVALUATION=false`` (validate, train, register) in a fresh store (``MLOPS_ROOT``) per
  run, whose MLflow database is made beforehand: making one costs seconds whatever the data;
- the same in a store whose production model was trained on that file, so the validate step
  also loads that version as its reference and checks every feature for a shift;
- the baseline and the fresh-store pipeline again on a file of the first ``--small_rows``
  rows (1,000): what each costs whatever the data (start-up: the interpreter and its
  imports, MLflow's store, the steps' processes). Taking it from the big file's figures
  leaves what the rows themselves add to each, and their ratio.

Each command runs under a small wrapper process that reports its wall time, the peak
resident memory of the largest process it started (``ru_maxrss`` of its children: the
pipeline's executor, step launcher and steps) and the CPU time of them all (less disturbed
than wall time by other work on the machine). The figures are printed with their ratio to
the baseline's; the goal is 2x the time and 1.5x the peak memory at most. It takes about
two minutes on 2 cores, most of it in the pipeline runs. Nothing here asserts a time; on a
shared machine take the figures of an otherwise idle one.
"""
import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from diabetes_regression.training.train import TARGET_COLUMN, load_sample_data
from ml_service.backends.local import LocalBackend
from ml_service.paths import PROJECT_ROOT
from ml_service.util.cli import configure_logging

LOGGER = logging.getLogger(__name__)
ROWS = 1_000_000
SMALL_ROWS = 1_000
NOISE = 0.1  # of each column's standard deviation
GOAL_TIME, GOAL_MEMORY = 2.0, 1.5

BASELINE = """
import sys
import pandas as pd
from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.train import split_data, train_model
train_model(split_data(pd.read_csv(sys.argv[1])), load_parameters().training)
"""

# Runs a command and reports its wall time and the largest resident memory of the processes
# it started (Linux and macOS: ru_maxrss of the children, in kB or bytes), and its stderr.
MEASURE = """
import json, resource, subprocess, sys, time
started = time.monotonic()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                      text=True, errors="replace")
seconds = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
peak_bytes = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
print(json.dumps({"code": done.returncode, "seconds": seconds, "peak_bytes": peak_bytes,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime, "stderr": done.stderr}))
"""
STEP_LINE = re.compile(r"\[\d+/\d+\] (?P<step>.+?): completed in (?P<seconds>[\d.]+) s")


@dataclass
class Measurement:
    """One command's best wall time and the peak memory of that run, with its steps."""

    name: str
    seconds: float = float("inf")
    peak_bytes: int = 0
    cpu_seconds: float = 0.0
    steps: Dict[str, float] = field(default_factory=dict)


class CommandFailedError(RuntimeError):
    """A measured command exited with an error."""


def write_large_csv(path: Path, rows: int, seed: int = 0) -> None:
    """Rows of the model package's sample drawn at random, each feature moved by NOISE of its
    column's standard deviation (the target kept as drawn: a classifier's stays a class);
    written by pyarrow (pandas takes ten times as long)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    sample = load_sample_data()
    rng = np.random.default_rng(seed)
    frame = sample.iloc[rng.integers(0, len(sample), size=rows)].reset_index(drop=True)
    features = [name for name in frame.columns if name != TARGET_COLUMN]
    spread = NOISE * sample[features].std().to_numpy()
    frame[features] = frame[features].to_numpy() + rng.normal(size=(rows, len(features))) * spread
    with open(path, "wb") as out:
        out.write((",".join(frame.columns) + "\n").encode())
        pa_csv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), out,
                         pa_csv.WriteOptions(include_header=False))


def step_seconds(stderr: str) -> Dict[str, float]:
    """The local executor's "[i/n] step: completed in s" lines as {step: seconds}."""
    return {m["step"]: float(m["seconds"]) for m in STEP_LINE.finditer(stderr)}


def measure(argv: List[str], env: Dict[str, str], best: Measurement) -> None:
    """Run a command under the MEASURE wrapper; keep it in ``best`` if it is the fastest."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *argv], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    if result["code"] != 0:
        raise CommandFailedError(f"{best.name} exited with code {result['code']}: "
                                 + result["stderr"][-2000:])
    if result["seconds"] < best.seconds:
        best.seconds = result["seconds"]
        best.peak_bytes = result["peak_bytes"]
        best.cpu_seconds = result["cpu_seconds"]
        best.steps = step_seconds(result["stderr"])


def empty_store(folder: Path) -> Path:
    """A store with only its MLflow database made, to copy for each fresh-store run."""
    root = folder / "empty_store"
    LocalBackend(root).client.search_experiments()
    return root


def fresh_store(template: Path, target: Path) -> Path:
    """A copy of the empty store at ``target`` (an older one there removed first)."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(template, target)
    return target


def head_rows(source: Path, target: Path, rows: int) -> None:
    """The header and the first ``rows`` rows of a CSV file."""
    with open(source, "rb") as data, open(target, "wb") as out:
        for _ in range(rows + 1):
            line = data.readline()
            if not line:
                break
            out.write(line)


def run_all(rows: int, repeats: int, folder: Path,
            small_rows: int = SMALL_ROWS) -> List[Measurement]:
    """Write the data, then time the five commands in turn, ``repeats`` times each."""
    data = folder / "big.csv"
    small = folder / "small.csv"
    started = time.monotonic()
    write_large_csv(data, rows)
    head_rows(data, small, min(small_rows, rows))
    LOGGER.warning("wrote %d rows (%.0f MB) in %.1f s", rows, data.stat().st_size / 1e6,
                   time.monotonic() - started)
    template = empty_store(folder)
    base_env = {**os.environ, "RUN_EVALUATION": "false"}
    base_env.pop("MLOPS_PIPELINE_RUN_ID", None)
    pipeline = [sys.executable, "-m", "ml_service.pipelines.local_executor",
                "--data_file_path", str(data)]
    warm_env = {**base_env, "MLOPS_ROOT": str(fresh_store(template, folder / "warm"))}
    subprocess.run(pipeline, env=warm_env, cwd=PROJECT_ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    small_pipeline = [*pipeline[:-1], str(small)]
    results = [Measurement("baseline: one process reads (pandas), splits, fits"),
               Measurement("pipeline, fresh store: validate, train, register"),
               Measurement("pipeline, production model trained on the file"),
               Measurement(f"baseline, first {min(small_rows, rows):,} rows"),
               Measurement(f"pipeline, fresh store, first {min(small_rows, rows):,} rows")]
    for _ in range(repeats):
        measure([sys.executable, "-c", BASELINE, str(data)], base_env, results[0])
        fresh = {**base_env, "MLOPS_ROOT": str(fresh_store(template, folder / "fresh"))}
        measure(pipeline, fresh, results[1])
        measure(pipeline, warm_env, results[2])
        measure([sys.executable, "-c", BASELINE, str(small)], base_env, results[3])
        fresh = {**base_env, "MLOPS_ROOT": str(fresh_store(template, folder / "fresh"))}
        measure(small_pipeline, fresh, results[4])
    return results


def report(rows: int, results: List[Measurement]) -> str:
    """The figures as a table with their ratios to the baseline, the steps, the goal."""
    base = results[0]
    lines = [f"{'what':<58} {'seconds':>8} {'x baseline':>11} {'peak MB':>8} "
             f"{'x baseline':>11} {'CPU s':>7}"]
    for result in results:
        lines.append(f"{result.name:<58} {result.seconds:>8.2f} "
                     f"{result.seconds / base.seconds:>11.2f} {result.peak_bytes / 2**20:>8.0f} "
                     f"{result.peak_bytes / base.peak_bytes:>11.2f} {result.cpu_seconds:>7.2f}")
        lines += [f"  {step:<56} {seconds:>8.2f}" for step, seconds in result.steps.items()]
    fresh, small_base, small_fresh = results[1], results[3], results[4]
    lines.append(f"{rows:,} rows, fresh store: {fresh.seconds / base.seconds:.2f}x the time "
                 f"(goal <= {GOAL_TIME:g}), {fresh.peak_bytes / base.peak_bytes:.2f}x the peak "
                 f"memory (goal <= {GOAL_MEMORY:g})")
    lines.append(f"whatever the data (the small file): the pipeline {small_fresh.seconds:.2f} s "
                 f"= {small_fresh.seconds / base.seconds:.2f}x the baseline's time on all "
                 f"rows; the baseline {small_base.seconds:.2f} s")
    pipeline_rows = fresh.seconds - small_fresh.seconds
    baseline_rows = base.seconds - small_base.seconds
    ratio = pipeline_rows / baseline_rows if baseline_rows > 0 else float("nan")
    lines.append(f"what the rows add: the pipeline {pipeline_rows:.2f} s, the baseline "
                 f"{baseline_rows:.2f} s: {ratio:.2f}x")
    return "\n".join(lines)


def run(rows: int = ROWS, repeats: int = 3, small_rows: int = SMALL_ROWS) -> str:
    """Measure in a temporary folder; return the report."""
    with tempfile.TemporaryDirectory(prefix="benchmark-large-") as folder:
        results = run_all(rows, repeats, Path(folder), small_rows)
    return report(rows, results)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Rows in the file and repeats to take the best of."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="rows in the CSV file")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (best kept)")
    parser.add_argument("--small_rows", type=int, default=SMALL_ROWS,
                        help="rows of the small file (what costs the same whatever the data)")
    return parser.parse_args(argv)


def main(argv: Optional[list] = None) -> int:
    """Measure and print."""
    args = parse_args(argv)
    configure_logging(logging.WARNING)
    text = run(max(1, args.rows), max(1, args.repeats), max(1, args.small_rows))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, load average {load:.2f}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
