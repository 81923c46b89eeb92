"""Register the model package's sample dataset when the store does not have it yet.

A sample registration is described with the sample's content hash. When the model package
changes its sample (a user swapped in another model), the next run registers the new
sample as a new version instead of training the new model on the old data. A version a
user registered from their own file is never replaced by the sample.
"""
import hashlib
import logging
import tempfile
from pathlib import Path

from ml_service.backends.base import Backend, DatasetVersion

LOGGER = logging.getLogger(__name__)
SAMPLE_DESCRIPTION = "sample data of the model package"


def sample_description(digest: str) -> str:
    """The description a sample registration carries: it names the sample's content."""
    return f"{SAMPLE_DESCRIPTION} (sha256 {digest})"


def file_digest(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def ensure_sample_dataset(backend: Backend, name: str) -> DatasetVersion:
    """Return the latest version of the dataset, registering the sample first when there is
    none, or when the latest is an older sample than the model package's."""
    existing = backend.find_dataset(name)
    if existing is not None and not existing.description.startswith(SAMPLE_DESCRIPTION):
        LOGGER.info("Dataset %s version %d is registered", name, existing.version)
        return existing
    # Imported here: scikit-learn is slow to import and only needed for the sample.
    from diabetes_regression.training.train import load_sample_data

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sample.csv"
        load_sample_data().to_csv(path, index=False)
        description = sample_description(file_digest(path))
        if existing is not None and existing.description == description:
            LOGGER.info("Dataset %s version %d is registered (the sample)", name,
                        existing.version)
            return existing
        if existing is None:
            LOGGER.info("Dataset %s is not registered: registering the sample data", name)
        else:
            LOGGER.info("Dataset %s version %d is another sample than the model package's: "
                        "registering the package's sample as a new version", name,
                        existing.version)
        return backend.register_dataset(name, path, description=description)
