"""Check the CI/CD YAML offline, before any push: schemas, lint, and references between files.

    python -m ml_service.util.check_ci_files [--root DIR]

- yamllint on every YAML file of .pipelines/, .github/workflows/, environment_setup/ and
  the model's own configuration (diabetes_regression/);
- Microsoft's Azure Pipelines schema on every Azure DevOps pipeline and template
  (a variables-only template gets the project's own check: the schema refuses it as a
  whole pipeline);
- GitHub's workflow schema and actionlint on the workflows;
- the project's reference checks: every ``template:`` named exists; every script path and
  ``python -m`` module a pipeline runs exists; every ``$(VARIABLE)`` is defined in the
  variables template, the pipeline itself, or the variable-group list in docs/ci-cd.md;
- Azure Pipelines path filters (``trigger``/``pr`` ``paths``) that name a folder as
  ``folder/*``: there ``*`` stops at a ``/``, so the filter misses every subfolder
  (``folder/**`` takes them all).

Prints one line per problem, naming the file; exits 1 if there is any.
"""
import argparse
import json
import logging
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional, Set

import yaml

from ml_service.paths import PROJECT_ROOT
from ml_service.util.cli import run_cli

LOGGER = logging.getLogger(__name__)
ADO_DIRS = (".pipelines", "environment_setup")
WORKFLOW_DIR = ".github/workflows"
VARIABLES_TEMPLATE = ".pipelines/diabetes_regression-variables-template.yml"
# The page that documents the variable group, between the markers.
VARIABLE_GROUP_PAGE = Path("docs") / "ci-cd.md"
VARIABLE_GROUP_START = "<!-- variable-group:start -->"
VARIABLE_GROUP_END = "<!-- variable-group:end -->"
MACRO = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")
PYTHON_MODULE = re.compile(r"\bpython3?\s+-m\s+([A-Za-z_][\w.]*)")
SET_VARIABLE = re.compile(r"task\.setvariable variable=([A-Za-z_][A-Za-z0-9_]*)")
# A project script declares the pipeline variables it sets: PIPELINE_VARIABLES = ("A", "B")
DECLARED = re.compile(r"^PIPELINE_VARIABLES\s*=\s*\(([^)]*)\)", re.MULTILINE)
SCRIPT_PATH = re.compile(r"\b(?:python3?|bash|sh)\s+((?:[\w.\-]+/)*[\w.\-]+\.(?:py|sh))\b")


@dataclass(frozen=True)
class Problem:
    """One thing wrong, in one file."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def tool(name: str) -> str:
    """A validator installed beside this interpreter (the project's dev dependencies)."""
    return str(Path(sys.executable).with_name(name))


def lint_only_files(root: Path) -> List[Path]:
    """The project's other YAML files (conda, inference and deployment configs): lint only."""
    return sorted(p for p in root.glob("diabetes_regression/**/*.yml")) + sorted(
        p for p in [root / ".yamllint.yml"] if p.is_file())


def yaml_files(root: Path) -> List[Path]:
    """Every CI/CD YAML file the checks cover."""
    found: List[Path] = []
    for folder in (*ADO_DIRS, WORKFLOW_DIR):
        found += sorted((root / folder).glob("*.yml")) + sorted((root / folder).glob("*.yaml"))
    return found


def run_tool(argv: List[str], root: Path, paths: List[Path]) -> List[Problem]:
    """Run a validator over files; its complaints become problems naming each file."""
    if not paths:
        return []
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    done = subprocess.run(argv + [str(p) for p in paths], cwd=root, capture_output=True,
                          text=True, env=env)
    if done.returncode == 0:
        return []
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    problems = []
    for path in paths:
        # Tools start a line with the file ("path:line:col", "path::$") or name it in full
        # ("Failed to parse /abs/path"); a relative path inside data does not count.
        mentions = [line for line in lines
                    if line.startswith((f"{path}:", f"{rel(root, path)}:")) or str(path) in line]
        if mentions:
            detail = " | ".join(mentions[:6])
            problems.append(Problem(rel(root, path), f"{Path(argv[0]).name}: {detail}"))
    if not problems:  # the tool failed without naming a file: blame them all
        problems = [Problem(rel(root, p), f"{Path(argv[0]).name}: {' | '.join(lines[-6:])}")
                    for p in paths]
    return problems


def rel(root: Path, path: Path) -> str:
    """A path relative to the root, for messages."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def load(path: Path) -> Any:
    """Parse a YAML file (syntax errors are yamllint's to report)."""
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return {}


def is_variables_template(document: Any) -> bool:
    """True for a template that only declares variables."""
    return isinstance(document, dict) and set(document) == {"variables"}


def check_variables_template(root: Path, path: Path, document: Any) -> List[Problem]:
    """The schema refuses variables-only templates: check their shape here."""
    entries = document.get("variables")
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and set(e) == {"name", "value"} for e in entries):
        return [Problem(rel(root, path), "variables must be a list of {name, value} entries")]
    return []


def walk(node: Any) -> Iterator[Any]:
    """Every mapping and list in a parsed YAML document."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(
        node, list) else []
    for child in children:
        yield from walk(child)


def strings(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML document (keys excluded)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def defined_variables(document: Any) -> Set[str]:
    """Variables a pipeline defines itself (at any level) and its parameters."""
    names: Set[str] = set()
    for node in walk(document):
        if not isinstance(node, dict):
            continue
        variables = node.get("variables")
        if isinstance(variables, dict):
            names |= set(variables)
        elif isinstance(variables, list):
            names |= {v["name"] for v in variables if isinstance(v, dict) and "name" in v}
    return names


def variable_group(root: Path) -> Set[str]:
    """The variable-group variables documented in docs/ci-cd.md, between the markers."""
    page = root / VARIABLE_GROUP_PAGE
    text = page.read_text() if page.is_file() else ""
    start, end = text.find(VARIABLE_GROUP_START), text.find(VARIABLE_GROUP_END)
    if start < 0 or end < start:
        return set()
    return set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]*)`", text[start:end], re.MULTILINE))


def project_module_file(root: Path, module: str) -> Optional[Path]:
    """The file of a module of the project's own packages (None for a library module)."""
    top = root / module.split(".")[0]
    if not (top / "__init__.py").is_file():
        return None
    base = root / Path(*module.split("."))
    return base.with_suffix(".py") if not (base / "__init__.py").is_file() \
        else base / "__init__.py"


def variables_set_at_run_time(root: Path, path: Path, document: Any,
                              seen: Optional[Set[Path]] = None) -> Set[str]:
    """Variables the pipeline's steps set while it runs: ``task.setvariable`` in its scripts,
    the PIPELINE_VARIABLES a project module it runs declares, and the same in its templates."""
    seen = seen if seen is not None else set()
    names: Set[str] = set()
    for text in strings(document):
        names |= set(SET_VARIABLE.findall(text))
        for module in PYTHON_MODULE.findall(text):
            source = project_module_file(root, module)
            if source is not None and source.is_file():
                for declared in DECLARED.findall(source.read_text()):
                    names |= set(re.findall(r'"([A-Z][A-Z0-9_]*)"', declared))
    for node in walk(document):
        if isinstance(node, dict) and isinstance(node.get("template"), str):
            template = (path.parent / node["template"]).resolve()
            if template.is_file() and template not in seen:
                seen.add(template)
                names |= variables_set_at_run_time(root, template, load(template), seen)
    return names


def check_templates(root: Path, path: Path, document: Any) -> List[Problem]:
    """Every template a file names exists beside it."""
    return [Problem(rel(root, path), f"template {node['template']!r} does not exist")
            for node in walk(document)
            if isinstance(node, dict) and isinstance(node.get("template"), str)
            and not (path.parent / node["template"]).is_file()]


def check_commands(root: Path, path: Path, text: str) -> List[Problem]:
    """The project's modules and the scripts a command runs exist."""
    where = rel(root, path)
    problems = [Problem(where, f"module {module!r} does not exist")
                for module in PYTHON_MODULE.findall(text)
                if (found := project_module_file(root, module)) is not None
                and not found.is_file()]
    problems += [Problem(where, f"script {script!r} does not exist")
                 for script in SCRIPT_PATH.findall(text) if not (root / script).is_file()]
    return problems


def check_path_filters(root: Path, path: Path, document: Any) -> List[Problem]:
    """No trigger or pr path filter of an Azure Pipelines file ends in ``/*``."""
    problems = []
    for node in walk(document):
        if not isinstance(node, dict):
            continue
        for kind in ("trigger", "pr"):
            filters = node.get(kind)
            paths = filters.get("paths") if isinstance(filters, dict) else None
            if not isinstance(paths, dict):
                continue
            for which in ("include", "exclude"):
                for pattern in paths.get(which) or []:
                    if isinstance(pattern, str) and pattern.endswith("/*"):
                        folder = pattern[:-1]
                        problems.append(Problem(rel(root, path), (
                            f"{kind} path filter {pattern!r} ({which}) matches only the files "
                            f"directly in {folder}, none in its subfolders: use '{folder}**' "
                            f"(the folder prefix '{folder}' means the same, but Microsoft's "
                            "schema refuses a trailing slash)")))
    return problems


def check_references(root: Path, path: Path, document: Any, known: Set[str]) -> List[Problem]:
    """Templates, scripts and modules exist; every $(VARIABLE) is defined."""
    problems = check_templates(root, path, document)
    defined = known | defined_variables(document) | variables_set_at_run_time(root, path,
                                                                              document)
    for text in strings(document):
        problems += check_commands(root, path, text)
        # Names with a dot are Azure DevOps' predefined or step output variables.
        problems += [Problem(rel(root, path), f"variable $({name}) is not defined in the "
                                              "variables template, the pipeline, or the "
                                              "variable-group list in docs/ci-cd.md")
                     for name in MACRO.findall(text) if "." not in name and name not in defined]
    return problems


def check_all(root: Path) -> List[Problem]:
    """Every check on every file under the root (each validator runs once over its files)."""
    files = yaml_files(root)
    config = root / ".yamllint.yml"
    lint = [tool("yamllint"), "--strict", "-f", "parsable"] + (
        ["-c", str(config)] if config.is_file() else [])
    problems = run_tool(lint, root, files + lint_only_files(root))
    known = variable_group(root)
    if (root / VARIABLES_TEMPLATE).is_file():
        known |= defined_variables(load(root / VARIABLES_TEMPLATE))
    documents = {path: load(path) for path in files}
    workflows = [p for p in files if WORKFLOW_DIR in rel(root, p)]
    templates = [p for p in files if p not in workflows and is_variables_template(documents[p])]
    pipelines = [p for p in files if p not in workflows and p not in templates]
    problems += run_tool([tool("check-jsonschema"), "--builtin-schema",
                          "vendor.github-workflows"], root, workflows)
    problems += run_tool([tool("actionlint"), "-ignore", "is deprecated in GitHub Actions"],
                         root, workflows)
    problems += run_tool([tool("check-jsonschema"), "--builtin-schema", "vendor.azure-pipelines",
                          "--regex-variant", "nonunicode", "--data-transform", "azure-pipelines"],
                         root, pipelines)
    for path in templates:
        problems += check_variables_template(root, path, documents[path])
    for path in workflows:
        problems += check_references(root, path, documents[path], set())
    for path in pipelines:
        problems += check_references(root, path, documents[path], known)
        problems += check_path_filters(root, path, documents[path])
    return problems


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the root folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help="repository root")
    parser.add_argument("--json", action="store_true", help="print the problems as JSON")
    return parser.parse_args(argv)


def check(args: argparse.Namespace) -> int:
    """Run the checks and print the problems."""
    problems = check_all(args.root.resolve())
    if args.json:
        print(json.dumps([p.__dict__ for p in problems], indent=2))
    else:
        for problem in problems:
            print(problem)
    LOGGER.info("%d CI/CD file problem(s)", len(problems))
    return 1 if problems else 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of the CI/CD file checks."""
    args = parse_args(argv)
    return run_cli(lambda: check(args))


if __name__ == "__main__":
    sys.exit(main())
