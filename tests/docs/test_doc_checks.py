"""Each documentation check finds exactly the problem planted in a small docs tree."""
import textwrap
from pathlib import Path
from typing import Dict

import pytest

from ml_service.util import doc_checks
from ml_service.util.doc_checks import Problem

MAKEFILE = textwrap.dedent("""\
    .PHONY: run test
    VENV := .venv
    run: $(VENV) ## Run
    \tpython -m pkg.tool
    test lint: ## Test
    \tpytest
""")
README = textwrap.dedent("""\
    # Project

    Start with `make run DATA=x.csv`, then [the guide](docs/guide.md#first-steps).
    See [below](#details) and ![a picture](docs/images/a.png).

    ## Details

        .venv/bin/python -m pkg.tool --flag

    ```bash
    make test && python -m pytest -q
    ```
""")
GUIDE = textwrap.dedent("""\
    # Guide

    ## First steps

    Back to the [README](../README.md), or [the same heading twice](#first-steps-1).

    ## First steps

    Run `python -m pkg.tool`; `pip` and `python -m flake8` are not ours.
""")


def write_tree(root: Path, files: Dict[str, str]) -> Path:
    """Write a small project: a Makefile, a package with a script, and the given pages."""
    base = {"Makefile": MAKEFILE, "pkg/__init__.py": "",
            "pkg/tool.py": 'def main():\n    raise ValueError(f"bad value {1}: fix it")\n',
            "pkg/lib.py": "X = 1\n", "docs/images/a.png": "png",
            "README.md": README, "docs/guide.md": GUIDE}
    for name, text in {**base, **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def tree(tmp_path):
    """A docs tree with nothing wrong."""
    return write_tree(tmp_path, {})


FAST_CHECKS = [doc_checks.check_links, doc_checks.check_make_targets,
               doc_checks.check_python_modules, doc_checks.check_reachable,
               doc_checks.check_runnable_languages]


@pytest.mark.parametrize("check", FAST_CHECKS, ids=lambda check: check.__name__)
def test_a_sound_tree_has_no_problem(tree, check):
    assert check(tree) == []


@pytest.mark.parametrize("heading, expected", [
    ("Dependencies: one lock", "dependencies-one-lock"),
    ("Make it yours (`bootstrap.py`)", "make-it-yours-bootstrappy"),
    ("CI/CD", "cicd"),
    ("Azure ML SDK v2, beside v1", "azure-ml-sdk-v2-beside-v1"),
    ("snake_case and [a link](x.md)", "snake_case-and-a-link"),
    ("Two  spaces -- dashes", "two--spaces----dashes"),
])
def test_slug_follows_github(heading, expected):
    assert doc_checks.slug(heading) == expected


def test_repeated_headings_are_numbered_and_code_is_no_heading():
    text = "# A\n\n## A\n\n```\n# A\n```\n\nB\n---\n<a name=\"here\"></a>\n"
    assert doc_checks.anchors(text) == {"a", "a-1", "b", "here"}


def test_links_skip_code_and_keep_their_line():
    text = ("[a](x.md)\n`[b](y.md)`\n\n    [c](z.md)\n\n[d\nover two](w.md#h)\n[ref]: v.md\n"
            "[`code` text](u.md) <img src=\"i.png\">\n")
    assert list(doc_checks.links(text)) == [(1, "x.md"), (6, "w.md#h"), (9, "u.md"),
                                            (9, "i.png"), (8, "v.md")]


def test_commands_are_read_from_inline_code_and_shell_blocks_only():
    text = ("Run `make a`, not make b.\n\n```python\n# make sure\n```\n\n```yaml\n"
            "run: make c\n```\n\n    make d\n")
    assert [target for _, code in doc_checks.code_texts(text)
            for target in doc_checks.make_targets_named(code)] == ["c", "d", "a"]


def broken(root: Path, page: str, old: str, new: str) -> Path:
    """Replace ``old`` (which must be there) with ``new`` in one page of the tree."""
    path = root / page
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return root


def test_a_missing_file_is_named(tree):
    broken(tree, "README.md", "docs/guide.md#first-steps", "docs/gide.md#first-steps")
    assert doc_checks.check_links(tree) == [Problem(
        "README.md", 3, "link 'docs/gide.md#first-steps': docs/gide.md does not exist; fix the "
        "path (relative to this page) or restore the file")]


def test_a_missing_image_is_named(tree):
    (tree / "docs/images/a.png").unlink()
    [problem] = doc_checks.check_links(tree)
    assert (problem.path, problem.line) == ("README.md", 4)
    assert "docs/images/a.png does not exist" in problem.message


@pytest.mark.parametrize("page, old, new, line, anchor", [
    ("README.md", "#first-steps)", "#first-step)", 3, "first-step"),
    ("README.md", "(#details)", "(#detail)", 4, "detail"),
    ("docs/guide.md", "#first-steps-1", "#first-steps-2", 5, "first-steps-2"),
])
def test_a_missing_anchor_is_named(tree, page, old, new, line, anchor):
    broken(tree, page, old, new)
    [problem] = doc_checks.check_links(tree)
    assert (problem.path, problem.line) == (page, line)
    assert f"has no heading with the anchor #{anchor}" in problem.message


def test_a_renamed_make_target_is_named(tree):
    (tree / "Makefile").write_text(MAKEFILE.replace("run:", "start:"))
    assert doc_checks.check_make_targets(tree) == [Problem(
        "README.md", 3, "`make run`: the Makefile has no target 'run'; name an existing target "
        "(make help lists them) or add it")]


@pytest.mark.parametrize("code, targets", [
    ("make run DATA=x.csv", ["run"]),
    ("make -j2 lint test", ["lint", "test"]),
    ("PORT=1 make app && make clean", ["app", "clean"]),
    ("make run  # trains", ["run"]),
    ("cmake .; remake x; make", []),
])
def test_make_targets_named(code, targets):
    assert doc_checks.make_targets_named(code) == targets


@pytest.mark.parametrize("module, reason", [
    ("pkg.toll", "module pkg.toll does not exist"),
    ("pkg.lib", "module pkg.lib has no main()"),
])
def test_a_module_that_cannot_run_is_named(tree, module, reason):
    broken(tree, "docs/guide.md", "python -m pkg.tool", f"python -m {module}")
    [problem] = doc_checks.check_python_modules(tree)
    assert (problem.path, problem.line) == ("docs/guide.md", 9)
    assert problem.message.startswith(reason)


def test_an_unreachable_page_is_named(tree):
    write_tree(tree, {"docs/orphan.md": "# Orphan\n\n[home](../README.md)\n"})
    assert doc_checks.check_reachable(tree) == [Problem(
        "docs/orphan.md", 1, "no chain of links from README.md reaches this page; link to it "
        "from README.md or from a page that README.md reaches")]


def test_a_page_linked_only_from_another_page_is_reachable(tree):
    write_tree(tree, {"docs/deep/more.md": "# More\n"})
    broken(tree, "docs/guide.md", "## First steps\n\nRun", "[more](deep/more.md)\n\n"
           "## First steps\n\nRun")
    assert doc_checks.check_reachable(tree) == []


def test_the_readme_size_is_reported(tree):
    assert doc_checks.check_readme_size(tree) == []
    assert doc_checks.check_readme_size(tree, limit=10) == [Problem(
        "README.md", 1, f"README.md is {len(README.encode())} bytes, over the limit of 10; move "
        "details to a page under docs/ and link to it")]


RUNNABLE = "<!-- runnable -->\n\n```bash\necho one\ntest -z \"$MLOPS_ROOT\" || echo two\n```\n"


def test_runnable_blocks_are_found_with_their_code(tree):
    write_tree(tree, {"docs/guide.md": GUIDE + "\n" + RUNNABLE + "\n```bash\nfalse\n```\n"})
    assert doc_checks.runnable_blocks(tree) == [doc_checks.RunnableBlock(
        "docs/guide.md", 13, "bash", "echo one\ntest -z \"$MLOPS_ROOT\" || echo two\n")]


def test_a_runnable_block_left_open_runs_to_the_end_of_the_page(tree):
    write_tree(tree, {"docs/guide.md": GUIDE + "<!-- runnable -->\n```sh\nls\n"})
    assert [block.code for block in doc_checks.runnable_blocks(tree)] == ["ls\n"]


def test_a_runnable_block_of_another_language_is_named(tree):
    write_tree(tree, {"README.md": README + RUNNABLE.replace("```bash", "```python")})
    [problem] = doc_checks.check_runnable_languages(tree)
    assert (problem.path, problem.line) == ("README.md", 15)
    assert "must be a shell block" in problem.message


@pytest.mark.process
def test_a_failing_runnable_block_is_named_with_its_output(tree):
    failing = RUNNABLE.replace("echo one", "echo one; echo oops >&2; exit 3")
    write_tree(tree, {"docs/guide.md": GUIDE + "\n" + failing + "\n" + RUNNABLE})
    [problem] = doc_checks.check_runnable_blocks(tree, timeout=20)
    assert (problem.path, problem.line) == ("docs/guide.md", 13)
    assert problem.message.startswith("runnable block exited 3")
    assert problem.message.endswith("one\noops\n")


@pytest.mark.process
def test_a_runnable_block_runs_in_the_project_with_a_temporary_store(tree, monkeypatch):
    monkeypatch.setenv("MLOPS_ROOT", str(tree / "users-store"))
    block = doc_checks.RunnableBlock("README.md", 1, "bash", 'pwd; echo "$MLOPS_ROOT"; false\n')
    problem = doc_checks.run_block(block, tree, tree / "temporary", timeout=20)
    assert problem.message.endswith(f"\n{tree}\n{tree / 'temporary'}\n")


TROUBLESHOOTING = textwrap.dedent("""\
    # Troubleshooting

    Message: `bad value …: fix it`
    - **Message:** `bad value ...: fix it`

    ```
    Message: `not checked in code`
    ```
""")


def test_troubleshooting_messages_come_from_the_code(tree):
    write_tree(tree, {"docs/troubleshooting.md": TROUBLESHOOTING})
    assert doc_checks.check_troubleshooting(tree, packages=("pkg",)) == []


def test_a_troubleshooting_message_not_in_the_code_is_named(tree):
    write_tree(tree, {"docs/troubleshooting.md": TROUBLESHOOTING.replace(
        "- **Message:** `bad value ...: fix it`", "Message: `bad value 1: fix it`")})
    assert doc_checks.check_troubleshooting(tree, packages=("pkg",)) == [Problem(
        "docs/troubleshooting.md", 4, "message 'bad value 1: fix it': 'bad value 1: fix it' is "
        "in no string of the code; quote the message as the code words it (… for a variable "
        "part)")]


def test_without_a_troubleshooting_page_there_is_nothing_to_check(tree):
    assert doc_checks.check_troubleshooting(tree, packages=("pkg",)) == []


def test_the_script_prints_each_problem_and_fails(tree, capsys):
    broken(tree, "README.md", "(#details)", "(#detail)")
    assert doc_checks.main(["--root", str(tree)]) == 1
    assert capsys.readouterr().out.startswith("README.md:4: link '#detail'")
    broken(tree, "README.md", "(#detail)", "(#details)")
    assert doc_checks.main(["--root", str(tree)]) == 0


@pytest.mark.process
def test_a_runnable_block_that_hangs_is_stopped(tree):
    block = doc_checks.RunnableBlock("README.md", 7, "bash", "echo started; sleep 30; echo never\n")
    problem = doc_checks.run_block(block, tree, tree, timeout=0.5)
    assert (problem.path, problem.line) == ("README.md", 7)
    assert problem.message.startswith("runnable block timed out after 0.5 s")
    assert problem.message.endswith("\nstarted\n")
