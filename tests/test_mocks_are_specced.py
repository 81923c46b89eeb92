"""Every mock in the tests is spec'd from the real class (spec_set), so a wrong method name,
keyword or call shape fails offline instead of hiding the defect that matters on Azure ML."""
import ast
from pathlib import Path
from typing import Iterator, List

import pytest

TESTS = Path(__file__).resolve().parent
MOCK_CLASSES = {"Mock", "MagicMock", "NonCallableMock", "NonCallableMagicMock", "AsyncMock"}


def _name(node: ast.AST) -> str:
    """The dotted name of a called function: ``mock.patch.object`` -> ``mock.patch.object``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _keyword_true(call: ast.Call, name: str) -> bool:
    return any(k.arg == name and not (isinstance(k.value, ast.Constant) and not k.value.value)
               for k in call.keywords)


def _has_keyword(call: ast.Call, *names: str) -> bool:
    return any(k.arg in names for k in call.keywords)


def unspecced_mocks(source: str) -> Iterator[int]:
    """Line numbers of mocks made without spec_set (or patches that create such mocks)."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        last = name.rsplit(".", 1)[-1]
        if last in MOCK_CLASSES and not _has_keyword(node, "spec_set"):
            yield node.lineno
        elif last == "create_autospec" and not _keyword_true(node, "spec_set"):
            yield node.lineno
        elif name.endswith("patch") or name.endswith("patch.object"):
            if name.startswith("monkeypatch") or "MonkeyPatch" in name:
                continue
            replaced = len(node.args) >= (3 if name.endswith("object") else 2) \
                or _has_keyword(node, "new", "new_callable")
            if not replaced and not _keyword_true(node, "autospec") \
                    and not _has_keyword(node, "spec_set"):
                yield node.lineno


def test_the_check_finds_unspecced_mocks():
    source = ("from unittest import mock\n"
              "a = mock.MagicMock(name=\"loose\")\n"
              "b = mock.create_autospec(object)\n"
              "c = mock.patch('x.y')\n"
              "d = mock.create_autospec(object, spec_set=True)\n"
              "e = mock.patch.object(object, 'y', autospec=True)\n"
              "f = mock.patch('x.y', d)\n")
    assert list(unspecced_mocks(source)) == [2, 3, 4]


def _test_files() -> List[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if p.resolve() != Path(__file__).resolve())


@pytest.mark.parametrize("path", _test_files(), ids=lambda p: str(p.relative_to(TESTS)))
def test_every_mock_is_specced_from_the_real_class(path):
    lines = list(unspecced_mocks(path.read_text(encoding="utf-8")))
    assert not lines, (f"{path.relative_to(TESTS.parent)} lines {lines}: make mocks with "
                       "create_autospec(RealClass, spec_set=True) (or patch(..., autospec=True))")
