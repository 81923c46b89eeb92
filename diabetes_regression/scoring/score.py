"""Scoring script, served by azureml-inference-server-http locally and on Azure ML.

Request: ``{"data": [[10 numbers], ...]}``; response: ``{"result": [...]}``.
Every client mistake gets a 4xx answer with a message that names it.
"""
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, List

import joblib
import numpy as np
from azureml_inference_server_http.api.aml_response import AMLResponse
from inference_schema.parameter_types.standard_py_parameter_type import (
    StandardPythonParameterType)
from inference_schema.schema_decorators import input_schema, output_schema

LOGGER = logging.getLogger(__name__)
PARAMETERS_PATH = Path(__file__).resolve().parent.parent / "parameters.json"
# The schema decorators need a sample when this module is loaded; it comes from the
# one place the sample lives.
SCORING = json.loads(PARAMETERS_PATH.read_text(encoding="utf-8"))["scoring"]
SAMPLE_ROWS = SCORING["sample"]["data"]
MAX_ROWS = int(SCORING.get("max_rows", 1000))

model = None


class RequestError(ValueError):
    """The request cannot be scored; the message says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def find_model_file(model_dir: Path) -> Path:
    """Return the one model file (``*.pkl``) under the model folder."""
    found = sorted(p for p in model_dir.rglob("*.pkl") if p.is_file())
    if len(found) != 1:
        raise FileNotFoundError(f"expected one .pkl model file under {model_dir}, "
                                f"found {len(found)}")
    return found[0]


def init() -> None:
    """Load the model from AZUREML_MODEL_DIR (set by the server locally and on Azure ML)."""
    global model
    model_dir = Path(os.environ.get("AZUREML_MODEL_DIR", "."))
    path = find_model_file(model_dir)
    model = joblib.load(path)
    LOGGER.info("Loaded model from %s", path)


def parse_rows(data: Any, n_features: int, max_rows: int = MAX_ROWS) -> np.ndarray:
    """Check the ``data`` value of a request and return it as a float matrix."""
    if not isinstance(data, list):
        raise RequestError(f"'data' must be a list of rows, got {type(data).__name__}")
    if not data:
        raise RequestError("'data' is empty: send at least one row")
    if len(data) > max_rows:
        raise RequestError(f"'data' has {len(data)} rows; at most {max_rows} per request",
                           status=413)
    for index, row in enumerate(data):
        check_row(row, index, n_features)
    return np.asarray(data, dtype=float)


def check_row(row: Any, index: int, n_features: int) -> None:
    """Raise RequestError naming the row if it is not ``n_features`` finite numbers."""
    if not isinstance(row, list):
        raise RequestError(f"row {index} must be a list of {n_features} numbers, "
                           f"got {type(row).__name__}")
    if len(row) != n_features:
        raise RequestError(f"row {index} has {len(row)} values; the model needs {n_features}")
    for column, value in enumerate(row):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RequestError(f"row {index}, column {column}: {value!r} is not a number")
        if not math.isfinite(value):
            raise RequestError(f"row {index}, column {column}: {value} is not a finite number")


def error_response(err: RequestError) -> AMLResponse:
    """A JSON error answer with the request error's status."""
    return AMLResponse({"message": str(err)}, err.status, json_str=True)


@input_schema("data", StandardPythonParameterType(SAMPLE_ROWS),
              convert_to_provided_type=False)
@output_schema(StandardPythonParameterType({"result": [0.0] * len(SAMPLE_ROWS)}))
def run(data: Any) -> Any:
    """Predict one value per row; answer 4xx for a request that cannot be scored."""
    try:
        rows = parse_rows(data, int(model.n_features_in_))
    except RequestError as err:
        return error_response(err)
    predictions: List[float] = model.predict(rows).tolist()
    return {"result": predictions}
