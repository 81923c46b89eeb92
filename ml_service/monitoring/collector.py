"""Collect what a deployed model sees: one record per answered request, written off the
request path.

The scoring script hands each answered request to a ``Collector``: the correlation id, the
UTC time, the model's name and version, the input rows and the output values. The request
thread only appends it to a bounded queue (a full queue drops the record and counts it); one
writer thread per server process, every half second, turns the queued records into JSON
lines and hands them to a sink:

- ``local``: the local store, ``<folder>/<service>/<YYYY-MM-DD>/<process>.jsonl``, append only,
  one file per server process and start, so records from several workers never interleave
  and a killed process can tear only the last line of its own file;
- ``log``: one log record per request (split into parts under Application Insights' size
  limit) on the inference server's print logger, which the server sends to Application
  Insights when the deployment enables it (Azure ML SDK v1);
- ``mdc``: Azure ML SDK v2's data collector (``azureml-ai-monitoring``): each request as a
  ``model_inputs`` and a ``model_outputs`` data frame, correlated by the request's id, which
  the managed online deployment's collector keeps (its ``data_collector`` enabled); under a
  local server with ``AZUREML_MDC_ENABLED=true`` and ``AZUREML_MDC_LOCAL_CAPTURE=true`` it
  logs each one instead;
- ``off``: nothing.

The sink comes from the environment, not from the scoring script: ``MLOPS_COLLECTOR``
(``local``, ``log``, ``mdc`` or ``off``; ``log`` when unset), ``MLOPS_COLLECT_DIR`` and
``MLOPS_SERVICE_NAME`` for ``local``; ``MLOPS_MODEL_NAME`` / ``MLOPS_MODEL_VERSION`` name the
model (else they are read from Azure ML's model folder, ``.../azureml-models/<name>/<version>``).

Writing never fails a request: a sink that cannot write logs one warning and the records it
could not write are counted as failed. This module imports only the standard library, numpy
and orjson (and, for ``mdc`` only, pandas and azureml-ai-monitoring): it runs in the scoring
image.
"""
import atexit
import collections
import datetime as dt
import logging
import os
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional

import numpy as np
import orjson

from ml_service.monitoring.variables import (COLLECTOR_VARIABLE, FOLDER_VARIABLE,
                                             MODEL_NAME_VARIABLE, MODEL_VERSION_VARIABLE,
                                             SERVICE_VARIABLE)

LOGGER = logging.getLogger(__name__)
KINDS = ("local", "log", "mdc", "off")
# SDK v2's collection names, which the deployment's data_collector enables.
MDC_INPUTS, MDC_OUTPUTS = "model_inputs", "model_outputs"
DEFAULT_KIND = "log"
# The inference server sends this logger's records to Application Insights (and prints them
# to its log); its print hook uses it for the scoring script's print().
LOG_SINK_LOGGER = "azmlinfsrv.print.model_data"
LOG_PREFIX = "model_data "
# Application Insights keeps at most 32,768 characters of a trace's message.
MAX_LOG_CHARACTERS = 30000
AZUREML_MODEL_FOLDER = re.compile(r"azureml-models/(?P<name>[^/]+)/(?P<version>[^/]+)/?$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# How often the writer thread writes what the requests queued.
WRITE_INTERVAL_S = 0.5


class CollectionError(ValueError):
    """The collector's configuration cannot be used; the message says what to set."""


@dataclass
class Counts:
    """What happened to the records of this process."""

    collected: int = 0  # handed to the sink and written
    dropped: int = 0  # not queued: the queue was full
    failed: int = 0  # the sink could not write them (or over the day's size cap)
    refused: int = 0  # requests answered with an error: counted, not collected
    sampled_out: int = 0  # left out by the sampling rate


# -- records -----------------------------------------------------------------------------------
def make_record(request_id: str, when: float, model: Mapping[str, str], inputs: np.ndarray,
                outputs: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    """One request as it is stored (``service`` when the deployer or Azure ML names it)."""
    return {"id": request_id, "service": model.get("service"),
            "time": dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "model": model["name"], "version": model["version"],
            "inputs": inputs, "outputs": dict(outputs)}


def encode(record: Mapping[str, Any]) -> bytes:
    """A record as one JSON line (numpy arrays of any layout, and numpy scalars, as JSON)."""
    return orjson.dumps(record, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY
                        | orjson.OPT_APPEND_NEWLINE)


def _plain(value: Any) -> Any:
    """What orjson does not serialise itself: a non-contiguous array, a numpy scalar."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"cannot collect a {type(value).__name__}")


def whole_record(record: Mapping[str, Any]) -> List[bytes]:
    """A record as one JSON line, however long."""
    return [encode(record)]


def as_record(record: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    """A record as it is, for a sink that encodes it itself (``mdc``)."""
    return [record]


def split_for_log(record: Mapping[str, Any], limit: int = MAX_LOG_CHARACTERS) -> List[bytes]:
    """A record as JSON lines of at most ``limit`` characters, split by rows when needed;
    each part carries the id, ``part`` and ``parts``."""
    whole = encode(record)
    if len(whole) <= limit:
        return [whole]
    inputs = np.asarray(record["inputs"])
    outputs = {key: np.asarray(values) for key, values in record["outputs"].items()}
    rows = max(1, inputs.shape[0] * limit // (2 * len(whole)))
    starts = list(range(0, inputs.shape[0], rows))
    return [encode({**record, "inputs": inputs[start:start + rows],
                    "outputs": {k: v[start:start + rows] for k, v in outputs.items()},
                    "part": index, "parts": len(starts)})
            for index, start in enumerate(starts)]


def model_identity(environ: Mapping[str, str]) -> Dict[str, Optional[str]]:
    """The served model's name and version: from the deployer's variables, else from Azure
    ML's model folder, else ``unknown``; and the service's name when known."""
    name = environ.get(MODEL_NAME_VARIABLE, "")
    version = environ.get(MODEL_VERSION_VARIABLE, "")
    if not (name and version):
        found = AZUREML_MODEL_FOLDER.search(environ.get("AZUREML_MODEL_DIR", ""))
        if found:
            name, version = name or found.group("name"), version or found.group("version")
    # The inference server reads the service's name from SERVICE_NAME on Azure ML.
    service = environ.get(SERVICE_VARIABLE) or environ.get("SERVICE_NAME") or None
    return {"name": name or "unknown", "version": version or "unknown", "service": service}


# -- sinks ---------------------------------------------------------------------------------------
class LocalSink:
    """Append-only JSON lines under ``folder/service/day/``, one file per process and start."""

    def __init__(self, folder: Path, service: str, max_bytes_per_day: int) -> None:
        self.folder = Path(folder) / service
        self.max_bytes_per_day = max_bytes_per_day
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.day = ""
        self.written_today = 0
        self.descriptor: Optional[int] = None

    def write(self, day: str, lines: List[bytes]) -> int:
        """Append the lines to the day's file; return how many were written."""
        if day != self.day:
            self.close()
            self.day, self.written_today = day, 0
        kept = []
        for line in lines:
            if self.written_today + len(line) > self.max_bytes_per_day:
                break
            kept.append(line)
            self.written_today += len(line)
        if not kept:
            return 0
        if self.descriptor is None:
            path = self.folder / day / f"{self.token}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        data = memoryview(b"".join(kept))
        while data:
            data = data[os.write(self.descriptor, data):]
        return len(kept)

    def close(self) -> None:
        """Close the day's file."""
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None


class LogSink:
    """One log record per request part, on the inference server's print logger."""

    def __init__(self, logger: logging.Logger = logging.getLogger(LOG_SINK_LOGGER)) -> None:
        self.logger = logger

    def write(self, day: str, lines: List[bytes]) -> int:
        """Log each line; return how many were logged."""
        for line in lines:
            self.logger.info("%s%s", LOG_PREFIX, line.rstrip(b"\n").decode("utf-8"))
        return len(lines)

    def close(self) -> None:
        """Nothing to close."""


class MdcSink:
    """Each request as a model_inputs and a model_outputs frame, correlated by the request's
    id, handed to azureml-ai-monitoring's collectors (which queue and send them themselves).

    Made only where the deployment enables data collection: otherwise the SDK refuses at
    once and so does this sink, naming what to set. A record the SDK refuses later counts as
    failed, like one a file could not hold."""

    def __init__(self, feature_names: Optional[List[str]] = None) -> None:
        from azureml.ai.monitoring import Collector as SdkCollector

        def refuse(err: Exception) -> None:
            raise CollectionError(
                f"{COLLECTOR_VARIABLE}=mdc: azureml-ai-monitoring refuses: {err}; enable the "
                "deployment's data_collector (model_inputs, model_outputs), or under a local "
                "server set AZUREML_MDC_ENABLED=true and AZUREML_MDC_LOCAL_CAPTURE=true")

        self.feature_names = list(feature_names) if feature_names is not None else None
        self.inputs = SdkCollector(name=MDC_INPUTS, on_error=refuse)
        self.outputs = SdkCollector(name=MDC_OUTPUTS, on_error=refuse)

    def columns(self, width: int) -> List[str]:
        """The input frame's column names: the model's feature names when known."""
        if self.feature_names is not None and len(self.feature_names) == width:
            return self.feature_names
        return [f"feature_{index}" for index in range(width)]

    def write(self, day: str, records: List[Mapping[str, Any]]) -> int:
        """Hand each record's frames to the SDK (records, not JSON lines: the SDK encodes
        them itself); return how many were handed over."""
        import pandas as pd
        from azureml.ai.monitoring.context import BasicCorrelationContext

        for record in records:
            rows = np.asarray(record["inputs"], dtype=float)
            inputs = pd.DataFrame(rows, columns=self.columns(rows.shape[1]))
            context = BasicCorrelationContext(id=record["id"])
            self.inputs.collect(inputs, context)
            self.outputs.collect(pd.DataFrame(dict(record["outputs"])), context)
        return len(records)

    def close(self) -> None:
        """The SDK's own worker sends what it queued."""


# -- the collector -----------------------------------------------------------------------------
class Collector:
    """Takes records on the request path and writes them on a thread of its own.

    The request thread only appends to a list (no lock, no wake-up of the writer: a wake-up
    per request costs more than the request on a busy server); the writer drains the list
    every ``interval`` seconds, or at once when flushed or closed, and writes the batch in
    one call. A kill loses at most the records of the last interval.
    """

    def __init__(self, sink: Any, model: Mapping[str, str], sample_rate: float = 1.0,
                 queue_size: int = 10000,
                 split: Optional[Callable[[Mapping[str, Any]], List[Any]]] = None,
                 clock: Callable[[], float] = time.time,
                 chance: Callable[[], float] = random.random,
                 interval: float = WRITE_INTERVAL_S) -> None:
        self.sink = sink
        self.model = dict(model)
        self.sample_rate = sample_rate
        self.queue_size = queue_size
        self.split = split or whole_record
        self.clock = clock
        self.chance = chance
        self.interval = interval
        self.counts = Counts()
        self.pending: Deque[tuple] = collections.deque()
        self.wake = threading.Event()
        self.waiters: List[threading.Event] = []
        self.stopping = False
        self.warned = False
        self.thread = threading.Thread(target=self._write_loop, name="mlops-collector",
                                       daemon=True)
        self.thread.start()

    def collect(self, inputs: np.ndarray, outputs: Mapping[str, np.ndarray],
                request_id: Optional[str] = None) -> None:
        """Queue one answered request; never blocks, never raises."""
        if self.sample_rate < 1 and self.chance() >= self.sample_rate:
            self.counts.sampled_out += 1
            return
        if len(self.pending) >= self.queue_size:
            self.counts.dropped += 1
            return
        self.pending.append((request_id or str(uuid.uuid4()), self.clock(), inputs, outputs))

    def refused(self) -> None:
        """Count a request answered with an error."""
        self.counts.refused += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Write every queued record now; False if ``timeout`` passed first."""
        if not self.thread.is_alive():
            return not self.pending
        done = threading.Event()
        self.waiters.append(done)
        self.wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout)

    def _write_loop(self) -> None:
        while True:
            self.wake.wait(self.interval)
            self.wake.clear()
            stopping, waiters = self.stopping, self._take_waiters()
            records = []
            while self.pending:
                records.append(self.pending.popleft())
            if records:
                try:
                    self._write(records)
                except Exception as err:  # noqa: B902 -- the writer must outlive any record
                    self._warn_once(err)
                    self.counts.failed += len(records)
            for waiter in waiters:
                waiter.set()
            if stopping:
                self.sink.close()
                return

    def _take_waiters(self) -> List[threading.Event]:
        waiters = []
        while self.waiters:
            waiters.append(self.waiters.pop())
        return waiters

    def _write(self, items: List[tuple]) -> None:
        # What the sink takes per record: JSON lines, or the record itself (``as_record``).
        by_day: Dict[str, List[Any]] = {}
        counts: Dict[str, int] = {}
        for request_id, when, inputs, outputs in items:
            record = make_record(request_id, when, self.model, inputs, outputs)
            try:
                lines = self.split(record)
            except (TypeError, ValueError) as err:  # a value JSON cannot hold
                self._warn_once(err)
                self.counts.failed += 1
                continue
            day = record["time"][:10]
            by_day.setdefault(day, []).extend(lines)
            counts[day] = counts.get(day, 0) + 1
        for day, lines in by_day.items():
            try:
                written = self.sink.write(day, lines)
            except (OSError, ValueError) as err:
                written = 0
                self._warn_once(err)
            # A record is one line, or several parts all written together (the log sink).
            whole = min(written, counts[day])
            self.counts.collected += whole
            self.counts.failed += counts[day] - whole

    def _warn_once(self, err: Exception) -> None:
        if not self.warned:
            self.warned = True
            LOGGER.warning("scoring data collection cannot write (%s: %s); the service goes "
                           "on answering, and the records are counted as failed",
                           type(err).__name__, err)


class NoCollector:
    """Collects nothing (``MLOPS_COLLECTOR=off``); counts refused requests like the others."""

    def __init__(self) -> None:
        self.counts = Counts()

    def collect(self, inputs: Any, outputs: Any, request_id: Optional[str] = None) -> None:
        """Nothing to do."""

    def refused(self) -> None:
        """Count a request answered with an error."""
        self.counts.refused += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Nothing is ever queued."""
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Nothing to close."""


def collector_from_environment(environ: Mapping[str, str], sample_rate: float = 1.0,
                               queue_size: int = 10000, max_mb_per_day: float = 100.0,
                               feature_names: Optional[List[str]] = None) -> Any:
    """The collector the environment asks for, its writer started; closed at exit.
    ``feature_names`` name the input columns where the sink keeps names (``mdc``)."""
    kind = environ.get(COLLECTOR_VARIABLE, "").strip() or DEFAULT_KIND
    if kind not in KINDS:
        raise CollectionError(f"{COLLECTOR_VARIABLE}={kind!r}: use one of {', '.join(KINDS)}")
    if kind == "off":
        return NoCollector()
    model = model_identity(environ)
    if kind == "local":
        folder = environ.get(FOLDER_VARIABLE, "")
        service = environ.get(SERVICE_VARIABLE, "")
        if not folder or not service:
            raise CollectionError(f"{COLLECTOR_VARIABLE}=local needs {FOLDER_VARIABLE} (the "
                                  f"folder records go under) and {SERVICE_VARIABLE}")
        if not NAME.match(service):
            raise CollectionError(f"{SERVICE_VARIABLE}={service!r} is not a service name "
                                  "(letters, digits, '.', '_', '-')")
        sink: Any = LocalSink(Path(folder), service, int(max_mb_per_day * 1024 * 1024))
        split = whole_record
    elif kind == "mdc":
        sink, split = MdcSink(feature_names), as_record
    else:
        sink, split = LogSink(), split_for_log
    collector = Collector(sink, model, sample_rate, queue_size, split)
    atexit.register(collector.close, 2.0)
    return collector
