"""Read back what SDK v2's data collector kept for one online deployment (``--source mdc``).

score.py's ``mdc`` sink (collector.py) hands each request to azureml-ai-monitoring as two
frames correlated by the request's id: ``model_inputs`` (one column per feature) and
``model_outputs`` (the answer's keys). The deployment's collector writes them to the
workspace's blob store as JSON lines, one event per request with the frame's rows in
``data`` (a list of row objects) and the request's id in ``correlationid``, under
``modelDataCollector/<endpoint>/<deployment>/<collection>/<yyyy>/<MM>/<dd>/<HH>/``. Download
that ``<deployment>`` folder (docs/monitoring.md) and point ``--collected_dir`` at it.

The events name no model version: a deployment serves one version for its whole life (the
rollout creates a new deployment for each version and deletes the old one), so the folder of
the deployment that serves a version holds that version's requests. This module joins each
request's inputs and outputs back into one record, the shape ``collected.read_collected``
returns for the local store.
"""
import datetime as dt
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ml_service.monitoring.collected import Collected, CollectedDataError
from ml_service.monitoring.collector import MDC_INPUTS, MDC_OUTPUTS

# <collection>/<yyyy>/<MM>/<dd>/<HH>/<file>.jsonl
DEPTH = 4


def hour_files(collection: Path, since: Optional[dt.date], until: Optional[dt.date]
               ) -> Iterator[Path]:
    """The collection's JSON-lines files of the days within [since, until], oldest first."""
    for path in sorted(collection.glob("*/*/*/*/*.jsonl")):
        parts = path.relative_to(collection).parts[:DEPTH - 1]
        try:
            day = dt.date(*(int(part) for part in parts))
        except ValueError:
            continue  # not a <yyyy>/<MM>/<dd> folder
        if (since is None or day >= since) and (until is None or day <= until):
            yield path


def events(path: Path) -> Tuple[List[Dict[str, Any]], bool]:
    """The events of one file, and whether its last line was torn (skipped); any other line
    that is not an event is an error naming the file and the line."""
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    found = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                return found, True
            raise CollectedDataError(f"{path}, line {number}: not a data collector event "
                                     f"({err.msg})") from None
        data = event.get("data") if isinstance(event, dict) else None
        if isinstance(data, str):
            data = json.loads(data)
        if not isinstance(data, list) or not event.get("correlationid") \
                or not all(isinstance(row, dict) for row in data):
            raise CollectedDataError(f"{path}, line {number}: not a data collector event (it "
                                     "needs correlationid and data, a list of rows)")
        found.append({**event, "data": data})
    return found, False


def read_collection(folder: Path, name: str, since: Optional[dt.date],
                    until: Optional[dt.date], collected: Collected
                    ) -> Dict[str, Dict[str, Any]]:
    """The events of one collection by request id (the first one kept)."""
    by_id: Dict[str, Dict[str, Any]] = {}
    for path in hour_files(folder / name, since, until):
        found, torn = events(path)
        collected.files += 1
        collected.torn += torn
        for event in found:
            by_id.setdefault(str(event["correlationid"]), event)
    return by_id


def read_mdc(folder: Path, model: str, version: Any, since: Optional[dt.date] = None,
             until: Optional[dt.date] = None) -> Collected:
    """Every request the deployment's collector kept from ``since`` to ``until`` (UTC days),
    as records of ``model`` version ``version``: inputs as rows in the frame's column order,
    outputs by key. A request whose outputs were not kept has no outputs (its rows count as
    schema violations)."""
    folder = Path(folder)
    if not (folder / MDC_INPUTS).is_dir():
        raise CollectedDataError(
            f"{folder} has no {MDC_INPUTS}/ folder: download the deployment's folder "
            f"modelDataCollector/<endpoint>/<deployment>/ from the workspace's blob store "
            "and pass it as --collected_dir")
    collected = Collected()
    inputs = read_collection(folder, MDC_INPUTS, since, until, collected)
    outputs = read_collection(folder, MDC_OUTPUTS, since, until, collected)
    for request, event in inputs.items():
        rows = event["data"]
        answer = outputs.get(request, {}).get("data", [])
        keys = list(dict.fromkeys(key for row in answer for key in row))
        collected.records.append({
            "id": request, "time": event.get("time"), "model": model, "version": version,
            "inputs": [list(row.values()) for row in rows],
            "outputs": {key: [row.get(key) for row in answer] for key in keys}})
    return collected
