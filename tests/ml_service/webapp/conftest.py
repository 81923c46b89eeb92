"""The model card of the served model (tests/conftest.py), with an evaluation report drawn
by the model package, shared by the web app's tests."""
import json
import threading
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import requests


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


def serve(settings) -> Tuple[str, Any]:
    """The web app on a free port of this machine, in a thread: its base URL and server."""
    from werkzeug.serving import make_server

    from ml_service.webapp import app as webapp

    server = make_server("127.0.0.1", 0, webapp.create_app(settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def endpoint_answers(served_model, card, rows: List[List[float]]) -> Dict[str, Any]:
    """What the endpoint itself answers for rows (with a classifier's labels)."""
    body = {"data": rows, **({"labels": True} if card["kind"] == "probability" else {})}
    return requests.post(served_model.deployment.scoring_uri, json=body, timeout=10).json()


def shown_value(result: Any) -> Any:
    """One row's result as the app shows it: a value, or a classifier's last probability."""
    return result[-1] if isinstance(result, list) else result
