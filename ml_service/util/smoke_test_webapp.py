"""Smoke-test the deployed web app: the page loads, and one prediction goes through it.

    python -m ml_service.util.smoke_test_webapp --url https://app-NAME.azurewebsites.net
                                                [--timeout 600]

GETs the "Try it" page until it answers 200 (a freshly deployed App Service installs its
requirements and starts first), sends its form back with the example values it shows, and
checks that the answer page shows a numeric prediction. Exit 1 with what went wrong.
"""
import argparse
import html.parser
import logging
import math
import time
from typing import Dict, List, Optional, Tuple

import requests

from ml_service.errors import DeploymentError

LOGGER = logging.getLogger(__name__)
PREDICTION_ID = "prediction"


class Page(html.parser.HTMLParser):
    """The form's inputs (name → value) and the text of the prediction's output element."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: Dict[str, str] = {}
        self.prediction: Optional[str] = None
        self._in_prediction = False

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        found = dict(attrs)
        if tag == "input" and found.get("name"):
            self.inputs[found["name"]] = found.get("value") or ""
        self._in_prediction = tag == "output" and found.get("id") == PREDICTION_ID

    def handle_data(self, data: str) -> None:
        if self._in_prediction:
            self.prediction = (self.prediction or "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "output":
            self._in_prediction = False


def read_page(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def wait_for_page(url: str, timeout_s: float, session: requests.Session) -> Page:
    """The "Try it" page, once the app answers 200; DeploymentError when time runs out."""
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while True:
        try:
            answer = session.get(url, timeout=30)
            if answer.status_code == 200:
                return read_page(answer.text)
            last = f"HTTP {answer.status_code}"
        except requests.RequestException as err:
            last = type(err).__name__
        if time.monotonic() >= deadline:
            raise DeploymentError(f"{url} did not answer 200 within {timeout_s:g} s "
                                  f"(last: {last})")
        time.sleep(5)


def smoke_test(base_url: str, timeout_s: float = 600.0) -> float:
    """The prediction the app showed for its own example; DeploymentError naming the step."""
    url = base_url.rstrip("/") + "/"
    session = requests.Session()
    page = wait_for_page(url, timeout_s, session)
    if not page.inputs:
        raise DeploymentError(f"{url}: the page has no form fields")
    answer = session.post(url, data=page.inputs, timeout=60)
    shown = read_page(answer.text).prediction
    if answer.status_code != 200 or shown is None:
        raise DeploymentError(f"{url}: sending the example answered HTTP {answer.status_code} "
                              f"without a prediction")
    try:
        value = float(shown)
    except ValueError:
        raise DeploymentError(f"{url}: the prediction shown is {shown!r}") from None
    if not math.isfinite(value):
        raise DeploymentError(f"{url}: the prediction shown is {shown!r}")
    return value


def main(argv: Optional[list] = None) -> int:
    """Run the smoke test; 0 when it passes."""
    from ml_service.util.cli import run_cli

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the web app's base URL")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the app to answer (default 600)")
    args = parser.parse_args(argv)

    def run() -> int:
        value = smoke_test(args.url, args.timeout)
        LOGGER.info("Web app smoke test passed: %s showed the prediction %s", args.url, value)
        return 0

    return run_cli(run)


if __name__ == "__main__":
    raise SystemExit(main())
