"""Render a copy of the project with another model swapped in, as a user's fork would be.

    python -m tests.model_variants.render classifier /tmp/swapped

A variant is a folder here holding the model package files a user rewrites (train.py,
parameters.json) and, in ``library.json``, what the user sets elsewhere for the model's
library: the MLflow flavour and its save options (model_files.py) and the distributions to
pin in each project whose environment loads the model. Rendering copies the project's files
(tracked and new, not ignored ones), puts the variant's files over them, sets the flavour,
adds the pins a project lacks and, when it added one, runs what `make lock` runs, as a user
would, offline (the index pages come from uv's cache, which `make test` fills first). A
variant states its whole library rather than edits of the template's, so the swap test also
holds in a project whose own model uses another library.
The template's own tests run the generic test suite and the whole loop in such a copy
(tests/test_model_swap.py): the way a template's CI renders a project and runs it.
"""
import argparse
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ml_service.util.lock_environments import canonical_name, environments_of, projects

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VARIANTS = Path(__file__).resolve().parent
# A variant's file name -> the project file it replaces.
SWAPPED_FILES = {
    "train.py": "diabetes_regression/training/train.py",
    "parameters.json": "diabetes_regression/parameters.json",
}
# The library of a variant's model: {"flavor": its MLflow flavour module, "save_options":
# the keywords of that flavour's save_model, "libraries": the distributions the model needs}.
LIBRARY = "library.json"
MODEL_FILES = "diabetes_regression/training/model_files.py"
FLAVOR_LINE = re.compile(r"^MLFLOW_FLAVOR = .*$", re.M)
SAVE_OPTIONS_LINE = re.compile(r"^SAVE_OPTIONS\b.*$", re.M)
DEPENDENCIES_LINE = re.compile(r"^dependencies = \[[ \t]*$", re.M)
# The installer of the locks, as the Makefile installs it.
UV = PROJECT_ROOT / ".tools" / "bin" / "uv"
LOCK_TIMEOUT_S = 300
LOGGER = logging.getLogger(__name__)


class RenderError(ValueError):
    """The variant or the target folder cannot be used."""


@dataclass(frozen=True)
class Library:
    """What a variant's model is saved with and needs installed."""

    flavor: str
    save_options: Dict[str, Any]
    libraries: Tuple[str, ...]


def project_files(root: Path = PROJECT_ROOT) -> List[str]:
    """The project's files as git sees them: tracked, plus new ones that are not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root, check=True, capture_output=True).stdout.decode()
    return sorted(name for name in listed.split("\0")
                  if name and (root / name).is_file())


def render(variant: str, target: Path) -> Path:
    """Copy the project into ``target`` (which must not exist) with the variant swapped in."""
    folder = VARIANTS / variant
    files = {name: folder / name for name in SWAPPED_FILES if (folder / name).is_file()}
    if not folder.is_dir() or not files:
        known = sorted(p.name for p in VARIANTS.iterdir() if p.is_dir() and p.name[0] != "_")
        raise RenderError(f"no model variant {variant!r}; known: {', '.join(known)}")
    target = Path(target)
    if target.exists():
        raise RenderError(f"{target} exists; render into a new folder")
    for name in project_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, destination)
    for name, source in files.items():
        shutil.copy2(source, target / SWAPPED_FILES[name])
    if use_library(target, read_library(folder / LIBRARY)):
        relock(target)
    LOGGER.info("Rendered the project with model variant %s into %s", variant, target)
    return target


def read_library(path: Path) -> Library:
    """The library a variant's model needs (its library.json)."""
    try:
        raw = json.loads(path.read_text())
        library = Library(raw["flavor"], raw["save_options"], tuple(raw["libraries"]))
        if not (isinstance(library.flavor, str) and isinstance(library.save_options, dict)
                and library.libraries and all(isinstance(n, str) for n in library.libraries)):
            raise TypeError("flavor is a module name, save_options an object, libraries a "
                            "non-empty list of distribution names")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RenderError(f"{path}: not a variant's library ({err!r})") from err
    return library


def _replace_line(text: str, line: "re.Pattern[str]", new: str, source: str) -> str:
    found = len(line.findall(text))
    if found != 1:
        raise RenderError(f"{source}: {found} lines match {line.pattern!r}, not one; the "
                          "render sets that line for the variant")
    return line.sub(lambda _: new, text)


def with_flavor(text: str, library: Library, source: str = MODEL_FILES) -> str:
    """model_files.py's text with the variant's MLflow flavour and save options."""
    text = _replace_line(text, FLAVOR_LINE, f"MLFLOW_FLAVOR = {json.dumps(library.flavor)}",
                         source)
    return _replace_line(text, SAVE_OPTIONS_LINE,
                         f"SAVE_OPTIONS: Dict[str, Any] = {library.save_options!r}", source)


def with_requirement(text: str, requirement: str, source: str) -> str:
    """A pyproject.toml's text with ``requirement`` in [project] dependencies, unless that
    distribution is declared there already (at whatever version the user chose)."""
    name = canonical_name(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])
    declared = tomllib.loads(text).get("project", {}).get("dependencies", [])
    if any(canonical_name(re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0]) == name
           for d in declared):
        return text
    found = len(DEPENDENCIES_LINE.findall(text))
    if found != 1:
        raise RenderError(f"{source}: {found} lines 'dependencies = [', not one")
    return DEPENDENCIES_LINE.sub(lambda m: f'{m.group(0)}\n    "{requirement}",', text)


def use_library(target: Path, library: Library) -> bool:
    """Make the copy save its model with the variant's flavour, and pin each library it needs
    (at the version installed here, which the tests run) in every project whose environment
    loads the model; whether a pyproject.toml changed (then the locks are stale)."""
    path = target / MODEL_FILES
    path.write_text(with_flavor(path.read_text(), library))
    pins = []
    for name in library.libraries:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError as err:
            raise RenderError(f"the variant needs {name}, which is not installed here: it "
                              "is a dev dependency of pyproject.toml") from err
    changed = False
    for project in projects(environments_of(target)):
        path = target / ("pyproject.toml" if project in ("", ".") else
                         f"{project}/pyproject.toml")
        text = original = path.read_text()
        for pin in pins:
            text = with_requirement(text, pin, str(path.relative_to(target)))
        if text != original:
            path.write_text(text)
            changed = True
    return changed


def relock(target: Path) -> None:
    """Lock the copy's projects and write its conda files from the locks (`make lock`),
    without the network: a version uv has not cached fails the render, saying so."""
    done = subprocess.run(
        [sys.executable, "-m", "ml_service.util.lock_environments", "--uv", str(UV),
         "--python", sys.executable, "lock"], cwd=target, capture_output=True, text=True,
        env={**rendered_environment(target), "UV_OFFLINE": "1"}, timeout=LOCK_TIMEOUT_S)
    if done.returncode != 0:
        raise RenderError(f"make lock's command failed offline in {target} (run make test "
                          f"once, which caches the index pages): {done.stderr[-2000:]}")


def rendered_environment(target: Path, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment to run commands in the copy: its packages first on sys.path, a store
    of its own, and no coverage measurement inherited from the caller."""
    env = {k: v for k, v in (base if base is not None else os.environ).items()
           if not k.startswith(("COV_CORE_", "COVERAGE_", "MLOPS_"))}
    env["PYTHONPATH"] = str(target)
    env["MLOPS_ROOT"] = str(target / ".mlops")
    return env


def main(argv: Optional[list] = None) -> int:
    """Render a variant into a new folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", help="a folder under tests/model_variants")
    parser.add_argument("target", type=Path, help="the new folder to render into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        render(args.variant, args.target)
    except RenderError as err:
        LOGGER.error("error: %s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
