"""Read back what the local services' collectors wrote (see collector.py for the layout).

A file's last line may be torn (its server process was killed while writing): it is skipped
and counted. Any other line that is not a record is an error naming the file and the line:
the store is append-only, so such a line was written by something else.
"""
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ml_service.errors import MLOpsError

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FIELDS = ("id", "time", "model", "version", "inputs", "outputs")


class CollectedDataError(MLOpsError):
    """Collected records cannot be read; the message names the file and the line."""


@dataclass
class Collected:
    """The records of one service in a window, and what was skipped reading them."""

    records: List[Dict[str, Any]] = field(default_factory=list)
    files: int = 0
    torn: int = 0


def days_between(since: Optional[dt.date], until: Optional[dt.date],
                 available: List[str]) -> List[str]:
    """The available day folders (``YYYY-MM-DD``) within [since, until], oldest first."""
    return sorted(day for day in available if DAY.match(day)
                  and (since is None or day >= since.isoformat())
                  and (until is None or day <= until.isoformat()))


def parse_text(text: str, source: str) -> Tuple[List[Dict[str, Any]], bool]:
    """The records of one file's text, and whether its last line was torn (skipped)."""
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                return records, True  # the last line, not ended by a newline: torn by a kill
            raise CollectedDataError(f"{source}, line {number}: not a collected record "
                                     f"({err.msg}); move the file out of the store") from None
        if not isinstance(record, dict) or not all(key in record for key in FIELDS):
            raise CollectedDataError(f"{source}, line {number}: not a collected record "
                                     f"(it needs {', '.join(FIELDS)}); move the file out of "
                                     "the store")
        records.append(record)
    return records, False


def read_collected(folder: Path, service: str, since: Optional[dt.date] = None,
                   until: Optional[dt.date] = None) -> Collected:
    """Every record of ``service`` collected from ``since`` to ``until`` (days, UTC)."""
    base = Path(folder) / service
    collected = Collected()
    if not base.is_dir():
        return collected
    for day in days_between(since, until, [p.name for p in base.iterdir() if p.is_dir()]):
        for path in sorted((base / day).glob("*.jsonl")):
            records, torn = parse_text(path.read_text(encoding="utf-8", errors="replace"),
                                       str(path))
            collected.files += 1
            collected.torn += torn
            collected.records.extend(records)
    return collected
