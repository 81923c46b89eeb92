"""The Log Analytics query API as the tests answer it: the real LogsQueryClient and azure-core's
requests transport do their own work; only the HTTP exchange is answered here, in its REST
shape, through requests' own response building."""
import datetime as dt
import io
import json

import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from azure.monitor.query import LogsQueryClient

from ml_service.monitoring.collector import LOG_PREFIX, split_for_log

WORKSPACE = "00000000-0000-0000-0000-00000000abcd"
WHEN = dt.datetime(2026, 12, 2, 10, tzinfo=dt.timezone.utc).timestamp()


class SignedIn:
    """A credential as the Azure CLI's gives it (the token value is never checked here)."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("token-from-az", int(WHEN) + 3600)


def respond(adapter: requests.adapters.HTTPAdapter, request, status: int, body: bytes,
            headers: dict):
    """The answer to a request, built by requests from a raw response (no socket)."""
    raw = urllib3.HTTPResponse(body=io.BytesIO(body), status=status,
                               headers={"Content-Length": str(len(body)), **headers},
                               preload_content=False, decode_content=False)
    return adapter.build_response(request, raw)


def transport_over(adapter: requests.adapters.HTTPAdapter) -> RequestsTransport:
    """azure-core's requests transport, its HTTPS requests answered by ``adapter``."""
    session = requests.Session()
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=False)


class LogAnalytics(requests.adapters.HTTPAdapter):
    """Answers POST /v1/workspaces/{id}/query as the service does, through requests' own
    response building (only the socket is left out); keeps the requests."""

    def __init__(self, status=200, answer=None):
        super().__init__()
        self.status, self.answer, self.seen = status, answer, []

    def send(self, request, **kwargs):
        self.seen.append(request)
        return respond(self, request, self.status, json.dumps(self.answer).encode(),
                       {"Content-Type": "application/json; charset=utf-8"})


def logs_table(messages):
    return {"tables": [{"name": "PrimaryResult",
                        "columns": [{"name": "TimeGenerated", "type": "datetime"},
                                    {"name": "Message", "type": "string"}],
                        "rows": [["2026-12-02T10:00:00Z", m] for m in messages]}]}


def client_for(service: LogAnalytics) -> LogsQueryClient:
    return LogsQueryClient(SignedIn(), transport=transport_over(service))


def logged(record):
    """The log messages of one record, as the collector's log sink writes them."""
    return [LOG_PREFIX + line.rstrip(b"\n").decode() for line in split_for_log(record, 30000)]
