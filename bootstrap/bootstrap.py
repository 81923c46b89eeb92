"""Rename the template's example project to your own project, completely or not at all.

    python bootstrap/bootstrap.py -d . -n driver_training [--dry-run]

Run it once, in a fresh fork, before anything else: it needs only the standard library.
It checks the directory and the name, plans every change (file contents to rewrite, files and
folders to rename), prints the plan with --dry-run, and otherwise applies it so that any
failure puts the tree back exactly as it was.
"""
import argparse
import ast
import configparser
import contextlib
import hashlib
import io
import keyword
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

LOGGER = logging.getLogger(__name__)

# The template's words, spelt in parts: after a rename nothing in the tree may mention the
# template's package name, this file included, and a second run must still know the name.
SAMPLE_WORD = "diabetes"
TEMPLATE_NAME = "_".join((SAMPLE_WORD, "regression"))

# Every replacement, applied in one pass (replaced text is never scanned again). The fields
# are forms of the new name: {snake} driver_training, {upper} DRIVER_TRAINING,
# {camel} DriverTraining, {kebab} driver-training. Library names such as scikit-learn's
# load_diabetes match none of these patterns, and the word alone (the sample data, which stays
# scikit-learn's diabetes data until you replace it) is left as it is.
REPLACEMENTS: Tuple[Tuple[str, str], ...] = (
    (re.escape(TEMPLATE_NAME), "{snake}"),
    (re.escape(TEMPLATE_NAME.upper()), "{upper}"),
    (re.escape(TEMPLATE_NAME.title().replace("_", "")), "{camel}"),
    (re.escape(TEMPLATE_NAME.replace("_", "-")), "{kebab}"),
    (r"\b[Dd]" + SAMPLE_WORD[1:] + r" [Rr]egression\b", "{snake}"),
    (r"\b" + SAMPLE_WORD + r"_ds\b", "{snake}_ds"),
    (r"\b" + SAMPLE_WORD + r"_scoring(?![A-Za-z0-9])", "{snake}_scoring"),
    (r"\b" + SAMPLE_WORD + r"-Training-Pipeline\b", "{kebab}-Training-Pipeline"),
    (r"\b" + SAMPLE_WORD + r"-Batch-Scoring-Pipeline\b", "{kebab}-Batch-Scoring-Pipeline"),
    (r"\b" + SAMPLE_WORD + r"-local\b", "{kebab}-local"),
)
_PATTERN = re.compile("|".join(f"(?P<r{i}>{regex})" for i, (regex, _) in enumerate(REPLACEMENTS)))

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
MIN_NAME_LENGTH, MAX_NAME_LENGTH = 3, 30
# Top-level modules the project or its tools import; the tree's own imports are added at run
# time, so a dependency added later is protected too.
RESERVED_MODULES: FrozenSet[str] = frozenset({
    "azureml", "azureml_inference_server_http", "benchmarks", "bootstrap", "conftest",
    "coverage", "dotenv", "environment_setup", "flake8", "inference_schema", "joblib",
    "ml_service", "mlflow", "numpy", "pandas", "pip", "pkg_resources", "pytest", "pytest_cov",
    "requests", "scipy", "setuptools", "sklearn", "tests", "wheel", "yaml",
})

# Where the template is recognised: files every copy has, and the package to rename.
COMMON_MARKERS = ("pyproject.toml", "ml_service/__init__.py", "ml_service/pipelines/__init__.py")
PACKAGE_MARKERS = ("__init__.py", "training/train.py")

# Never entered: version control, environments, local stores, caches and build output.
SKIPPED_DIRS = frozenset({
    ".git", ".hg", ".svn", ".venv", "venv", ".tools", ".mlops", "__pycache__", ".pytest_cache",
    ".mypy_cache", ".ruff_cache", ".tox", ".nox", "htmlcov", "mlruns", "build", "dist",
    "node_modules",
})
SKIPPED_DIR_SUFFIXES = (".egg-info",)
LAYOUT_TOKENS = frozenset({tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                           tokenize.ENDMARKER})
SKIPPED_FILE_PATTERN = re.compile(r"^(\.coverage(\..*)?|coverage\.xml|.*\.py[cod])$")
# Yours, and it may hold secrets: never copied or rewritten; a mention of the template is
# reported so that you update it by hand.
PRIVATE_FILES = frozenset({".env"})
# This script and its tests keep their own text, so that a second run is still refused.
SELF_FILES = frozenset({PurePosixPath("bootstrap/bootstrap.py"),
                        PurePosixPath("tests/bootstrap/test_bootstrap.py")})


class BootstrapError(Exception):
    """A reason to stop; the message says what is wrong and what to do."""


class InvalidNameError(BootstrapError):
    """The project name cannot be used."""


class NotTemplateError(BootstrapError):
    """The directory is not this template's root."""


class AlreadyBootstrappedError(BootstrapError):
    """The directory is this template, already renamed."""


class PlanError(BootstrapError):
    """The tree cannot be read, or a change would overwrite something."""


class TreeChangedError(BootstrapError):
    """A file changed between planning and applying."""


class ApplyError(BootstrapError):
    """Applying the plan failed; every change was undone."""


class RollbackError(BootstrapError):
    """Applying failed and undoing failed too; the backup was kept."""


@dataclass(frozen=True)
class Rewrite:
    """New content for one text file."""

    path: PurePosixPath
    content: bytes
    count: int
    original_sha256: str


@dataclass(frozen=True)
class Rename:
    """One file or folder renamed in place; its parent folders are renamed after it."""

    source: PurePosixPath
    target: PurePosixPath
    final: PurePosixPath


@dataclass(frozen=True)
class Plan:
    """Every change, in the order it is applied, and the mentions it cannot change."""

    name: str
    rewrites: Tuple[Rewrite, ...]
    renames: Tuple[Rename, ...]
    left_alone: Tuple[str, ...]
    long_lines: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Tree:
    """What the planner needs from the directory: relative paths and file contents."""

    paths: Tuple[PurePosixPath, ...]
    contents: Dict[PurePosixPath, bytes]


def sha256(content: bytes) -> str:
    """The SHA-256 of some bytes, in hex."""
    return hashlib.sha256(content).hexdigest()


def name_forms(name: str) -> Dict[str, str]:
    """The forms of a project name that the replacements use."""
    return {"snake": name, "upper": name.upper(), "kebab": name.replace("_", "-"),
            "camel": "".join(part.capitalize() for part in name.split("_"))}


def rewrite_text(text: str, name: str) -> Tuple[str, int]:
    """Apply every replacement to ``text`` in one pass; return the text and the count."""
    forms = name_forms(name)
    count = 0

    def replace(match: "re.Match[str]") -> str:
        nonlocal count
        count += 1
        return REPLACEMENTS[int(match.lastgroup[1:])][1].format(**forms)

    return _PATTERN.sub(replace, text), count


def new_column(line: str, column: int, name: str) -> int:
    """Where a column of a line moves to once the line is rewritten."""
    forms = name_forms(name)
    return column + sum(
        len(REPLACEMENTS[int(match.lastgroup[1:])][1].format(**forms)) - len(match.group())
        for match in _PATTERN.finditer(line) if match.end() <= column)


def continuation_shifts(source: str, name: str) -> Dict[int, int]:
    """Rows of Python source aligned with an opening bracket (pycodestyle's visual indent)
    that the rename moves, with how far each must move to stay aligned."""
    lines = source.split("\n")
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    shifts: Dict[int, int] = {}
    # One entry per open bracket: its (row, column) when text follows it on its row, else None.
    brackets: List[Optional[Tuple[int, int]]] = []
    for index, token in enumerate(tokens):
        row, column = token.start
        opens_row = token.type not in LAYOUT_TOKENS and not lines[row - 1][:column].strip()
        if opens_row and brackets and brackets[-1] and brackets[-1][1] + 1 == column:
            bracket_row, bracket_column = brackets[-1]
            moved = new_column(lines[bracket_row - 1], bracket_column, name) + \
                shifts.get(bracket_row, 0) - bracket_column
            if moved and row != bracket_row:
                shifts[row] = moved
        if token.type == tokenize.OP and token.string in "([{":
            hanging = tokens[index + 1].type in (tokenize.NL, tokenize.COMMENT)
            brackets.append(None if hanging else (row, column))
        elif token.type == tokenize.OP and token.string in ")]}" and brackets:
            brackets.pop()
    return shifts


def rewrite_python(text: str, name: str) -> Tuple[str, int]:
    """rewrite_text for Python source, keeping continuation lines aligned with their bracket."""
    new_text, count = rewrite_text(text, name)
    try:
        shifts = continuation_shifts(text, name) if count else {}
    except (tokenize.TokenError, SyntaxError):
        return new_text, count
    lines = new_text.split("\n")
    for row, shift in shifts.items():
        line = lines[row - 1]
        indent = len(line) - len(line.lstrip(" "))
        if indent + shift >= 0 and not line[indent:].startswith("\t"):
            lines[row - 1] = " " * (indent + shift) + line[indent:]
    return "\n".join(lines), count


def check_name_syntax(name: str) -> None:
    """Raise InvalidNameError unless the name can be the project's package name."""
    if not MIN_NAME_LENGTH <= len(name) <= MAX_NAME_LENGTH:
        problem = f"is {len(name)} characters long; use {MIN_NAME_LENGTH} to {MAX_NAME_LENGTH}"
    elif not NAME_PATTERN.match(name):
        problem = ("must start with a lowercase letter and hold only lowercase letters, "
                   "digits and '_' (it becomes a Python package name)")
    elif keyword.iskeyword(name):
        problem = "is a Python keyword: it cannot be imported"
    elif name == TEMPLATE_NAME:
        problem = "is the template's own name: choose your project's name"
    else:
        return
    suggestion = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    hint = f", e.g. {suggestion!r}" if suggestion != name and is_valid_syntax(suggestion) else ""
    raise InvalidNameError(f"project name {name!r} {problem}{hint}")


def is_valid_syntax(name: str) -> bool:
    """Whether check_name_syntax accepts the name."""
    try:
        check_name_syntax(name)
    except InvalidNameError:
        return False
    return True


def check_name_is_free(name: str, project_modules: Iterable[str]) -> None:
    """Raise InvalidNameError if a package of that name would shadow a module in use."""
    if name in sys.stdlib_module_names or name in sys.builtin_module_names:
        owner = "the standard library module"
    elif name in RESERVED_MODULES or name in set(project_modules):
        owner = "the module, imported or shipped by the project,"
    else:
        return
    raise InvalidNameError(f"project name {name!r} would shadow {owner} {name!r}: "
                           f"choose another name, e.g. {name + '_model'!r}")


def imported_modules(source: str) -> FrozenSet[str]:
    """Top-level names of the absolute imports in Python source (none if it does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return frozenset()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return frozenset(names)


def project_modules(tree: Tree) -> FrozenSet[str]:
    """Every top-level module the tree imports, and its own top-level folders and modules."""
    names = set()
    for path, content in tree.contents.items():
        if path.suffix == ".py":
            names |= imported_modules(content.decode("utf-8", errors="replace"))
    for path in tree.paths:
        if len(path.parts) == 1:
            names.add(path.stem if path.suffix == ".py" else path.name)
    names.discard(TEMPLATE_NAME)
    return frozenset(names)


def is_skipped_dir(name: str, parent: Optional[Path] = None) -> bool:
    """Whether a folder is never entered (environments, stores, caches, build output): by
    its name, or, given the folder it is in, because it is a virtual environment of any name
    (it holds ``pyvenv.cfg``, as ``make test-v2-environment``'s ``.venv-v2`` does)."""
    if name in SKIPPED_DIRS or name.endswith(SKIPPED_DIR_SUFFIXES):
        return True
    return parent is not None and (parent / name / "pyvenv.cfg").is_file()


def decode_text(content: bytes) -> Optional[str]:
    """The content as text, or None for a binary file (a NUL byte or not UTF-8)."""
    if b"\0" in content:
        return None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return None


def mentions_template(content: bytes) -> bool:
    """Whether text or binary content holds any of the template's words."""
    return TEMPLATE_NAME.encode() in content.lower() or \
        _PATTERN.search(content.decode("utf-8", errors="replace")) is not None


def plan_rewrite(path: PurePosixPath, content: bytes,
                 name: str) -> Tuple[Optional[Rewrite], Optional[str]]:
    """The rewrite of one file, or a note when it mentions the template and is left alone."""
    if path in SELF_FILES:
        return None, None
    mentions = mentions_template(content)
    if path.name in PRIVATE_FILES:
        note = f"{path}: private file (may hold secrets), not rewritten; update it by hand"
        return None, note if mentions else None
    text = decode_text(content)
    if text is None:
        return None, f"{path}: binary file, not rewritten" if mentions else None
    rewrite = rewrite_python if path.suffix == ".py" else rewrite_text
    new_text, count = rewrite(text, name)
    if not count:
        return None, None
    return Rewrite(path, new_text.encode("utf-8"), count, sha256(content)), None


def rename_component(component: str, name: str) -> str:
    """A file or folder name with the replacements applied."""
    return rewrite_text(component, name)[0]


def final_path(path: PurePosixPath, name: str) -> PurePosixPath:
    """Where a path ends up once every rename is done."""
    return PurePosixPath(*(rename_component(part, name) for part in path.parts))


def plan_renames(paths: Iterable[PurePosixPath], name: str) -> Tuple[Rename, ...]:
    """Renames of every path whose own name changes, deepest first, so that each source
    path still exists (its parents keep their names) when it is renamed."""
    renames = []
    for path in paths:
        new_name = rename_component(path.name, name)
        if new_name != path.name:
            renames.append(Rename(path, path.with_name(new_name), final_path(path, name)))
    renames.sort(key=lambda change: (-len(change.source.parts), str(change.source)))
    return tuple(renames)


def find_long_lines(rewrite: Rewrite, old: bytes, name: str,
                    limit: Optional[int]) -> List[str]:
    """Python lines that only the rename makes longer than flake8's limit."""
    if limit is None or rewrite.path.suffix != ".py":
        return []
    pairs = zip(old.decode("utf-8").split("\n"), rewrite.content.decode("utf-8").split("\n"))
    where = final_path(rewrite.path, name)
    return [f"{where}:{number}: {len(new)} characters after the rename "
            f"(max-line-length {limit}): wrap it"
            for number, (before, new) in enumerate(pairs, start=1)
            if len(new.rstrip("\r")) > limit >= len(before.rstrip("\r"))]


def build_plan(tree: Tree, name: str, line_limit: Optional[int] = None) -> Plan:
    """Every rewrite and rename that turns the template into project ``name``."""
    rewrites, left_alone, long_lines = [], [], []
    for path in sorted(tree.contents):
        rewrite, note = plan_rewrite(path, tree.contents[path], name)
        if rewrite is not None:
            rewrites.append(rewrite)
            long_lines += find_long_lines(rewrite, tree.contents[path], name, line_limit)
        if note is not None:
            left_alone.append(note)
    return Plan(name, tuple(rewrites), plan_renames(tree.paths, name), tuple(left_alone),
                tuple(long_lines))


def find_conflicts(plan: Plan, exists: Callable[[PurePosixPath], bool]) -> List[str]:
    """Renames whose target already exists, or that share a target."""
    problems, targets = [], set()
    for change in plan.renames:
        if exists(change.target) or change.target in targets:
            problems.append(f"cannot rename {change.source} to {change.target}: "
                            f"{change.target} already exists")
        targets.add(change.target)
    return problems


def format_plan(plan: Plan) -> List[str]:
    """The plan as printable lines."""
    lines = [f"Plan: rename the template {TEMPLATE_NAME!r} to {plan.name!r}"]
    lines += [f"  rewrite  {change.path}  ({change.count} replacement"
              f"{'' if change.count == 1 else 's'})" for change in plan.rewrites]
    lines += [f"  rename   {change.source} -> {change.final}" for change in plan.renames]
    lines += [f"  leave    {note}" for note in plan.left_alone]
    lines += [f"  check    {note}" for note in plan.long_lines]
    lines.append(f"{len(plan.rewrites)} files to rewrite, {len(plan.renames)} paths to rename")
    return lines


def find_renamed_package(root: Path) -> Optional[str]:
    """The name of a top-level package laid out like the template's, if there is one."""
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name != "ml_service" and \
                all((child / marker).is_file() for marker in PACKAGE_MARKERS):
            return child.name
    return None


def read_line_limit(root: Path) -> Optional[int]:
    """flake8's max-line-length from setup.cfg, if it is set there."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(root / "setup.cfg", encoding="utf-8")
        return parser.getint("flake8", "max-line-length", fallback=None)
    except (configparser.Error, OSError, UnicodeDecodeError, ValueError):
        return None


def check_template_root(root: Path) -> None:
    """Raise unless ``root`` is this template's root and not renamed yet."""
    if not root.is_dir():
        raise NotTemplateError(f"{root} is not a directory: pass the root of your fork of the "
                               "template with -d")
    missing = [marker for marker in COMMON_MARKERS if not (root / marker).is_file()]
    if missing:
        raise NotTemplateError(f"{root} is not the root of this template ({', '.join(missing)} "
                               "missing): pass the folder that holds pyproject.toml and "
                               "ml_service/ with -d")
    if all((root / TEMPLATE_NAME / marker).is_file() for marker in PACKAGE_MARKERS):
        return
    renamed = find_renamed_package(root)
    if renamed is not None:
        raise AlreadyBootstrappedError(
            f"{root} was already bootstrapped: the template's package is now {renamed!r} and "
            f"{TEMPLATE_NAME}/ is gone. Nothing to do; rename by hand from here on")
    raise NotTemplateError(f"{root} has no {TEMPLATE_NAME}/training/train.py: it is not this "
                           "template, or its example package was removed by hand")


def scan_tree(root: Path) -> Tree:
    """Read every path and regular file under ``root``, outside the skipped folders."""
    paths: List[PurePosixPath] = []
    contents: Dict[PurePosixPath, bytes] = {}

    def fail(err: OSError) -> None:
        raise err

    try:
        for folder, dirs, files in os.walk(root, onerror=fail):
            dirs[:] = sorted(d for d in dirs if not is_skipped_dir(d, Path(folder)))
            base = PurePosixPath(Path(folder).relative_to(root).as_posix())
            for entry in dirs + sorted(files):
                paths.append(base / entry)
            for entry in files:
                path = Path(folder, entry)
                if not SKIPPED_FILE_PATTERN.match(entry) and not path.is_symlink() \
                        and path.is_file():
                    contents[base / entry] = path.read_bytes()
    except OSError as err:
        raise PlanError(f"cannot read the tree: {err}; fix the permission and run again") \
            from err
    return Tree(tuple(paths), contents)


def write_file_atomically(path: Path, content: bytes) -> None:
    """Replace a file's content in one step (temporary file + os.replace), keeping its mode."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def restore_file(backup: Path, path: Path) -> None:
    """Put a backed-up file back in one step, with its mode and times."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        shutil.copy2(backup, temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def rename_path(source: Path, target: Path) -> None:
    """Rename a file or folder, never over an existing path."""
    if os.path.lexists(target):
        raise FileExistsError(f"{target} already exists")
    os.rename(source, target)


class Transaction:
    """Applies changes one at a time and remembers how to undo each of them."""

    def __init__(self, root: Path, backup_dir: Path) -> None:
        self.root = root
        self.backup_dir = backup_dir
        self._undo: List[Tuple[str, Callable[[], None]]] = []

    def __len__(self) -> int:
        return len(self._undo)

    def rewrite(self, change: Rewrite) -> None:
        """Back the file up outside the tree, then replace its content."""
        path = self.root / change.path
        backup = self.backup_dir / change.path
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, backup)
        # Registered first: restoring an untouched file from its backup is harmless.
        self._undo.append((f"restore {change.path}", lambda: restore_file(backup, path)))
        if sha256(backup.read_bytes()) != change.original_sha256:
            raise TreeChangedError(f"{change.path} changed after the plan was made")
        write_file_atomically(path, change.content)

    def rename(self, change: Rename) -> None:
        """Rename one path in place."""
        source, target = self.root / change.source, self.root / change.target
        rename_path(source, target)
        self._undo.append((f"rename {change.target} back", lambda: rename_path(target, source)))

    def rollback(self) -> None:
        """Undo every change, last first; raise RollbackError naming what could not be undone."""
        failures = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except OSError as err:
                failures.append(f"{what}: {err}")
        if failures:
            raise RollbackError(f"could not undo {len(failures)} changes ({'; '.join(failures)})"
                                f"; the original files are kept in {self.backup_dir}")


def make_backup_dir(root: Path) -> Path:
    """A new temporary folder outside the tree."""
    backup_dir = Path(tempfile.mkdtemp(prefix="bootstrap-backup-")).resolve()
    if backup_dir.is_relative_to(root.resolve()):
        backup_dir.rmdir()
        backup_dir = Path(tempfile.mkdtemp(prefix=".bootstrap-backup-", dir=root.parent))
    return backup_dir


def apply_plan(root: Path, plan: Plan) -> None:
    """Apply every change; on any failure undo them all and re-raise."""
    backup_dir = make_backup_dir(root)
    keep_backup = False
    transaction = Transaction(root, backup_dir)
    try:
        for rewrite in plan.rewrites:
            transaction.rewrite(rewrite)
        for rename in plan.renames:
            transaction.rename(rename)
    except BaseException:
        LOGGER.error("applying the plan failed after %d changes: undoing them", len(transaction))
        try:
            transaction.rollback()
        except RollbackError:
            keep_backup = True
            raise
        raise
    finally:
        if not keep_backup:
            shutil.rmtree(backup_dir, ignore_errors=True)


def prepare(root: Path, name: str) -> Plan:
    """Check the name and the directory and build the plan; nothing is written."""
    check_name_syntax(name)
    check_template_root(root)
    tree = scan_tree(root)
    check_name_is_free(name, project_modules(tree))
    plan = build_plan(tree, name, read_line_limit(root))
    conflicts = find_conflicts(plan, lambda path: os.path.lexists(root / path))
    if conflicts:
        raise PlanError("; ".join(conflicts) + ": move those paths away or choose another name")
    return plan


def bootstrap(root: Path, name: str, dry_run: bool = False) -> Plan:
    """Rename the template in ``root`` to ``name`` (or only plan it); return the plan."""
    plan = prepare(root, name)
    if dry_run:
        return plan
    for note in plan.left_alone:
        LOGGER.warning("left alone: %s", note)
    for note in plan.long_lines:
        LOGGER.warning("too long for flake8, fix it before `make lint`: %s", note)
    try:
        apply_plan(root, plan)
    except (OSError, TreeChangedError) as err:
        raise ApplyError(f"could not rename the template ({err}); every change was undone and "
                         "the tree is as it was: fix the cause and run again") from err
    return plan


def default_root() -> Path:
    """The repository this script lives in."""
    return Path(__file__).resolve().parent.parent


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the directory, the new name and --dry-run."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=f"Renames {TEMPLATE_NAME} (package, tests, file names and text) and the sample "
               "names derived from it; run it once, before creating the environment.")
    parser.add_argument("-d", "--directory", type=Path, default=None,
                        help="root of your fork of the template (default: this script's repo)")
    parser.add_argument("-n", "--name", required=True,
                        help="your project's name: 3-30 lowercase letters, digits and '_', "
                             "starting with a letter, e.g. driver_training")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the planned changes and change nothing")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: exit 0 on full success (or a dry run), 1 with a message otherwise."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    root = (args.directory or default_root()).resolve()
    try:
        plan = bootstrap(root, args.name, args.dry_run)
    except BootstrapError as err:
        LOGGER.error("%s", err)
        return 1
    if args.dry_run:
        print("\n".join(format_plan(plan)))
        print("Dry run: nothing was changed.")
        return 0
    print(f"Renamed the template to {plan.name!r} in {root}: {len(plan.rewrites)} files "
          f"rewritten, {len(plan.renames)} paths renamed.")
    print("Next: reinstall the project (`make test` does it, since pyproject.toml changed), "
          "then commit.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
