"""The collector in-process: records written once each, off the request path, partitioned
by service and day; a full queue, a store that cannot be written and sampling; the log sink
for Application Insights; reading back, torn last lines and bad records."""
import datetime as dt
import json
import logging
import threading

import numpy as np
import pytest

from ml_service.monitoring import collector as collecting
from ml_service.monitoring.collected import CollectedDataError, read_collected
from ml_service.monitoring.collector import (CollectionError, Collector, LocalSink, LogSink,
                                             collector_from_environment, model_identity,
                                             split_for_log)

MODEL = {"name": "m", "version": "3"}
DAY_ONE = dt.datetime(2026, 12, 1, 23, 59, 59, tzinfo=dt.timezone.utc).timestamp()
DAY_TWO = DAY_ONE + 2


def local(tmp_path, **options):
    return Collector(LocalSink(tmp_path, "svc", 10 ** 9), MODEL, **options)


def answer(rows):
    return {"result": rows.sum(axis=1)}


def test_every_record_from_many_threads_is_written_once_and_reads_back(tmp_path):
    collector = local(tmp_path)
    rows = np.arange(12.0).reshape(3, 4)

    def client(number):
        for request in range(50):
            collector.collect(rows + number, answer(rows + number), f"{number}-{request}")
    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert collector.flush()
    collected = read_collected(tmp_path, "svc")
    ids = [record["id"] for record in collected.records]
    assert sorted(ids) == sorted(f"{n}-{r}" for n in range(8) for r in range(50))
    assert collector.counts.collected == 400 and collected.torn == 0
    record = next(r for r in collected.records if r["id"] == "5-0")
    assert record["model"] == "m" and record["version"] == "3"
    assert record["inputs"] == (rows + 5).tolist()
    assert record["outputs"] == {"result": (rows + 5).sum(axis=1).tolist()}
    collector.close()


def test_records_are_partitioned_by_day_in_utc_and_a_window_reads_its_days(tmp_path):
    times = iter([DAY_ONE, DAY_TWO])
    collector = local(tmp_path, clock=lambda: next(times))
    rows = np.ones((1, 2))
    collector.collect(rows, answer(rows), "late")
    collector.collect(rows, answer(rows), "early")
    collector.close()
    assert sorted(p.name for p in (tmp_path / "svc").iterdir()) == ["2026-12-01", "2026-12-02"]
    assert [r["time"] for r in read_collected(tmp_path, "svc").records] == [
        "2026-12-01T23:59:59.000Z", "2026-12-02T00:00:01.000Z"]
    second = read_collected(tmp_path, "svc", since=dt.date(2026, 12, 2))
    assert [r["id"] for r in second.records] == ["early"]
    assert read_collected(tmp_path, "svc", until=dt.date(2026, 11, 30)).records == []


def test_a_full_queue_drops_and_counts_without_blocking_the_request(tmp_path):
    release = threading.Event()

    class SlowSink:
        def write(self, day, lines):
            release.wait(10)
            return len(lines)

        def close(self):
            pass
    collector = Collector(SlowSink(), MODEL, queue_size=2)
    rows = np.ones((1, 2))
    for request in range(20):
        collector.collect(rows, answer(rows), str(request))
    release.set()
    assert collector.flush()
    counts = collector.counts
    assert counts.dropped >= 20 - 2 - 1 and counts.collected + counts.dropped == 20


def test_a_store_that_cannot_be_written_warns_once_and_counts(tmp_path, caplog):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    collector = Collector(LocalSink(blocked, "svc", 10 ** 9), MODEL)
    rows = np.ones((2, 2))
    with caplog.at_level(logging.WARNING, logger=collecting.__name__):
        for request in range(5):
            collector.collect(rows, answer(rows), str(request))
            assert collector.flush()
    assert collector.counts.failed == 5 and collector.counts.collected == 0
    warnings = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(warnings) == 1 and "goes on answering" in warnings[0].getMessage()


def test_the_day_size_cap_stops_writing_and_counts(tmp_path):
    rows = np.ones((1, 2))
    line = len(collecting.encode(collecting.make_record("0", DAY_ONE, MODEL, rows,
                                                        answer(rows))))
    collector = Collector(LocalSink(tmp_path, "svc", 3 * line), MODEL, clock=lambda: DAY_ONE)
    for request in range(5):
        collector.collect(rows, answer(rows), str(request))
    collector.close()
    assert len(read_collected(tmp_path, "svc").records) == 3
    assert (collector.counts.collected, collector.counts.failed) == (3, 2)


def test_the_sampling_rate_collects_that_share(tmp_path):
    chances = iter([0.1, 0.6, 0.49, 0.9])
    collector = local(tmp_path, sample_rate=0.5, chance=lambda: next(chances))
    rows = np.ones((1, 2))
    for request in range(4):
        collector.collect(rows, answer(rows), str(request))
    collector.close()
    assert [r["id"] for r in read_collected(tmp_path, "svc").records] == ["0", "2"]
    assert collector.counts.sampled_out == 2


def test_the_log_sink_writes_one_record_per_request_for_application_insights(caplog):
    collector = Collector(LogSink(), MODEL, split=split_for_log)
    rows = np.ones((2, 3))
    with caplog.at_level(logging.INFO, logger=collecting.LOG_SINK_LOGGER):
        collector.collect(rows, answer(rows), "req-1")
        collector.close()
    [record] = [r for r in caplog.records if r.name == collecting.LOG_SINK_LOGGER]
    message = record.getMessage()
    assert message.startswith(collecting.LOG_PREFIX)
    body = json.loads(message[len(collecting.LOG_PREFIX):])
    assert body["id"] == "req-1" and body["inputs"] == rows.tolist()
    # The inference server sends its print logger's records to Application Insights.
    assert collecting.LOG_SINK_LOGGER.startswith("azmlinfsrv.print.")


def test_a_large_record_is_logged_in_parts_under_the_limit():
    rows = np.random.default_rng(0).normal(size=(1000, 10))
    record = collecting.make_record("big", DAY_ONE, MODEL, rows, answer(rows))
    parts = [json.loads(line) for line in split_for_log(record, limit=30000)]
    assert len(parts) > 1
    assert all(len(line) <= 30000 for line in split_for_log(record, limit=30000))
    assert {p["id"] for p in parts} == {"big"} and [p["part"] for p in parts] == list(
        range(len(parts)))
    assert sum((p["inputs"] for p in parts), []) == rows.tolist()
    assert sum((p["outputs"]["result"] for p in parts), []) == answer(rows)["result"].tolist()


def test_the_model_is_named_by_the_deployer_or_by_azure_mls_model_folder():
    assert model_identity({"MLOPS_MODEL_NAME": "a", "MLOPS_MODEL_VERSION": "2",
                           "MLOPS_SERVICE_NAME": "svc"}) == {
        "name": "a", "version": "2", "service": "svc"}
    assert model_identity({"AZUREML_MODEL_DIR": "/var/azureml-app/azureml-models/b/7",
                           "SERVICE_NAME": "aks-svc"}) == {
        "name": "b", "version": "7", "service": "aks-svc"}
    assert model_identity({}) == {"name": "unknown", "version": "unknown", "service": None}


@pytest.mark.parametrize("environ, message", [
    ({"MLOPS_COLLECTOR": "disk"}, "MLOPS_COLLECTOR='disk': use one of local, log, mdc, off"),
    ({"MLOPS_COLLECTOR": "local"}, "needs MLOPS_COLLECT_DIR"),
    ({"MLOPS_COLLECTOR": "local", "MLOPS_COLLECT_DIR": "/x", "MLOPS_SERVICE_NAME": "../up"},
     "is not a service name"),
])
def test_a_collector_configuration_that_cannot_work_is_refused(environ, message):
    with pytest.raises(CollectionError, match=message):
        collector_from_environment(environ)


def test_the_environment_chooses_the_collector(tmp_path):
    assert type(collector_from_environment({"MLOPS_COLLECTOR": "off"})).__name__ == \
        "NoCollector"
    default = collector_from_environment({})
    assert isinstance(default.sink, LogSink)
    default.close()
    chosen = collector_from_environment({"MLOPS_COLLECTOR": "local",
                                         "MLOPS_COLLECT_DIR": str(tmp_path),
                                         "MLOPS_SERVICE_NAME": "svc"})
    assert isinstance(chosen.sink, LocalSink) and chosen.sink.folder == tmp_path / "svc"
    chosen.close()


def test_a_torn_last_line_is_skipped_and_a_bad_line_elsewhere_is_named(tmp_path):
    folder = tmp_path / "svc" / "2026-12-01"
    folder.mkdir(parents=True)
    rows = np.ones((1, 2))
    line = collecting.encode(collecting.make_record("a", DAY_ONE, MODEL, rows, answer(rows)))
    (folder / "1-x.jsonl").write_bytes(line + line[:-9])
    collected = read_collected(tmp_path, "svc")
    assert [r["id"] for r in collected.records] == ["a"] and collected.torn == 1
    (folder / "2-y.jsonl").write_bytes(b"not json\n" + line)
    with pytest.raises(CollectedDataError, match=r"2-y.jsonl, line 1: not a collected record"):
        read_collected(tmp_path, "svc")
    (folder / "2-y.jsonl").write_bytes(b'{"id": "b"}\n')
    with pytest.raises(CollectedDataError, match="it needs id, time, model"):
        read_collected(tmp_path, "svc")


def test_arrays_of_any_layout_are_collected_and_a_value_json_cannot_hold_is_counted(tmp_path):
    collector = local(tmp_path)
    rows = np.arange(12.0).reshape(4, 3)
    collector.collect(rows[:, ::2], {"result": rows[::2, 0]}, "strided")
    collector.collect(rows, {"result": object()}, "odd")
    collector.collect(rows, answer(rows), "after")
    collector.close()
    records = {r["id"]: r for r in read_collected(tmp_path, "svc").records}
    assert set(records) == {"strided", "after"}
    assert records["strided"]["inputs"] == rows[:, ::2].tolist()
    assert (collector.counts.collected, collector.counts.failed) == (2, 1)


def test_the_sdk_v2_collector_is_refused_where_the_deployment_does_not_enable_it(monkeypatch):
    for name in ("AZUREML_MDC_ENABLED", "AZUREML_MDC_CONFIG_PATH"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CollectionError, match="enable the deployment's data_collector"):
        collector_from_environment({"MLOPS_COLLECTOR": "mdc"})
