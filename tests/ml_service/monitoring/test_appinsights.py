"""Reading the records the scoring service logged to Application Insights: the real
LogsQueryClient of azure-monitor-query and azure-core's requests transport do their own work;
only the HTTP exchange with the Log Analytics query API is answered here, in its REST shape."""
import datetime as dt
import json

import numpy as np
import pytest

from ml_service.monitoring import appinsights
from ml_service.monitoring.appinsights import (AppInsightsError, read_app_insights,
                                               records_from_messages, timespan)
from ml_service.monitoring.collected import CollectedDataError
from ml_service.monitoring.collector import LOG_PREFIX, make_record
from tests.log_analytics import WHEN, WORKSPACE, LogAnalytics, client_for, logged, logs_table

MODEL = {"name": "m", "version": "2", "service": "aks-svc"}


def request_record(request_id, rows):
    return make_record(request_id, WHEN, MODEL, rows, {"result": rows.sum(axis=1)})


def test_the_query_asks_for_the_window_and_the_parts_are_joined_back():
    big = request_record("big", np.random.default_rng(0).normal(size=(1000, 10)))
    small = request_record("small", np.ones((2, 10)))
    messages = logged(big) + logged(small)
    assert len(messages) > 2
    service = LogAnalytics(answer=logs_table(messages))
    collected = read_app_insights(client_for(service), WORKSPACE, dt.date(2026, 12, 1),
                                  dt.date(2026, 12, 2), "aks-svc")
    assert [r["id"] for r in collected.records] == ["big", "small"]
    assert collected.records[0]["inputs"] == np.asarray(big["inputs"]).tolist()
    assert collected.records[0]["outputs"]["result"] == big["outputs"]["result"].tolist()
    assert "part" not in collected.records[0]
    [sent] = service.seen
    assert sent.method == "POST" and sent.url.startswith(
        f"https://api.loganalytics.io/v1/workspaces/{WORKSPACE}/query")
    assert sent.headers["Authorization"] == "Bearer token-from-az"
    body = json.loads(sent.body)
    assert body["query"] == appinsights.query_text()
    assert body["timespan"] == "2026-12-01T00:00:00.000Z/2026-12-03T00:00:00.000Z"


def test_another_services_records_are_left_out():
    other = make_record("o", WHEN, {**MODEL, "service": "aci-svc"}, np.ones((1, 2)),
                        {"result": np.ones(1)})
    mine = request_record("m", np.ones((1, 2)))
    records = records_from_messages(logged(other) + logged(mine), "aks-svc")
    assert [r["id"] for r in records] == ["m"]


@pytest.mark.parametrize("message, problem", [
    (LOG_PREFIX + "{not json", "message 1: not a collected record"),
    (LOG_PREFIX + '{"id": "x"}', "it needs id, time, model"),
])
def test_a_message_that_is_not_a_record_is_named(message, problem):
    with pytest.raises(CollectedDataError, match=problem):
        records_from_messages([message])


def test_a_refused_or_partial_answer_is_an_error_naming_the_workspace():
    denied = LogAnalytics(status=403, answer={"error": {
        "code": "InsufficientAccessError", "message": "The provided credentials have "
        "insufficient access to perform the requested operation"}})
    with pytest.raises(AppInsightsError, match=f"{WORKSPACE} did not answer the query"):
        read_app_insights(client_for(denied), WORKSPACE, None, None)
    partial = LogAnalytics(answer={**logs_table([]), "error": {
        "code": "PartialError", "message": "There were some errors when processing your "
        "query.", "details": [{"code": "EngineError", "message": "too many rows"}]}})
    with pytest.raises(AppInsightsError, match="answered in part only"):
        read_app_insights(client_for(partial), WORKSPACE, None, None)


def test_without_since_the_window_reaches_back_thirty_days():
    start, end = timespan(None, None, today=dt.date(2026, 12, 3))
    assert (start.date(), end.date()) == (dt.date(2026, 11, 3), dt.date(2026, 12, 4))
