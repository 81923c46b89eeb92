"""The web app people use the model through: try it, score a file, read its card.

    python -m ml_service.webapp.app [--host H] [--port P]        (make app runs it locally)
    gunicorn 'ml_service.webapp.app:create_app()'               (App Service)

Settings (environment): WEBAPP_SCORING_URI (the endpoint's scoring URI; by default the one the
card was packaged with), WEBAPP_SCORING_KEY
(its key; unset for the local service, which checks none), WEBAPP_MODEL_CARD (the model
card's folder, written by ``python -m ml_service.util.model_card``), WEBAPP_TIMEOUT_S
(seconds to wait for the endpoint, 30) and WEBAPP_MAX_UPLOAD_BYTES (5,000,000).

The server side calls the endpoint; pages carry no key. The form is generated from the card's
fields (the model's own feature names, types and examples), so a model swapped in gets its
own form. A person's mistake is answered 422 with the message next to what is wrong; an
endpoint that refuses, is down or is slow is said in plain words (422, 502 or 504). Only
Flask, requests and the standard library are imported: the app runs on a small App Service
plan without the model's stack.
"""
import argparse
import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from flask import Flask, Response, abort, render_template, request, send_from_directory

from ml_service.webapp.endpoint import Endpoint, EndpointError
from ml_service.webapp.upload import UploadError, read_rows, scored_csv

LOGGER = logging.getLogger(__name__)
CARD_JSON, PICTURES = "card.json", "pictures"
PROBABILITY = "probability"


class WebAppConfigError(ValueError):
    """A setting of the web app is missing or wrong; the message names it."""


@dataclass(frozen=True)
class WebAppSettings:
    """Where the endpoint and the card are, and the limits."""

    # metadata: the variable each field comes from and what it does, for docs/configuration.md.
    scoring_uri: str = dataclasses.field(metadata={
        "env": "WEBAPP_SCORING_URI", "kind": "URL", "default": None, "effect": "The scoring "
        "endpoint the web app asks; unset: the one in the model card (`make app` sets the "
        "local deployment's)"})
    card_dir: Path = dataclasses.field(metadata={
        "env": "WEBAPP_MODEL_CARD", "effect": "The model card's folder (`make app` sets "
        "it; the packaged app has it in model_card/)"})
    scoring_key: Optional[str] = dataclasses.field(default=None, metadata={
        "env": "WEBAPP_SCORING_KEY", "effect": "The endpoint's key, sent as a bearer token; "
        "unset: no Authorization header"})
    timeout_s: float = dataclasses.field(default=30.0, metadata={
        "env": "WEBAPP_TIMEOUT_S", "effect": "Seconds the web app waits for the endpoint"})
    max_upload_bytes: int = dataclasses.field(default=5_000_000, metadata={
        "env": "WEBAPP_MAX_UPLOAD_BYTES", "effect": "The largest CSV file the web app takes"})

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "WebAppSettings":
        """Read the WEBAPP_* settings; a missing or bad one is named."""
        env = os.environ if env is None else env
        if not env.get("WEBAPP_MODEL_CARD", "").strip():
            raise WebAppConfigError("WEBAPP_MODEL_CARD not set: the model card's folder (make "
                                    "app sets it; the packaged app has it in model_card/)")
        try:
            timeout = float(env.get("WEBAPP_TIMEOUT_S", cls.timeout_s))
            limit = int(env.get("WEBAPP_MAX_UPLOAD_BYTES", cls.max_upload_bytes))
        except ValueError as err:
            raise WebAppConfigError(f"WEBAPP_TIMEOUT_S / WEBAPP_MAX_UPLOAD_BYTES: {err}") from None
        if not (timeout > 0 and limit > 0):
            raise WebAppConfigError("WEBAPP_TIMEOUT_S and WEBAPP_MAX_UPLOAD_BYTES must be "
                                    "positive")
        return cls(env.get("WEBAPP_SCORING_URI", "").strip(),
                   Path(env["WEBAPP_MODEL_CARD"].strip()),
                   env.get("WEBAPP_SCORING_KEY", "").strip() or None, timeout, limit)


def read_card(folder: Path) -> Dict[str, Any]:
    """The model card; WebAppConfigError naming the file when it is missing or malformed."""
    path = Path(folder) / CARD_JSON
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WebAppConfigError(f"{path}: no readable model card ({err}); write one with "
                                "python -m ml_service.util.model_card --out "
                                f"{folder}") from None
    fields = card.get("fields") if isinstance(card, dict) else None
    if not isinstance(fields, list) or not fields or not all(
            isinstance(f, dict) and isinstance(f.get("name"), str) for f in fields):
        raise WebAppConfigError(f"{path}: the card has no input fields; write it again with "
                                "python -m ml_service.util.model_card")
    return card


def parse_form(form: Mapping[str, str], fields: List[Dict[str, Any]]
               ) -> Tuple[List[float], Dict[str, str]]:
    """The form's values in field order, and a message per field that is not a number."""
    values, errors = [], {}
    for field in fields:
        name = field["name"]
        text = form.get(name, "").strip()
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            errors[name] = (f"Enter a number for {name}" if not text
                            else f"{text[:40]!r} is not a number")
        elif field.get("type") == "integer" and not number.is_integer():
            errors[name] = f"{name} takes a whole number"
        values.append(number)
    return values, errors


def describe_answer(card: Mapping[str, Any], answer: Mapping[str, List]) -> Dict[str, Any]:
    """The first row's answer as the page shows it: a value, or a probability and label."""
    result = answer["result"][0]
    if card.get("kind") == PROBABILITY:
        probability = result[-1] if isinstance(result, list) else result
        shown = {"probability": probability}
        if answer.get("labels"):
            shown["label"] = answer["labels"][0]
        return shown
    return {"value": result}


@dataclass
class View:
    """What every page needs: the settings, the card and the endpoint."""

    settings: WebAppSettings
    card: Dict[str, Any]
    endpoint: Endpoint

    @property
    def classifier(self) -> bool:
        return self.card.get("kind") == PROBABILITY

    def page(self, template: str, status: int = 200, **values: Any) -> Tuple[str, int]:
        return render_template(template, card=self.card, fields=self.card["fields"],
                               limit=self.settings.max_upload_bytes, **values), status


def create_app(settings: Optional[WebAppSettings] = None) -> Flask:
    """The Flask app, its settings read from the environment unless given."""
    settings = settings or WebAppSettings.from_env()
    card = read_card(settings.card_dir)
    uri = settings.scoring_uri or card.get("scoring_uri")
    if not uri:
        raise WebAppConfigError(f"no scoring URI: set WEBAPP_SCORING_URI, or package the card "
                                f"with the endpoint's ({settings.card_dir / CARD_JSON} has none)")
    view = View(settings, card, Endpoint(uri, settings.scoring_key, settings.timeout_s,
                                         int(card.get("max_rows") or 1000)))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + 64 * 1024
    add_try_it(app, view)
    add_score_a_file(app, view)
    add_model_card(app, view)
    return app


def add_try_it(app: Flask, view: View) -> None:
    """/: the form of the model's fields, and its answer for one case."""
    fields = view.card["fields"]

    @app.get("/")
    def try_it():
        return view.page("try.html", values={f["name"]: f.get("example", "") for f in fields},
                         errors={})

    @app.post("/")
    def predict():
        values, errors = parse_form(request.form, fields)
        shown = {f["name"]: request.form.get(f["name"], "") for f in fields}
        if errors:
            return view.page("try.html", 422, values=shown, errors=errors)
        try:
            answer = view.endpoint.score([values], labels=view.classifier)
        except EndpointError as err:
            return view.page("try.html", err.status, values=shown, errors={},
                             problem=str(err))
        return view.page("try.html", values=shown, errors={},
                         answer=describe_answer(view.card, answer))


def add_score_a_file(app: Flask, view: View) -> None:
    """/file: a CSV uploaded, answered scored or with what to fix."""
    names = [f["name"] for f in view.card["fields"]]
    limit = view.settings.max_upload_bytes

    @app.get("/file")
    def file_form():
        return view.page("file.html")

    @app.post("/file")
    def score_file():
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            return view.page("file.html", 422, problem="Choose a CSV file to score.")
        try:
            header, rows, numbers = read_rows(upload.read(limit + 1), names, limit,
                                              MAX_FILE_ROWS)
            answer = view.endpoint.score(numbers, labels=view.classifier)
        except UploadError as err:
            return view.page("file.html", 422, problem=str(err))
        except EndpointError as err:
            return view.page("file.html", err.status, problem=str(err))
        name = safe_name(Path(upload.filename).stem)
        return Response(scored_csv(header, rows, answer), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{name}-scored.csv"'})

    @app.errorhandler(413)
    def too_large(_error):
        return view.page("file.html", 413, problem=f"The file is larger than {limit:,} bytes. "
                                                   "Split it into smaller files.")


def add_model_card(app: Flask, view: View) -> None:
    """/model: the card; /card/<picture>: its pictures only; /health."""
    @app.get("/model")
    def model_card():
        return view.page("card.html")

    @app.get("/card/<path:name>")
    def card_picture(name: str):
        if "/" in name or not name.endswith(".png"):
            abort(404)
        return send_from_directory(view.settings.card_dir / PICTURES, name)

    @app.get("/health")
    def health():
        return Response("ok\n", mimetype="text/plain")


# At most this many rows per uploaded file (sent to the endpoint max_rows at a time).
MAX_FILE_ROWS = 100_000


def safe_name(name: str) -> str:
    """A file name fit for a Content-Disposition header."""
    kept = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return kept[:80] or "file"


def main(argv: Optional[list] = None) -> int:
    """Serve the app on this machine (Werkzeug's server; App Service runs gunicorn)."""
    from werkzeug.serving import make_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        app = create_app()
    except WebAppConfigError as err:
        LOGGER.error("%s", err)
        return 1
    server = make_server(args.host, args.port, app, threaded=True)
    print(f"http://{args.host}:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
