"""An online endpoint on the laptop, for the rollout: the same blue/green steps, run locally.

Each deployment of endpoint ``E`` is a local scoring service named ``E-blue`` or ``E-green``
(the local backend's deployments: score.py under azureml-inference-server-http). The
endpoint's traffic and mirrored traffic are a small JSON file in the store
(``online_endpoints/E.json``), replaced in one step under a lock; there is no router in front
of the services, so the smoke test of the endpoint tests every deployment that holds live
traffic, and a deployment's own smoke test posts to its service. This lets
``deploy_online_endpoint`` and the CD pipeline's SDK v2 stages run (and be dry-run) with no
Azure account.
"""
import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from ml_service.backends.base import ServiceSpec
from ml_service.backends.local import LocalBackend, check_name, file_lock
from ml_service.errors import DeploymentError
from ml_service.util.online_rollout import SLOTS, EndpointState
from ml_service.util.smoke_test_scoring_service import smoke_test


class LocalOnlineEndpoint:
    """One online endpoint of the local backend."""

    def __init__(self, backend: LocalBackend, name: str, model_name: str, spec: ServiceSpec,
                 sample: Mapping[str, Any], timeout_s: float = 60.0) -> None:
        self.backend = backend
        self.name = check_name("endpoint", name)
        self.model_name = model_name
        self.spec = spec
        self._sample = sample
        self._timeout_s = timeout_s
        self.folder = backend.root / "online_endpoints"

    @property
    def _state_file(self) -> Path:
        return self.folder / f"{self.name}.json"

    def service(self, deployment: str) -> str:
        """The local service that is one deployment of this endpoint."""
        return f"{self.name}-{deployment}"

    def _traffic(self) -> Dict[str, Dict[str, int]]:
        try:
            return json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return {"traffic": {}, "mirror": {}}

    def ensure_exists(self) -> None:
        """The endpoint is its state file: created with no traffic when missing."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with file_lock(self.folder / f".{self.name}.lock"):
            if not self._state_file.exists():
                self._write({"traffic": {}, "mirror": {}})

    def _write(self, state: Mapping[str, Any]) -> None:
        tmp = self._state_file.with_name(f"{self._state_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self._state_file)

    def state(self) -> EndpointState:
        deployments = {}
        for slot in SLOTS:
            found = self.backend.get_deployment(self.service(slot))
            if found is not None:
                deployments[slot] = found.model_version
        recorded = self._traffic()
        return EndpointState(deployments, recorded["traffic"], recorded["mirror"])

    def create_deployment(self, name: str, version: int) -> None:
        self.backend.deploy_model(self.backend.get_model(self.model_name, version),
                                  self.service(name), self.spec)

    def set_traffic(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> None:
        with file_lock(self.folder / f".{self.name}.lock"):
            self._write({"traffic": dict(traffic), "mirror": dict(mirror)})

    def smoke_test(self, deployment: Optional[str] = None) -> None:
        if deployment is None:
            live = [n for n, p in self._traffic()["traffic"].items() if p > 0]
        else:
            live = [deployment]
        for name in live:
            found = self.backend.get_deployment(self.service(name))
            if found is None:
                raise DeploymentError(f"deployment {name} of {self.name} is not running")
            smoke_test(found.scoring_uri, self._sample, self._timeout_s)

    def delete_deployment(self, name: str) -> None:
        self.backend.delete_deployment(self.service(name))

    def scoring_uri(self) -> Optional[str]:
        """The scoring URI of the deployment with the most live traffic."""
        serving = self.state().serving()
        found = self.backend.get_deployment(self.service(serving)) if serving else None
        return found.scoring_uri if found else None
