"""Render a copy of the project with another model swapped in, as a user's fork would be.

    python -m tests.model_variants.render classifier /tmp/swapped

A variant is a folder here holding the model package files a user edits; rendering copies
the project's files (tracked and new, not ignored ones) and puts the variant's over them.
The template's own tests run the generic test suite and the whole loop in such a copy
(tests/test_model_swap.py): the way a template's CI renders a project and runs it.
"""
import argparse
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
    LOGGER.info("Rendered the project with model variant %s into %s", variant, target)
    return target


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
