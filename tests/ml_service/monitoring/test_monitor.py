"""make monitor on a real local store: the production model, the dataset it was trained on
and requests collected as the scoring service collects them. Exit codes, the report (its
figures, pictures and page), --register, --retrain and bad input."""
import base64
import datetime as dt
import html.parser
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.model_files import save_model
from diabetes_regression.training.prediction import predict
from diabetes_regression.training.train import TARGET_COLUMN, split_data, train_model
from diabetes_regression.validate.validation import shift_statistics
from ml_service.monitoring import appinsights, monitor
from ml_service.monitoring.collector import Collector, LocalSink, make_record
from ml_service.util.env_variables import ScoringSettings, TrainingSettings
from tests.conftest import make_frame
from tests.log_analytics import WORKSPACE, LogAnalytics, client_for, logged, logs_table

MODEL_NAME = TrainingSettings().model_name
SERVICE = ScoringSettings().service_name
TRAINING_ROWS, WINDOW_ROWS = 400, 300
DAY = dt.datetime.now(dt.timezone.utc).timestamp()


@pytest.fixture
def production(backend, tmp_path):
    """A production model trained on a registered dataset version, and that frame."""
    frame = make_frame(rows=TRAINING_ROWS, seed=0)
    csv = tmp_path / "training.csv"
    frame.to_csv(csv, index=False)
    dataset = backend.register_dataset("training_ds", csv)
    model = train_model(split_data(frame), load_parameters().training)
    run_id = backend.start_pipeline_run("p", {})
    version = backend.register_model(MODEL_NAME, save_model(model, tmp_path / "model"), run_id,
                                     {}, dataset=dataset)
    backend.set_production_model(MODEL_NAME, version.version)
    return model, version, frame


def features(rows: int, seed: int):
    """Rows from the training data's generator: the same distribution, other draws."""
    return make_frame(rows=rows, seed=seed).drop(columns=[TARGET_COLUMN])


def collect(backend, model, version, rows, service=SERVICE):
    """Hand the rows to the collector as the scoring service does, 20 per request."""
    collector = Collector(LocalSink(backend.collected_dir(), service, 10 ** 9),
                          {"name": version.name, "version": str(version.version)})
    values = rows.to_numpy(dtype=float)
    for start in range(0, len(values), 20):
        chunk = values[start:start + 20]
        collector.collect(chunk, predict(model, chunk))
    collector.close()


def run(capsys, caplog, *argv):
    """The monitor's exit code, what it printed and what it logged."""
    caplog.clear()
    code = monitor.main(list(argv))
    return code, capsys.readouterr().out, caplog.text


def report_folder(out: str) -> Path:
    return Path(re.search(r"report: (\S+)", out).group(1)).parent


class Page(html.parser.HTMLParser):
    """The tags of a page, and whether they nest properly."""

    def __init__(self):
        super().__init__()
        self.images, self.open = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag not in ("meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (tag, self.open[-3:])
        self.open.pop()


def test_inputs_from_the_training_distribution_are_no_drift(
        backend, production, capsys, caplog):
    model, version, frame = production
    window = features(WINDOW_ROWS, seed=1)
    collect(backend, model, version, window)
    code, out, _ = run(capsys, caplog)
    assert code == 0, out
    assert "no drift" in out and f"rows: {WINDOW_ROWS} from" in out
    report = json.loads((report_folder(out) / monitor.REPORT_JSON).read_text())
    rule = load_parameters().monitoring.shift
    column = str(window.columns[0])
    expected = shift_statistics(window[column].to_numpy(dtype=float),
                                frame[column].to_numpy(dtype=float), rule)
    assert report["features"][column]["psi"] == pytest.approx(expected["psi"])
    assert report["features"][column]["ks_pvalue"] == pytest.approx(expected["ks_pvalue"])
    assert report["drift"] is False and report["pictures"] == {}
    assert report["model"] == MODEL_NAME and report["version"] == str(version.version)


def test_a_feature_shifted_by_one_standard_deviation_is_named_and_drawn(backend, production,
                                                                        capsys, caplog):
    model, version, frame = production
    window = features(WINDOW_ROWS, seed=1)
    shifted = str(window.columns[1])
    window[shifted] += frame[shifted].std()
    collect(backend, model, version, window)
    code, out, _ = run(capsys, caplog)
    assert code == monitor.EXIT_DRIFT, out
    assert re.search(rf"features drifted \(psi > [\d.]+\): {re.escape(shifted)} \(psi ", out)
    folder = report_folder(out)
    report = json.loads((folder / monitor.REPORT_JSON).read_text())
    assert report["drifted_features"] == [shifted]
    picture = folder / report["pictures"][shifted]
    image = Image.open(picture)
    image.verify()
    assert image.format == "PNG"
    page = Page()
    page.feed((folder / monitor.REPORT_HTML).read_text())
    assert page.open == []
    sources = [i["src"] for i in page.images]
    assert len(sources) == len(report["pictures"])
    assert any(s.endswith(base64.b64encode(picture.read_bytes()).decode())
               for s in sources)
    runs = backend.client.search_runs([backend.experiment_id(monitor.EXPERIMENT)])
    assert runs and {r.data.tags.get("drift") for r in runs} == {"true"}


@pytest.mark.integration  # runs the training pipeline
def test_register_keeps_the_window_and_retrain_runs_the_pipeline(backend, production, capsys,
                                                                 caplog, warm_steps):
    model, version, frame = production
    window = features(WINDOW_ROWS, seed=2)
    window[str(window.columns[0])] += 3 * frame[str(window.columns[0])].std()
    collect(backend, model, version, window)
    code, out, _ = run(capsys, caplog, "--register", "--retrain")
    assert code == monitor.EXIT_DRIFT, out
    name = monitor.inputs_dataset_name(MODEL_NAME)
    registered = backend.find_dataset(name)
    assert f"registered the collected rows as {name} version {registered.version}" in out
    kept = backend.load_dataset(registered)
    assert list(kept.columns) == list(window.columns)
    np.testing.assert_allclose(kept.to_numpy(dtype=float), window.to_numpy(dtype=float))
    assert re.search(r"retrained: pipeline run \w+ \(\w+\): ", out)


@pytest.mark.parametrize("argv, message", [
    ([], "only 40 rows collected for"),
    (["--since", "2999-01-01"], "nothing collected for"),
    (["--service", "elsewhere"], "on service 'elsewhere'"),
    (["--model_version", "99"], "ModelNotFoundError"),
])
def test_what_cannot_be_compared_is_an_error_that_says_what_to_do(backend, production, capsys,
                                                                  caplog, argv, message):
    model, version, _ = production
    collect(backend, model, version, features(40, seed=1))
    code, out, err = run(capsys, caplog, *argv)
    assert code == 1 and message in err and "Traceback" not in err


def test_a_malformed_record_on_disk_is_named(backend, production, capsys, caplog):
    model, version, _ = production
    collect(backend, model, version, features(WINDOW_ROWS, seed=1))
    [written] = (backend.collected_dir() / SERVICE).glob("*/*.jsonl")
    written.write_text("garbage\n" + written.read_text())
    code, _, err = run(capsys, caplog)
    assert code == 1 and f"{written}, line 1: not a collected record" in err


def test_a_window_that_ends_before_it_starts_is_refused(capsys):
    with pytest.raises(SystemExit) as exited:
        monitor.parse_args(["--since", "2026-12-02", "--until", "2026-12-01"])
    assert exited.value.code == 2
    assert "--since 2026-12-02 is after --until 2026-12-01" in capsys.readouterr().err
    assert monitor.parse_args(["--since", "2026-12-01"]).since == dt.date(2026, 12, 1)


def test_collected_rows_leave_out_rows_of_another_width():
    records = [{"inputs": [[1.0, 2.0], [3.0]], "outputs": {"result": [0.5, 0.7]}},
               {"inputs": [[5.0, 6.0]], "outputs": {"result": [0.9]}}]
    rows, predictions, violations = monitor.collected_rows(records, 2)
    assert rows.tolist() == [[1.0, 2.0], [5.0, 6.0]] and predictions.tolist() == [0.5, 0.9]
    assert violations == 1


def test_records_from_application_insights_are_judged_the_same_way(backend, production, capsys,
                                                                   caplog, monkeypatch,
                                                                   tmp_path):
    """--source appinsights (Azure ML v1's records), through the real LogsQueryClient with
    only the query API's HTTP answer made here; the report goes to --report_dir."""
    model, version, frame = production
    window = features(WINDOW_ROWS, seed=1)
    shifted = str(window.columns[0])
    window[shifted] += frame[shifted].std()
    identity = {"name": version.name, "version": str(version.version), "service": SERVICE}
    values = window.to_numpy(dtype=float)
    messages = [message for start in range(0, len(values), 20)
                for message in logged(make_record(
                    f"r{start}", DAY, identity, values[start:start + 20],
                    predict(model, values[start:start + 20])))]
    service = LogAnalytics(answer=logs_table(messages))
    monkeypatch.setattr(appinsights, "logs_client", lambda: client_for(service))
    code, out, _ = run(capsys, caplog, "--source", "appinsights", "--workspace_id", WORKSPACE,
                       "--report_dir", str(tmp_path / "report"))
    assert code == monitor.EXIT_DRIFT, out
    assert f"rows: {WINDOW_ROWS} from {len(messages)} requests" in out
    report = json.loads((tmp_path / "report" / monitor.REPORT_JSON).read_text())
    assert report["drifted_features"] == [shifted]
    assert (tmp_path / "report" / monitor.REPORT_HTML).is_file()
    assert len(service.seen) == 1


def mdc_event(collection, request, when, frame):
    """One line as the deployment's data collector writes it to blob storage: the frame as
    azureml-ai-monitoring serialises it (to_json, orient records), in its event envelope."""
    return json.dumps({"specversion": "1.0", "id": f"{collection}-{request}",
                       "type": f"azureml.inference.{collection}", "time": when,
                       "datacontenttype": "application/json", "correlationid": request,
                       "data": json.loads(frame.to_json(orient="records"))})


def write_mdc(folder, model, window, torn=False):
    """The window's requests (20 rows each) as the collector keeps them, hour by hour."""
    import pandas as pd

    now = dt.datetime.now(dt.timezone.utc)
    hour = Path(f"{now:%Y/%m/%d/%H}")
    lines = {"model_inputs": [], "model_outputs": []}
    for start in range(0, len(window), 20):
        chunk = window.iloc[start:start + 20]
        request, when = f"req-{start}", now.isoformat()
        answer = predict(model, chunk.to_numpy(dtype=float))
        lines["model_inputs"].append(mdc_event("model_inputs", request, when, chunk))
        lines["model_outputs"].append(mdc_event("model_outputs", request, when,
                                                pd.DataFrame(dict(answer))))
    for collection, written in lines.items():
        (folder / collection / hour).mkdir(parents=True)
        text = "\n".join(written) + "\n" + ('{"data": [' if torn else "")
        (folder / collection / hour / "part-0.jsonl").write_text(text)


def test_what_sdk_v2s_data_collector_kept_is_judged_the_same_way(backend, production, capsys,
                                                                 caplog, tmp_path):
    """--source mdc: a deployment's folder of model_inputs / model_outputs events, joined by
    request id; a torn last line (a download cut short) is skipped and counted."""
    model, version, frame = production
    window = features(WINDOW_ROWS, seed=1)
    shifted = str(window.columns[0])
    window[shifted] += frame[shifted].std()
    write_mdc(tmp_path / "blue", model, window, torn=True)
    code, out, _ = run(capsys, caplog, "--source", "mdc", "--collected_dir",
                       str(tmp_path / "blue"), "--report_dir", str(tmp_path / "report"))
    assert code == monitor.EXIT_DRIFT, out
    assert f"rows: {WINDOW_ROWS} from {WINDOW_ROWS // 20} requests" in out
    report = json.loads((tmp_path / "report" / monitor.REPORT_JSON).read_text())
    assert report["drifted_features"] == [shifted]


def test_a_folder_that_is_not_a_deployments_collected_data_is_named(tmp_path):
    from ml_service.monitoring.collected import CollectedDataError
    from ml_service.monitoring.mdc import read_mdc

    with pytest.raises(CollectedDataError, match=f"{tmp_path} has no model_inputs/"):
        read_mdc(tmp_path, MODEL_NAME, 1)
    hour = tmp_path / "model_inputs" / "2026" / "12" / "03" / "10"
    hour.mkdir(parents=True)
    (hour / "a.jsonl").write_text('{"correlationid": "r", "data": 5}\n')
    with pytest.raises(CollectedDataError, match=r"a.jsonl, line 1: .* data, a list of rows"):
        read_mdc(tmp_path, MODEL_NAME, 1)


@pytest.mark.parametrize("variables, argv, message", [
    ({"MLOPS_BACKEND": "azureml"}, [], "pass --source appinsights .* and --report_dir"),
    ({"MLOPS_BACKEND": "azureml"}, ["--source", "mdc", "--report_dir", "r"],
     "pass --collected_dir, .* or set MLOPS_BACKEND=azureml-v2 to fetch them"),
    ({}, ["--source", "mdc"], "pass --collected_dir"),
    ({}, ["--collected_dir", "d"], "pass it with --source mdc"),
    ({"MLOPS_BACKEND": "azureml"}, ["--source", "appinsights", "--report_dir", "r",
                                    "--retrain"], "run ml_service.pipelines.run_train_pipeline"),
    ({}, ["--source", "appinsights"], "needs the Log Analytics workspace id"),
])
def test_what_a_backend_and_source_cannot_do_is_refused_first(monkeypatch, variables, argv,
                                                              message):
    monkeypatch.delenv(appinsights.WORKSPACE_VARIABLE, raising=False)
    with pytest.raises(monitor.MonitoringError, match=message):
        monitor.check_options(monitor.parse_args(argv), variables.get("MLOPS_BACKEND", "local"))
