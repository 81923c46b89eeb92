"""Check that the Markdown documentation still tells the truth about the project.

    python -m ml_service.util.doc_checks [--root DIR] [--run]

The pages are README.md and docs/**/*.md. Each check is a function of the project's folder
that returns a list of problems (file, line, what to do); `make test` runs them all
(tests/docs), and this script runs the fast ones (and, with ``--run``, the runnable blocks) so
a page writer sees the problems without pytest.

- relative links and images resolve, and their ``#anchor`` is a heading of the target page
  (GitHub's slugs); external links (a URL scheme) are not fetched;
- ``make TARGET`` in code is a target of the Makefile;
- ``python -m MODULE`` in code, for a module of the project's own packages, names a module
  that exists and has a ``main`` function or a ``__main__`` guard;
- a fenced shell block right after the line ``<!-- runnable -->`` exits 0 (run in a temporary
  store, MLOPS_ROOT);
- README.md stays small, and every page under docs/ is reachable from it by links;
- in docs/troubleshooting.md, each ``Message: `text` `` line quotes a message the code
  contains (``…`` or ``...`` marks a variable part).
"""
import argparse
import ast
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple
from urllib.parse import unquote

from ml_service.paths import PROJECT_ROOT
from ml_service.util.cli import run_cli

LOGGER = logging.getLogger(__name__)
README = "README.md"
DOCS_DIR = "docs"
TROUBLESHOOTING = "docs/troubleshooting.md"
README_LIMIT_BYTES = 10 * 1024
RUNNABLE_MARKER = "<!-- runnable -->"
RUNNABLE_LANGUAGES = ("bash", "sh", "shell", "")
# Code blocks whose ``make`` and ``python -m`` commands are checked: shell and CI files (a
# Python or JSON block saying "make sure" names no target). Inline code is always checked.
COMMAND_LANGUAGES = RUNNABLE_LANGUAGES + ("console", "zsh", "yaml", "yml", "text", "makefile")
RUNNABLE_TIMEOUT_S = 120
# The folders whose Python source the troubleshooting page's messages must come from.
SOURCE_PACKAGES = ("ml_service", "diabetes_regression", "bootstrap")

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
ATX_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)\s*$")
HTML_ANCHOR = re.compile(r"<a\s[^>]*(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
INLINE_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:a|img)\s[^>]*(?:href|src)=\"([^\"]+)\"", re.IGNORECASE)
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
CODE_SPAN = re.compile(r"(`+)((?:(?!\n\s*\n).)+?)\1", re.DOTALL)
LIST_ITEM = re.compile(r"^ *(?:[-*+]|\d+[.)]) +")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
MAKE_COMMAND = re.compile(r"(?:^|[\s;&|(])make\s+([^;&|#`)]*)")
MAKE_TARGET_WORD = re.compile(r"^[a-z][\w.-]*$")
RULE = re.compile(r"^([^\s#=:$][^=:]*?)\s*::?(?![=])")
PYTHON_MODULE = re.compile(r"(?:^|[\s/;&|(])python(?:3(?:\.\d+)?)?\s+-m\s+([A-Za-z_][\w.]*)")
MESSAGE_LINE = re.compile(r"^\s*(?:[-*]\s+)?(?:\*\*)?Message:(?:\*\*)?\s*`([^`]+)`")
VARIABLE_PART = re.compile(r"…|\.\.\.")
MAIN_GUARD = re.compile(r"^(?:def main\(|if __name__ == [\"']__main__[\"']:)", re.MULTILINE)


@dataclass(frozen=True)
class Problem:
    """One thing wrong at one line of one page, and what to do about it."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Line:
    """A line of a page: ``fence`` is the language of the fenced block it is in (``None``
    outside any; the fences count as inside), ``indented`` whether it is an indented code
    block's line."""

    number: int
    text: str
    fence: Optional[str] = None
    indented: bool = False
    opens: bool = False

    @property
    def is_code(self) -> bool:
        """True inside a fenced or an indented code block."""
        return self.fence is not None or self.indented


def pages(root: Path) -> List[Path]:
    """README.md and every Markdown page under docs/, README first."""
    found = [root / README] if (root / README).is_file() else []
    return found + sorted((root / DOCS_DIR).rglob("*.md"))


def relative(root: Path, path: Path) -> str:
    """A page's path as the problems name it: relative to the project, with ``/``."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def read_lines(text: str) -> List[Line]:
    """Split a page into lines, each marked with the code block it is in, if any. An indented
    block is 4 spaces deeper than its list item's text, after a blank line."""
    lines: List[Line] = []
    opened: Optional[Tuple[str, str]] = None
    content_indent, previous_blank = 0, True
    for number, text_line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(text_line.lstrip(" ")) if (
            opened is not None or _indent(text_line) < content_indent + 4) else None
        if opened is not None:
            lines.append(Line(number, text_line, opened[1]))
            if fence and fence.group(1)[0] == opened[0][0] and len(fence.group(1)) >= len(
                    opened[0]) and not fence.group(2):
                opened = None
        elif fence:
            opened = (fence.group(1), fence.group(2).lower())
            lines.append(Line(number, text_line, opened[1], opens=True))
        elif text_line.strip() and _indent(text_line) >= content_indent + 4 and (
                previous_blank or (lines and lines[-1].indented)):
            lines.append(Line(number, text_line, indented=True))
        else:
            item = LIST_ITEM.match(text_line)
            if item:
                content_indent = len(item.group(0))
            elif text_line.strip() and _indent(text_line) < content_indent and previous_blank:
                content_indent = 0
            lines.append(Line(number, text_line))
        previous_blank = not text_line.strip()
    return lines


def prose(text: str) -> str:
    """The page with code blocks and code spans blanked out (line numbers kept)."""
    kept = "\n".join("" if line.is_code else line.text for line in read_lines(text))
    return CODE_SPAN.sub(lambda span: re.sub(r"[^\n]", " ", span.group(0)), kept)


def line_of(text: str, offset: int) -> int:
    """The line number of a character offset."""
    return text.count("\n", 0, offset) + 1


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup dropped, lowercase, punctuation except
    ``-`` and ``_`` dropped, each space a ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> Set[str]:
    """Every anchor a page defines: its headings' slugs (a repeated slug gets ``-1``,
    ``-2``, ...) and explicit ``<a name=...>``/``id=...`` anchors."""
    seen: Dict[str, int] = {}
    found: Set[str] = set()
    lines = read_lines(text)
    for index, line in enumerate(lines):
        if line.is_code:
            continue
        heading = ATX_HEADING.match(line.text)
        title = heading.group(1) if heading else None
        following = lines[index + 1] if index + 1 < len(lines) else None
        if (title is None and line.text.strip() and following is not None
                and not following.is_code and SETEXT_UNDERLINE.match(following.text)):
            title = line.text.strip()
        found |= set(HTML_ANCHOR.findall(line.text))
        if title is None:
            continue
        base = slug(title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> Iterator[Tuple[int, str]]:
    """(line, target) of every inline, image, HTML (``href``, ``src``) and reference-style
    link outside code."""
    kept = prose(text)
    for pattern in (INLINE_LINK, HTML_LINK):
        for found in pattern.finditer(kept):
            yield line_of(kept, found.start()), found.group(1)
    for number, line in enumerate(kept.splitlines(), start=1):
        reference = REFERENCE_LINK.match(line)
        if reference:
            yield number, reference.group(1)


def resolve_link(page: Path, target: str) -> Tuple[Optional[Path], str]:
    """The file a relative link points at (None for the page itself) and its anchor."""
    path_part, _, anchor = target.partition("#")
    path = (page.parent / unquote(path_part)) if path_part else None
    return path, unquote(anchor)


@lru_cache(maxsize=None)
def _anchors_of(path: Path) -> frozenset:
    return frozenset(anchors(path.read_text(encoding="utf-8")))


def check_links(root: Path) -> List[Problem]:
    """Every relative link and image of every page points at a file that exists and, for an
    anchor into a Markdown page, at a heading of that page."""
    _anchors_of.cache_clear()
    problems = []
    for page in pages(root):
        where = relative(root, page)
        for number, target in links(page.read_text(encoding="utf-8")):
            if not target or URL_SCHEME.match(target):
                continue
            path, anchor = resolve_link(page, target)
            target_file = path or page
            if not target_file.exists():
                problems.append(Problem(where, number, f"link {target!r}: "
                                        f"{relative(root, target_file)} does not exist; fix "
                                        "the path (relative to this page) or restore the file"))
            elif (anchor and target_file.suffix == ".md"
                  and anchor not in _anchors_of(target_file.resolve())):
                problems.append(Problem(where, number, f"link {target!r}: "
                                        f"{relative(root, target_file)} has no heading with "
                                        f"the anchor #{anchor}; link to an existing heading"))
    return problems


def code_texts(text: str) -> Iterator[Tuple[int, str]]:
    """(line, code) for every line of an indented or a shell-like fenced block (not its
    fences) and every inline code span."""
    lines = read_lines(text)
    yield from ((line.number, line.text) for line in lines if line.is_code and not line.opens
                and (line.fence is None or line.fence in COMMAND_LANGUAGES))
    kept = "\n".join("" if line.is_code else line.text for line in lines)
    for span in CODE_SPAN.finditer(kept):
        yield line_of(kept, span.start()), span.group(2).replace("\n", " ")


def makefile_targets(makefile_text: str) -> Set[str]:
    """The targets of a Makefile's rules (``target: prerequisites``), variables left out."""
    targets: Set[str] = set()
    for line in makefile_text.splitlines():
        if line.startswith("\t"):
            continue
        rule = RULE.match(line)
        if rule:
            # .PHONY and the like are special targets, not ones to ask for.
            targets |= {word for word in rule.group(1).split()
                        if "%" not in word and not word.startswith(".")}
    return targets


def make_targets_named(code: str) -> List[str]:
    """The targets a ``make`` command in a piece of code asks for: ``make run DATA=x`` asks
    for ``run``; options and VARIABLE=value words are not targets."""
    named = []
    for arguments in MAKE_COMMAND.findall(code):
        named += [word for word in arguments.split()
                  if "=" not in word and not word.startswith("-")
                  and MAKE_TARGET_WORD.match(word)]
    return named


def check_make_targets(root: Path) -> List[Problem]:
    """Every ``make TARGET`` in the pages' code is a rule of the Makefile."""
    makefile = root / "Makefile"
    targets = makefile_targets(makefile.read_text()) if makefile.is_file() else set()
    problems = []
    for page in pages(root):
        for number, code in code_texts(page.read_text(encoding="utf-8")):
            problems += [Problem(relative(root, page), number,
                                 f"`make {target}`: the Makefile has no target {target!r}; "
                                 "name an existing target (make help lists them) or add it")
                         for target in make_targets_named(code) if target not in targets]
    return problems


def project_packages(root: Path) -> Set[str]:
    """The project's own top-level packages: folders of the root with an __init__.py."""
    return {path.parent.name for path in root.glob("*/__init__.py")}


def module_problem(root: Path, module: str) -> Optional[str]:
    """Why ``python -m module`` cannot run, for a module of the project (None: it can, or it
    is not the project's)."""
    if module.split(".")[0] not in project_packages(root):
        return None
    base = root / Path(*module.split("."))
    source = base / "__main__.py" if base.is_dir() else base.with_suffix(".py")
    if not source.is_file():
        return f"module {module} does not exist; fix the name or restore the module"
    if not MAIN_GUARD.search(source.read_text(encoding="utf-8")):
        return (f"module {module} has no main() or `if __name__ == \"__main__\":`, so "
                "`python -m` runs nothing; name the module's entry script")
    return None


def check_python_modules(root: Path) -> List[Problem]:
    """Every ``python -m MODULE`` of the project's packages in the pages' code can run."""
    problems = []
    for page in pages(root):
        for number, code in code_texts(page.read_text(encoding="utf-8")):
            for module in PYTHON_MODULE.findall(code):
                reason = module_problem(root, module)
                if reason:
                    problems.append(Problem(relative(root, page), number, reason))
    return problems


@dataclass(frozen=True)
class RunnableBlock:
    """A fenced shell block marked ``<!-- runnable -->``: where it opens, and its code."""

    path: str
    line: int
    language: str
    code: str


def runnable_blocks(root: Path) -> List[RunnableBlock]:
    """Every fenced block whose previous non-blank line is the runnable marker."""
    blocks = []
    for page in pages(root):
        lines = read_lines(page.read_text(encoding="utf-8"))
        previous = ""
        for index, line in enumerate(lines):
            if line.opens and previous == RUNNABLE_MARKER:
                body = []
                for inner in lines[index + 1:]:
                    if inner.fence is None or inner.opens:
                        break
                    body.append(inner.text)
                if body and FENCE.match(body[-1].lstrip(" ")):
                    body.pop()  # the closing fence (a block left open runs to the page's end)
                blocks.append(RunnableBlock(relative(root, page), line.number, line.fence,
                                            "\n".join(body) + "\n"))
            if line.text.strip():
                previous = line.text.strip()
    return blocks


def check_runnable_languages(root: Path) -> List[Problem]:
    """A runnable block is a shell block (bash, sh, shell or no language)."""
    return [Problem(block.path, block.line, f"a runnable block must be a shell block "
                    f"(```bash), not {block.language!r}; change its language or drop "
                    f"{RUNNABLE_MARKER}")
            for block in runnable_blocks(root) if block.language not in RUNNABLE_LANGUAGES]


def run_block(block: RunnableBlock, root: Path, store: Path,
              timeout: float = RUNNABLE_TIMEOUT_S) -> Optional[Problem]:
    """Run one runnable block with bash in the project's folder, MLOPS_ROOT a temporary
    store; a Problem with the block's output when it fails or times out."""
    env = {**os.environ, "MLOPS_ROOT": str(store)}
    # A session of its own, so that a timeout stops every process the block started.
    with subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", block.code], cwd=root, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            return Problem(block.path, block.line, f"runnable block timed out after "
                           f"{timeout:g} s; mark only quick commands runnable\n"
                           f"--- output ---\n{output}")
    if process.returncode == 0:
        return None
    return Problem(block.path, block.line, f"runnable block exited {process.returncode}; fix "
                   f"the commands or the code they run\n--- output ---\n{output}")


def check_runnable_blocks(root: Path, timeout: float = RUNNABLE_TIMEOUT_S) -> List[Problem]:
    """Run every runnable shell block, each in a fresh temporary store (a block of another
    language is check_runnable_languages' problem)."""
    problems: List[Problem] = []
    for block in runnable_blocks(root):
        if block.language in RUNNABLE_LANGUAGES:
            with tempfile.TemporaryDirectory(prefix="mlops-doc-") as store:
                problem = run_block(block, root, Path(store), timeout)
            problems += [problem] if problem else []
    return problems


def check_readme_size(root: Path, limit: int = README_LIMIT_BYTES) -> List[Problem]:
    """README.md is at most ``limit`` bytes: the details belong in docs/."""
    size = (root / README).stat().st_size
    if size <= limit:
        return []
    return [Problem(README, 1, f"README.md is {size:,} bytes, over the limit of {limit:,}; "
                    "move details to a page under docs/ and link to it")]


def check_reachable(root: Path) -> List[Problem]:
    """Every page under docs/ can be reached from README.md by following relative links."""
    start = (root / README).resolve()
    reached, queue = {start}, deque([start])
    while queue:
        page = queue.popleft()
        for _, target in links(page.read_text(encoding="utf-8")):
            path, _ = resolve_link(page, target)
            if URL_SCHEME.match(target) or path is None or path.suffix != ".md":
                continue
            path = path.resolve()
            if path.is_file() and path not in reached:
                reached.add(path)
                queue.append(path)
    return [Problem(relative(root, page), 1, "no chain of links from README.md reaches this "
                    "page; link to it from README.md or from a page that README.md reaches")
            for page in pages(root) if page.resolve() not in reached]


def source_strings(root: Path, packages: Sequence[str] = SOURCE_PACKAGES) -> List[str]:
    """Every string literal in the packages' Python files; an f-string's replacement fields
    become NUL so that no quoted fragment matches across one."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.JoinedStr):
                    found.append("".join(part.value if isinstance(part, ast.Constant)
                                         else "\0" for part in node.values))
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.append(node.value)
    return found


def quoted_messages(text: str) -> Iterator[Tuple[int, str]]:
    """(line, message) of each ``Message: `text` `` line of a page."""
    for line in read_lines(text):
        found = MESSAGE_LINE.match(line.text) if line.fence is None else None
        if found:
            yield line.number, found.group(1)


def check_troubleshooting(root: Path, packages: Sequence[str] = SOURCE_PACKAGES
                          ) -> List[Problem]:
    """Each message the troubleshooting page quotes is in the code: its fixed fragments
    (between ``…`` variable parts) each appear in one string literal."""
    page = root / TROUBLESHOOTING
    if not page.is_file():
        return []
    strings = source_strings(root, packages)
    problems = []
    for number, message in quoted_messages(page.read_text(encoding="utf-8")):
        fragments = [part.strip() for part in VARIABLE_PART.split(message) if part.strip()]
        missing = [part for part in fragments if not any(part in text for text in strings)]
        if missing:
            problems.append(Problem(TROUBLESHOOTING, number, f"message {message!r}: "
                                    f"{missing[0]!r} is in no string of the code; quote the "
                                    "message as the code words it (… for a variable part)"))
    return problems


FAST_CHECKS = (check_links, check_make_targets, check_python_modules, check_runnable_languages,
               check_reachable, check_troubleshooting, check_readme_size)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """The command line: the project folder, and whether to run the runnable blocks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help="the project folder")
    parser.add_argument("--run", action="store_true", help="run the runnable blocks too")
    return parser.parse_args(argv)


def main(argv: Optional[list] = None) -> int:
    """Print every problem of the pages, one per line; exit 1 if there is any."""
    args = parse_args(argv)

    def body() -> int:
        problems = [p for check in FAST_CHECKS for p in check(args.root)]
        if args.run:
            problems += check_runnable_blocks(args.root)
        for problem in problems:
            print(problem)
        LOGGER.info("%d problem(s) in %d page(s)", len(problems), len(pages(args.root)))
        return 1 if problems else 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
