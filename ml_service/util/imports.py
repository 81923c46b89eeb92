"""What a script imports, read from its source: nothing is imported or run.

Used to stage the scoring script's upload (the project modules it loads) and to check the
compute environments (the libraries the steps need there).
"""
import ast
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple


def imported_modules(source: str, filename: str = "<source>",
                     package: Optional[Sequence[str]] = None) -> Set[str]:
    """Every module name an ``import`` anywhere in the source may load.

    ``from a.b import c`` gives ``a.b`` and ``a.b.c`` (c may be a submodule; the caller keeps
    the names that exist). Relative imports are resolved against ``package`` (the importing
    module's package, as a list of names) and left out without it.
    """
    names: Set[str] = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    continue
                base = list(package[:len(package) - node.level + 1])
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            if prefix:
                names.add(prefix)
            names.update(f"{prefix}.{alias.name}" if prefix else alias.name
                         for alias in node.names if alias.name != "*")
    return names


def project_module_file(module: str, root: Path) -> Optional[Path]:
    """The file of one of the project's modules under ``root``, or None."""
    base = Path(root, *module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(path: Path, root: Path) -> Optional[List[str]]:
    """The package a module's relative imports start from, or None outside ``root``."""
    try:
        return list(path.relative_to(root).with_suffix("").parts[:-1])
    except ValueError:
        return None


def follow_imports(script: Path, root: Path,
                   project_packages: Optional[Sequence[str]] = None
                   ) -> Tuple[List[Path], Set[str]]:
    """The project modules a script loads, transitively (with the ``__init__.py`` of the
    packages that hold them), and every other module name imported along the way.

    A name is the project's when a file under ``root`` provides it (and, with
    ``project_packages``, its top-level package is one of them).
    """
    root = Path(root).resolve()
    script = Path(script).resolve()
    modules: Dict[Path, None] = {}
    others: Set[str] = set()
    seen = {script}
    pending = [script]
    while pending:
        path = pending.pop()
        source = path.read_text(encoding="utf-8")
        for name in imported_modules(source, str(path), _package_of(path, root)):
            parts = name.split(".")
            files = [] if project_packages is not None and parts[0] not in project_packages \
                else [found for depth in range(1, len(parts) + 1)
                      if (found := project_module_file(".".join(parts[:depth]), root))]
            if not files:
                others.add(name)
            for found in files:
                if found not in seen:
                    seen.add(found)
                    modules[found] = None
                    pending.append(found)
    return sorted(modules), others
