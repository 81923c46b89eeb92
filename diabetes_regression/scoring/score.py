"""Scoring script, served by azureml-inference-server-http locally and on Azure ML (ACI, AKS).

Request: ``POST /score`` with ``Content-Type: application/json`` and a body
``{"data": [[n numbers], ...]}``, plus ``"labels": true`` to get a classifier's labels.
Answer: ``{"result": [...]}`` (and ``"labels": [...]``), as the model package's
``diabetes_regression.training.prediction.predict`` gives them.

``run`` takes the raw request (``@rawhttp``): the server's own parsing of a JSON body
answers 500 for bytes that are not UTF-8, integers over 4,300 digits and deeply nested
arrays, before a decorated ``run`` is called. Here every client mistake is a 4xx answer
whose ``message`` names it, and a body over ``scoring.max_body_bytes`` is refused (413)
before it is read whole.

Each answered request is handed to the collector the environment chooses (the local store,
the server's log for Application Insights, or nothing: see ml_service/monitoring/
collector.py), off the request path; a refused request is only counted.
"""
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

import numpy as np
import orjson
from azureml_inference_server_http.api.aml_request import AMLRequest, rawhttp
from azureml_inference_server_http.api.aml_response import AMLResponse
from flask import g, has_request_context
from inference_schema.parameter_types.standard_py_parameter_type import (
    StandardPythonParameterType)
from inference_schema.schema_decorators import input_schema, output_schema
from inference_schema.schema_util import (get_input_schema, get_output_schema,
                                          is_schema_decorated)
from werkzeug.exceptions import HTTPException

from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.model_files import find_model, load_model
from diabetes_regression.training.prediction import (LABELS_KEY, PROBABILITY, RESULT_KEY,
                                                     output_kind, predict)
from ml_service.monitoring.collector import NoCollector, collector_from_environment

LOGGER = logging.getLogger(__name__)
DATA_KEY = "data"
ALLOWED = "POST, OPTIONS"
NUMBER_TYPES = frozenset((float, int))
SHOWN_CHARACTERS = 40
# Set to "none" where the service checks no key (the local backend's servers): /swagger.json
# then declares no Authorization header. The descriptions are written in AML_APP_ROOT.
AUTH_VARIABLE, NO_AUTH, APP_ROOT_VARIABLE = "MLOPS_SCORING_AUTH", "none", "AML_APP_ROOT"
# The file each OpenAPI version of the server reads in AML_APP_ROOT instead of building one.
DESCRIPTION_FILES = {"2": "swagger.json", "3": "swagger3.json", "3.1": "swagger3.1.json"}


class RequestError(ValueError):
    """The request cannot be scored; the message says why and ``status`` is the 4xx answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Scorer:
    """The loaded model and the limits of a request."""

    model: Any
    kind: str
    n_features: int
    max_rows: int
    max_body_bytes: int


scorer: Optional[Scorer] = None
collector: Any = NoCollector()


def init() -> None:
    """Load the model from AZUREML_MODEL_DIR (set by the server locally and on Azure ML) and
    start the collector the environment asks for."""
    global scorer, collector
    parameters = load_parameters()
    settings = parameters.scoring
    path = find_model(Path(os.environ.get("AZUREML_MODEL_DIR", ".")))
    model = load_model(path)
    scorer = Scorer(model, output_kind(model), int(model.n_features_in_), settings.max_rows,
                    settings.max_body_bytes)
    describe_api(run, settings.sample, scorer)
    monitoring = parameters.monitoring
    collector.close()
    names = getattr(model, "feature_names_in_", None)
    collector = collector_from_environment(os.environ, monitoring.sample_rate,
                                           monitoring.queue_size, monitoring.max_mb_per_day,
                                           None if names is None else [str(n) for n in names])
    LOGGER.info("Loaded model from %s (answers a %s per row; collecting with %s)", path,
                scorer.kind, type(collector).__name__)


def describe_api(function: Any, sample: Mapping[str, Any], loaded: Scorer) -> None:
    """Record the request and answer schemas of ``function`` for the server's /swagger.json.

    A ``@rawhttp`` run() cannot carry inference-schema's decorators (the server refuses the
    pair when it loads the script). The server reads the schemas later, when it builds
    /swagger.json after init(), so they are recorded here with inference-schema's own
    decorators, under run's name; the wrappers they return are not used.
    """
    if is_schema_decorated(function):
        return  # described by an earlier init() in this process
    rows = sample[DATA_KEY]
    if {len(row) for row in rows} != {loaded.n_features}:
        # parameters.json's sample is for another model (e.g. one trained on other data):
        # describe the request with a row of zeros of the model's width instead.
        LOGGER.warning("scoring.sample rows do not have the %d features the model takes; "
                       "/swagger.json shows a row of zeros", loaded.n_features)
        rows = [[0.0] * loaded.n_features]
    is_classifier = loaded.kind == PROBABILITY
    example = predict(loaded.model, np.asarray(rows, dtype=float), is_classifier, loaded.kind)
    answer = {key: values.tolist() for key, values in example.items()}

    # inference-schema lists the described function's parameters as the body's keys: a
    # stand-in under run's name has the body's keys as parameters, not run's ``request``.
    if is_classifier:
        def body(data: list, labels: bool = False) -> None:
            """The request body of a classifier."""
    else:
        def body(data: list) -> None:
            """The request body of a regressor."""
    body.__module__, body.__name__ = function.__module__, function.__name__
    input_schema(DATA_KEY, StandardPythonParameterType(rows))(body)
    if is_classifier:
        input_schema(LABELS_KEY, StandardPythonParameterType(True), optional=True)(body)
    output_schema(StandardPythonParameterType(answer))(body)
    constrain(get_input_schema(body), loaded)
    # The answer always has "result"; "labels" only when the request asks for them.
    get_output_schema(body)["required"] = [RESULT_KEY]
    if os.environ.get(AUTH_VARIABLE) == NO_AUTH:
        write_descriptions_as_served(function, os.environ.get(APP_ROOT_VARIABLE, ""))


def constrain(schema: dict, loaded: Scorer) -> None:
    """Say in the request's schema what parse_body refuses, which inference-schema's
    example-based schema leaves out: ``data`` is required, no other key is taken, and it
    holds 1 to max_rows rows of exactly the model's width."""
    schema["required"] = [DATA_KEY]
    schema["additionalProperties"] = False
    rows = schema["properties"][DATA_KEY]
    rows.update(minItems=1, maxItems=loaded.max_rows)
    rows["items"].update(minItems=loaded.n_features, maxItems=loaded.n_features)


def write_descriptions_as_served(function: Any, app_root: str) -> None:
    """The server's own API descriptions of ``function`` (every OpenAPI version it serves),
    without the Authorization header its templates declare, as the files the server serves
    instead of its own (``swagger.json``, ``swagger3.json``, ``swagger3.1.json`` in
    AML_APP_ROOT). For a service that checks no key: the local backend's. On Azure ML the
    endpoint checks a key or a token, as the server's descriptions say."""
    from azureml_inference_server_http.constants import SERVER_ROOT
    from azureml_inference_server_http.server.swagger import Swagger

    class Script:
        """What the server's description builders ask of the scoring script."""

        @staticmethod
        def get_run_function() -> Any:
            return function

    if not app_root or not os.path.isdir(app_root):
        raise RuntimeError(f"{AUTH_VARIABLE}={NO_AUTH} needs {APP_ROOT_VARIABLE}, the "
                           f"service's own folder; it is {app_root!r}")
    with tempfile.TemporaryDirectory() as nothing:  # no earlier file is read back
        built = Swagger(nothing, SERVER_ROOT, Script()).swagger_jsons
    for version, name in DESCRIPTION_FILES.items():
        if version in built:
            described = as_served_here(json.loads(json.dumps(built[version])))
            path = Path(app_root) / name
            partial = path.with_suffix(".partial")
            partial.write_text(json.dumps(described, indent=1))
            os.replace(partial, path)


def as_served_here(description: dict) -> dict:
    """The server's OpenAPI (2 or 3) description of a service that checks no key, corrected
    where its templates do not say what it does: no security requirement or scheme; the
    scoring request's body required (none is refused, 415); the liveness route answering an
    HTML page (the templates say plain text)."""
    description.pop("security", None)
    description.pop("securityDefinitions", None)
    description.get("components", {}).pop("securitySchemes", None)
    for path, operations in description.get("paths", {}).items():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
        if "requestBody" in operations.get("post", {}):  # OpenAPI 3
            operations["post"]["requestBody"]["required"] = True
        for parameter in operations.get("post", {}).get("parameters", []):  # OpenAPI 2
            if parameter.get("in") == "body":
                parameter["required"] = True
        healthy = operations.get("get", {}).get("responses", {}).get("200", {})
        if path.endswith("/") and "content" in healthy:  # OpenAPI 3
            healthy["content"] = {"text/html": healthy["content"].popitem()[1]}
        elif path.endswith("/") and "get" in operations:  # OpenAPI 2
            operations["get"]["produces"] = ["text/html"]
    return description


@rawhttp
def run(request: AMLRequest) -> Any:
    """Score a raw HTTP request (as the server passes it) or an already decoded body."""
    if not isinstance(request, Mapping) and request.method == "OPTIONS":
        return AMLResponse("", 200, {"Allow": ALLOWED})
    try:
        if isinstance(request, Mapping):
            features, labels = parse_body(request, scorer)
        else:
            features, labels = parse_request(request, scorer)
        answer = predict(scorer.model, features, labels, scorer.kind)
        check_answer(answer[RESULT_KEY])
    except RequestError as err:
        collector.refused()
        return error_response(err)
    collector.collect(features, answer, request_id())
    return {key: values.tolist() for key, values in answer.items()}


def request_id() -> Optional[str]:
    """The id the inference server gave the request (the client's x-request-id, or a new
    one), which it also returns in its answer's headers; None outside a request."""
    if has_request_context():
        return getattr(g, "request_id", None) or None
    return None


def error_response(err: RequestError) -> AMLResponse:
    """A JSON error answer with the request error's status."""
    headers = {"Allow": ALLOWED} if err.status == 405 else {}
    return AMLResponse({"message": str(err)}, err.status, headers, json_str=True)


def parse_request(request: AMLRequest, loaded: Scorer) -> Tuple[np.ndarray, bool]:
    """Check an HTTP request and return its rows as a float matrix, and whether to add labels."""
    check_method(request.method)
    check_content_type(request.mimetype)
    body = read_body(request.stream, request.content_length, loaded.max_body_bytes)
    return parse_body(decode_body(body), loaded)


def check_method(method: str) -> None:
    """Only POST scores."""
    if method != "POST":
        raise RequestError(f"{method} is not supported: POST a JSON body to /score", 405)


def check_content_type(mimetype: str) -> None:
    """The body must be declared as JSON (``application/json`` or ``application/*+json``)."""
    if mimetype == "application/json" or (mimetype.startswith("application/")
                                          and mimetype.endswith("+json")):
        return
    found = repr(mimetype[:SHOWN_CHARACTERS]) if mimetype else "none"
    raise RequestError(f"Content-Type must be application/json, got {found}", 415)


def read_body(stream: Any, content_length: Optional[int], limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    advice = (f"at most {limit} bytes per request (scoring.max_body_bytes): send fewer rows "
              "per request")
    if content_length is not None and content_length > limit:
        raise RequestError(f"the body has {content_length} bytes; {advice}", 413)
    try:
        body = stream.read(limit + 1)
    except (OSError, ValueError, HTTPException) as err:
        raise RequestError(f"the body could not be read: {err}") from err
    if len(body) > limit:
        raise RequestError(f"the body has more than {limit} bytes; {advice}", 413)
    return body


def decode_body(body: bytes) -> Any:
    """Decode a UTF-8 JSON body; every number becomes a float (huge integers: infinity)."""
    try:
        # orjson parses a well-formed body about ten times faster than the standard library.
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        # A body orjson refuses is read again by the standard library, which names the
        # problem precisely, or parses what orjson does not (integers beyond 64 bits, NaN):
        # those values are then refused with the others by parse_rows.
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(f"the body is not UTF-8 text: byte 0x{body[err.start]:02x} at "
                           f"offset {err.start}") from None
    if not text.strip():
        raise RequestError("the body is empty: send a JSON object such as "
                           '{"data": [[...], ...]}')
    try:
        # parse_int=float: an integer of any length is parsed (to a float, infinity if huge)
        # instead of hitting int()'s digit limit, and checked with the other values.
        return json.loads(text, parse_int=float)
    except json.JSONDecodeError as err:
        raise RequestError(f"the body could not be decoded as JSON: {err}") from None
    except RecursionError:
        raise RequestError("the body's JSON is nested too deeply; a request is "
                           '{"data": [[numbers], ...]}') from None


def parse_body(payload: Any, loaded: Scorer) -> Tuple[np.ndarray, bool]:
    """Check a decoded body; return its rows as a float matrix and whether labels are asked."""
    if not isinstance(payload, dict):
        raise RequestError('the body must be a JSON object such as {"data": [[...], ...]}, '
                           f"got {describe(payload)}")
    unknown = [key for key in payload if key not in (DATA_KEY, LABELS_KEY)]
    if unknown:
        raise RequestError(f"unknown key(s) {', '.join(map(show, unknown[:5]))}: the body "
                           f"takes {DATA_KEY!r} and, for a classifier, {LABELS_KEY!r}")
    if DATA_KEY not in payload:
        raise RequestError(f"the body has no {DATA_KEY!r}: send "
                           f'{{"{DATA_KEY}": [[{loaded.n_features} numbers], ...]}}')
    labels = payload.get(LABELS_KEY, False)
    if type(labels) is not bool:
        raise RequestError(f"{LABELS_KEY!r} must be true or false, got {describe(labels)}")
    if labels and loaded.kind != PROBABILITY:
        raise RequestError(f"{LABELS_KEY!r} is for a classifier; this model answers values")
    return parse_rows(payload[DATA_KEY], loaded.n_features, loaded.max_rows), labels


def parse_rows(data: Any, n_features: int, max_rows: int) -> np.ndarray:
    """Check the ``data`` value of a request and return it as a float matrix.

    The checks run over whole rows and columns in C (types, lengths, finiteness); only
    when one fails is the first culprit looked for, to name its row and column.
    """
    if type(data) is not list:
        raise RequestError(f"{DATA_KEY!r} must be an array of rows, got {describe(data)}")
    if not data:
        raise RequestError(f"{DATA_KEY!r} is empty: send at least one row")
    if len(data) > max_rows:
        raise RequestError(f"{DATA_KEY!r} has {len(data)} rows; at most {max_rows} per "
                           "request (scoring.max_rows)", status=413)
    if set(map(type, data)) != {list}:
        index = next(i for i, row in enumerate(data) if type(row) is not list)
        raise RequestError(f"row {index} must be an array of {n_features} numbers, got "
                           f"{describe(data[index])}")
    if set(map(len, data)) != {n_features}:
        index = next(i for i, row in enumerate(data) if len(row) != n_features)
        found = len(data[index])
        raise RequestError(f"row {index} has {found} value{'' if found == 1 else 's'}; the "
                           f"model needs {n_features}")
    if not set(map(type, chain.from_iterable(data))) <= NUMBER_TYPES:
        row, column = _first(data, lambda value: type(value) not in NUMBER_TYPES)
        raise RequestError(f"row {row}, column {column}: {describe(data[row][column])} is not "
                           "a number")
    try:
        matrix = np.array(data, dtype=float)
    except OverflowError:
        # Only an int from an in-process caller can be too large for a float.
        row, column = _first(data, _overflows)
        raise RequestError(f"row {row}, column {column}: the integer is too large to be a "
                           "finite number") from None
    finite = np.isfinite(matrix)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        raise RequestError(f"row {row}, column {column}: {matrix[row, column]} is not a finite "
                           "number (NaN, infinity, or beyond ±1.8e308)")
    return matrix


def check_answer(result: np.ndarray) -> None:
    """Finite inputs can still overflow the model (e.g. 1e308 times a weight): a 400 naming
    the rows, rather than an answer that is not valid JSON."""
    finite = np.isfinite(result) if result.dtype.kind == "f" else None
    if finite is not None and not finite.all():
        rows = np.flatnonzero(~finite)[:5].tolist()
        raise RequestError(f"row(s) {', '.join(map(str, rows))}: the model's output is not "
                           "finite for these values (too large?)")


def _overflows(value: Any) -> bool:
    """True for a number too large for a float."""
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _first(data: List[list], is_bad: Any) -> Tuple[int, int]:
    """The row and column of the first value for which ``is_bad`` is true."""
    return next((row, column) for row, values in enumerate(data)
                for column, value in enumerate(values) if is_bad(value))


def describe(value: Any) -> str:
    """A value as a message shows it: its JSON kind, and a short form of a scalar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {show(value)}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def show(text: str) -> str:
    """A string quoted, and cut if long (it may be megabytes)."""
    if len(text) > SHOWN_CHARACTERS:
        return repr(text[:SHOWN_CHARACTERS]) + "..."
    return repr(text)
