"""Shared fixtures: an isolated local store per test, one warm step launcher per test
process, and no network."""
import os
import re
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, NamedTuple

import pytest
from hypothesis import settings

if TYPE_CHECKING:  # imported where used: the controller of `pytest -n` runs no test
    import pandas as pd

    from ml_service.backends.local import LocalBackend

# Variables that would make a test depend on the machine it runs on.
ISOLATED_VARIABLES = (
    "MLOPS_BACKEND", "MLOPS_ROOT", "MLOPS_PIPELINE_RUN_ID", "MODEL_NAME", "EXPERIMENT_NAME",
    "DATASET_NAME", "TRAINING_PIPELINE_NAME", "RUN_EVALUATION", "ALLOW_RUN_CANCEL",
    "BUILD_BUILDID", "BUILD_BUILDURI", "LOCAL_DEPLOYMENT_NAME", "LOCAL_SCORING_PORT",
)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Set by coverage (`patch = subprocess` in setup.cfg): a Python process started with it in
# its environment measures itself.
MEASURE_PROCESSES = "COVERAGE_PROCESS_CONFIG"
MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"
# How many inputs Hypothesis generates where a test does not say (the scoring fuzz test takes
# its number of requests from here). "full" is the default, and what `make test` runs.
# "model-swap" is for the generic tests run again in a rendered copy with another model
# (tests/test_model_swap.py): the server and score.py there are the ones "full" fuzzed, so
# fewer requests suffice to show that the other model's answers keep every status below 500.
settings.register_profile("full", max_examples=1200)
settings.register_profile("model-swap", max_examples=240)
settings.load_profile(os.environ.get("MLOPS_HYPOTHESIS_PROFILE", "full"))


def pytest_configure(config):
    """Before any test module imports azureml (see AZUREML_OFFLINE.md): a known cloud, so
    Workspace() does not fetch cloud metadata, and no dataset telemetry posting out."""
    os.environ.setdefault("AZUREML_CURRENT_CLOUD", "AzureCloud")
    os.environ.setdefault("HBI_WORKSPACE_JOB", "true")


def heavy_rank(item: pytest.Item) -> float:
    """The rank of a test marked heavy (lowest first), infinity for every other test."""
    marker = item.get_closest_marker("heavy")
    return float("inf") if marker is None else float(marker.kwargs.get("rank", 0))


def pytest_collection_modifyitems(config, items):
    """The tests that take minutes go first, longest first; the rest keep their order. On
    several workers (`pytest -n 2 --dist load`, as `make test` runs) each then starts at once
    on a worker of its own and the short tests fill the time around them, instead of one
    starting last while the other workers sit idle."""
    items.sort(key=heavy_rank)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Refuse connections to anything but this machine, so no test can reach a service."""
    real_connect = socket.socket.connect

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise ConnectionRefusedError(f"tests may not connect to {address!r}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


def measured() -> Dict[str, str]:
    """The environment that has a Python process measured by coverage, when this run is."""
    value = os.environ.get(MEASURE_PROCESSES)
    return {MEASURE_PROCESSES: value} if value is not None else {}


def makefile_variable(name: str) -> str:
    """A variable's value as the Makefile sets it (``NAME := value`` or ``NAME = value``)."""
    found = re.search(rf"^{name} :?= (.+)$", MAKEFILE.read_text(), re.M)
    assert found, f"no {name} in the Makefile"
    return found.group(1).strip()


@pytest.fixture(autouse=True)
def unmeasured_system_processes(request, monkeypatch):
    """A test marked ``system`` starts its processes without coverage: they rerun code that
    the tests of each part measure (the steps, the executor, the server, the CLIs), and
    tracing makes each of them import MLflow, pandas and scikit-learn about 40 % slower."""
    if request.node.get_closest_marker("system") is not None:
        monkeypatch.delenv(MEASURE_PROCESSES, raising=False)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An initialised, empty MLflow database, made once: creating one takes about a second."""
    from ml_service.backends.local import LocalBackend

    root = tmp_path_factory.mktemp("empty_store")
    LocalBackend(root).client.search_experiments()
    return root / "mlflow.db"


@pytest.fixture
def mlops_root(tmp_path: Path, monkeypatch, empty_store: Path) -> Path:
    """A fresh local store in a temporary folder, used as the working directory."""
    for name in ISOLATED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / ".mlops"
    root.mkdir()
    shutil.copyfile(empty_store, root / "mlflow.db")
    monkeypatch.setenv("MLOPS_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    return root


@pytest.fixture
def backend(mlops_root: Path) -> "LocalBackend":
    """The local backend on the fresh store."""
    from ml_service.backends.local import LocalBackend

    return LocalBackend(mlops_root)


class ServedModel(NamedTuple):
    """The model package's model, registered as production in a store of its own and served
    by the real azmlinfsrv."""

    backend: "LocalBackend"
    version: Any
    deployment: Any
    model: Any
    data: Any  # the split it was trained and tested on

    def environment(self) -> Dict[str, str]:
        """What a project command reads to work on this store and this model."""
        return {"MLOPS_BACKEND": "local", "MLOPS_ROOT": str(self.backend.root),
                "MODEL_NAME": self.version.name}


@pytest.fixture(scope="session")
def served_model(tmp_path_factory) -> Iterator[ServedModel]:
    """One served model per test process, shared by every test that needs a server: the
    example model, trained by the model package on its sample data (with its feature names,
    as the train step saves it); stopped at the end."""
    import requests

    from diabetes_regression.parameters import load_parameters
    from diabetes_regression.training.model_files import save_model
    from diabetes_regression.training.train import (TARGET_COLUMN, get_model_metrics,
                                                    load_sample_data, split_data, train_model)
    from ml_service.backends.local import LocalBackend
    from ml_service.pipelines.diabetes_regression_pipeline import scoring_service_spec
    from ml_service.util.env_variables import TrainingSettings

    root = tmp_path_factory.mktemp("scoring") / ".mlops"
    backend = LocalBackend(root)
    frame = load_sample_data()
    data = split_data(frame)
    model = train_model(data, load_parameters().training)
    model_path = save_model(model, root.parent, input_example=data["test"]["X"],
                            feature_names=[str(c) for c in frame.columns if c != TARGET_COLUMN])
    run_id = backend.start_pipeline_run("p", {})
    metrics = {name: str(value) for name, value in get_model_metrics(model, data).items()}
    version = backend.register_model(TrainingSettings().model_name, model_path, run_id,
                                     metrics)
    backend.set_production_model(version.name, version.version)
    version = backend.get_production_model(version.name)
    deployment = backend.deploy_model(version, "test-svc", scoring_service_spec())
    yield ServedModel(backend, version, deployment, model, data)
    assert backend.delete_deployment("test-svc") is True
    with pytest.raises(requests.ConnectionError):
        requests.get(deployment.scoring_uri.rsplit("/", 1)[0] + "/", timeout=2)


class BorrowedLauncher:
    """The session's step launcher, lent to one pipeline run: its steps are forked from it
    as from a launcher of their own, and closing the run's runner leaves it running."""

    def __init__(self, runner) -> None:
        self._runner = runner

    def run(self, argv, cwd, env, log_path) -> int:
        """Fork the step from the session's launcher (see ForkRunner.run)."""
        return self._runner.run(argv, cwd, env, log_path)

    def close(self) -> None:
        """The launcher outlives the run: the session closes it."""


@pytest.fixture(scope="session")
def warm_launcher():
    """One step launcher per test process, warmed for the training pipeline's steps.

    Each pipeline run otherwise starts a launcher that spends seconds importing MLflow,
    pandas and scikit-learn before its first step. Every step is still a process of its own,
    forked with the run's arguments, working directory and environment; the launcher never
    runs project code, so each step runs the project as it is on disk. How a launcher starts,
    warms up and dies is what tests/ml_service/pipelines/test_step_launcher.py proves, with
    launchers of its own; the loop and CI's commands start theirs in other tests."""
    from ml_service.pipelines.diabetes_regression_pipeline import build_training_pipeline
    from ml_service.pipelines.local_executor import ForkRunner
    from ml_service.util.env_variables import TrainingSettings

    # Not measured, whichever test starts it first: what its steps run, test_step_scripts
    # and the launcher's own tests measure.
    env = {k: v for k, v in os.environ.items()
           if k not in ISOLATED_VARIABLES and k != MEASURE_PROCESSES}
    runner = ForkRunner(env, build_training_pipeline(TrainingSettings()))
    yield runner
    runner.close()


@pytest.fixture
def warm_steps(warm_launcher, monkeypatch):
    """Pipeline runs started in this test's process (the executor, the loop, a local
    backend's submit) fork their steps from the session's warm launcher. A run told to use
    plain processes (MLOPS_STEP_LAUNCHER=process) still gets them."""
    from ml_service.pipelines import local_executor

    monkeypatch.setattr(local_executor, "ForkRunner",
                        lambda env, pipeline=None: BorrowedLauncher(warm_launcher))


def make_frame(rows: int = 60, features: int = 4, seed: int = 0) -> "pd.DataFrame":
    """A small training frame the model can learn, made by the model package."""
    from diabetes_regression.training.train import make_example_frame

    return make_example_frame(rows=rows, features=features, seed=seed)


def feature_names() -> List[str]:
    """The feature columns of the model package's example frame, in their order (wherever
    its target column is): tests name features through this, never by the example's names."""
    from diabetes_regression.training.train import TARGET_COLUMN

    return [str(column) for column in make_frame().columns if column != TARGET_COLUMN]


def with_two_features_swapped(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The frame with its first two feature columns swapped, every other column in place."""
    first, second = feature_names()[:2]
    order = [second if c == first else first if c == second else c for c in frame.columns]
    return frame[order]


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    """A good training CSV file."""
    path = tmp_path / "train.csv"
    make_frame().to_csv(path, index=False)
    return path
