"""The record the train step leaves beside the model, read by the steps after it.

Azure ML reuses a step whose snapshot and arguments did not change: the new pipeline run
gets the earlier run's outputs (the model folder) but none of the metrics or tags that
step logged. So the train step writes what the later steps need (its metrics, the dataset
it trained on) into its output folder, and the evaluate and register steps read it from
there and record it on their own pipeline run. Platform-neutral: plain JSON in the folder
of the data edge, on either executor.
"""
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

import numpy as np

from ml_service.backends.base import StepRun
from ml_service.errors import MLOpsError

RECORD_FILE = "training_record.json"
# The rows the train step held out, so the evaluate step scores the production model on
# exactly the data the new model was measured on.
TEST_SPLIT_FILE = "test_split.npz"


class TrainingRecordError(MLOpsError):
    """The train step's record is missing or unreadable."""


@dataclass(frozen=True)
class TrainingRecord:
    """What the train step measured and trained on."""

    train_run_id: str
    metrics: Mapping[str, float]
    tags: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form written to the step output."""
        return {"train_run_id": self.train_run_id, "metrics": dict(self.metrics),
                "tags": dict(self.tags)}


def _replace_atomically(folder: Path, name: str, write: Any) -> Path:
    """Write ``folder/name`` through ``write(open binary file)``, whole or not at all."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(temporary, folder / name)
    except BaseException:
        os.unlink(temporary)
        raise
    return folder / name


def write_training_record(folder: Path, record: TrainingRecord) -> Path:
    """Write the record into the step output folder, whole or not at all; return its path."""
    text = json.dumps(record.to_dict(), indent=2, sort_keys=True).encode("utf-8")
    return _replace_atomically(folder, RECORD_FILE, lambda out: out.write(text))


def write_test_split(folder: Path, features: Any, target: Any) -> Path:
    """Write the held-out rows (features and target, as arrays) beside the model."""
    return _replace_atomically(folder, TEST_SPLIT_FILE, lambda out: np.savez(
        out, X=np.asarray(features), y=np.asarray(target)))


def read_test_split(folder: Path) -> Tuple[np.ndarray, np.ndarray]:
    """The held-out rows the train step wrote into ``folder``: (features, target)."""
    path = Path(folder) / TEST_SPLIT_FILE
    try:
        with np.load(path, allow_pickle=False) as saved:
            features, target = saved["X"], saved["y"]
    except FileNotFoundError as err:
        raise TrainingRecordError(
            f"no {TEST_SPLIT_FILE} in {folder}: the train step writes its test rows beside "
            "the model; run the train step again (an older one did not)") from err
    except (OSError, ValueError, KeyError) as err:
        raise TrainingRecordError(f"{path} is not a readable test split: {err}") from err
    if features.ndim != 2 or target.ndim != 1 or len(features) != len(target) \
            or len(target) == 0:
        raise TrainingRecordError(f"{path}: expected X (rows x features) and y (one value "
                                  f"per row), found {features.shape} and {target.shape}")
    return features, target


def _number(name: str, value: Any, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TrainingRecordError(f"{path}: metric {name!r} is not a finite number: {value!r}")
    return float(value)


def read_training_record(folder: Path) -> TrainingRecord:
    """Read the record the train step wrote into ``folder``; raise TrainingRecordError."""
    path = Path(folder) / RECORD_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise TrainingRecordError(
            f"no {RECORD_FILE} in {folder}: the train step writes it beside the model; "
            "pass the train step's output folder (--step_input)") from err
    except (OSError, ValueError) as err:
        raise TrainingRecordError(f"{path} is not readable JSON: {err}") from err
    if not isinstance(document, dict) or not isinstance(document.get("metrics"), dict) \
            or not isinstance(document.get("tags", {}), dict):
        raise TrainingRecordError(f"{path}: expected an object with 'metrics' and 'tags' "
                                  "objects; run the train step again")
    metrics = {str(k): _number(str(k), v, path) for k, v in document["metrics"].items()}
    tags = {str(k): str(v) for k, v in document.get("tags", {}).items()}
    return TrainingRecord(str(document.get("train_run_id", "")), metrics, tags)


def record_on_pipeline_run(run: StepRun, record: TrainingRecord) -> None:
    """Log the record's metrics and tags on the pipeline run where they are not there yet.

    A train step that really ran has logged them already; a reused one has not.
    """
    present = run.get_pipeline_metrics()
    for name, value in record.metrics.items():
        if present.get(name) != value:
            run.log_metric(name, value)
    tags = run.get_pipeline_tags()
    missing = {k: v for k, v in record.tags.items() if tags.get(k) != v}
    if missing:
        run.set_pipeline_tags(missing)
