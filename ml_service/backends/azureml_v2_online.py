"""A managed online endpoint of Azure ML SDK v2 as the rollout's ``OnlineEndpoint``.

Every call goes through azure-ai-ml's ``MLClient`` (``online_endpoints``,
``online_deployments``); the smoke test posts the sample to the endpoint's scoring URI with
the key the SDK returns (never read from a file, never logged) and, for one deployment, the
``azureml-model-deployment`` header. A refused or failed service call becomes a
DeploymentError, so the rollout rolls back. None of these calls can run here: docs/azure-ml.md lists
them as untested; tests drive this class over spec'd operation groups.
"""
import logging
import re
from typing import Any, Callable, Mapping, Optional

from ml_service.errors import DeploymentError
from ml_service.util.online_configs import load_online_endpoint, online_endpoint_spec
from ml_service.util.online_rollout import EndpointState
from ml_service.util.smoke_test_scoring_service import smoke_test

LOGGER = logging.getLogger(__name__)
# The version at the end of a model reference: ".../models/<name>/versions/3" or "name:3".
MODEL_VERSION = re.compile(r"(?:/versions/|:)(\d+)$")


def model_version(model: Any) -> int:
    """The model version a deployment serves, from its model reference or entity."""
    version = getattr(model, "version", None)
    if version is None:
        match = MODEL_VERSION.search(str(model or ""))
        if match is None:
            raise DeploymentError(f"cannot tell the model version of a deployment serving "
                                  f"{model!r}")
        version = match.group(1)
    return int(version)


def live_deployment(traffic: Optional[Mapping[str, int]]) -> Optional[str]:
    """The deployment with the largest live share of an endpoint's traffic (the first by name
    on a tie), or None when no deployment has live traffic."""
    live = {name: share for name, share in (traffic or {}).items() if share}
    return max(sorted(live), key=live.get) if live else None


def identity_of(endpoint: Any) -> str:
    """The resource id of the user-assigned identity an endpoint entity runs as, or "" when
    it runs as its own system-assigned identity."""
    identity = getattr(endpoint, "identity", None)
    assigned = (identity.user_assigned_identities or []) if identity is not None else []
    return assigned[0].resource_id if assigned else ""


class AzureOnlineEndpoint:
    """One managed online endpoint, through MLClient."""

    def __init__(self, client: Any, name: str,
                 build_deployment: Callable[[str, int], Any],
                 sample: Mapping[str, Any], timeout_s: float = 120.0,
                 post: Optional[Callable[..., Any]] = None, identity: str = "") -> None:
        self.client = client
        self.name = name
        self.identity = identity
        self._build = build_deployment
        self._sample = sample
        self._timeout_s = timeout_s
        self._post = post

    def _wait(self, what: str, poller: Any) -> Any:
        """Wait for a long-running operation; a service refusal becomes DeploymentError."""
        from azure.core.exceptions import HttpResponseError

        try:
            return poller().result()
        except HttpResponseError as err:
            raise DeploymentError(f"{what} on endpoint {self.name}: {err.message}") from err

    def ensure_exists(self) -> None:
        """Create the endpoint (key authentication, running as ``identity`` when one is
        given) when the workspace lacks it; an existing endpoint is left as it is, with a
        warning when it runs as another identity than the one configured."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            existing = self.client.online_endpoints.get(self.name)
        except ResourceNotFoundError:
            LOGGER.info("Creating online endpoint %s", self.name)
            endpoint = load_online_endpoint(online_endpoint_spec(self.name, self.identity))
            self._wait("create", lambda: self.client.online_endpoints.begin_create_or_update(
                endpoint))
            return
        current = identity_of(existing)
        if current.lower() != self.identity.lower():
            LOGGER.warning(
                "Online endpoint %s runs as %s, not as %s (ONLINE_ENDPOINT_IDENTITY): an "
                "endpoint keeps the identity it was created with. Delete the endpoint (az ml "
                "online-endpoint delete --name %s) for the next deployment to create it with "
                "the configured one, or set ONLINE_ENDPOINT_IDENTITY to the one it has",
                self.name, current or "its own system-assigned identity",
                self.identity or "its own system-assigned identity", self.name)

    def state(self) -> EndpointState:
        endpoint = self.client.online_endpoints.get(self.name)
        deployments = {d.name: model_version(d.model)
                       for d in self.client.online_deployments.list(self.name)}
        return EndpointState(deployments, dict(endpoint.traffic or {}),
                             dict(endpoint.mirror_traffic or {}))

    def create_deployment(self, name: str, version: int) -> None:
        deployment = self._build(name, version)
        self._wait(f"deploy version {version} as {name}",
                   lambda: self.client.online_deployments.begin_create_or_update(deployment))

    def set_traffic(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> None:
        endpoint = self.client.online_endpoints.get(self.name)
        endpoint.traffic = dict(traffic)
        endpoint.mirror_traffic = dict(mirror)
        self._wait(f"set traffic {dict(traffic)}, mirror {dict(mirror)}",
                   lambda: self.client.online_endpoints.begin_create_or_update(endpoint))

    def smoke_test(self, deployment: Optional[str] = None) -> None:
        uri = self.client.online_endpoints.get(self.name).scoring_uri
        key = self.client.online_endpoints.get_keys(self.name).primary_key
        answer = smoke_test(uri, self._sample, self._timeout_s, key, deployment, self._post)
        LOGGER.info("Smoke test of %s passed: %s", deployment or self.name, answer)

    def delete_deployment(self, name: str) -> None:
        """Delete a deployment; one that is already gone is not an error (a rollback after
        a creation the service never recorded)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._wait(f"delete {name}", lambda: self.client.online_deployments.begin_delete(
                name=name, endpoint_name=self.name))
        except DeploymentError as err:
            if not isinstance(err.__cause__, ResourceNotFoundError):
                raise
            LOGGER.info("Deployment %s of %s was already gone", name, self.name)
