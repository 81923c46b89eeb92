"""Write docs/configuration.md, the configuration reference, from the definitions in the code.

    python -m ml_service.util.config_reference [--check]

Each parameters.json key is described in ``diabetes_regression.parameters.KEYS``; each
environment variable where it is read: a settings field's metadata (``env``, ``effect``,
``kind``; ``setting()`` in ml_service/util/env_variables.py) or a module's
``DESCRIBED_VARIABLES``. Variables that the platform or the project sets for the code are
listed in INTERNAL_VARIABLES below. ``--check`` writes nothing: it names what differs from
the page in the repository, and any variable or key that has no description.
"""
import argparse
import ast
import dataclasses
import difflib
import json
import logging
import os
import re
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Set

from diabetes_regression.parameters import (DEFAULT_PATH, KEYS, REQUIRED, Key,
                                            parse_parameters)
from ml_service.monitoring import appinsights, variables
from ml_service.paths import PROJECT_ROOT
from ml_service.pipelines import local_executor
from ml_service.util import env_variables as settings
from ml_service.util.cli import run_cli
from ml_service.webapp.app import WebAppSettings

LOGGER = logging.getLogger(__name__)
PAGE = Path("docs") / "configuration.md"
# The packages whose reads of the environment must be described.
SOURCE_PACKAGES = ("ml_service", "diabetes_regression")
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")


class EnvVariable(NamedTuple):
    """One row of the page: a variable, what it holds, its default and what it does."""

    name: str
    kind: str
    default: Any
    effect: str


# The page's groups of variables, in order: settings classes and DESCRIBED_VARIABLES tuples.
GROUPS = (
    ("Backend", (settings.BackendSettings,)),
    ("Training pipeline", (settings.TrainingSettings, local_executor.DESCRIBED_VARIABLES)),
    ("Scoring service", (settings.ScoringSettings, variables.DESCRIBED_VARIABLES)),
    ("Web app", (WebAppSettings,)),
    ("Monitoring", (appinsights.DESCRIBED_VARIABLES,)),
    ("Azure ML workspace and sign-in", (settings.WorkspaceSettings,)),
    ("Training compute", (settings.ComputeSettings,)),
    ("Azure ML environments", (settings.EnvironmentSettings, settings.EnvironmentV2Settings)),
    ("Azure web services and endpoints", (settings.AzureScoringSettings,
                                          settings.OnlineEndpointSettings)),
    ("Batch scoring", (settings.BatchScoringSettings,)),
)

# Read by the code, but set for it (by Azure ML, CI, Python or the project's own deployers
# and executors), not by a user: who sets each.
INTERNAL_VARIABLES = {
    "AZUREML_RUN_ID": "Azure ML, in a run (the backend is then azureml unless MLOPS_BACKEND "
                      "says otherwise)",
    "AZUREML_MODEL_DIR": "the inference server, locally and on Azure ML: the model's folder",
    "AML_APP_ROOT": "the inference server: the folder the API descriptions are written in",
    "SERVICE_NAME": "the inference server on Azure ML: the service's name",
    "MLFLOW_RUN_ID": "Azure ML, in an SDK v2 command job",
    "OBO_ENDPOINT": "Azure ML, in an SDK v2 job that runs as its submitter",
    "DEFAULT_IDENTITY_CLIENT_ID": "Azure ML, in an SDK v2 job on a cluster with a user-assigned "
                                  "identity",
    "GITHUB_OUTPUT": "GitHub Actions: the file a step's outputs are written to",
    "MLOPS_PIPELINE_RUN_ID": "the local executor, for each step it starts",
    "MLOPS_SCORING_AUTH": "the local backend's scoring servers (none: no key is checked)",
    "MLOPS_COLLECT_DIR": "the local backend's deployments: the folder collected records go to",
    "MLOPS_SERVICE_NAME": "the local backend's deployments: the service's name",
    "MLOPS_MODEL_NAME": "the local backend's deployments: the served model's name",
    "MLOPS_MODEL_VERSION": "the local backend's deployments: the served model's version",
    "PYTHONPATH": "Python; the executors pass it on to the step processes",
    "PYTHONUNBUFFERED": "Python; the step launcher passes it on",
}

TYPE_NAMES = {str: "text", bool: "true or false", int: "whole number", float: "number",
              Path: "path"}


def field_variables(settings_class: type) -> List[EnvVariable]:
    """The rows of a settings dataclass: each field with ``env`` metadata."""
    hints = typing.get_type_hints(settings_class)
    rows = []
    for field in dataclasses.fields(settings_class):
        if "env" not in field.metadata:
            continue
        types = [t for t in typing.get_args(hints[field.name]) if t is not type(None)]
        kind = field.metadata.get("kind") or TYPE_NAMES.get(
            types[0] if types else hints[field.name], "text")
        default = field.metadata.get("default", field.default)
        rows.append(EnvVariable(field.metadata["env"], kind, default,
                                field.metadata.get("effect", "")))
    return rows


def group_variables(sources: Iterable[Any]) -> List[EnvVariable]:
    """The rows of one group: from settings classes and from DESCRIBED_VARIABLES tuples."""
    rows: List[EnvVariable] = []
    for source in sources:
        rows += (field_variables(source) if isinstance(source, type)
                 else [EnvVariable(*row) for row in source])
    return rows


def described_variables(groups=GROUPS) -> List[EnvVariable]:
    """Every variable the page describes."""
    return [row for _, sources in groups for row in group_variables(sources)]


def cell(text: str) -> str:
    """Text that is safe in a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def shown_default(value: Any) -> str:
    """A default as the page shows it."""
    if value is dataclasses.MISSING or value == REQUIRED:
        return "required"
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, dict)):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]


def render(keys: Sequence[Key] = KEYS, groups=GROUPS,
           internal: Mapping[str, str] = INTERNAL_VARIABLES) -> str:
    """The configuration reference page."""
    parameters_file = DEFAULT_PATH.relative_to(PROJECT_ROOT).as_posix()
    lines = [
        "# Configuration", "",
        "<!-- Generated from the code by `make docs` (python -m ml_service.util."
        "config_reference): edit the descriptions where the settings are defined, then run "
        "make docs. make test fails when this page is stale. -->", "",
        "Two things configure the project: [parameters.json](#parametersjson), the model's "
        "parameters and quality gates, and [environment variables](#environment-variables), "
        "the names, switches and Azure resources of the platform.", "",
        "## parameters.json", "",
        f"[`{parameters_file}`](../{parameters_file}) is checked when a step starts (a wrong "
        "value is named in the error) and logged with every training run. Keys are written "
        "section.key here.", "",
    ]
    lines += table(("Key", "Type", "Default", "Effect"),
                   ((f"`{key.name}`", key.kind, shown_default(key.default), key.effect)
                    for key in keys))
    lines += [
        "", "## Environment variables", "",
        "Set them in the environment or in `.env` (copy [`.env.example`](../.env.example)); "
        "the environment wins. None is needed with the local backend; the workspace's are "
        "needed with `MLOPS_BACKEND=azureml` or `azureml-v2`.",
    ]
    for title, sources in groups:
        lines += ["", f"### {title}", ""]
        lines += table(("Variable", "Type", "Default", "Effect"),
                       ((f"`{row.name}`", row.kind, shown_default(row.default), row.effect)
                        for row in group_variables(sources)))
    lines += ["", "### Set for you", "",
              "The code reads these too, but they are set for it; do not set them by hand.",
              ""]
    lines += table(("Variable", "Set by"), ((f"`{name}`", who)
                                            for name, who in sorted(internal.items())))
    return "\n".join(lines) + "\n"


def module_constants(trees: Mapping[Path, ast.Module]) -> Dict[str, str]:
    """Every module-level ``NAME = "text"`` (and ``A, B = "x", "y"``) of the modules."""
    constants: Dict[str, str] = {}
    for tree in trees.values():
        for node in tree.body:
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                pairs = (zip(target.elts, node.value.elts)
                         if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                         else [(target, node.value)])
                constants.update({name.id: value.value for name, value in pairs
                                  if isinstance(name, ast.Name) and isinstance(value, ast.Constant)
                                  and isinstance(value.value, str)})
    return constants


def _text_of(node: ast.AST, constants: Mapping[str, str]) -> Optional[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    return constants.get(name) if name else None


def _is_environment(node: ast.AST) -> bool:
    """``env``, ``environ`` or ``os.environ``: the mappings the code reads variables from."""
    return ((isinstance(node, ast.Name) and node.id in ("env", "environ"))
            or (isinstance(node, ast.Attribute) and node.attr == "environ"))


def _read_argument(node: ast.AST) -> Optional[ast.AST]:
    """The variable-name argument of a read of the environment, if ``node`` is one."""
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
        return node.slice if _is_environment(node.value) else None
    if not (isinstance(node, ast.Call) and node.args):
        return None
    function = node.func
    if isinstance(function, ast.Attribute) and (
            function.attr == "getenv" or (function.attr == "get"
                                          and _is_environment(function.value))):
        return node.args[0]
    if _is_environment(node.args[0]) and len(node.args) > 1:
        return node.args[1]
    return None


def read_names(tree: ast.Module, constants: Mapping[str, str]) -> Iterable[tuple]:
    """(name, line) of each variable a module reads: ``env.get(X)``, ``os.environ[X]``,
    ``os.getenv(X)``, ``helper(env, X)``, and every NAME-like string in a ``from_env``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "from_env":
            yield from ((inner.value, inner.lineno) for inner in ast.walk(node)
                        if isinstance(inner, ast.Constant) and isinstance(inner.value, str)
                        and ENV_NAME.match(inner.value))
        argument = _read_argument(node)
        name = _text_of(argument, constants) if argument is not None else None
        if name and ENV_NAME.match(name):
            yield name, node.lineno


def variables_read(root: Path, packages: Sequence[str] = SOURCE_PACKAGES
                   ) -> Dict[str, List[str]]:
    """Every environment variable the packages' code reads -> where (file:line)."""
    trees = {path: ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
             for package in packages for path in sorted((root / package).rglob("*.py"))}
    constants = module_constants(trees)
    found: Dict[str, List[str]] = {}
    for path, tree in trees.items():
        for name, line in read_names(tree, constants):
            found.setdefault(name, []).append(f"{path.relative_to(root).as_posix()}:{line}")
    return {name: list(dict.fromkeys(where)) for name, where in found.items()}


def variable_problems(read: Mapping[str, List[str]], described: Sequence[EnvVariable],
                      internal: Mapping[str, str] = INTERNAL_VARIABLES) -> List[str]:
    """Variables the code reads that are not described, and descriptions nobody reads."""
    names = {row.name for row in described}
    problems = [f"{name} (read at {', '.join(where)}) has no description: describe it where "
                "it is read (setting(..., env=...) or DESCRIBED_VARIABLES), or add it to "
                "INTERNAL_VARIABLES in ml_service/util/config_reference.py if it is set for "
                "the code" for name, where in sorted(read.items())
                if name not in names and name not in internal]
    problems += [f"{row.name} is described but has no effect: give it one"
                 for row in described if not row.effect]
    problems += [f"{name} is described but no code reads it: remove its description"
                 for name in sorted((names | set(internal)) - set(read))]
    return problems


class _Recording(dict):
    """A section of parameters.json that notes each key the parser asks for."""

    def __init__(self, values: Mapping[str, Any], prefix: str, asked: Set[str]) -> None:
        super().__init__({key: _recording(value, f"{prefix}{key}.", asked)
                          for key, value in values.items()})
        self.prefix, self.asked = prefix, asked

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(self.prefix + key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(self.prefix + key)
        return super().__getitem__(key)


def _recording(value: Any, prefix: str, asked: Set[str]) -> Any:
    return _Recording(value, prefix, asked) if isinstance(value, dict) else value


def accepted_keys(document: Mapping[str, Any]) -> Set[str]:
    """The keys parse_parameters asks a (valid) document for, section.key."""
    asked: Set[str] = set()
    parse_parameters(_Recording(document, "", asked))
    return asked


def parameter_problems(accepted: Set[str], keys: Sequence[Key] = KEYS) -> List[str]:
    """Keys the parser accepts that KEYS does not describe, and described keys it never asks
    for. A section (a prefix of a described key) needs no row; a key inside a described
    object (``training``, ``scoring.sample``) is that object's."""
    names = {key.name for key in keys}

    def described(name: str) -> bool:
        return name in names or any(other.startswith(name + ".") or name.startswith(other + ".")
                                    for other in names)

    problems = [f"parameters.json key {name} has no description: add a Key to KEYS in "
                "diabetes_regression/parameters.py" for name in sorted(accepted)
                if not described(name)]
    problems += [f"parameters.json key {key.name} is described but parse_parameters never "
                 "reads it: remove it from KEYS" for key in keys if key.name not in accepted]
    problems += [f"parameters.json key {key.name} has no effect: give it one"
                 for key in keys if not key.effect]
    return problems


def full_document(path: Path = DEFAULT_PATH) -> Dict[str, Any]:
    """parameters.json with every optional section present (monitoring.shift takes
    validation.shift's rule), so that the parser asks for every key it knows."""
    document = json.loads(path.read_text(encoding="utf-8"))
    validation = document.setdefault("validation", {})
    shift = validation.setdefault("shift", {})
    document.setdefault("monitoring", {}).setdefault("shift", dict(shift))
    return document


def page_difference(expected: str, actual: Optional[str], name: str) -> List[str]:
    """What differs between the generated page and the one in the repository."""
    if actual == expected:
        return []
    if actual is None:
        return [f"{name} does not exist: run make docs"]
    diff = difflib.unified_diff(actual.splitlines(), expected.splitlines(),
                                f"{name} (in the repository)", f"{name} (from the code)",
                                lineterm="", n=0)
    return [f"{name} is stale: run make docs\n" + "\n".join(diff)]


def all_problems(root: Path) -> List[str]:
    """Everything --check reports: the page, the variables and the parameters."""
    page = root / PAGE
    actual = page.read_text(encoding="utf-8") if page.is_file() else None
    return (page_difference(render(), actual, PAGE.as_posix())
            + variable_problems(variables_read(root), described_variables())
            + parameter_problems(accepted_keys(full_document())))


def write_atomically(path: Path, text: str) -> None:
    """Write a file whole or not at all: a temporary file beside it, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False,
                                     prefix=f".{path.name}.") as out:
        out.write(text)
    os.replace(out.name, path)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """The command line: --check, and the project folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming what differs or is undescribed")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Optional[list] = None) -> int:
    """Write the page, or with --check compare it; exit 1 on any problem."""
    args = parse_args(argv)

    def body() -> int:
        if args.check:
            problems = all_problems(args.root)
            for problem in problems:
                print(problem)
            return 1 if problems else 0
        write_atomically(args.root / PAGE, render())
        LOGGER.info("wrote %s", args.root / PAGE)
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
