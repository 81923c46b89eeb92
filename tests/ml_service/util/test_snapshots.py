"""What Azure ML uploads, built offline with the SDK's own code from a copy of the project.

Scoring service (Model.deploy, Model.package): InferenceConfig._handle_assets tars the whole
source directory with azureml/_model_management/_util.py: upload_dependency (plain
tarfile.add, no ignore file), so the source directory is a staged folder. Pipeline steps:
SnapshotsClient.create_snapshot keeps the files of the source directory that
get_project_ignore_file(...).is_file_excluded lets through create_merkletree.
"""
import inspect
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path
from typing import Dict, Iterator, List
from unittest.mock import create_autospec, patch

import pytest
from azureml._base_sdk_common.merkle_tree import create_merkletree
from azureml._file_utils import get_path_size
from azureml._project.ignore_file import AmlIgnoreFile, get_project_ignore_file
from azureml._restclient.artifacts_client import ArtifactsClient
from azureml._restclient.constants import SNAPSHOT_MAX_SIZE_BYTES
from azureml._restclient.models.artifact_dto import ArtifactDto
from azureml._restclient.models.batch_artifact_content_information_dto import \
    BatchArtifactContentInformationDto
from azureml.core import Environment, Model, Workspace
from azureml.exceptions import WebserviceException
from azureml.pipeline.core._module_builder import _ModuleBuilder

from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.model_files import save_model
from diabetes_regression.training.train import load_sample_data, split_data, train_model
from ml_service.backends.azureml import AzureMLBackend
from ml_service.backends.base import ModelVersion
from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines import diabetes_regression_build_parallel_batchscore_pipeline as batch
from ml_service.pipelines.diabetes_regression_pipeline import (INFERENCE_CONFIG, SCORE_SCRIPT,
                                                               build_training_pipeline,
                                                               scoring_service_spec)
from ml_service.util import create_scoring_image, manage_environment
from ml_service.util.deployment_configs import (SCORING_SOURCE_LIMIT_BYTES, SCORING_SOURCE_NAME,
                                                project_imports, scoring_source,
                                                staged_inference_config, staged_scoring_source)
from ml_service.util.env_variables import (AzureScoringSettings, ComputeSettings,
                                           EnvironmentSettings, TrainingSettings)
from ml_service.util.manage_environment import build_environment
from tests.azureml_offline import offline_workspace

PARAMETERS_FILE = "diabetes_regression/parameters.json"
# The project's packages: the only code the scoring archive may hold.
PACKAGES = ("diabetes_regression/", "ml_service/")
# What must never leave the machine, planted in the copy of the project.
PLANTED = {
    ".env": "SP_APP_SECRET=do-not-upload\n",
    ".venv/lib/site.py": "x = 1\n",
    ".mlops/mlflow.db": "local store",
    ".git/config": "[core]\n",
    "mlruns/0/meta.yaml": "x",
    "build/lib/x.py": "x = 1\n",
    "mlops_template.egg-info/PKG-INFO": "x",
    "coverage.xml": "<coverage/>",
    ".coverage": "x",
    ".coverage.host.1": "x",
    "htmlcov/index.html": "<html/>",
    ".pytest_cache/v/cache/nodeids": "[]",
    "diabetes_regression/__pycache__/train.cpython-311.pyc": "x",
    "benchmarks/results.json": "{}",
}
BIG_FILE = ".venv/lib/big.bin"
BIG_FILE_BYTES = 8 * 1024 * 1024
# Folders no snapshot may contain (the planted ones, and what the compute never runs).
LEFT_OUT_FOLDERS = (".venv/", ".mlops/", ".git/", "mlruns/", "build/", "mlops_template.egg-info/",
                    "htmlcov/", ".pytest_cache/", "benchmarks/", "tests/", ".github/",
                    "bootstrap/")
# The step snapshot's stated limit (the SDK's own is 300 MB): the code and parameters only.
STEP_SNAPSHOT_LIMIT_BYTES = 2 * 1024 * 1024


def project_files() -> List[str]:
    """The project's files as they would be committed: tracked, or new and not git-ignored.

    Outside a git work tree (a bootstrapped copy), every file but the environment, the git
    folder and the local store, which the fixture plants again anyway.
    """
    git = ["git", "-C", str(PROJECT_ROOT)]
    top = subprocess.run([*git, "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode == 0 and Path(top.stdout.strip()).resolve() == PROJECT_ROOT.resolve():
        listed = subprocess.run([*git, "ls-files", "--cached", "--others", "--exclude-standard",
                                 "-z"], check=True, capture_output=True, text=True).stdout
        names = set(listed.split("\0"))
    else:
        names = set()
        for folder, subfolders, files in os.walk(PROJECT_ROOT):
            subfolders[:] = [name for name in subfolders
                             if name not in (".git", ".venv", ".venv-v2", ".mlops")]
            names.update(os.path.relpath(os.path.join(folder, name), PROJECT_ROOT)
                         for name in files)
    return sorted(name for name in names if name and (PROJECT_ROOT / name).is_file())


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory) -> Path:
    """A copy of the project tree with secrets, local state and a big file planted in it."""
    root = tmp_path_factory.mktemp("project") / "main"
    for name in project_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_ROOT / name, target)
    for name, text in PLANTED.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    with open(root / BIG_FILE, "wb") as out:
        out.truncate(BIG_FILE_BYTES)
    return root


@pytest.fixture(scope="module")
def environment() -> Environment:
    return build_environment(EnvironmentSettings())


@pytest.fixture
def workspace() -> Workspace:
    return offline_workspace()


@pytest.fixture
def uploads(tmp_path) -> Iterator[Dict[str, Path]]:
    """Every file the SDK hands to the artifact service, kept under its uploaded name."""
    kept: Dict[str, Path] = {}
    folder = tmp_path / "uploaded"
    folder.mkdir()

    def upload_artifact_from_path(path, origin, container, name, **_):
        kept[name] = Path(shutil.copyfile(path, folder / name))
        return BatchArtifactContentInformationDto(
            artifacts={name: ArtifactDto(artifact_id=f"{origin}/{container}/{name}",
                                         path=name)})

    client_class = create_autospec(ArtifactsClient, spec_set=True)
    client_class.return_value.upload_artifact_from_path.side_effect = upload_artifact_from_path
    with patch("azureml._restclient.artifacts_client.ArtifactsClient", client_class):
        yield kept


def archive_members(uploaded: Dict[str, Path]) -> Dict[str, int]:
    """The one source-directory archive among the uploads: member name -> size."""
    archives = [path for name, path in uploaded.items() if name.endswith(".tar.gz")]
    assert len(archives) == 1, sorted(uploaded)
    with tarfile.open(archives[0]) as tar:
        return {member.name: member.size for member in tar.getmembers() if member.isfile()}


def check_scoring_archive(uploaded: Dict[str, Path], project_root: Path = PROJECT_ROOT) -> None:
    """Only the staged files, under the staged folder's name, and small."""
    members = archive_members(uploaded)
    prefix = f"{SCORING_SOURCE_NAME}/"
    assert all(member.startswith(prefix) for member in members)
    staged = {member[len(prefix):] for member in members}
    assert staged == set(scoring_source(project_root / INFERENCE_CONFIG, project_root).files)
    assert {SCORE_SCRIPT, PARAMETERS_FILE} <= staged
    # Nothing but the project's modules and the parameters: no secrets, no local state.
    assert not staged & set(PLANTED)
    assert all(name == PARAMETERS_FILE or (name.endswith(".py") and name.startswith(PACKAGES))
               for name in staged), sorted(staged)
    archive = next(path for name, path in uploaded.items() if name.endswith(".tar.gz"))
    assert archive.stat().st_size < SCORING_SOURCE_LIMIT_BYTES
    assert sum(members.values()) < SCORING_SOURCE_LIMIT_BYTES
    # The other upload is the SDK's generated driver, which loads the entry script.
    driver = [path for name, path in uploaded.items() if name.endswith(".py")]
    assert len(driver) == 1 and f"{prefix}{SCORE_SCRIPT}" in driver[0].read_text()


# -- scoring service: Model.deploy / Model.package -------------------------------------------

def test_the_scoring_archive_holds_only_what_score_py_needs(project_copy, environment, workspace,
                                                            uploads):
    inference = project_copy / INFERENCE_CONFIG
    with staged_inference_config(inference, environment, project_root=project_copy) as config:
        staged = Path(config.source_directory)
        assert staged.name == SCORING_SOURCE_NAME
        assert not staged.is_relative_to(project_copy)
        assert config.entry_script == SCORE_SCRIPT
        # What Model.deploy (via _deploy_with_environment) and Model.package both call.
        request = config._build_environment_image_request(workspace, [])
    assert not staged.exists()
    check_scoring_archive(uploads, project_copy)
    assert request["environment"]["environmentVariables"]["AZUREML_ENTRY_SCRIPT"] == \
        f"{SCORING_SOURCE_NAME}/{SCORE_SCRIPT}"


def test_deploy_model_uploads_the_staged_folder(environment, workspace, uploads, monkeypatch):
    backend = AzureMLBackend(TrainingSettings(), ComputeSettings(), EnvironmentSettings(),
                             AzureScoringSettings(), workspace=workspace)
    seen = []

    def deploy(ws, name, models, inference_config, deployment_config, **_):
        seen.append(Path(inference_config.source_directory))
        inference_config._build_environment_image_request(ws, [])
        raise WebserviceException("no service in tests")

    model_class = create_autospec(Model, spec_set=True)
    model_class.deploy.side_effect = deploy
    monkeypatch.setattr("azureml.core.Model", model_class)
    monkeypatch.setattr(manage_environment, "get_environment", lambda ws, settings: environment)
    with pytest.raises(WebserviceException, match="no service in tests"):
        backend.deploy_model(ModelVersion("m", 1, "run", {}), "svc", scoring_service_spec("ACI"))
    assert model_class.deploy.call_count == 1
    assert seen[0].name == SCORING_SOURCE_NAME and not seen[0].exists()
    check_scoring_archive(uploads)


def test_create_scoring_image_packages_the_staged_folder(environment, workspace, uploads,
                                                         monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    registered = Model(None)
    registered.name, registered.version = "m", 3

    def package(ws, models, inference_config, **_):
        inference_config._build_environment_image_request(ws, [])
        raise WebserviceException("no service in tests")

    model_class = create_autospec(Model, spec_set=True)
    model_class.return_value = registered
    model_class.package.side_effect = package
    monkeypatch.setattr(create_scoring_image, "Model", model_class)
    monkeypatch.setattr(create_scoring_image, "get_environment", lambda ws, settings: environment)
    monkeypatch.setattr("ml_service.util.workspace.get_workspace", lambda settings: workspace)
    for name, value in (("SUBSCRIPTION_ID", "sub"), ("RESOURCE_GROUP", "rg"),
                        ("WORKSPACE_NAME", "ws")):
        monkeypatch.setenv(name, value)
    args = create_scoring_image.parse_args(["--model_name", "m", "--model_version", "3"])
    with pytest.raises(WebserviceException, match="no service in tests"):
        create_scoring_image.create_scoring_image(args)
    assert model_class.package.call_count == 1
    check_scoring_archive(uploads)


@pytest.mark.process
def test_score_py_imports_and_inits_from_the_staged_folder_alone(environment, tmp_path):
    # Azure ML's layout: <AZUREML_MODEL_DIR>/<name>/<version>/<the registered folder>.
    model_dir = tmp_path / "azureml-models" / TrainingSettings().model_name / "1"
    data = split_data(load_sample_data())
    model = train_model(data, load_parameters().training)
    save_model(model, model_dir, input_example=data["test"]["X"])
    # Like the SDK's generated driver: the staged root on sys.path, score.py loaded by path.
    # -I -S: no PYTHONPATH and no .pth files, so the editable install cannot supply the project.
    driver = (
        "import importlib.util, json, sys\n"
        "staged, site_packages, entry = sys.argv[1:4]\n"
        "sys.path[:0] = [staged]\n"
        "sys.path.append(site_packages)\n"
        "spec = importlib.util.spec_from_file_location('service_driver', entry)\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "module.init()\n"
        "outside = sorted(name for name, mod in sys.modules.items()\n"
        "                 if name.split('.')[0] in ('diabetes_regression', 'ml_service')\n"
        "                 and not (getattr(mod, '__file__', None) or staged).startswith(staged))\n"
        "print(json.dumps({'outside': outside}))\n")
    with staged_inference_config(PROJECT_ROOT / INFERENCE_CONFIG, environment) as config:
        staged = config.source_directory
        result = subprocess.run(
            [sys.executable, "-I", "-S", "-c", driver, staged, sysconfig.get_path("purelib"),
             os.path.join(staged, config.entry_script)],
            cwd=staged, env={**os.environ, "AZUREML_MODEL_DIR": str(model_dir)},
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # init() loaded the model; no project module came from anywhere but the staged folder.
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"outside": []}


def test_staging_follows_the_project_imports_of_the_entry_script(tmp_path, environment):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("from . import helper\n")
    (tmp_path / "pkg" / "sub" / "helper.py").write_text("from ..names import NAME\n")
    (tmp_path / "pkg" / "names.py").write_text("import json\nNAME = 'x'\n")
    (tmp_path / "pkg" / "unused.py").write_text("")
    (tmp_path / "score.py").write_text("import os\nfrom pkg.sub import helper\n"
                                       "def init():\n    pass\n\ndef run(data):\n    return data\n")
    (tmp_path / ".env").write_text("SECRET=1\n")
    path = tmp_path / "inference.yml"
    path.write_text("entryScript: score.py\n")
    imported = project_imports(tmp_path / "score.py", tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in imported] == [
        "pkg/__init__.py", "pkg/names.py", "pkg/sub/__init__.py", "pkg/sub/helper.py"]
    with staged_inference_config(path, environment, project_root=tmp_path) as config:
        staged = Path(config.source_directory)
        assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*")
                      if p.is_file()) == ["pkg/__init__.py", "pkg/names.py",
                                          "pkg/sub/__init__.py", "pkg/sub/helper.py", "score.py"]


def test_a_scoring_source_over_the_limit_is_refused(tmp_path):
    (tmp_path / "big.bin").write_bytes(b"0" * 2048)
    with pytest.raises(ConfigurationError, match="2048 bytes, over the 1024-byte limit"):
        with staged_scoring_source(["big.bin"], tmp_path, limit_bytes=1024):
            pass  # pragma: no cover
    assert SCORING_SOURCE_LIMIT_BYTES == 1024 * 1024


@pytest.mark.parametrize("text, message", [
    ("entryScript: score.py\nsourceDirectory: .\n",
     "unknown key 'sourceDirectory'; the source directory is staged"),
    ("entryScript: score.py\ndataFiles: [../outside.json]\n", "is not inside the project"),
    ("entryScript: score.py\ndataFiles: [missing.json]\n", "dataFiles 'missing.json': no such"),
    ("entryScript: score.py\ndataFiles: data.json\n", "dataFiles must be a list of paths"),
])
def test_bad_scoring_sources_are_refused(tmp_path, environment, text, message):
    project = tmp_path / "project"
    project.mkdir()
    (project / "score.py").write_text("def init():\n    pass\n")
    (tmp_path / "outside.json").write_text("{}")
    path = tmp_path / "inference.yml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        with staged_inference_config(path, environment, project_root=project):
            pass  # pragma: no cover


# -- pipeline steps: the snapshot of the source directory ------------------------------------

def step_snapshot(root: Path) -> Dict[str, int]:
    """The files (relative path -> size) SnapshotsClient.create_snapshot would upload."""
    ignore_file = get_project_ignore_file(str(root))
    tree = create_merkletree(str(root), ignore_file.is_file_excluded)
    paths: List[str] = []
    _ModuleBuilder.populate_paths_from_merkletree(tree, paths, str(root))
    return {Path(path).relative_to(root).as_posix(): Path(path).stat().st_size for path in paths}


def training_scripts() -> List[str]:
    return [step.script for step in build_training_pipeline(TrainingSettings()).steps]


BATCH_SCRIPTS = [batch.ENTRY_SCRIPT, batch.COPY_SCRIPT]


def test_the_step_source_directories_are_the_project_root():
    assert build_training_pipeline(TrainingSettings()).source_directory == PROJECT_ROOT
    default = inspect.signature(batch.build_batchscore_pipeline).parameters["source_directory"]
    assert default.default == PROJECT_ROOT


def test_amlignore_is_the_ignore_file_and_gitignore_is_not_read(project_copy):
    # get_project_ignore_file reads .gitignore only when there is no .amlignore.
    assert isinstance(get_project_ignore_file(str(project_copy)), AmlIgnoreFile)


@pytest.mark.parametrize("scripts", [training_scripts(), BATCH_SCRIPTS],
                         ids=["training", "batch-scoring"])
def test_the_step_snapshot_leaves_out_secrets_and_local_state(project_copy, scripts):
    snapshot = step_snapshot(project_copy)
    leaked = [path for path in snapshot if path in PLANTED or path.startswith(LEFT_OUT_FOLDERS)
              or "__pycache__" in path]
    assert leaked == []
    needed = set(scripts)
    for script in scripts:
        needed.update(p.relative_to(project_copy).as_posix()
                      for p in project_imports(project_copy / script, project_copy))
    assert needed <= set(snapshot), sorted(needed - set(snapshot))
    assert PARAMETERS_FILE in snapshot
    size = get_path_size(str(project_copy), size_limit=SNAPSHOT_MAX_SIZE_BYTES,
                         exclude_function=get_project_ignore_file(
                             str(project_copy)).is_file_excluded)
    assert sum(snapshot.values()) <= size < STEP_SNAPSHOT_LIMIT_BYTES


@pytest.mark.process
def test_the_step_scripts_import_from_the_snapshot_alone(project_copy, tmp_path):
    """Materialise the snapshot and import every step script from it, as the compute would."""
    snapshot = tmp_path / "snapshot"
    for name in step_snapshot(project_copy):
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(project_copy / name, snapshot / name)
    driver = (
        "import runpy, sys\n"
        "snapshot, site_packages, *scripts = sys.argv[1:]\n"
        "sys.path[:0] = [snapshot]\n"
        "sys.path.append(site_packages)\n"
        "for script in scripts:\n"
        "    runpy.run_path(script, run_name='step_module')\n")
    scripts = [str(snapshot / script) for script in training_scripts() + BATCH_SCRIPTS]
    result = subprocess.run([sys.executable, "-I", "-S", "-c", driver, str(snapshot),
                             sysconfig.get_path("purelib"), *scripts],
                            cwd=snapshot, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
