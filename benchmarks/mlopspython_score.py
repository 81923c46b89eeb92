"""The comparison scoring script of ``benchmark_scoring``: MLOpsPython's style of score.py.

Its ``run`` is decorated with inference-schema (a ``NumpyParameterType`` input built from a
sample, so the server parses the JSON body and inference-schema turns ``data`` into a numpy
array) and answers ``{"result": model.predict(data).tolist()}``, with no checks of its own.
The sample comes from the model package's parameters.json; the model from
AZUREML_MODEL_DIR, as the project's score.py loads it.
"""
import os
from pathlib import Path
from typing import Any, Dict, List

import joblib
import numpy as np
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.schema_decorators import input_schema, output_schema

from diabetes_regression.parameters import load_parameters

SAMPLE = np.array(load_parameters().scoring.sample["data"], dtype=float)

model: Any = None


def init() -> None:
    """Load the one .pkl file under AZUREML_MODEL_DIR."""
    global model
    model_dir = Path(os.environ.get("AZUREML_MODEL_DIR", "."))
    model = joblib.load(next(model_dir.rglob("*.pkl")))


@input_schema("data", NumpyParameterType(SAMPLE))
@output_schema(NumpyParameterType(np.zeros(len(SAMPLE))))
def run(data: np.ndarray, request_headers: Dict[str, str]) -> Dict[str, List[float]]:
    """Predict every row."""
    return {"result": model.predict(data).tolist()}
