"""bootstrap/bootstrap.py on copies of this repository: refusals change nothing, a dry run
changes nothing, a rename is complete, a failure midway puts everything back, and the renamed
copy passes its own tests and runs its own loop."""
import hashlib
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Dict, Tuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "bootstrap" / "bootstrap.py"
# Spelt in parts, as in bootstrap.py: after a rename no file may mention the template's name.
TEMPLATE = "_".join(("diabetes", "regression"))
NEW_NAME = "driver_training"
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".venv-v2", ".tools", ".mlops", "__pycache__", "*.egg-info", ".pytest_cache",
    ".coverage", ".coverage.*", "coverage.xml", "htmlcov", "mlruns", "build", "dist", ".env")
# Variables that would reach into this checkout or the machine from a subprocess.
LEAKY_VARIABLE = re.compile(r"^(COVERAGE_PROCESS_|COV_CORE_|MLOPS_)|^(MODEL_NAME|EXPERIMENT_NAME|"
                            r"DATASET_NAME|TRAINING_PIPELINE_NAME|RUN_EVALUATION|ALLOW_RUN_CANCEL|"
                            r"BUILD_BUILDID|BUILD_BUILDURI|LOCAL_DEPLOYMENT_NAME|"
                            r"LOCAL_SCORING_PORT|PYTHONPATH)$")

pytestmark = pytest.mark.skipif(
    not (REPO_ROOT / TEMPLATE / "training" / "train.py").is_file(),
    reason="this tree was already bootstrapped: there is no template left to rename")


def load_script():
    """Import bootstrap/bootstrap.py, which is a script, not a package module."""
    spec = importlib.util.spec_from_file_location("bootstrap_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bootstrap = load_script()


def snapshot(root: Path) -> Dict[str, Tuple]:
    """Every path under root with its kind, mode and content hash."""
    result = {}
    for folder, dirs, files in os.walk(root):
        for entry in dirs + files:
            path = Path(folder, entry)
            key = path.relative_to(root).as_posix()
            mode = stat.S_IMODE(path.lstat().st_mode)
            if path.is_symlink():
                result[key] = ("link", os.readlink(path))
            elif path.is_dir():
                result[key] = ("dir", mode)
            else:
                result[key] = ("file", mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return result


def text_files(root: Path):
    """(relative path, text) of every UTF-8 file under root."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            try:
                yield path.relative_to(root).as_posix(), path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def clean_env(copy: Path, **extra: str) -> Dict[str, str]:
    """The environment for a subprocess that must import the copy, not this checkout."""
    env = {k: v for k, v in os.environ.items() if not LEAKY_VARIABLE.match(k)}
    env.update(PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """This checkout's files, copied once."""
    target = tmp_path_factory.mktemp("pristine") / "repo"
    shutil.copytree(REPO_ROOT, target, ignore=COPY_IGNORE, symlinks=True)
    return target


@pytest.fixture
def repo(pristine: Path, tmp_path: Path, monkeypatch) -> Path:
    """A fresh copy of the template for one test; backups go to a folder the test can see."""
    target = tmp_path / "repo"
    shutil.copytree(pristine, target, symlinks=True)
    backups = tmp_path / "tmp"
    backups.mkdir()
    monkeypatch.setattr(bootstrap.tempfile, "tempdir", str(backups))
    return target


@pytest.fixture(scope="module")
def bootstrapped(pristine: Path, tmp_path_factory):
    """A copy renamed to driver_training by its own script, run as a command."""
    copy = tmp_path_factory.mktemp("bootstrapped") / "repo"
    shutil.copytree(pristine, copy, symlinks=True)
    script = copy / "ml_service" / "pipelines" / f"{TEMPLATE}_build_train_pipeline.py"
    script.chmod(0o755)
    result = subprocess.run(
        [sys.executable, str(copy / "bootstrap" / "bootstrap.py"), "-d", str(copy), "-n",
         NEW_NAME], capture_output=True, text=True, timeout=60, env=clean_env(copy))
    return copy, result


def run_main(*argv: str) -> int:
    return bootstrap.main([str(arg) for arg in argv])


@pytest.mark.parametrize("text, expected", [
    ("from sklearn.datasets import load_diabetes", "from sklearn.datasets import load_diabetes"),
    ("load_diabetes(return_X_y=True)", "load_diabetes(return_X_y=True)"),
    ("scikit-learn's bundled diabetes data", "scikit-learn's bundled diabetes data"),
    (f"from {TEMPLATE}.training import train", "from driver_training.training import train"),
    (f"MODEL_NAME={TEMPLATE}_model.pkl", "MODEL_NAME=driver_training_model.pkl"),
    (f"tests/{TEMPLATE}/", "tests/driver_training/"),
    (f"{TEMPLATE.upper()}_HOME", "DRIVER_TRAINING_HOME"),
    (f"class {TEMPLATE.title().replace('_', '')}Model", "class DriverTrainingModel"),
    (f"{TEMPLATE.replace('_', '-')}-image", "driver-training-image"),
    ("description: Diabetes regression scoring service", "description: driver_training scoring "
                                                         "service"),
    ("DATASET_NAME=diabetes_ds", "DATASET_NAME=driver_training_ds"),
    ("name: diabetes-Training-Pipeline", "name: driver-training-Training-Pipeline"),
    ("name: diabetes-Batch-Scoring-Pipeline", "name: driver-training-Batch-Scoring-Pipeline"),
    ("diabetes_scoring/input/diabetes_scoring_input.csv",
     "driver_training_scoring/input/driver_training_scoring_input.csv"),
    ("deployments/diabetes-local/service.json", "deployments/driver-training-local/service.json"),
    ("diabetes_dss, my_diabetes_ds, diabetes-locality, diabetes_scoringx",
     "diabetes_dss, my_diabetes_ds, diabetes-locality, diabetes_scoringx"),
])
def test_rewrite_text_renames_project_words_and_leaves_library_names(text, expected):
    assert bootstrap.rewrite_text(text, NEW_NAME)[0] == expected


def test_a_virtual_environment_of_any_name_is_never_entered(tmp_path):
    (tmp_path / ".venv-v2").mkdir()
    (tmp_path / ".venv-v2" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tmp_path / "envs").mkdir()
    assert bootstrap.is_skipped_dir(".venv-v2", tmp_path)
    assert not bootstrap.is_skipped_dir("envs", tmp_path)
    assert bootstrap.is_skipped_dir(".venv")


def test_rewrite_text_is_one_pass():
    # The new name is itself a template word: it must not be replaced a second time.
    assert bootstrap.rewrite_text(f"import {TEMPLATE}; diabetes_ds", "diabetes_ds") == \
        ("import diabetes_ds; diabetes_ds_ds", 2)


def aligned(first: str, rest: str, bracket: str = "(") -> str:
    """Two lines, the second aligned with the last ``bracket`` of the first (visual indent)."""
    return first + "\n" + " " * (first.rindex(bracket) + 1) + rest + "\n"


@pytest.mark.parametrize("old, new", [
    (aligned(f"from {TEMPLATE}.training.train import (split_data,", "train_model)"),
     aligned("from driver_training.training.train import (split_data,", "train_model)")),
    (aligned(f'check("{TEMPLATE}", [1,', "2])", "["),
     aligned('check("driver_training", [1,', "2])", "[")),
    (f"x = (\n    '{TEMPLATE}',\n    1)\n", "x = (\n    'driver_training',\n    1)\n"),
    # A line inside a string is text, not code: it keeps its indentation.
    (aligned(f'{TEMPLATE}.run("""first', 'second""")'),
     "driver_training.run(\"\"\"first\n" + " " * (len(TEMPLATE) + 5) + 'second""")\n'),
], ids=["visual indent", "inner bracket", "hanging indent", "string"])
def test_continuation_lines_stay_aligned_with_their_bracket(old, new):
    assert bootstrap.rewrite_python(old, NEW_NAME)[0] == new


def test_renames_go_deepest_first():
    paths = [bootstrap.PurePosixPath(p) for p in
             (TEMPLATE, f"{TEMPLATE}/{TEMPLATE}_notes.md", "tests", f"tests/{TEMPLATE}")]
    renames = bootstrap.plan_renames(paths, NEW_NAME)
    assert [str(change.final) for change in renames] == [
        f"{NEW_NAME}/{NEW_NAME}_notes.md", f"tests/{NEW_NAME}", NEW_NAME]
    assert str(renames[0].target) == f"{TEMPLATE}/{NEW_NAME}_notes.md"


@pytest.mark.parametrize("name, problem", [
    ("ab", "is 2 characters long; use 3 to 30"),
    ("a" * 31, "is 31 characters long; use 3 to 30"),
    ("Driver", "lowercase letter"),
    ("1driver", "start with a lowercase letter"),
    ("driver-training", "hold only lowercase letters, digits and '_'"),
    ("class", "is a Python keyword"),
    (TEMPLATE, "is the template's own name"),
    ("json", "would shadow the standard library module 'json'"),
    ("sklearn", "would shadow the module"),
    ("ml_service", "would shadow the module"),
    ("benchmarks", "would shadow the module"),
])
def test_a_bad_name_is_refused_and_changes_nothing(repo, caplog, name, problem):
    before = snapshot(repo)
    assert run_main("-d", repo, "-n", name) == 1
    assert snapshot(repo) == before
    assert f"project name {name!r}" in caplog.text and problem in caplog.text


def test_a_bad_name_gets_a_suggestion(repo, caplog):
    assert run_main("-d", repo, "-n", "Driver-Training") == 1
    assert "e.g. 'driver_training'" in caplog.text


@pytest.mark.parametrize("make_dir, problem", [
    (lambda repo: repo.parent / "missing", "is not a directory"),
    (lambda repo: repo.parent / "empty", "pyproject.toml, ml_service/__init__.py"),
    (lambda repo: repo / "ml_service", "is not the root of this template"),
    (lambda repo: shutil.rmtree(repo / TEMPLATE) or repo, f"has no {TEMPLATE}/training/train.py"),
], ids=["missing", "empty", "subfolder", "package removed"])
def test_a_directory_that_is_not_the_template_is_refused(repo, caplog, make_dir, problem):
    (repo.parent / "empty").mkdir()
    directory = make_dir(repo)
    before = snapshot(repo.parent)
    assert run_main("-d", directory, "-n", NEW_NAME) == 1
    assert snapshot(repo.parent) == before
    assert problem in caplog.text


def test_a_second_run_is_refused_and_changes_nothing(repo, caplog):
    assert run_main("-d", repo, "-n", NEW_NAME) == 0
    before = snapshot(repo)
    for name in (NEW_NAME, "other_project"):
        assert run_main("-d", repo, "-n", name) == 1
        assert snapshot(repo) == before
    assert f"already bootstrapped: the template's package is now '{NEW_NAME}'" in caplog.text


def test_a_rename_over_an_existing_path_is_refused(repo, caplog):
    (repo / "ml_service" / "pipelines" / f"{NEW_NAME}_pipeline.py").write_text("# mine\n")
    before = snapshot(repo)
    assert run_main("-d", repo, "-n", NEW_NAME) == 1
    assert snapshot(repo) == before
    assert f"{NEW_NAME}_pipeline.py already exists" in caplog.text


def test_dry_run_lists_the_plan_and_changes_nothing(repo, capsys):
    before = snapshot(repo)
    assert run_main("-d", repo, "-n", NEW_NAME, "--dry-run") == 0
    assert snapshot(repo) == before
    out = capsys.readouterr().out
    assert f"  rename   {TEMPLATE} -> {NEW_NAME}\n" in out
    assert f"  rename   tests/{TEMPLATE} -> tests/{NEW_NAME}\n" in out
    assert f"  rename   ml_service/pipelines/{TEMPLATE}_pipeline.py -> " \
           f"ml_service/pipelines/{NEW_NAME}_pipeline.py\n" in out
    assert "  rewrite  pyproject.toml  (" in out and "  rewrite  README.md  (" in out
    assert "bootstrap.py" not in out
    assert "Dry run: nothing was changed." in out


def test_lines_a_long_name_pushes_over_the_lint_limit_are_listed(repo, capsys):
    long_name = "driver_training_with_long_name"
    assert run_main("-d", repo, "-n", long_name, "--dry-run") == 0
    checks = [line for line in capsys.readouterr().out.splitlines() if "  check  " in line]
    assert checks and all(re.match(r"  check    \S+\.py:\d+: \d+ characters after the rename "
                                   r"\(max-line-length 100\): wrap it$", line)
                          for line in checks), checks


def test_a_name_as_long_as_the_template_package_fits_every_line(pristine):
    """Names up to the package name's length need no hand wrapping before `make lint`."""
    name = "abcdefghijklmnopqrstuvwxyz"[:len(TEMPLATE)]
    plan = bootstrap.prepare(pristine, name)
    assert plan.rewrites and plan.long_lines == ()


@pytest.mark.process
def test_a_successful_run_leaves_no_template_name(bootstrapped):
    copy, result = bootstrapped
    assert result.returncode == 0, result.stderr
    assert f"Renamed the template to '{NEW_NAME}'" in result.stdout
    paths = [p.relative_to(copy).as_posix() for p in copy.rglob("*")]
    assert not [p for p in paths if TEMPLATE in p.lower()]
    assert not [p for p, text in text_files(copy) if TEMPLATE in text.lower()]
    own_files = {"bootstrap/bootstrap.py", "tests/bootstrap/test_bootstrap.py"}
    for word in ("diabetes_ds", "diabetes-local", "diabetes-Training-Pipeline", "diabetes_scoring",
                 "diabetes-Batch-Scoring-Pipeline"):
        assert not [p for p, text in text_files(copy) if word in text and p not in own_files]
    for path in (f"{NEW_NAME}/training/train.py", f"tests/{NEW_NAME}/training/test_train.py",
                 f"ml_service/pipelines/{NEW_NAME}_pipeline.py"):
        assert (copy / path).is_file(), path
    train = (copy / NEW_NAME / "training" / "train.py").read_text()
    assert "from sklearn.datasets import load_diabetes" in train
    pyproject = tomllib.loads((copy / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["packages"]["find"]["include"][0] == f"{NEW_NAME}*"


@pytest.mark.process
def test_a_successful_run_keeps_file_modes(bootstrapped):
    copy, _ = bootstrapped
    script = copy / "ml_service" / "pipelines" / f"{NEW_NAME}_build_train_pipeline.py"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert NEW_NAME in script.read_text()
    assert os.access(copy / ".ci" / "run", os.X_OK)


def lint(root: Path, rename: str = ""):
    """flake8's complaints under root as (path, row, code), paths as after a rename to
    ``rename`` if given."""
    result = subprocess.run([sys.executable, "-m", "flake8"], cwd=root, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    complaints = set()
    for line in result.stdout.splitlines():
        path, row, _, message = line.split(":", 3)
        path = bootstrap.PurePosixPath(path.removeprefix("./"))
        if rename:
            path = bootstrap.final_path(path, rename)
        complaints.add((str(path), int(row), message.split()[0]))
    return complaints


@pytest.mark.process
def test_the_rename_breaks_no_lint_rule_but_the_long_lines_it_reports(pristine, bootstrapped):
    copy, result = bootstrapped
    new = lint(copy) - lint(pristine, NEW_NAME)
    reported = set(re.findall(r"too long for flake8, fix it before `make lint`: ([^:]+):(\d+):",
                              result.stderr))
    assert {(path, str(row)) for path, row, _ in new} <= reported
    assert {code for _, _, code in new} <= {"E501"}


def test_private_and_binary_files_are_left_alone_and_reported(repo, caplog):
    env_file, blob = repo / ".env", repo / "model.bin"
    env_file.write_text(f"MODEL_NAME={TEMPLATE}_model.pkl\nSP_APP_SECRET=secret\n")
    blob.write_bytes(b"\0\x01" + TEMPLATE.encode())
    before = {path: path.read_bytes() for path in (env_file, blob)}
    assert run_main("-d", repo, "-n", NEW_NAME) == 0
    assert {path: path.read_bytes() for path in (env_file, blob)} == before
    assert ".env: private file (may hold secrets), not rewritten" in caplog.text
    assert "model.bin: binary file, not rewritten" in caplog.text


@pytest.mark.parametrize("function, call", [
    ("write_file_atomically", 1), ("write_file_atomically", 20), ("rename_path", 1),
    ("rename_path", -1),
], ids=["first write", "twentieth write", "first rename", "last rename"])
@pytest.mark.process
def test_a_failure_midway_restores_the_tree(repo, caplog, monkeypatch, function, call):
    plan = bootstrap.prepare(repo, NEW_NAME)
    if call == -1:
        call = len(plan.renames)  # the template package itself, after every other change
    real, calls = getattr(bootstrap, function), []

    def failing(*args):
        calls.append(args)
        if len(calls) == call:
            raise OSError(f"injected failure on call {call}")
        return real(*args)

    monkeypatch.setattr(bootstrap, function, failing)
    before = snapshot(repo)
    assert run_main("-d", repo, "-n", NEW_NAME) == 1
    assert snapshot(repo) == before
    assert f"injected failure on call {call}" in caplog.text
    assert "every change was undone and the tree is as it was" in caplog.text
    assert not os.listdir(bootstrap.tempfile.tempdir), "the backup folder was not removed"


@pytest.mark.process
def test_a_file_changed_after_planning_stops_the_run_and_is_kept(repo):
    plan = bootstrap.prepare(repo, NEW_NAME)
    edited = repo / plan.rewrites[-1].path
    edited.write_text(edited.read_text() + "# edited meanwhile\n")
    before = snapshot(repo)
    with pytest.raises(bootstrap.TreeChangedError, match="changed after the plan was made"):
        bootstrap.apply_plan(repo, plan)
    assert snapshot(repo) == before


@pytest.mark.process
def test_an_interruption_midway_restores_the_tree(repo, monkeypatch):
    real = bootstrap.rename_path

    def interrupted(source, target):
        if Path(source).name == TEMPLATE:
            raise KeyboardInterrupt
        real(source, target)

    monkeypatch.setattr(bootstrap, "rename_path", interrupted)
    before = snapshot(repo)
    with pytest.raises(KeyboardInterrupt):
        run_main("-d", repo, "-n", NEW_NAME)
    assert snapshot(repo) == before


@pytest.mark.process
def test_a_failed_undo_keeps_the_backup_and_says_where(repo, caplog, monkeypatch):
    first = bootstrap.prepare(repo, NEW_NAME).rewrites[0].path
    original = (repo / first).read_bytes()
    real, calls = bootstrap.write_file_atomically, []

    def failing_third_write(path, content):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("injected write failure")
        real(path, content)

    def failing_restore(backup, path):
        raise OSError(f"cannot restore {path.name}")

    monkeypatch.setattr(bootstrap, "write_file_atomically", failing_third_write)
    monkeypatch.setattr(bootstrap, "restore_file", failing_restore)
    assert run_main("-d", repo, "-n", NEW_NAME) == 1
    assert "could not undo 3 changes" in caplog.text
    backups = list(Path(bootstrap.tempfile.tempdir).iterdir())
    assert len(backups) == 1 and f"kept in {backups[0]}" in caplog.text
    assert calls[0] == repo / first and (backups[0] / first).read_bytes() == original


@pytest.mark.heavy(rank=2)
@pytest.mark.integration
def test_the_bootstrapped_copy_passes_its_own_tests_and_runs_its_loop(bootstrapped, tmp_path):
    copy, result = bootstrapped
    assert result.returncode == 0, result.stderr
    env = clean_env(copy)
    where = subprocess.run(
        [sys.executable, "-c", f"import {NEW_NAME}, ml_service.paths as p; "
                               f"print({NEW_NAME}.__file__); print(p.PROJECT_ROOT)"],
        cwd=copy, env=env, capture_output=True, text=True, timeout=60, check=True)
    package_file, project_root = where.stdout.splitlines()
    assert Path(package_file).is_relative_to(copy) and Path(project_root) == copy

    # Side by side: the copy's fast tests of the model package and ml_service, where every
    # renamed name is used (the step launcher's tests are slow and name nothing renamed), and
    # the copy's own local loop in a temporary store.
    suite = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not integration",
         "--ignore", "tests/ml_service/pipelines/test_step_launcher.py", f"tests/{NEW_NAME}",
         "tests/ml_service", "tests/test_project.py"],
        cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    loop = subprocess.Popen(
        [sys.executable, "-m", "ml_service.local_loop"], cwd=copy, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
        env=clean_env(copy, MLOPS_ROOT=str(tmp_path / ".mlops")))
    try:
        loop_output = loop.communicate(timeout=300)[0]
        suite_output = suite.communicate(timeout=300)[0]
    finally:
        for process in (suite, loop):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert suite.returncode == 0, suite_output[-3000:]
    assert " passed" in suite_output
    assert loop.returncode == 0, loop_output[-3000:]
    assert "smoke test passed" in loop_output
    assert f"model          {NEW_NAME}_model.pkl version 1 (production)" in loop_output
