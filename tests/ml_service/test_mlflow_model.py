"""The registered model is an MLflow model: pyfunc loads models:/<name>@production and it
answers what the served model answers; a version in the format before still loads."""
import importlib.metadata
import logging

import mlflow
import numpy as np
import pytest
import requests
from mlflow.models import Model

from diabetes_regression.register import register_model
from diabetes_regression.training import model_files, train_aml
from diabetes_regression.training.prediction import (LABELS_KEY, PROBABILITY, RESULT_KEY,
                                                     output_kind, predict)
from ml_service.util import training_record
from ml_service.util.deploy_local import deploy_production_model
from ml_service.util.env_variables import ScoringSettings, TrainingSettings
from tests.conftest import feature_names

pytestmark = pytest.mark.integration
MODEL = TrainingSettings().model_name


@pytest.fixture
def registered(backend, csv_file, tmp_path, monkeypatch):
    """A pipeline run that trained on csv_file and registered the model: its step output."""
    run_id = backend.start_pipeline_run("p", {})
    monkeypatch.setenv("MLOPS_PIPELINE_RUN_ID", run_id)
    out = tmp_path / "out"
    assert train_aml.main(["--step_output", str(out), "--data_file_path", str(csv_file)]) == 0
    assert register_model.main(["--run_id", run_id, "--step_input", str(out)]) == 0
    return out


def test_the_model_folder_carries_signature_example_and_pinned_requirements(registered):
    folder = registered / model_files.MODEL_FOLDER
    described = Model.load(str(folder / model_files.MLMODEL))
    features, _ = training_record.read_test_split(registered)
    assert described.signature is not None
    assert list(described.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == \
        [-1, features.shape[1]]
    assert described.saved_input_example_info is not None
    assert described.metadata["feature_names"] == feature_names()
    # The library the model's class comes from is pinned at the version that trained it,
    # whichever library and MLflow flavour the model package uses.
    library = type(model_files.load_model(folder)).__module__.split(".")[0]
    distributions = importlib.metadata.packages_distributions()[library]
    pinned = dict(line.split("==", 1) for line in
                  (folder / "requirements.txt").read_text().splitlines() if "==" in line)
    assert any(pinned.get(name) == importlib.metadata.version(name) for name in distributions), \
        (library, distributions, pinned)


def test_pyfunc_loads_production_and_answers_as_the_service(backend, registered, tmp_path):
    mlflow.set_tracking_uri(backend.tracking_uri)
    mlflow.set_registry_uri(backend.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}@production")
    features, _ = training_record.read_test_split(registered)
    native = model_files.load_model(registered / model_files.MODEL_FOLDER)
    kind = output_kind(native)
    # pyfunc answers the estimator's predict(): a value, or a classifier's label.
    expected = predict(native, features, labels=kind == PROBABILITY)
    answered = np.asarray(pyfunc.predict(features))
    key = LABELS_KEY if kind == PROBABILITY else RESULT_KEY
    np.testing.assert_array_equal(answered, expected[key])

    service = ScoringSettings().service_name
    deployment = deploy_production_model(backend, MODEL, service)
    try:
        response = requests.post(deployment.scoring_uri, timeout=30,
                                 json={"data": features.tolist(),
                                       **({"labels": True} if kind == PROBABILITY else {})})
    finally:
        backend.delete_deployment(service)
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()[key], answered, rtol=1e-12)


def test_a_version_in_the_format_before_still_loads(backend, tmp_path, caplog):
    import joblib

    from diabetes_regression.parameters import load_parameters
    from diabetes_regression.training.train import split_data, train_model
    from tests.conftest import make_frame

    model = train_model(split_data(make_frame()), load_parameters().training)
    legacy = tmp_path / MODEL
    joblib.dump(model, legacy)
    run_id = backend.start_pipeline_run("p", {})
    version = backend.register_model(MODEL, legacy, run_id, {})
    downloaded = backend.download_model(version, tmp_path / "dl")
    caplog.set_level(logging.WARNING)
    loaded = model_files.load_model(downloaded.parent)
    assert type(loaded) is type(model)
    assert "format before MLflow's" in caplog.text and "train and register again" in caplog.text
