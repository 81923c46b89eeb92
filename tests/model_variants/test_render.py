"""The render's own checks: a variant's edits apply exactly once, or the render stops."""
import pytest

from tests.model_variants.render import (EDITS, VARIANTS, RenderError, apply_edits,
                                         read_edits, render)


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_an_edit_replaces_its_text_in_its_file(tmp_path):
    write(tmp_path, "pkg/settings.py", 'FLAVOR = "a"\nOTHER = 1\n')
    apply_edits(tmp_path, [{"file": "pkg/settings.py", "find": 'FLAVOR = "a"',
                            "replace": 'FLAVOR = "b"'}])
    assert (tmp_path / "pkg/settings.py").read_text() == 'FLAVOR = "b"\nOTHER = 1\n'


@pytest.mark.parametrize("text, times", [("nothing here\n", 0), ("x = 1\nx = 1\n", 2)])
def test_an_edit_whose_text_is_not_there_once_stops_the_render(tmp_path, text, times):
    write(tmp_path, "f.py", text)
    with pytest.raises(RenderError, match=rf"f.py: the text to edit \('x = 1'\) occurs "
                                          rf"{times} times, not once; update the variant"):
        apply_edits(tmp_path, [{"file": "f.py", "find": "x = 1", "replace": "x = 2"}])
    assert (tmp_path / "f.py").read_text() == text


def test_an_edit_of_a_missing_file_stops_the_render(tmp_path):
    with pytest.raises(RenderError, match="absent.py: the text to edit"):
        apply_edits(tmp_path, [{"file": "absent.py", "find": "a", "replace": "b"}])


@pytest.mark.parametrize("content", ['{"edits": [{"file": "f.py", "find": "a"}]}', "[]",
                                     "not json", '{"edits": [1]}'])
def test_a_malformed_edits_file_is_named(tmp_path, content):
    path = write(tmp_path, EDITS, content)
    with pytest.raises(RenderError, match=f"{path}: not a list of edits"):
        read_edits(path)


def test_each_variants_edits_apply_to_the_project_as_it_is():
    for variant in sorted(p for p in VARIANTS.iterdir() if (p / EDITS).is_file()):
        for edit in read_edits(variant / EDITS):
            text = (VARIANTS.parents[1] / edit["file"]).read_text()
            assert text.count(edit["find"]) == 1, (variant.name, edit["file"])


def test_an_unknown_variant_or_an_existing_folder_is_refused(tmp_path):
    with pytest.raises(RenderError, match="no model variant 'nope'; known: classifier, "
                                          "lightgbm"):
        render("nope", tmp_path / "new")
    with pytest.raises(RenderError, match="exists; render into a new folder"):
        render("lightgbm", tmp_path)
