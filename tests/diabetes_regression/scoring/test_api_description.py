"""The running scoring service against its own API description (/swagger.json, OpenAPI 3),
checked by an outside fuzzer: schemathesis generates requests from the description, valid
and invalid, and checks every answer against it (status codes, content types, bodies,
required keys, and that what the description says is refused is refused).

Model-agnostic: the description is the one score.py builds from the served model."""
import itertools

import pytest
import requests
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.integration


def operations(base: str):
    """Every operation the service's OpenAPI 3 description names."""
    import schemathesis  # 0.2 s to import: only where it runs
    from schemathesis.config import SchemathesisConfig

    # What score.py refuses with: 400, 405, 415, and 413 for more rows than
    # scoring.max_rows (the fuzzer counts 413 as no refusal unless told; nor 5xx, here).
    rejections = ["400", "405", "413", "415"]
    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": rejections}}})
    described = schemathesis.openapi.from_url(f"{base}/swagger.json?version=3", config=config)
    return [result.ok() for result in described.get_all_operations()]


def test_the_service_does_what_its_description_says(served_model):
    from schemathesis import GenerationMode
    from schemathesis.checks import positive_data_acceptance

    base = served_model.deployment.scoring_uri.rsplit("/", 1)[0]
    found = operations(base)
    assert sorted(f"{o.method.upper()} {o.path}" for o in found) == [
        "GET /", "POST /score"]
    # Negative requests (what the description forbids) for the one operation that takes a
    # body; the liveness route takes nothing to get wrong.
    cases = [(operation, mode) for operation, mode in itertools.product(found, GenerationMode)
             if operation.body or mode == GenerationMode.POSITIVE]
    for operation, mode in cases:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def answers_as_described(case):
            answer = case.call_and_validate(base_url=base,
                                            excluded_checks=[positive_data_acceptance])
            # A request the description allows is refused for one reason only: the model's
            # answer to such values overflows (1e308 times a weight), which no schema of the
            # request can state; the refusal names the rows.
            if case.operation.body and mode == GenerationMode.POSITIVE \
                    and answer.status_code != 200:
                assert answer.status_code == 400, answer.text
                assert "the model's output is not finite" in answer.json()["message"]

        answers_as_described()


def test_the_local_service_declares_no_key_and_requires_data(served_model):
    base = served_model.deployment.scoring_uri.rsplit("/", 1)[0]
    for version in ("2", "3", "3.1"):
        text = requests.get(f"{base}/swagger.json", params={"version": version},
                            timeout=10).text
        assert "Authorization" not in text and "security" not in text, version
    described = requests.get(f"{base}/swagger.json", params={"version": "3"}, timeout=10).json()
    assert described["components"]["schemas"]["ServiceInput"]["required"] == ["data"]
    assert requests.post(served_model.deployment.scoring_uri, json={},
                         timeout=10).status_code == 400
