"""What every command-line script shares: logging set-up and clear errors."""
import logging
import sys
from typing import Callable

from ml_service.errors import MLOpsError

LOGGER = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Problems a user can fix: shown as one clear line, not a traceback.
USER_ERRORS = (MLOpsError, ValueError, OSError)


def configure_logging(level: int = logging.INFO) -> None:
    """Send log records to stderr; called once from each script's main()."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S", stream=sys.stderr)
    # MLflow and the Azure SDKs are chatty at INFO.
    for name in ("mlflow", "alembic", "azureml", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # azure-ai-ml warns, once per class, that parts of its own schemas are experimental.
    logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)


def run_cli(body: Callable[[], int]) -> int:
    """Run a script's body; turn a user-fixable error into a logged message and exit code 1."""
    configure_logging()
    try:
        return body()
    except USER_ERRORS as err:
        LOGGER.error("%s: %s", type(err).__name__, err)
        return 1
    except KeyboardInterrupt:
        LOGGER.error("interrupted")
        return 130
