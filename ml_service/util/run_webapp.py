"""make app: the web app on this machine, against the local deployment of the production model.

    python -m ml_service.util.run_webapp [--port P] [--host H]

Deploys the production model as the local scoring service when no service is up or the one up
serves another version, writes the model card into the local store (``<store>/webapp/card``),
then serves the web app (ml_service/webapp) and prints its URL. Ctrl-C stops the app; the
scoring service stays up (``python -m ml_service.util.deploy_local stop`` stops it).
"""
import argparse
import logging
import os
from pathlib import Path
from typing import Optional

from ml_service.util.cli import run_cli

LOGGER = logging.getLogger(__name__)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    return parser.parse_args(argv)


def prepare(root: Optional[Path] = None) -> dict:
    """Deploy the production model locally when needed and write its card; return the web
    app's settings (WEBAPP_* variables)."""
    from ml_service.backends import get_backend
    from ml_service.util.deploy_local import deploy_production_model, production_or_version
    from ml_service.util.env_variables import (ScoringSettings, TrainingSettings,
                                               load_dotenv_file)
    from ml_service.util.model_card import build_card

    load_dotenv_file()
    training = TrainingSettings.from_env()
    backend = get_backend(training=training)
    if backend.name != "local":
        raise_not_local(backend.name)
    model = production_or_version(backend, training.model_name)
    service = ScoringSettings.from_env().service_name
    deployment = backend.get_deployment(service)
    if deployment is None or (deployment.model_name, deployment.model_version) != (
            model.name, model.version):
        deployment = deploy_production_model(backend, training.model_name, service)
    card = build_card(backend, model, Path(root or backend.root) / "webapp" / "card").parent
    LOGGER.info("Model card of %s version %s: %s", model.name, model.version, card)
    return {"WEBAPP_SCORING_URI": deployment.scoring_uri, "WEBAPP_MODEL_CARD": str(card)}


def raise_not_local(name: str) -> None:
    """make app serves the local deployment only."""
    from ml_service.errors import ConfigurationError

    raise ConfigurationError(f"make app runs against the local deployment (MLOPS_BACKEND=local, "
                             f"it is {name}); on Azure the CD pipeline deploys the web app")


def main(argv: Optional[list] = None) -> int:
    """Prepare, then serve until interrupted."""
    args = parse_args(argv)

    def body() -> int:
        os.environ.update(prepare())
        from ml_service.webapp import app

        return app.main(["--host", args.host, "--port", str(args.port)])

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
