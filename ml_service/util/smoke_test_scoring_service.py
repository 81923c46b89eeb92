"""Smoke-test a scoring service: post the sample from parameters.json and check the answer.

    python -m ml_service.util.smoke_test_scoring_service --type Local \\
        --service http://127.0.0.1:5001/score
    python -m ml_service.util.smoke_test_scoring_service --type AKS --service mlops-aks

For ACI and AKS the backend gives the URL and, when auth is on, the key (sent
as a Bearer token); Local and Webapp take the URL.

Connection errors, time-outs and 502/503/504 answers are retried with back-off
until the total time runs out.
"""
import argparse
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Tuple
from urllib.parse import urlparse

import requests

from diabetes_regression.parameters import load_parameters
from diabetes_regression.training.prediction import RESULT_KEY
from ml_service.errors import ConfigurationError, MLOpsError
from ml_service.util.cli import run_cli
from ml_service.util.env_variables import load_dotenv_file

LOGGER = logging.getLogger(__name__)
SERVICE_TYPES = ("Local", "ACI", "AKS", "Webapp")
RETRY_STATUSES = {502, 503, 504}


class SmokeTestError(MLOpsError):
    """The service answered wrongly, or not at all in time."""


def scoring_url(service: str) -> str:
    """The scoring URL of a local service, given it or its base URL."""
    parsed = urlparse(service)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigurationError(f"--service {service!r} is not an http(s) URL")
    if parsed.path in ("", "/"):
        return service.rstrip("/") + "/score"
    return service


def check_answer(sample: Mapping[str, Any], status: int, body: Any) -> List[float]:
    """Return the predictions if the answer fits the sample, else raise SmokeTestError."""
    if status != 200:
        raise SmokeTestError(f"the service answered {status}: {body}")
    if not isinstance(body, dict) or not isinstance(body.get(RESULT_KEY), list):
        raise SmokeTestError(f"the answer has no {RESULT_KEY!r} list: {body!r}")
    result = body[RESULT_KEY]
    expected = len(sample["data"])
    if len(result) != expected:
        raise SmokeTestError(f"{len(result)} predictions for {expected} rows")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in result):
        raise SmokeTestError(f"the predictions are not all finite numbers: {result}")
    return result


def post_with_retries(url: str, payload: Mapping[str, Any], total_s: float,
                      headers: Optional[Mapping[str, str]] = None,
                      post: Callable[..., Any] = requests.post,
                      sleep: Callable[[float], None] = time.sleep) -> Any:
    """POST, retrying connection errors, time-outs and gateway errors with back-off."""
    deadline = time.monotonic() + total_s
    delay, attempt = 0.25, 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        try:
            response = post(url, json=payload, headers=dict(headers or {}),
                            timeout=max(1.0, min(10.0, remaining)))
            if response.status_code not in RETRY_STATUSES:
                return response
            problem = f"answer {response.status_code}"
        except (requests.ConnectionError, requests.Timeout) as err:
            problem = f"{type(err).__name__}: {err}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SmokeTestError(f"no good answer from {url} after {attempt} attempts in "
                                 f"{total_s:.0f} s; last: {problem}")
        wait = min(delay, remaining)
        LOGGER.info("Attempt %d: %s; retrying in %.2f s", attempt, problem, wait)
        sleep(wait)
        delay = min(delay * 2, 5.0)


# The header that sends a request to one deployment of an Azure ML online endpoint.
DEPLOYMENT_HEADER = "azureml-model-deployment"


def smoke_test(url: str, sample: Mapping[str, Any], total_s: float = 60.0,
               key: Optional[str] = None, deployment: Optional[str] = None,
               post: Optional[Callable[..., Any]] = None) -> List[float]:
    """Post the sample (with the service key as a Bearer token, if any, and to one
    deployment of an online endpoint when named); check the answer."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if deployment:
        headers[DEPLOYMENT_HEADER] = deployment
    response = post_with_retries(url, sample, total_s, headers=headers,
                                 post=post or requests.post)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return check_answer(sample, response.status_code, body)


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Parse MLOpsPython's smoke-test arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--type", required=True, choices=SERVICE_TYPES,
                        help="where the service runs")
    parser.add_argument("--service", required=True,
                        help="the scoring URL (Local, Webapp) or the service name (ACI, AKS)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="total seconds to keep retrying (default 60)")
    parser.add_argument("--parameters", type=Path, help="parameters.json with the sample")
    return parser.parse_args(argv)


def resolve_service(service_type: str, service: str) -> Tuple[str, Optional[str]]:
    """The scoring URL and key: given for Local and Webapp, asked of the backend for ACI/AKS."""
    if service_type in ("Local", "Webapp"):
        return scoring_url(service), None
    load_dotenv_file()
    from ml_service.backends import get_backend

    deployment = get_backend().get_deployment(service)
    if deployment is None:
        raise SmokeTestError(f"there is no {service_type} service named {service!r}")
    return deployment.scoring_uri, deployment.key


def run_smoke_test(args: argparse.Namespace) -> int:
    """Smoke-test the service named on the command line."""
    sample = load_parameters(args.parameters).scoring.sample
    url, key = resolve_service(args.type, args.service)
    predictions = smoke_test(url, sample, args.timeout, key)
    LOGGER.info("Smoke test passed: %s answered %s", url, predictions)
    return 0


def main(argv: Optional[list] = None) -> int:
    """Entry point of the smoke test."""
    args = parse_args(argv)
    return run_cli(lambda: run_smoke_test(args))


if __name__ == "__main__":
    sys.exit(main())
