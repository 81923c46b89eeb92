"""The project's own pages (README.md, docs/**/*.md) pass every documentation check."""
import pytest

from ml_service.paths import PROJECT_ROOT
from ml_service.util import doc_checks


def report(problems) -> str:
    """One line per problem (a runnable block's output after its line)."""
    return "\n".join(str(problem) for problem in problems)


@pytest.mark.parametrize("check", [
    doc_checks.check_links,
    doc_checks.check_make_targets,
    doc_checks.check_python_modules,
    doc_checks.check_runnable_languages,
    doc_checks.check_reachable,
    doc_checks.check_troubleshooting,
], ids=lambda check: check.__name__)
def test_pages_pass(check):
    problems = check(PROJECT_ROOT)
    assert not problems, report(problems)


def test_readme_is_small():
    problems = doc_checks.check_readme_size(PROJECT_ROOT)
    assert not problems, report(problems)


@pytest.mark.process
def test_runnable_blocks_exit_0():
    problems = doc_checks.check_runnable_blocks(PROJECT_ROOT)
    assert not problems, report(problems)
