"""Batch scoring script: Azure ML ParallelRunStep's entry script (SDK v1), a v2 batch
deployment's scoring script, and the local runner's.

ParallelRunStep calls ``init()`` once per worker process and ``run(mini_batch)`` for
every mini-batch of a tabular dataset (a pandas DataFrame). A v2 batch deployment calls
the same two functions with a mini-batch of CSV file paths (a ``uri_folder`` input): each
file is read as pandas reads it and scored, its rows in file order, so ``N`` below is the
row's number in its file and a ``file`` column names the file. ``run`` returns the same
rows, in the same order, with two columns appended:

- ``prediction``: the model package's prediction (``training.prediction.predict``: a value,
  or a classifier's positive-class probability), empty (NaN) for a row that cannot be scored;
- ``error``: empty for a scored row, else ``row N: <every problem of the row>``
  (a missing value, a value that is not a number, an infinite value).

Bad rows are kept, not dropped, so the output has exactly the input's rows. ``N`` is
the row's index label: the local runner (``ml_service.pipelines.local_batchscore``)
labels rows with their number in the input file (0 for the first row after the
header, as ``pandas.read_csv`` numbers them); on Azure ML it is the row's position in
its mini-batch, as ParallelRunStep passes no file offsets (carry an id column to
identify rows there). A problem with the whole mini-batch (a feature column missing)
raises BatchInputError instead.

Features: the columns named by the model's ``feature_names_in_`` when it has them;
otherwise every column but the target column, in file order, as the training code
uses them, and their number must match the model's.

Arguments (read from ``sys.argv`` with ``parse_known_args``, so ParallelRunStep's own
arguments are ignored): ``--model_name`` and ``--model_version`` (a number or
``production``) load the model through the backend (Azure ML inside a run, else the
local store); ``--model_path`` loads a model file directly; with neither of them and
AZUREML_MODEL_DIR set (a v2 batch deployment mounts its model there), the model is the one
in that folder. ``--input_types dataprep``
(the Azure ML pipeline passes it) says the mini-batches come from a tabular dataset, whose
learnt column types are made the ones pandas gives the local runner (a 0/1 column arrives
as booleans otherwise, and every row would be refused as "not a number").
"""
import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

if not __package__:
    # ParallelRunStep's driver loads this file by its path, from the driver's own folder;
    # put the repository root (the step's source directory) on sys.path so that the
    # project's imports below resolve as they do for every other step script.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from diabetes_regression.training import model_files  # noqa: E402
from diabetes_regression.training.prediction import RESULT_KEY, predict  # noqa: E402
from diabetes_regression.training.train import TARGET_COLUMN  # noqa: E402
from ml_service.backends import get_backend  # noqa: E402
from ml_service.backends.base import Backend, ModelVersion  # noqa: E402
from ml_service.errors import ConfigurationError, ModelNotFoundError  # noqa: E402
from ml_service.util.dataprep_types import (DATAPREP, INPUT_TYPES, PANDAS,  # noqa: E402
                                            as_pandas_reads_it)
from ml_service.util.env_variables import TrainingSettings, load_dotenv_file  # noqa: E402

LOGGER = logging.getLogger(__name__)
PREDICTION_COLUMN = "prediction"
ERROR_COLUMN = "error"
OUTPUT_COLUMNS = (PREDICTION_COLUMN, ERROR_COLUMN)
PRODUCTION = "production"
# Where a v2 batch deployment mounts its model; the column naming each row's input file.
MODEL_DIR_VARIABLE = "AZUREML_MODEL_DIR"
FILE_COLUMN = "file"

model: Any = None
# How the mini-batches' column types were decided (set by init()).
input_types = PANDAS


class BatchInputError(ValueError):
    """A mini-batch (or input file) cannot be scored at all; the message says why."""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse this script's arguments, ignoring the ones ParallelRunStep adds."""
    # No abbreviations: ParallelRunStep passes its own options (--output, --mini_batch_size,
    # ...), which must never be taken for a prefix of ours.
    parser = argparse.ArgumentParser(description="batch scoring script", allow_abbrev=False)
    parser.add_argument("--model_name", help="registered model name (default: MODEL_NAME)")
    parser.add_argument("--model_version", default=PRODUCTION,
                        help=f"a version number or {PRODUCTION!r} (default)")
    parser.add_argument("--model_path", type=Path,
                        help="load this model file instead of asking the registry")
    parser.add_argument("--input_types", choices=INPUT_TYPES, default=PANDAS,
                        help="who read the mini-batches: pandas (the local runner, default) "
                             "or dataprep (an Azure ML tabular dataset)")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    return args


def resolve_model(backend: Backend, name: str, version: str) -> ModelVersion:
    """The registered model version to score with: a number, or the production one."""
    wanted = str(version).strip().lower()
    if wanted == PRODUCTION:
        found = backend.get_production_model(name)
        if found is None:
            raise ModelNotFoundError(f"model {name!r} has no production version: train and "
                                     "register one (make run) or pass --model_version N")
        return found
    try:
        number = int(wanted)
    except ValueError as err:
        raise ConfigurationError(f"bad model version {version!r}: use a number or "
                                 f"{PRODUCTION!r}") from err
    return backend.get_model(name, number)


def fetch_model(backend: Backend, name: str, version: str, target_dir: Path) -> Path:
    """Download a registered model version into a folder; return the model file's path."""
    found = resolve_model(backend, name, version)
    path = backend.download_model(found, target_dir)
    LOGGER.info("Model %s version %d from the %s backend", found.name, found.version,
                backend.name)
    return path


def load_model(path: Path) -> Any:
    """Load a model file, or the model in a folder (as a download gives it)."""
    try:
        return model_files.load_model(path)
    except model_files.ModelFileError as err:
        raise ModelNotFoundError(str(err)) from err


def feature_columns(columns: Sequence[Any], fitted: Any) -> List[Any]:
    """The input columns the model reads, in its order; BatchInputError if they are not there."""
    columns = list(columns)
    clashes = [name for name in OUTPUT_COLUMNS if name in columns]
    if clashes:
        raise BatchInputError(f"the input already has column(s) {', '.join(clashes)}, which "
                              "the output appends: rename or drop them")
    named = getattr(fitted, "feature_names_in_", None)
    if named is not None:
        missing = [name for name in named if name not in columns]
        if missing:
            raise BatchInputError(f"feature column(s) missing: {', '.join(map(str, missing))}; "
                                  f"the model reads {', '.join(map(str, named))}")
        return list(named)
    features = [name for name in columns if name != TARGET_COLUMN]
    expected = int(fitted.n_features_in_)
    if len(features) != expected:
        raise BatchInputError(
            f"the model reads {expected} feature columns; the input has {len(features)} "
            f"({', '.join(map(str, features)) or 'none'}); every column but the target "
            f"{TARGET_COLUMN!r} is taken as a feature")
    return features


def _as_numbers(values: pd.Series) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """A column as floats (NaN where missing or not a number) and, for a column that is
    not numeric, the mask of its values that are present but not numbers."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return np.full(len(values), np.nan), values.notna().to_numpy()
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=float, na_value=np.nan), None
    coerced = pd.to_numeric(values, errors="coerce")
    numbers = np.array(coerced.to_numpy(dtype=float, na_value=np.nan))
    if values.dtype == object:
        # pandas converts True and False to 1 and 0; the online scoring script refuses them.
        numbers[[isinstance(value, (bool, np.bool_)) for value in values]] = np.nan
    return numbers, values.notna().to_numpy() & np.isnan(numbers)


def _describe(frame: pd.DataFrame, columns: Sequence[Any], matrix: np.ndarray,
              not_numbers: dict, row: int) -> str:
    """Every problem of one row, with the row's label."""
    problems = []
    for position in np.flatnonzero(~np.isfinite(matrix[row])):
        column = columns[position]
        mask = not_numbers.get(position)
        if mask is not None and mask[row]:
            value = frame[column].iloc[row]
            value = value.item() if isinstance(value, np.generic) else value
            problems.append(f"{column} value {value!r} is not a number")
        elif np.isnan(matrix[row, position]):
            problems.append(f"{column} is missing")
        else:
            problems.append(f"{column} value {matrix[row, position]} is not finite")
    return f"row {frame.index[row]}: " + "; ".join(problems)


def validate_rows(frame: pd.DataFrame,
                  columns: Sequence[Any]) -> Tuple[np.ndarray, Optional[List[str]]]:
    """The feature matrix (floats) and, when some rows are bad, one message per row
    (empty for a good row); None when every row is good."""
    # Column-major, as DataFrame.values is: the model then sums each row in the same order.
    matrix = np.empty((len(frame), len(columns)), dtype=float, order="F")
    not_numbers = {}
    for position, column in enumerate(columns):
        matrix[:, position], mask = _as_numbers(frame[column])
        if mask is not None and mask.any():
            not_numbers[position] = mask
    bad = ~np.isfinite(matrix).all(axis=1)
    if not bad.any():
        return matrix, None
    messages = [""] * len(frame)
    for row in np.flatnonzero(bad):
        messages[row] = _describe(frame, columns, matrix, not_numbers, row)
    return matrix, messages


def _predictions(fitted: Any, matrix: np.ndarray, good: Optional[np.ndarray]) -> np.ndarray:
    """One prediction per row; NaN (or None for non-numeric predictions) for bad rows."""
    names = getattr(fitted, "feature_names_in_", None)
    if names is not None:
        # A model fitted on a data frame checks the names of what it is given.
        matrix = pd.DataFrame(matrix, columns=list(names))
    # What a prediction is (a value, a probability) is the model package's choice.
    if good is None:
        predicted = predict(fitted, matrix)[RESULT_KEY] if len(matrix) else np.empty(0)
    else:
        predicted = predict(fitted, matrix[good])[RESULT_KEY] if good.any() else np.empty(0)
    if good is None:
        return predicted
    numeric = predicted.dtype.kind in "fiub"
    result = np.full(len(matrix), np.nan if numeric else None,
                     dtype=float if numeric else object)
    result[good] = predicted
    return result


def score_frame(frame: pd.DataFrame, fitted: Any) -> pd.DataFrame:
    """The frame's rows, in order, with ``prediction`` and ``error`` appended."""
    matrix, messages = validate_rows(frame, feature_columns(frame.columns, fitted))
    good = None if messages is None else np.array([not m for m in messages], dtype=bool)
    predictions = _predictions(fitted, matrix, good)
    errors = [""] * len(frame) if messages is None else messages
    return frame.assign(**{PREDICTION_COLUMN: predictions, ERROR_COLUMN: errors})


def init(argv: Optional[Sequence[str]] = None) -> None:
    """Load the model once per worker process (ParallelRunStep calls this first).

    Reads ``sys.argv`` unless ``argv`` is given (the local runner passes its own).
    """
    global model, input_types
    args = parse_args(argv)
    input_types = args.input_types
    mounted = os.environ.get(MODEL_DIR_VARIABLE)
    path = args.model_path or (Path(mounted) if mounted and not args.model_name else None)
    if path is not None:
        model = load_model(path)
        LOGGER.info("Loaded model from %s", path)
        return
    load_dotenv_file()
    training = TrainingSettings.from_env()
    name = args.model_name or training.model_name
    with tempfile.TemporaryDirectory(prefix="batchscore-model-") as folder:
        model = load_model(fetch_model(get_backend(training=training), name,
                                       args.model_version, Path(folder)))


def read_files(paths: Sequence[Any]) -> pd.DataFrame:
    """The rows of a v2 batch deployment's mini-batch (CSV file paths), file by file, each
    labelled with its number in its file and carrying the file's name."""
    frames = []
    for path in map(Path, paths):
        try:
            frame = pd.read_csv(path)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
            raise BatchInputError(f"{path.name} is not a readable CSV file with a header "
                                  f"row: {err}") from err
        if FILE_COLUMN in frame.columns:
            raise BatchInputError(f"{path.name} already has a {FILE_COLUMN!r} column, which "
                                  "the output adds: rename or drop it")
        frames.append(frame.assign(**{FILE_COLUMN: path.name}))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames)


def run(mini_batch: Any) -> pd.DataFrame:
    """Score one mini-batch (a data frame, or a list of CSV files): its rows with
    ``prediction`` and ``error`` appended."""
    if model is None:
        raise RuntimeError("no model loaded: init() must run before run()")
    if isinstance(mini_batch, (list, tuple)):
        frame = read_files(mini_batch)
        if frame.empty:
            return frame
        scored = score_frame(frame.drop(columns=[FILE_COLUMN]), model)
        return scored.assign(**{FILE_COLUMN: frame[FILE_COLUMN].to_numpy()})
    if input_types == DATAPREP:
        mini_batch = as_pandas_reads_it(mini_batch)
    return score_frame(mini_batch, model)
