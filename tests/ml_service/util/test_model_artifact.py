import json

from ml_service.util import model_artifact

MODEL = "diabetes_regression_model.pkl"


def register(backend, tmp_path, build_id):
    path = tmp_path / MODEL
    path.write_bytes(b"model bytes")
    run_id = backend.start_pipeline_run("p", {})
    model = backend.register_model(MODEL, path, run_id, {"BuildId": build_id})
    backend.set_production_model(MODEL, model.version)
    return model


def test_a_build_without_a_new_model_records_not_registered(backend, tmp_path, capsys,
                                                            monkeypatch):
    outputs = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    register(backend, tmp_path, build_id="1")
    out = tmp_path / "artifact"
    assert model_artifact.main(["publish", "--output_dir", str(out), "--build_id", "2"]) == 0
    record = json.loads((out / "model.json").read_text())
    assert record["registered"] is False and "build 2 registered no new" in record["reason"]
    assert "##vso[task.setvariable variable=MODEL_REGISTERED]false" in capsys.readouterr().out
    assert outputs.read_text() == "MODEL_REGISTERED=false\n"
    assert model_artifact.main(["fetch", "--artifact_dir", str(out)]) == 0
    assert "variable=MODEL_REGISTERED]false" in capsys.readouterr().out


def test_publish_then_fetch_the_model_of_a_build(backend, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BUILD_BUILDID", "7")
    model = register(backend, tmp_path, build_id="7")
    out = tmp_path / "artifact"
    assert model_artifact.main(["publish", "--output_dir", str(out)]) == 0
    assert (out / MODEL).read_bytes() == b"model bytes"
    assert json.loads((out / "model.json").read_text())["version"] == model.version
    capsys.readouterr()
    assert model_artifact.main(["fetch", "--artifact_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"##vso[task.setvariable variable=MODEL_VERSION]{model.version}" in printed
    assert "variable=MODEL_REGISTERED]true" in printed


def test_bad_artifacts_and_settings_are_named(backend, tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("BUILD_BUILDID", raising=False)
    assert model_artifact.main(["publish", "--output_dir", str(tmp_path)]) == 1
    assert "BUILD_BUILDID is not set" in caplog.text
    assert model_artifact.main(["fetch", "--artifact_dir", str(tmp_path / "none")]) == 1
    assert "no model.json in" in caplog.text
    (tmp_path / "model.json").write_text('{"registered": true, "name": "m"}')
    assert model_artifact.main(["fetch", "--artifact_dir", str(tmp_path)]) == 1
    assert "is not a model record" in caplog.text
    (tmp_path / "model.json").write_text(json.dumps({"name": MODEL, "version": 9}))
    assert model_artifact.main(["fetch", "--artifact_dir", str(tmp_path)]) == 1
    assert "no model 'diabetes_regression_model.pkl' version 9" in caplog.text
