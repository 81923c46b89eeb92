"""Read back the records the scoring service logged to Application Insights (Azure ML v1).

The collector's ``log`` sink (collector.py) writes one log record per request, split into
parts under Application Insights' message limit: ``model_data {json}``. A workspace-based
Application Insights resource keeps them in its Log Analytics workspace's ``AppTraces``
table, which ``azure-monitor-query``'s ``LogsQueryClient`` queries (Kusto). This module
builds the query for a window of UTC days, joins the parts of each request back into one
record, and returns what ``collected.read_collected`` returns for the local store.
"""
import datetime as dt
import json
from typing import Any, Dict, Iterable, List, Optional, Sequence

from ml_service.errors import MLOpsError
from ml_service.monitoring.collected import FIELDS, Collected, CollectedDataError
from ml_service.monitoring.collector import LOG_PREFIX

TABLE = "AppTraces"
WORKSPACE_VARIABLE = "LOG_ANALYTICS_WORKSPACE_ID"
# For docs/configuration.md: (name, kind, default, effect).
DESCRIBED_VARIABLES = (
    (WORKSPACE_VARIABLE, "text", "",
     "The Log Analytics workspace the monitor queries with `--source appinsights` "
     "(`python -m ml_service.monitoring.monitor`; its `--workspace_id` wins)"),
)
# Days go back at most this far when --since is not given (Log Analytics keeps 30 days by
# default).
DEFAULT_DAYS = 30


class AppInsightsError(MLOpsError):
    """The query could not be run or answered only in part."""


def query_text(prefix: str = LOG_PREFIX) -> str:
    """The Kusto query: the collector's records, oldest first."""
    return (f"{TABLE} | where Message startswith {json.dumps(prefix)} "
            "| project TimeGenerated, Message | order by TimeGenerated asc")


def timespan(since: Optional[dt.date], until: Optional[dt.date],
             today: Optional[dt.date] = None) -> tuple:
    """The query's (start, end) datetimes for a window of whole UTC days."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    first = since or today - dt.timedelta(days=DEFAULT_DAYS)
    last = until or today
    start = dt.datetime.combine(first, dt.time(), dt.timezone.utc)
    return start, dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.timezone.utc)


def records_from_messages(messages: Iterable[str], service: Optional[str] = None
                          ) -> List[Dict[str, Any]]:
    """The records of the logged messages, parts joined in order, a request kept once; only
    the given service's when its records name one."""
    parts: Dict[str, Dict[int, Dict[str, Any]]] = {}
    order: List[str] = []
    for number, message in enumerate(messages, start=1):
        try:
            record = json.loads(message[len(LOG_PREFIX):])
        except json.JSONDecodeError as err:
            raise CollectedDataError(f"Application Insights message {number}: not a collected "
                                     f"record ({err.msg})") from None
        if not isinstance(record, dict) or not all(key in record for key in FIELDS):
            raise CollectedDataError(f"Application Insights message {number}: not a collected "
                                     f"record (it needs {', '.join(FIELDS)})")
        if service and record.get("service") not in (None, service):
            continue
        if record["id"] not in parts:
            order.append(record["id"])
        parts.setdefault(record["id"], {})[int(record.get("part", 0))] = record
    return [_joined(parts[request_id]) for request_id in order]


def _joined(parts: Dict[int, Dict[str, Any]]) -> Dict[str, Any]:
    """One request from its parts (a request logged whole has one)."""
    ordered = [parts[index] for index in sorted(parts)]
    first = {key: value for key, value in ordered[0].items() if key not in ("part", "parts")}
    if len(ordered) == 1:
        return first
    first["inputs"] = [row for part in ordered for row in part["inputs"]]
    first["outputs"] = {key: [value for part in ordered for value in part["outputs"][key]]
                        for key in ordered[0]["outputs"]}
    return first


def read_app_insights(client: Any, workspace_id: str, since: Optional[dt.date],
                      until: Optional[dt.date], service: Optional[str] = None) -> Collected:
    """The records logged in the window, read with a ``LogsQueryClient``."""
    from azure.core.exceptions import HttpResponseError
    from azure.monitor.query import LogsQueryStatus

    try:
        result = client.query_workspace(workspace_id, query_text(),
                                        timespan=timespan(since, until))
    except HttpResponseError as err:
        raise AppInsightsError(f"the Log Analytics workspace {workspace_id} did not answer the "
                               f"query: {err.message}") from err
    if result.status != LogsQueryStatus.SUCCESS:
        raise AppInsightsError(f"the Log Analytics workspace {workspace_id} answered in part "
                               f"only ({result.partial_error}): narrow --since / --until")
    messages = _messages(result.tables)
    return Collected(records=records_from_messages(messages, service), files=0, torn=0)


def _messages(tables: Sequence[Any]) -> List[str]:
    messages = []
    for table in tables:
        index = list(table.columns).index("Message")
        messages.extend(str(row[index]) for row in table.rows)
    return messages


def logs_client() -> Any:
    """A LogsQueryClient signed in as the Azure CLI's account (as the pipelines sign in)."""
    from azure.identity import AzureCliCredential
    from azure.monitor.query import LogsQueryClient

    return LogsQueryClient(AzureCliCredential())
