"""Render a copy of the project with another model swapped in, as a user's fork would be.

    python -m tests.model_variants.render classifier /tmp/swapped

A variant is a folder here holding the model package files a user rewrites (train.py,
parameters.json) and, in ``edits.json``, the lines a user changes elsewhere (a library other
than scikit-learn: its MLflow flavour, its pins). Rendering copies the project's files
(tracked and new, not ignored ones), puts the variant's files over them and makes its edits;
when an edit changes a pyproject.toml it then runs what `make lock` runs, as a user would,
offline (the index pages come from uv's cache, which `make test` fills first).
The template's own tests run the generic test suite and the whole loop in such a copy
(tests/test_model_swap.py): the way a template's CI renders a project and runs it.
"""
import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VARIANTS = Path(__file__).resolve().parent
# A variant's file name -> the project file it replaces.
SWAPPED_FILES = {
    "train.py": "diabetes_regression/training/train.py",
    "parameters.json": "diabetes_regression/parameters.json",
}
# A variant's edits of other project files: {"edits": [{"file", "find", "replace"}, ...]}.
EDITS = "edits.json"
# The installer of the locks, as the Makefile installs it.
UV = PROJECT_ROOT / ".tools" / "bin" / "uv"
LOCK_TIMEOUT_S = 300
LOGGER = logging.getLogger(__name__)


class RenderError(ValueError):
    """The variant or the target folder cannot be used."""


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
    edits = read_edits(folder / EDITS) if (folder / EDITS).is_file() else []
    apply_edits(target, edits)
    if any(Path(edit["file"]).name == "pyproject.toml" for edit in edits):
        relock(target)
    LOGGER.info("Rendered the project with model variant %s into %s", variant, target)
    return target


def read_edits(path: Path) -> List[Dict[str, str]]:
    """The edits a variant lists, each with its file, the text to find and its replacement."""
    try:
        edits = json.loads(path.read_text())["edits"]
        if not all(isinstance(e, dict) and all(isinstance(e.get(k), str)
                                               for k in ("file", "find", "replace"))
                   for e in edits):
            raise TypeError("each edit needs the strings file, find and replace")
    except (ValueError, KeyError, TypeError) as err:
        raise RenderError(f"{path}: not a list of edits ({err})") from err
    return edits


def apply_edits(target: Path, edits: List[Dict[str, str]]) -> None:
    """Replace each edit's text in its file of the rendered copy; the text must occur once
    there, so a project change that moves it fails the render instead of skipping the edit."""
    for edit in edits:
        path = target / edit["file"]
        text = path.read_text() if path.is_file() else ""
        found = text.count(edit["find"])
        if found != 1:
            raise RenderError(f"{edit['file']}: the text to edit ({edit['find']!r}) occurs "
                              f"{found} times, not once; update the variant's {EDITS}")
        path.write_text(text.replace(edit["find"], edit["replace"]))


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
