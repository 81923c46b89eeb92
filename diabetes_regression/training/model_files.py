"""How a trained model is written to a folder and read back: the one place that knows.

A model is saved in MLflow's model format: a folder with an ``MLmodel`` file naming its
flavour (here scikit-learn's), the pickled estimator, its signature, an input example and
its pinned pip requirements. So ``mlflow.pyfunc.load_model`` loads it, ``mlflow models
serve`` serves it and the registry shows what it takes and answers. The train step saves
it, the evaluate step reads the new and the production model, the register step checks
it, and the online and batch scorers load it, all through here.

A model of another library: set MLFLOW_FLAVOR to its MLflow flavour module (e.g.
``mlflow.lightgbm``) and SAVE_OPTIONS to what that flavour's ``save_model`` takes.
Versions registered before this format (one bare ``.pkl`` file) still load.

No platform import: this module is staged with the scoring script.
"""
import importlib
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

LOGGER = logging.getLogger(__name__)
# The MLflow flavour that saves and loads the estimator, and its save options: pickled with
# cloudpickle, as earlier releases pickled (skops, MLflow 3's default, costs seconds to
# import and refuses types it does not know).
MLFLOW_FLAVOR = "mlflow.sklearn"
SAVE_OPTIONS: Dict[str, Any] = {"serialization_format": "cloudpickle"}
REQUIREMENT_OPTIONS: Dict[str, Any] = {"include_cloudpickle": True}
MLMODEL = "MLmodel"
# The folder a step output holds the model in.
MODEL_FOLDER = "model"
# A model registered before the MLflow format: one pickle file.
LEGACY_SUFFIX = ".pkl"
INPUT_EXAMPLE_ROWS = 5


class ModelFileError(FileNotFoundError):
    """No model where one should be, or files that do not load as a model."""


def _flavor() -> Any:
    return importlib.import_module(MLFLOW_FLAVOR)


def pip_requirements() -> List[str]:
    """What the saved model's requirements.txt pins: the flavour's packages (its library at
    the installed version, and cloudpickle). Every environment that loads the model on Azure
    ML must install these (tests/ml_service/test_model_environments.py checks the conda
    files)."""
    return list(_flavor().get_default_pip_requirements(**REQUIREMENT_OPTIONS))


def save_model(model: Any, folder: Path, name: str = MODEL_FOLDER,
               input_example: Optional[Any] = None,
               feature_names: Optional[Sequence[str]] = None) -> Path:
    """Write the model in MLflow's format as the folder ``folder/name``, whole or not at all
    (an earlier model there is replaced); return that folder.

    ``input_example`` (a few rows of features, as the model takes them) gives the signature
    and the example stored with the model; ``feature_names`` are kept in its metadata.
    """
    from mlflow.models import infer_signature

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".tmp-model-"))
    try:
        example = None
        signature = None
        if input_example is not None:
            example = input_example[:INPUT_EXAMPLE_ROWS]
            signature = infer_signature(example, model.predict(example))
        flavor = _flavor()
        metadata = {"feature_names": [str(n) for n in feature_names]} if feature_names else None
        with _quiet_format_warning():
            flavor.save_model(model, str(staging / name), signature=signature,
                              input_example=example, metadata=metadata,
                              pip_requirements=pip_requirements(), **SAVE_OPTIONS)
        _replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class _DropFormatWarning(logging.Filter):
    """Drops MLflow's warning that pickled models run code when loaded: true of every
    pickle, and this project loads only the models its own runs saved."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pickle or cloudpickle format" not in record.getMessage()


@contextmanager
def _quiet_format_warning() -> Iterator[None]:
    logger = logging.getLogger(MLFLOW_FLAVOR)
    dropping = _DropFormatWarning()
    logger.addFilter(dropping)
    try:
        yield
    finally:
        logger.removeFilter(dropping)


def _replace(source: Path, target: Path) -> None:
    """Move a finished folder into place; an earlier one is moved aside, then removed."""
    if target.exists():
        aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=".old-model-"))
        os.replace(target, aside / target.name)
        os.replace(source, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(source, target)


def find_model(path: Path) -> Path:
    """The MLflow model folder at or under ``path`` (as a download or AZUREML_MODEL_DIR
    gives it), or a legacy model file; ModelFileError when there is not exactly one."""
    path = Path(path)
    if path.is_file():
        return path.parent if path.name == MLMODEL else path
    if not path.is_dir():
        raise ModelFileError(f"no model at {path}")
    if (path / MLMODEL).is_file():
        return path
    found = sorted(p.parent for p in path.rglob(MLMODEL) if p.is_file())
    if not found:
        found = sorted(p for p in path.rglob(f"*{LEGACY_SUFFIX}") if p.is_file())
    if len(found) != 1:
        raise ModelFileError(f"expected one model (an MLflow model folder, or a "
                             f"{LEGACY_SUFFIX} file) under {path}, found {len(found)}")
    return found[0]


def load_model(path: Path) -> Any:
    """Load the model saved at or under ``path``: the flavour's native object (e.g. the
    scikit-learn estimator, with predict_proba); ModelFileError when there is none or it
    does not load as a model with predict()."""
    path = find_model(path)
    try:
        if path.is_dir():
            model = _load_mlflow_model(path)
        else:
            import joblib

            LOGGER.warning("%s is a model in the format before MLflow's: it loads, but "
                           "mlflow cannot serve it; train and register again to replace it",
                           path)
            model = joblib.load(path)
    except ModelFileError:
        raise
    except Exception as err:  # unpickling can raise nearly anything
        raise ModelFileError(f"{path} does not load as a model: {err}") from err
    if not callable(getattr(model, "predict", None)):
        raise ModelFileError(f"{path} holds a {type(model).__name__}, not a model")
    return model


def _load_mlflow_model(path: Path) -> Any:
    """The native model of an MLflow model folder, by the loader its MLmodel names."""
    from mlflow.models import Model

    flavors = Model.load(str(path / MLMODEL)).flavors
    loader = flavors.get("python_function", {}).get("loader_module")
    if not loader:
        raise ModelFileError(f"{path / MLMODEL} names no python_function loader; save the "
                             "model with an MLflow flavour")
    return importlib.import_module(loader).load_model(str(path))
