"""The model card of the served model (tests/conftest.py), with an evaluation report drawn
by the model package, shared by the web app's tests."""
import json
from pathlib import Path
from typing import Any, Dict

import pytest


@pytest.fixture(scope="session")
def model_card(served_model, tmp_path_factory) -> Path:
    """The card's folder, as ``python -m ml_service.util.model_card`` writes it."""
    from diabetes_regression.evaluate.report import model_outputs, write_evaluation_report
    from diabetes_regression.training.prediction import output_kind
    from diabetes_regression.training.train import get_model_metrics
    from ml_service.util.model_card import build_card

    folder = tmp_path_factory.mktemp("card")
    model, test = served_model.model, served_model.data["test"]
    write_evaluation_report(folder / "evaluation", test["y"],
                            {"new": model_outputs(model, test["X"])}, output_kind(model),
                            {"new": get_model_metrics(model, served_model.data)})
    return build_card(served_model.backend, served_model.version, folder / "card",
                      evaluation_dir=folder / "evaluation").parent


@pytest.fixture(scope="session")
def card(model_card) -> Dict[str, Any]:
    """card.json, read."""
    return json.loads((model_card / "card.json").read_text())
