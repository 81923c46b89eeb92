"""Offline: a real Azure ML TabularDataset on a local CSV file, read the way the train step
reads its dataset on Azure ML (azureml-dataprep, pandas), and the packages that needs."""
import sys
from unittest.mock import create_autospec

import pandas as pd
import pytest
from azureml.core import Workspace

from diabetes_regression.training.train import TARGET_COLUMN, load_sample_data, validate_data
from ml_service.backends import azureml as backend_module
from ml_service.backends.azureml import AzureMLBackend, tabular_to_frame
from ml_service.backends.base import DatasetVersion
from ml_service.backends.local import read_csv
from ml_service.errors import ConfigurationError
from ml_service.util.env_variables import (AzureScoringSettings, ComputeSettings,
                                           EnvironmentSettings, TrainingSettings)
from tests.azureml_rehearsal import learnt_tabular_dataset

CONDA_FILE = EnvironmentSettings().conda_file


@pytest.fixture(scope="module")
def sample_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("dataset") / "diabetes.csv"
    load_sample_data().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def dataset(sample_csv):
    return learnt_tabular_dataset(sample_csv)


@pytest.fixture
def azure_backend():
    """The Azure ML backend on a workspace that must not be used."""
    return AzureMLBackend(TrainingSettings(), ComputeSettings(), EnvironmentSettings(),
                          AzureScoringSettings(),
                          workspace=create_autospec(Workspace, spec_set=True, instance=True))


def test_the_dataset_reads_as_the_local_backend_reads_the_file(dataset, sample_csv):
    frame = tabular_to_frame(dataset, CONDA_FILE)
    pd.testing.assert_frame_equal(frame, read_csv(sample_csv))
    assert TARGET_COLUMN in frame.columns
    validate_data(frame)


def test_load_dataset_reads_the_registered_version(azure_backend, dataset, sample_csv,
                                                   monkeypatch):
    asked = []

    def get_dataset(name, version):
        asked.append((name, version))
        return dataset

    monkeypatch.setattr(azure_backend, "_get_dataset", get_dataset)
    frame = azure_backend.load_dataset(DatasetVersion("diabetes_ds", 3))
    assert asked == [("diabetes_ds", 3)]
    pd.testing.assert_frame_equal(frame, read_csv(sample_csv))


@pytest.mark.parametrize("module, package", [("azureml.dataprep", "azureml-dataprep"),
                                             ("pyarrow", "pyarrow")])
def test_a_missing_dataset_package_is_named_with_the_conda_file_before_any_service_call(
        azure_backend, monkeypatch, tmp_path, module, package):
    def no_service(*args):
        raise AssertionError("the service was called")

    monkeypatch.setattr(azure_backend, "_get_dataset", no_service)
    monkeypatch.setattr(azure_backend, "_datastore", no_service)
    monkeypatch.setitem(sys.modules, module, None)
    data_file = tmp_path / "data.csv"
    data_file.write_text("a,b\n1,2\n")
    for call in (lambda: azure_backend.load_dataset(DatasetVersion("diabetes_ds", 1)),
                 lambda: azure_backend.register_dataset("diabetes_ds", data_file)):
        with pytest.raises(ConfigurationError) as raised:
            call()
        assert f"{package} is not installed" in str(raised.value)
        assert CONDA_FILE in str(raised.value)
        assert isinstance(raised.value.__cause__, ImportError)


def test_the_packages_checked_are_the_ones_the_environment_declares():
    from ml_service.util.check_environment import canonical_name, read_conda_requirements
    from ml_service.paths import PROJECT_ROOT

    _, requirements = read_conda_requirements((PROJECT_ROOT / CONDA_FILE).read_text())
    declared = {canonical_name(r.split("==")[0].split("[")[0]) for r in requirements}
    assert set(backend_module.DATASET_PACKAGES.values()) <= declared


def test_a_column_of_0_and_1_reads_as_integers_as_pandas_reads_it(tmp_path):
    """A binary target: dataprep learns booleans, pandas integers; the backend gives 0/1."""
    path = tmp_path / "binary.csv"
    path.write_text("x,label,count\n0.5,0,3\n1.5,1,4\n2.5,1,5\n")
    frame = tabular_to_frame(learnt_tabular_dataset(path), CONDA_FILE)
    pd.testing.assert_frame_equal(frame, read_csv(path))
