"""Check that the Azure ML compute environments resolve and carry what runs in them.

    python -m ml_service.util.check_environment

First, the conda files agree with the locks (their pip lists are written from them by
``make lock``; see ml_service/util/lock_environments.py), and every conda file used on Azure
ML compute is one of them. Then, for each conda file (the training steps and the scoring
service; the batch scoring pipeline):

1. read its pip requirements and its python pin (which must match this interpreter,
   as pip resolves for the interpreter that runs it);
2. ask the package index whether they resolve (``pip install --dry-run``: nothing is
   installed; this needs the network, so it runs in ``.ci/run``, not in the tests);
3. find, by reading the source (no import), the third-party modules imported by every
   script that runs in that environment, at module level and inside functions, followed
   through the project's own packages;
4. map each module to the distribution that provides it in this virtual environment and
   fail, naming the script, the module and the distribution, when the resolved set lacks it.

Exits 0 with a one-line summary when every environment is complete, 1 otherwise.
"""
import argparse
import importlib.metadata
import json
import logging
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import (Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Set,
                    Tuple)

import yaml

from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.util.imports import follow_imports
from ml_service.util.cli import run_cli
from ml_service.util.lock_environments import (TABLE_NAME, Uv, canonical_name, environments_of,
                                               find_drift)

LOGGER = logging.getLogger(__name__)
PROJECT_PACKAGES = ("diabetes_regression", "ml_service")
PYTHON_PIN = re.compile(r"^python\s*=*\s*(\d+\.\d+)")
# How deep a namespace package (azureml.*) is split to tell its distributions apart.
NAMESPACE_DEPTH = 3


@dataclass(frozen=True)
class ComputeEnvironment:
    """A conda file used on Azure ML compute and the scripts that run in it there."""

    conda_file: str
    scripts: Tuple[str, ...]
    # Distributions that no import names but the platform loads (an MLflow plugin, found by
    # entry point): distribution -> what needs it.
    plugins: Mapping[str, str] = field(default_factory=dict)


class Problem(NamedTuple):
    """A module a script imports whose distribution the environment does not install."""

    conda_file: str
    script: str
    module: str
    distribution: str

    def __str__(self) -> str:
        return (f"{self.conda_file}: {self.script} imports {self.module}, but "
                f"{self.distribution} does not resolve from it")


class MissingPlugin(NamedTuple):
    """A distribution the platform loads by entry point that the environment lacks."""

    conda_file: str
    distribution: str
    needed_by: str

    def __str__(self) -> str:
        return (f"{self.conda_file}: {self.needed_by} needs {self.distribution}, but it does "
                "not resolve from it")


def missing_plugins(environment: ComputeEnvironment,
                    resolved: Mapping[str, str]) -> List[MissingPlugin]:
    """The environment's plugins that the resolved set lacks."""
    return [MissingPlugin(environment.conda_file, name, needed_by)
            for name, needed_by in sorted(environment.plugins.items())
            if canonical_name(name) not in resolved]


# -- pure parts: requirements, pip's report, the import graph, module -> distribution --------
def read_conda_requirements(text: str, source: str = "conda file") -> Tuple[str, List[str]]:
    """The python version pinned by a conda file and its pip requirements."""
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigurationError(f"{source}: not valid YAML: {err}") from err
    dependencies = spec.get("dependencies") if isinstance(spec, dict) else None
    if not isinstance(dependencies, list):
        raise ConfigurationError(f"{source}: no 'dependencies' list")
    python = [m.group(1) for d in dependencies if isinstance(d, str)
              for m in [PYTHON_PIN.match(d.strip())] if m]
    pip = [d["pip"] for d in dependencies if isinstance(d, dict) and "pip" in d]
    if not python:
        raise ConfigurationError(f"{source}: dependencies do not pin python (e.g. python=3.11)")
    if not pip or not all(isinstance(r, str) for r in pip[0]):
        raise ConfigurationError(f"{source}: no pip requirements list")
    return python[0], list(pip[0])


def resolved_distributions(report: Mapping[str, Any]) -> Dict[str, str]:
    """Canonical distribution name -> version, from pip's installation report."""
    return {canonical_name(item["metadata"]["name"]): item["metadata"]["version"]
            for item in report.get("install", [])}


def third_party_imports(script: Path, root: Path,
                        project_packages: Sequence[str] = PROJECT_PACKAGES) -> Set[str]:
    """The modules outside the project that a script needs, following the project's own
    modules (and the packages that hold them) transitively."""
    found = follow_imports(script, root, project_packages)[1]
    return {name for name in found if not _is_submodule_guess(name, found)}


def _is_submodule_guess(name: str, found: Set[str]) -> bool:
    """``from a import b`` also recorded ``a.b``; keep it only if nothing shorter covers it.

    Dropping ``a.b`` when ``a`` is there loses nothing: the distribution lookup takes the
    longest known prefix, and ``a`` is itself needed.
    """
    parent = name.rpartition(".")[0]
    return bool(parent) and parent in found


def namespace_index(files: Iterable[Tuple[str, Iterable[str]]],
                    depth: int = NAMESPACE_DEPTH) -> Dict[str, Set[str]]:
    """Dotted package prefix -> distributions with Python files under it, from each
    distribution's file list (to split namespace packages such as ``azureml``)."""
    index: Dict[str, Set[str]] = defaultdict(set)
    for distribution, paths in files:
        for path in paths:
            parts = str(path).replace("\\", "/").split("/")
            if not parts[-1].endswith(".py") or parts[0].endswith((".dist-info", ".data")):
                continue
            parts[-1] = parts[-1][:-3]
            if parts[-1] == "__init__":
                parts.pop()
            for size in range(1, min(depth, len(parts)) + 1):
                index[".".join(parts[:size])].add(canonical_name(distribution))
    return dict(index)


def module_distributions(module: str, top_level: Mapping[str, Sequence[str]],
                         index: Mapping[str, Set[str]],
                         stdlib: Iterable[str] = sys.stdlib_module_names) -> Optional[Set[str]]:
    """The distributions that may provide a module: empty for the standard library, None if
    no installed distribution provides it. Namespace packages are narrowed by ``index``."""
    top = module.split(".")[0]
    if top in set(stdlib):
        return set()
    owners = {canonical_name(d) for d in top_level.get(top, ())}
    if not owners:
        return None
    if len(owners) > 1:
        parts = module.split(".")
        for size in range(len(parts), 1, -1):
            narrowed = index.get(".".join(parts[:size]))
            if narrowed:
                return set(narrowed)
    return owners


def find_problems(conda_file: str, needs: Mapping[str, Set[str]],
                  resolved: Mapping[str, str], top_level: Mapping[str, Sequence[str]],
                  index: Mapping[str, Set[str]],
                  stdlib: Iterable[str] = sys.stdlib_module_names) -> List[Problem]:
    """Every (script, module) whose distribution is not in the resolved set."""
    stdlib = set(stdlib)
    problems = []
    for script, modules in sorted(needs.items()):
        for module in sorted(modules):
            owners = module_distributions(module, top_level, index, stdlib)
            if owners is None:
                problems.append(Problem(conda_file, script, module,
                                        "a distribution not installed in this venv"))
            elif owners and not owners & set(resolved):
                problems.append(Problem(conda_file, script, module, " or ".join(sorted(owners))))
    return problems


# -- the parts that read this venv and ask the package index --------------------------------
def compute_environments() -> List[ComputeEnvironment]:
    """The conda files used on Azure ML compute and the scripts each one runs."""
    from ml_service.pipelines import diabetes_regression_build_parallel_batchscore_pipeline \
        as batch
    from ml_service.pipelines import diabetes_regression_pipeline as training
    from ml_service.util.env_variables import (BatchScoringSettings, EnvironmentSettings,
                                               EnvironmentV2Settings, TrainingSettings)

    # Every step of the one pipeline definition (a new step is checked without listing it
    # here), and the scoring script, which runs in the same environment.
    steps = tuple(step.script
                  for step in training.build_training_pipeline(TrainingSettings()).steps)
    return [
        ComputeEnvironment(EnvironmentSettings.from_env().conda_file,
                           steps + (training.SCORE_SCRIPT,)),
        ComputeEnvironment(BatchScoringSettings.from_env().conda_file,
                           (batch.ENTRY_SCRIPT, batch.COPY_SCRIPT)),
        # The same steps on SDK v2, where MLflow logs and registers to the workspace.
        ComputeEnvironment(EnvironmentV2Settings.from_env().conda_file, steps,
                           {"azureml-mlflow": "MLflow's azureml:// tracking URI of a v2 "
                                              "command job",
                            "azureml-fsspec": "pandas reading a data asset's azureml:// path"}),
    ]


def installed_files() -> Iterable[Tuple[str, List[str]]]:
    """(distribution, files) of every distribution installed in this venv."""
    for distribution in importlib.metadata.distributions():
        yield distribution.metadata["Name"], [str(f) for f in distribution.files or ()]


def resolve(requirements: Sequence[str], pip: Sequence[str]) -> Dict[str, Any]:
    """Ask the package index to resolve the requirements; return pip's report."""
    with tempfile.TemporaryDirectory(prefix="check-environment-") as folder:
        requirements_file = Path(folder) / "requirements.txt"
        requirements_file.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        report = Path(folder) / "report.json"
        command = [*pip, "install", "--dry-run", "--ignore-installed", "--quiet",
                   "--report", str(report), "-r", str(requirements_file)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines()
                      if line.strip() and "is ignored: it is neither" not in line]
            raise ConfigurationError("the requirements do not resolve: "
                                     + " | ".join(errors[-6:]))
        return json.loads(report.read_text(encoding="utf-8"))


def check_environment(environment: ComputeEnvironment, root: Path, pip: Sequence[str],
                      top_level: Mapping[str, Sequence[str]], index: Mapping[str, Set[str]],
                      project_packages: Sequence[str] = PROJECT_PACKAGES
                      ) -> Tuple[int, List[Any]]:
    """Resolve one environment; return the number of distributions and the problems."""
    conda_file = Path(root) / environment.conda_file
    try:
        text = conda_file.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigurationError(f"{conda_file}: cannot read it: {err.strerror}") from err
    python, requirements = read_conda_requirements(text, str(conda_file))
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python != running:
        raise ConfigurationError(f"{environment.conda_file} pins python={python}; run this "
                                 f"check with Python {python} (this is {running})")
    try:
        resolved = resolved_distributions(resolve(requirements, pip))
    except ConfigurationError as err:
        raise ConfigurationError(f"{environment.conda_file}: {err}") from err
    needs = {script: third_party_imports(Path(root) / script, root, project_packages)
             for script in environment.scripts}
    return len(resolved), (find_problems(environment.conda_file, needs, resolved, top_level,
                                         index) + missing_plugins(environment, resolved))


def lock_problems(environments: Sequence[ComputeEnvironment], uv: Uv) -> List[str]:
    """Conda files that are not written from a lock, or differ from their lock."""
    locked = environments_of(uv.root)
    written = {e.conda_file for e in locked}
    problems = [f"{e.conda_file}: used on Azure ML compute but not written from a lock: add "
                f"it to pyproject.toml's {TABLE_NAME} and run 'make lock'"
                for e in environments if e.conda_file not in written]
    return problems + find_drift(uv, locked)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT,
                        help="repository root (default: this checkout)")
    return parser.parse_args(argv)


def run_checks(args: argparse.Namespace) -> int:
    """Check every compute environment; log each problem; one summary line."""
    started = time.monotonic()
    top_level = importlib.metadata.packages_distributions()
    index = namespace_index(installed_files())
    pip = [sys.executable, "-m", "pip"]
    environments = compute_environments()
    uv = Uv(str(Path(sys.executable).parent / "uv"), sys.executable, args.root)
    drift = lock_problems(environments, uv)
    for problem in drift:
        LOGGER.error("%s", problem)
    if drift:
        return 1
    # Each resolution waits on the package index for a minute or more: run them together.
    with ThreadPoolExecutor(max_workers=len(environments)) as pool:
        results = list(pool.map(
            lambda e: check_environment(e, args.root, pip, top_level, index), environments))
    problems = [p for _, found in results for p in found]
    sizes = [f"{e.conda_file} ({size} distributions)"
             for e, (size, _) in zip(environments, results)]
    for problem in problems:
        LOGGER.error("%s", problem)
    if problems:
        return 1
    scripts = sum(len(e.scripts) for e in environments)
    print(f"check_environment: {len(environments)} compute environments agree with their locks, "
          f"resolve for Python "
          f"{sys.version_info.major}.{sys.version_info.minor} and provide every module "
          f"their {scripts} scripts import: {', '.join(sizes)} "
          f"[{time.monotonic() - started:.0f} s]")
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of the check."""
    args = parse_args(argv)
    return run_cli(lambda: run_checks(args))


if __name__ == "__main__":
    sys.exit(main())
