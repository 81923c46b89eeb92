"""docs/configuration.md is generated from the code, and everything configurable is in it."""
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from diabetes_regression.parameters import DEFAULT_PATH, KEYS, Key
from ml_service.paths import PROJECT_ROOT
from ml_service.util import config_reference as reference
from ml_service.util.env_variables import setting


def test_the_page_is_what_make_docs_writes():
    page = PROJECT_ROOT / reference.PAGE
    actual = page.read_text(encoding="utf-8") if page.is_file() else None
    problems = reference.page_difference(reference.render(), actual, reference.PAGE.as_posix())
    assert not problems, "\n".join(problems)


def test_every_variable_the_code_reads_is_described():
    read = reference.variables_read(PROJECT_ROOT)
    assert {"MODEL_NAME", "MLOPS_ROOT", "MLOPS_COLLECTOR", "WEBAPP_MODEL_CARD"} <= set(read)
    problems = reference.variable_problems(read, reference.described_variables())
    assert not problems, "\n".join(problems)


def test_every_key_the_parser_accepts_is_described():
    accepted = reference.accepted_keys(reference.full_document())
    assert {"evaluation.metric", "monitoring.shift.bins", "scoring.max_body_bytes"} <= accepted
    problems = reference.parameter_problems(accepted)
    assert not problems, "\n".join(problems)


def leaves(document: dict, prefix: str = ""):
    """Every key path of a JSON object, section.key."""
    for key, value in document.items():
        yield prefix + key
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")


def test_every_key_of_parameters_json_is_on_the_page():
    page = (PROJECT_ROOT / reference.PAGE).read_text(encoding="utf-8")
    names = {key.name for key in KEYS}
    document = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    for name in leaves(document):
        documented = [n for n in names if n == name or n.startswith(name + ".")
                      or name.startswith(n + ".")]
        assert documented, name
        assert any(f"| `{n}` |" in page for n in documented), name


def test_a_key_missing_from_the_registry_is_named():
    accepted = reference.accepted_keys(reference.full_document())
    keys = [key for key in KEYS if key.name != "validation.min_rows"]
    assert reference.parameter_problems(accepted, keys) == [
        "parameters.json key validation.min_rows has no description: add a Key to KEYS in "
        "diabetes_regression/parameters.py"]


def test_a_described_key_the_parser_never_reads_is_named():
    accepted = reference.accepted_keys(reference.full_document())
    keys = list(KEYS) + [Key("scoring.max_columns", "whole number", 1, "")]
    assert reference.parameter_problems(accepted, keys) == [
        "parameters.json key scoring.max_columns is described but parse_parameters never "
        "reads it: remove it from KEYS",
        "parameters.json key scoring.max_columns has no effect: give it one"]


def test_a_parameter_missing_from_the_page_is_named():
    expected = reference.render()
    row = next(line for line in expected.splitlines() if line.startswith("| `scoring.max_rows`"))
    [problem] = reference.page_difference(expected, expected.replace(row + "\n", ""),
                                          "docs/configuration.md")
    assert problem.startswith("docs/configuration.md is stale: run make docs\n")
    assert f"\n+{row}" in problem


SOURCE = textwrap.dedent('''\
    import os
    from dataclasses import dataclass
    NAME_VARIABLE, OTHER = "FROM_CONSTANT", "x"

    def read(env):
        os.environ.get("FROM_OS_ENVIRON_GET")
        os.getenv(NAME_VARIABLE)
        env["FROM_SUBSCRIPT"]
        env["NOT_READ"] = "written"
        _text(env, "FROM_HELPER")
        {}.get("NOT_AN_ENVIRONMENT")

    @dataclass
    class Settings:
        @classmethod
        def from_env(cls, env):
            return [text(name) for name in ("FROM_SETTINGS", "ALSO_FROM_SETTINGS")]
''')


def test_reads_of_the_environment_are_found(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "module.py").write_text(SOURCE)
    read = reference.variables_read(tmp_path, packages=("pkg",))
    assert read == {
        "FROM_OS_ENVIRON_GET": ["pkg/module.py:6"], "FROM_CONSTANT": ["pkg/module.py:7"],
        "FROM_SUBSCRIPT": ["pkg/module.py:8"], "FROM_HELPER": ["pkg/module.py:10"],
        "FROM_SETTINGS": ["pkg/module.py:17"], "ALSO_FROM_SETTINGS": ["pkg/module.py:17"]}


def test_an_undescribed_variable_is_named_and_so_is_a_description_nobody_reads():
    read = {"MODEL_NAME": ["a.py:1"], "NEW_SETTING": ["b.py:2", "c.py:3"], "AZUREML_RUN_ID": []}
    described = [reference.EnvVariable("MODEL_NAME", "text", "m", "The model's name"),
                 reference.EnvVariable("OLD_SETTING", "text", "", "Gone")]
    assert reference.variable_problems(read, described, {"AZUREML_RUN_ID": "Azure ML"}) == [
        "NEW_SETTING (read at b.py:2, c.py:3) has no description: describe it where it is read "
        "(setting(..., env=...) or DESCRIBED_VARIABLES), or add it to INTERNAL_VARIABLES in "
        "ml_service/util/config_reference.py if it is set for the code",
        "OLD_SETTING is described but no code reads it: remove its description"]


@dataclass(frozen=True)
class ExampleSettings:
    """A settings class as the page reads it."""

    name: str = setting(env="EXAMPLE_NAME", effect="Required")
    count: Optional[int] = setting(None, env="EXAMPLE_COUNT", effect="Optional")
    ratio: float = field(default=0.5, metadata={"env": "EXAMPLE_RATIO", "kind": "share",
                                                "effect": "Kind given"})
    path: Path = setting(Path("x"), env="EXAMPLE_PATH", effect="")
    internal: bool = False


def test_a_settings_class_gives_one_row_per_described_field():
    rows = reference.field_variables(ExampleSettings)
    assert [(row.name, row.kind, reference.shown_default(row.default)) for row in rows] == [
        ("EXAMPLE_NAME", "text", "required"), ("EXAMPLE_COUNT", "whole number", "unset"),
        ("EXAMPLE_RATIO", "share", "`0.5`"), ("EXAMPLE_PATH", "path", "`x`")]
    assert reference.variable_problems(
        {row.name: ["x.py:1"] for row in rows}, rows, {}) == [
        "EXAMPLE_PATH is described but has no effect: give it one"]


def test_table_cells_escape_pipes():
    assert reference.table(("A",), [("x | y",)]) == ["| A |", "|---|", "| x \\| y |"]


def test_make_docs_writes_the_page_and_check_names_a_stale_one(tmp_path, capsys):
    assert reference.main(["--root", str(tmp_path)]) == 0
    page = tmp_path / reference.PAGE
    assert page.read_text(encoding="utf-8") == reference.render()
    assert [p.name for p in page.parent.iterdir()] == ["configuration.md"]
    page.unlink()
    assert reference.main(["--check", "--root", str(tmp_path)]) == 1
    assert "docs/configuration.md does not exist: run make docs" in capsys.readouterr().out


def test_check_passes_on_the_project():
    assert reference.main(["--check"]) == 0
