"""Register the sample dataset when the store does not have it yet."""
import logging
import tempfile
from pathlib import Path

from ml_service.backends.base import Backend, DatasetVersion

LOGGER = logging.getLogger(__name__)


def ensure_sample_dataset(backend: Backend, name: str) -> DatasetVersion:
    """Return the latest version of the dataset, registering the sample first if absent."""
    existing = backend.find_dataset(name)
    if existing is not None:
        LOGGER.info("Dataset %s version %d is registered", name, existing.version)
        return existing
    LOGGER.info("Dataset %s is not registered: registering the sample data", name)
    # Imported here: scikit-learn is slow to import and only needed the first time.
    from diabetes_regression.training.train import load_sample_data

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "diabetes.csv"
        load_sample_data().to_csv(path, index=False)
        return backend.register_dataset(name, path, description="sample diabetes data")
