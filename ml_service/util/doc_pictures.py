"""Draw the documentation's pictures from a real run (what `make doc-pictures` runs).

    python -m ml_service.util.doc_pictures [--images docs/images] [--root DIR] [--feature NAME]

1. runs the local loop (`make run`) on the model package's sample data, in a temporary store
   unless ``--root`` names one, and copies the first picture of the evaluation report;
2. deploys the production model locally and scores the rows of the dataset it was trained on,
   with one feature (``--feature``, default the first) shifted by one standard deviation, so
   that the service collects them as it collects any request; then stops the service;
3. runs the monitor (`make monitor`) on what was collected and copies that feature's picture.

The pictures are written as ``evaluation_report.png`` and ``monitoring_drift_example.png``.
Nothing here names the model's columns, estimator or metric: they come from the model
package and the run.
"""
import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import requests

from ml_service.errors import MLOpsError
from ml_service.util.cli import run_cli

LOGGER = logging.getLogger(__name__)
EVALUATION_PICTURE = "evaluation_report.png"
DRIFT_PICTURE = "monitoring_drift_example.png"
ROWS_PER_REQUEST = 50
# The collector's writer thread writes its queue every half second.
COLLECTOR_FLUSH_S = 1.5


class DocPicturesError(MLOpsError):
    """The run did not produce the picture it should have."""


@contextmanager
def environment(values: Dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (the steps are processes that read them)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def evaluation_picture(report_folder: Path) -> Path:
    """The first picture the evaluation report lists."""
    from diabetes_regression.evaluate.report import REPORT_JSON

    document = json.loads((report_folder / REPORT_JSON).read_text())
    if not document.get("pictures"):
        raise DocPicturesError(f"{report_folder / REPORT_JSON} lists no picture")
    return report_folder / document["pictures"][0]


def shifted_rows(features, feature: Optional[str]) -> List[List[float]]:
    """The rows with one feature (default: the first) moved by one standard deviation."""
    name = feature or str(features.columns[0])
    if name not in features.columns:
        raise DocPicturesError(f"--feature {name}: not a feature of the training data; "
                               f"its features: {', '.join(map(str, features.columns))}")
    shifted = features.astype(float)
    shifted[name] = shifted[name] + shifted[name].std()
    return shifted.to_numpy().tolist()


def score_rows(url: str, rows: List[List[float]]) -> None:
    """Send the rows to the scoring service, ROWS_PER_REQUEST at a time."""
    for start in range(0, len(rows), ROWS_PER_REQUEST):
        response = requests.post(url, json={"data": rows[start:start + ROWS_PER_REQUEST]},
                                 timeout=30)
        if response.status_code != 200:
            raise DocPicturesError(f"{url} answered {response.status_code}: {response.text}")


def run_loop_and_monitor(images: Path, feature: Optional[str]) -> List[Path]:
    """The loop, the shifted requests and the monitor, in the store MLOPS_ROOT names."""
    from diabetes_regression.training.train import TARGET_COLUMN
    from ml_service.backends.local import LocalBackend
    from ml_service.local_loop import run_loop
    from ml_service.monitoring import monitor
    from ml_service.util.deploy_local import deploy_production_model
    from ml_service.util.env_variables import (BackendSettings, ScoringSettings,
                                               TrainingSettings)

    training, scoring = TrainingSettings.from_env(), ScoringSettings.from_env()
    backend = LocalBackend(BackendSettings.from_env().root, training.experiment_name,
                           scoring.port)
    summary = run_loop(backend, training, scoring)
    if not summary.report:
        raise DocPicturesError("the loop drew no evaluation report (is RUN_EVALUATION off?)")
    images.mkdir(parents=True, exist_ok=True)
    written = [Path(shutil.copyfile(evaluation_picture(Path(summary.report)),
                                    images / EVALUATION_PICTURE))]

    model = backend.get_production_model(training.model_name)
    _, frame = monitor.training_frame(backend, model)
    features = frame.drop(columns=[TARGET_COLUMN])
    name = feature or str(features.columns[0])
    rows = shifted_rows(features, name)
    deployment = deploy_production_model(backend, training.model_name, scoring.service_name)
    try:
        LOGGER.info("Scoring %d rows with %s shifted by one standard deviation", len(rows),
                    name)
        score_rows(deployment.scoring_uri, rows)
        time.sleep(COLLECTOR_FLUSH_S)
    finally:
        backend.delete_deployment(scoring.service_name)

    with tempfile.TemporaryDirectory(prefix="mlops-monitoring-") as folder:
        code = monitor.main(["--service", scoring.service_name, "--report_dir", folder])
        if code != monitor.EXIT_DRIFT:
            raise DocPicturesError(f"the monitor exited {code}, not {monitor.EXIT_DRIFT} "
                                   f"(drift), on rows with {name} shifted")
        report = json.loads((Path(folder) / monitor.REPORT_JSON).read_text())
        picture = report["pictures"].get(name)
        if picture is None:
            raise DocPicturesError(f"the monitor drew no picture of {name}; it drew: "
                                   f"{', '.join(report['pictures']) or 'none'}")
        written.append(Path(shutil.copyfile(Path(folder) / picture, images / DRIFT_PICTURE)))
    return written


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Where the pictures go, which store to use, which feature to shift."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("docs") / "images",
                        help="folder the pictures are copied into (default: docs/images)")
    parser.add_argument("--root", type=Path,
                        help="local store to run in (default: a temporary one, removed after)")
    parser.add_argument("--feature", help="the feature to shift (default: the first)")
    return parser.parse_args(argv)


def draw(args: argparse.Namespace) -> int:
    """Run in the chosen or a temporary store; log what was written."""
    with tempfile.TemporaryDirectory(prefix="mlops-doc-pictures-") as temporary:
        root = (args.root or Path(temporary) / "store").resolve()
        with environment({"MLOPS_ROOT": str(root)}):
            written = run_loop_and_monitor(args.images.resolve(), args.feature)
    for path in written:
        LOGGER.info("Wrote %s", path)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of `make doc-pictures`."""
    args = parse_args(argv)
    return run_cli(lambda: draw(args))


if __name__ == "__main__":
    sys.exit(main())
