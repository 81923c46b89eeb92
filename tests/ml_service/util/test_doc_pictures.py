"""The pure parts of the documentation's picture script (the whole run is the loop's and the
monitor's, which their own tests cover)."""
import json
import os

import pandas as pd
import pytest

from ml_service.util import doc_pictures
from ml_service.util.doc_pictures import (DocPicturesError, environment, evaluation_picture,
                                          shifted_rows)


def test_the_first_feature_is_shifted_by_one_standard_deviation_by_default():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [5.0, 5.0, 5.0]})
    assert shifted_rows(frame, None) == [[2.0, 5.0], [3.0, 5.0], [4.0, 5.0]]
    assert shifted_rows(frame, "b") == [[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]


def test_a_feature_the_data_lacks_is_named():
    with pytest.raises(DocPicturesError, match="--feature c: not a feature.*a, b"):
        shifted_rows(pd.DataFrame({"a": [1.0], "b": [2.0]}), "c")


@pytest.mark.parametrize("pictures, found", [(["one.png", "two.png"], "one.png"), ([], None)])
def test_the_evaluation_picture_is_the_first_the_report_lists(tmp_path, pictures, found):
    (tmp_path / "evaluation_report.json").write_text(json.dumps({"pictures": pictures}))
    if found:
        assert evaluation_picture(tmp_path) == tmp_path / found
    else:
        with pytest.raises(DocPicturesError, match="lists no picture"):
            evaluation_picture(tmp_path)


def test_the_environment_is_restored(monkeypatch):
    monkeypatch.setenv("DOC_PICTURES_KEPT", "before")
    monkeypatch.delenv("DOC_PICTURES_NEW", raising=False)
    with environment({"DOC_PICTURES_KEPT": "during", "DOC_PICTURES_NEW": "x"}):
        assert os.environ["DOC_PICTURES_KEPT"] == "during"
    assert os.environ["DOC_PICTURES_KEPT"] == "before" and "DOC_PICTURES_NEW" not in os.environ


def test_the_pictures_go_to_docs_images_by_default():
    args = doc_pictures.parse_args([])
    assert str(args.images) == os.path.join("docs", "images") and args.root is None
