"""The training pipeline and the batch scoring script, rehearsed as Azure ML runs them.

Each step of the one pipeline definition runs under the Azure ML backend with the real SDK
(see tests/azureml_rehearsal.py for what is faked): working directory the step's snapshot,
PipelineData folders mounted elsewhere, datasets read by azureml-dataprep. State carries
from one pipeline run to the next, as in a workspace.
"""
import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diabetes_regression.training.model_files import MODEL_FOLDER
from diabetes_regression.training.train import TARGET_COLUMN, load_sample_data
from ml_service.backends import get_backend
from ml_service.backends.azureml import (PRODUCTION_TAG, AzureMLBackend, dataset_folder,
                                         tabular_to_frame, under_working_directory)
from ml_service.backends.base import DatasetVersion
from ml_service.backends.local import read_csv
from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines.definition import DataRef, ParameterRef
from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
from ml_service.util.env_variables import EnvironmentSettings, TrainingSettings
from ml_service.util.sample_dataset import file_digest
from tests.azureml_rehearsal import AzureMLService, learnt_tabular_dataset, run_step

SETTINGS = TrainingSettings()
CONDA_FILE = EnvironmentSettings().conda_file


@pytest.fixture
def service(tmp_path, monkeypatch, mlops_root):
    """A workspace's service and blob container, empty; the Azure ML backend chosen."""
    fake = AzureMLService(tmp_path / "service")
    fake.install(monkeypatch)
    return fake


@pytest.fixture
def azure(service):
    """The Azure ML backend as a step gets it."""
    backend = get_backend(training=SETTINGS)
    assert isinstance(backend, AzureMLBackend)
    service.current_run = service.new_run()
    return backend


def sample_frame(seed: int = 0) -> pd.DataFrame:
    """The model package's sample, its feature values moved a little for another seed."""
    frame = load_sample_data()
    if seed:
        features = [c for c in frame.columns if c != TARGET_COLUMN]
        noise = np.random.default_rng(seed).normal(0, 1e-3, (len(frame), len(features)))
        frame[features] = frame[features] + noise
    return frame


def script_main(script: str):
    """A step script's main(), imported by the script's path in the source directory."""
    module = importlib.import_module(script[:-len(".py")].replace("/", "."))
    return module.main


def run_pipeline(service: AzureMLService, run_dir: Path, parameters=None) -> object:
    """One run of the training pipeline definition, each step as Azure ML runs it."""
    definition = build_training_pipeline(SETTINGS)
    values = definition.resolve_parameters(parameters)
    mounts = {name: run_dir / "mnt" / name for name in definition.data}
    for folder in mounts.values():
        folder.mkdir(parents=True)
    pipeline_run = service.new_run()
    for step in definition.steps:
        snapshot = run_dir / "snapshots" / step.name.replace(" ", "_")
        snapshot.mkdir(parents=True)
        argv = [values[a.name] if isinstance(a, ParameterRef)
                else str(mounts[a.name]) if isinstance(a, DataRef) else a
                for a in step.arguments]
        code = run_step(service, pipeline_run, snapshot, script_main(step.script), argv)
        assert code == 0, f"step {step.name} exited with {code}"
        assert not any(snapshot.iterdir()), f"step {step.name} left files in its snapshot"
        if service.runs[pipeline_run.id].cancelled:
            break
    return pipeline_run


def register_file(backend, frame: pd.DataFrame, path: Path) -> DatasetVersion:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return backend.register_dataset(SETTINGS.dataset_name, path, "rehearsal")


@pytest.mark.process
def test_the_first_training_run_registers_the_model_as_production(service, azure, tmp_path):
    """Defect: Model.register refused the model folder mounted outside the snapshot."""
    register_file(azure, sample_frame(), tmp_path / "data" / "diabetes.csv")
    pipeline_run = run_pipeline(service, tmp_path / "run1")

    production = azure.get_production_model(SETTINGS.model_name)
    assert production is not None and production.version == 1
    assert production.tags[PRODUCTION_TAG] == "true"
    assert production.tags["dataset_version"] == "1"
    assert service.runs[pipeline_run.id].tags["registered_model_version"] == "1"
    files = service.model_files(SETTINGS.model_name, 1)
    assert f"{MODEL_FOLDER}/MLmodel" in files
    # The files registered are the ones the train step wrote.
    saved = tmp_path / "run1" / "mnt"
    written = {p.relative_to(next(saved.rglob(MODEL_FOLDER)).parent).as_posix(): p.read_bytes()
               for p in next(saved.rglob(MODEL_FOLDER)).rglob("*") if p.is_file()}
    assert files == written


@pytest.mark.process
def test_the_next_run_downloads_production_and_the_old_data_stays_as_it_was(
        service, azure, tmp_path):
    """State across runs: the evaluate step downloads the production model with the real
    Model.download, and the dataset version the first model trained on still reads its data
    after a changed file of the same name was registered."""
    data_file = tmp_path / "data" / "diabetes.csv"
    register_file(azure, sample_frame(), data_file)
    first = azure.load_dataset(DatasetVersion(SETTINGS.dataset_name, 1))
    run_pipeline(service, tmp_path / "run1")

    register_file(azure, sample_frame(seed=7), data_file)
    pipeline_run = run_pipeline(service, tmp_path / "run2")

    tags = service.runs[pipeline_run.id].tags
    assert tags["production_model_version"] == "1"
    assert tags["dataset_version"] == "2"
    pd.testing.assert_frame_equal(azure.load_dataset(DatasetVersion(SETTINGS.dataset_name, 1)),
                                  first)
    assert not azure.load_dataset(DatasetVersion(SETTINGS.dataset_name, 2)).equals(first)


@pytest.mark.process
def test_a_dataset_version_never_changes_when_its_source_is_written_again(
        service, azure, tmp_path):
    """Defect: local files went to datasets/<name>/<file> with overwrite=True, and a
    datastore path was registered as it was, so writing new data there changed every
    version registered from it."""
    data_file = tmp_path / "upload" / "diabetes.csv"
    old, new = sample_frame(), sample_frame(seed=3)
    register_file(azure, old, data_file)
    register_file(azure, new, data_file)
    # MLOpsPython's --data_file_path: new data written over the same datastore path.
    service.write_blob("incoming/diabetes.csv", old.to_csv(index=False).encode())
    azure.register_dataset(SETTINGS.dataset_name, Path("incoming/diabetes.csv"), "drop")
    service.write_blob("incoming/diabetes.csv", new.to_csv(index=False).encode())
    azure.register_dataset(SETTINGS.dataset_name, Path("incoming/diabetes.csv"), "drop")

    versions = [azure.load_dataset(DatasetVersion(SETTINGS.dataset_name, v)) for v in (1, 2, 3, 4)]
    expected = [old, new, old, new]
    for frame, wanted in zip(versions, expected):
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), wanted, check_dtype=False,
                                      rtol=1e-12)
    # Same bytes, same place: registering them again uploads nothing new.
    folder = dataset_folder(SETTINGS.dataset_name, file_digest(data_file))
    assert service.blob_path(f"{folder}/diabetes.csv").is_file()


def test_a_datastore_path_that_is_not_one_file_is_refused(service, azure):
    service.write_blob("incoming/a.csv", b"x,y\n1,2\n")
    with pytest.raises(ConfigurationError, match="incoming is not a file on datastore"):
        azure.register_dataset(SETTINGS.dataset_name, Path("incoming"), "drop")
    assert SETTINGS.dataset_name not in service.datasets


def test_the_model_path_given_to_the_sdk_is_under_the_working_directory(
        tmp_path, monkeypatch):
    outside, snapshot = tmp_path / "mnt" / "model", tmp_path / "snapshot"
    outside.mkdir(parents=True)
    (outside / "MLmodel").write_text("flavors: {}\n")
    snapshot.mkdir()
    monkeypatch.chdir(snapshot)
    with under_working_directory(outside) as local:
        assert not Path(local).is_absolute() and not local.startswith("..")
        assert (snapshot / local / "MLmodel").read_text() == "flavors: {}\n"
        assert Path(local).name == MODEL_FOLDER
    assert not any(snapshot.iterdir())
    (snapshot / "here").mkdir()
    with under_working_directory(snapshot / "here") as local:
        assert local == "here"


@pytest.mark.process
def test_batch_scoring_scores_a_0_and_1_feature_delivered_as_dataprep_delivers_it(
        service, azure, tmp_path):
    """Defect: ParallelRunStep's mini-batches come from a tabular dataset whose 0/1 column
    dataprep learns as booleans; every row was refused as 'not a number'."""
    from diabetes_regression.scoring import parallel_batchscore

    register_file(azure, sample_frame(), tmp_path / "data" / "diabetes.csv")
    run_pipeline(service, tmp_path / "run1")
    frame = sample_frame().head(20).drop(columns=[TARGET_COLUMN])
    flag = frame.columns[0]
    frame[flag] = np.arange(len(frame)) % 2
    scoring_input = tmp_path / "scoring" / "input.csv"
    scoring_input.parent.mkdir()
    frame.to_csv(scoring_input, index=False)
    mini_batch = learnt_tabular_dataset(scoring_input).to_pandas_dataframe()
    assert pd.api.types.is_bool_dtype(mini_batch[flag].dtype)

    snapshot = tmp_path / "batch-snapshot"
    snapshot.mkdir()
    with service.step(service.new_run(), snapshot):
        parallel_batchscore.init(["--model_name", SETTINGS.model_name, "--model_version",
                                  "production", "--input_types", "dataprep"])
        scored = parallel_batchscore.run(mini_batch)
    assert scored["error"].tolist() == [""] * len(frame)
    with service.step(service.new_run(), snapshot):
        parallel_batchscore.init(["--model_name", SETTINGS.model_name])
        local = parallel_batchscore.run(read_csv(scoring_input))
    np.testing.assert_allclose(scored["prediction"].to_numpy(dtype=float),
                               local["prediction"].to_numpy(dtype=float))


@pytest.mark.parametrize("text", ["x,flag\n0.5,0\n1.5,1\n2.5,\n3.5,1\n",
                                  "x,flag\n0.5,1\n1.5,0\n2.5,1\n3.5,0\n"])
def test_a_0_and_1_column_reads_as_pandas_reads_it_with_or_without_blanks(tmp_path, text):
    """Defect: with a blank, dataprep delivers the column as objects (True/False/None),
    which the step then called 'non-numeric' on Azure ML only."""
    path = tmp_path / "data.csv"
    path.write_text(text)
    delivered = learnt_tabular_dataset(path).to_pandas_dataframe()
    assert delivered["flag"].dtype in (bool, object)
    pd.testing.assert_frame_equal(tabular_to_frame(learnt_tabular_dataset(path), CONDA_FILE),
                                  read_csv(path))


def test_the_batch_pipeline_tells_the_scoring_script_its_input_is_read_by_dataprep():
    from diabetes_regression.scoring.parallel_batchscore import parse_args

    source = (PROJECT_ROOT / "ml_service" / "pipelines" /
              "diabetes_regression_build_parallel_batchscore_pipeline.py").read_text()
    assert '"--input_types", DATAPREP' in source
    assert parse_args(["--input_types", "dataprep"]).input_types == "dataprep"
    assert parse_args([]).input_types == "pandas"
