"""How a trained model is written to a folder and read back: the one place that knows.

The train step saves it, the evaluate step reads the new and the production model, the
register step checks it, and the online and batch scorers load it, all through here.
No platform import: this module is staged with the scoring script.
"""
import os
import tempfile
from pathlib import Path
from typing import Any

import joblib

MODEL_SUFFIX = ".pkl"


class ModelFileError(FileNotFoundError):
    """No model where one should be, or a file that does not load as a model."""


def save_model(model: Any, folder: Path, file_name: str) -> Path:
    """Write the model into the folder atomically; return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file_name
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=MODEL_SUFFIX)
    os.close(handle)
    try:
        joblib.dump(model, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def find_model_file(path: Path) -> Path:
    """The model file itself, or the one ``*.pkl`` file under a folder (as a download or
    AZUREML_MODEL_DIR gives it)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.rglob(f"*{MODEL_SUFFIX}") if p.is_file())
        if len(found) != 1:
            raise ModelFileError(f"expected one {MODEL_SUFFIX} model file under {path}, "
                                 f"found {len(found)}")
        return found[0]
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    return path


def load_model(path: Path) -> Any:
    """Load the model saved at ``path`` (its file, or a folder holding it); ModelFileError
    when there is none or it does not load as a model with predict()."""
    path = find_model_file(path)
    try:
        model = joblib.load(path)
    except Exception as err:  # unpickling can raise nearly anything
        raise ModelFileError(f"{path} does not load as a model: {err}") from err
    if not callable(getattr(model, "predict", None)):
        raise ModelFileError(f"{path} holds a {type(model).__name__}, not a model")
    return model
