"""The sample dataset follows the model package's sample, and never replaces user data."""
import pandas as pd

from diabetes_regression.training import train
from ml_service.util.sample_dataset import SAMPLE_DESCRIPTION, ensure_sample_dataset
from tests.conftest import make_frame


def test_the_sample_is_registered_once(backend):
    first = ensure_sample_dataset(backend, "ds")
    assert first.version == 1 and first.description.startswith(SAMPLE_DESCRIPTION)
    assert ensure_sample_dataset(backend, "ds").version == 1
    pd.testing.assert_frame_equal(backend.load_dataset(first), train.load_sample_data(),
                                  check_dtype=False)


def test_a_changed_sample_becomes_a_new_version(backend, monkeypatch):
    """A user swapped in another model: its sample is trained on, not the old one."""
    ensure_sample_dataset(backend, "ds")
    monkeypatch.setattr(train, "load_sample_data", lambda: make_frame(rows=30, seed=4))
    second = ensure_sample_dataset(backend, "ds")
    assert second.version == 2
    pd.testing.assert_frame_equal(backend.load_dataset(second), make_frame(rows=30, seed=4))
    assert ensure_sample_dataset(backend, "ds").version == 2


def test_user_data_is_never_replaced_by_the_sample(backend, csv_file, monkeypatch):
    ensure_sample_dataset(backend, "ds")
    backend.register_dataset("ds", csv_file, description="mine")
    monkeypatch.setattr(train, "load_sample_data", lambda: make_frame(rows=30, seed=4))
    assert ensure_sample_dataset(backend, "ds").version == 2
