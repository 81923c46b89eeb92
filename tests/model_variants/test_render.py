"""The render's own checks: a variant's library is set whatever the project's was, or the
render stops saying why."""
import json

import pytest

from tests.model_variants.render import (LIBRARY, MODEL_FILES, PROJECT_ROOT, VARIANTS, Library,
                                         RenderError, read_library, render, with_flavor,
                                         with_requirement)

LIGHTGBM = Library("mlflow.lightgbm", {"serialization_format": "cloudpickle"}, ("lightgbm",))
PYPROJECT = '[project]\nname = "x"\ndependencies = [\n    "numpy==2.3.2",\n]\n'


def test_the_flavour_and_save_options_are_set_whatever_they_were():
    for flavor in ("mlflow.sklearn", "mlflow.xgboost"):
        text = f'MLFLOW_FLAVOR = "{flavor}"\nSAVE_OPTIONS: Dict[str, Any] = {{}}\nOTHER = 1\n'
        assert with_flavor(text, LIGHTGBM) == (
            'MLFLOW_FLAVOR = "mlflow.lightgbm"\n'
            "SAVE_OPTIONS: Dict[str, Any] = {'serialization_format': 'cloudpickle'}\nOTHER = 1\n")


def test_the_projects_own_model_files_take_each_variants_flavour():
    text = (PROJECT_ROOT / MODEL_FILES).read_text()
    for variant in sorted(p for p in VARIANTS.iterdir() if (p / LIBRARY).is_file()):
        assert f'"{read_library(variant / LIBRARY).flavor}"' in with_flavor(
            text, read_library(variant / LIBRARY))


@pytest.mark.parametrize("text, count", [("OTHER = 1\n", 0),
                                         ('MLFLOW_FLAVOR = "a"\nMLFLOW_FLAVOR = "b"\n', 2)])
def test_a_flavour_line_not_there_once_stops_the_render(text, count):
    with pytest.raises(RenderError, match=f"model_files.py: {count} lines match"):
        with_flavor(text, LIGHTGBM)


def test_a_library_is_pinned_once_and_a_declared_one_is_left_as_the_user_chose():
    added = with_requirement(PYPROJECT, "lightgbm==4.7.0", "pyproject.toml")
    assert added == PYPROJECT.replace("[\n", '[\n    "lightgbm==4.7.0",\n')
    assert with_requirement(added, "lightgbm==9.9", "pyproject.toml") == added
    assert with_requirement(added, "LightGBM==9.9", "pyproject.toml") == added


def test_a_pyproject_without_one_dependencies_list_is_named():
    with pytest.raises(RenderError, match="env/pyproject.toml: 0 lines 'dependencies = \\['"):
        with_requirement('[project]\nname = "x"\n', "lightgbm==4.7.0", "env/pyproject.toml")


@pytest.mark.parametrize("content", ['{"flavor": "mlflow.x"}', "[]", "not json",
                                     '{"flavor": 1, "save_options": {}, "libraries": ["a"]}',
                                     '{"flavor": "m", "save_options": {}, "libraries": []}'])
def test_a_malformed_library_file_is_named(tmp_path, content):
    path = tmp_path / LIBRARY
    path.write_text(content)
    with pytest.raises(RenderError, match=f"{path}: not a variant's library"):
        read_library(path)


def test_each_variant_names_an_installed_flavour_and_library():
    import importlib
    import importlib.metadata

    for variant in sorted(p for p in VARIANTS.iterdir() if p.is_dir() and p.name[0] != "_"):
        library = read_library(variant / LIBRARY)
        importlib.import_module(library.flavor)
        assert all(importlib.metadata.version(name) for name in library.libraries)
        assert json.loads((variant / "parameters.json").read_text())["training"]


def test_an_unknown_variant_or_an_existing_folder_is_refused(tmp_path):
    with pytest.raises(RenderError, match="no model variant 'nope'; known: classifier, "
                                          "lightgbm"):
        render("nope", tmp_path / "new")
    with pytest.raises(RenderError, match="exists; render into a new folder"):
        render("lightgbm", tmp_path)
