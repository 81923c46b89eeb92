"""A blue/green rollout of a model version to an online endpoint, and its rollback.

The endpoint has at most two deployments, ``blue`` and ``green``. A new model version goes to
the one that holds no live traffic; then, while the other keeps serving:

1. the new deployment receives a copy of a share of the live requests (mirrored traffic,
   answered but never returned to callers) and is smoke-tested through the endpoint with the
   deployment named in the request;
2. it takes live traffic in the configured steps (for example 10 %, then 100 %), the
   endpoint smoke-tested after each step;
3. the old deployment is deleted, only once the new one holds 100 %.

A failed smoke test, or a failed call, at any point returns all traffic to the old
deployment, deletes the new one, and raises DeploymentError naming the step. On a first
deployment there is nothing to return to: the deployment is deleted and the endpoint is left
without one, as it was.

A rollout interrupted part-way (the CD run was cancelled, the agent died) leaves the endpoint
serving: the next run finds the version it is asked to deploy already taking a share of the
traffic and carries on from that step; if that deployment holds another version, its
traffic goes back to the serving deployment, it is deleted, and the rollout starts afresh.

The logic is pure over the small ``OnlineEndpoint`` interface; the Azure ML SDK v2
implementation of it is the backend's.
"""
import logging
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Protocol, Tuple

from ml_service.errors import ConfigurationError, DeploymentError, MLOpsError

LOGGER = logging.getLogger(__name__)
SLOTS = ("blue", "green")


@dataclass(frozen=True)
class EndpointState:
    """What an endpoint has: deployments (name -> model version), live traffic and mirrored
    traffic (name -> percent)."""

    deployments: Mapping[str, int] = field(default_factory=dict)
    traffic: Mapping[str, int] = field(default_factory=dict)
    mirror: Mapping[str, int] = field(default_factory=dict)

    def serving(self) -> Optional[str]:
        """The deployment with the most live traffic (None when none has any)."""
        live = [(percent, name) for name, percent in self.traffic.items() if percent > 0]
        return max(live)[1] if live else None


class OnlineEndpoint(Protocol):
    """What a rollout needs from an online endpoint."""

    def state(self) -> EndpointState:
        """The endpoint's deployments and traffic now."""

    def create_deployment(self, name: str, version: int) -> None:
        """Create (or replace) a deployment serving a model version; return when it is up."""

    def set_traffic(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> None:
        """Set the live and the mirrored traffic; return when the endpoint has them."""

    def smoke_test(self, deployment: Optional[str] = None) -> None:
        """Score the sample through the endpoint (to one deployment when named); raise on a
        wrong answer."""

    def delete_deployment(self, name: str) -> None:
        """Delete a deployment that takes no traffic."""


@dataclass(frozen=True)
class RolloutSettings:
    """Mirrored share before live traffic, and the live traffic steps (the last is 100)."""

    mirror_percent: int = 20
    traffic_steps: Tuple[int, ...] = (10, 100)

    def __post_init__(self) -> None:
        steps = list(self.traffic_steps)
        if not steps or steps[-1] != 100 or steps != sorted(set(steps)) or steps[0] <= 0:
            raise ConfigurationError(
                f"rollout traffic_steps {steps}: give rising percentages ending at 100, "
                "for example [10, 100]")
        if not 0 <= self.mirror_percent <= 50:
            raise ConfigurationError(f"rollout mirror_percent {self.mirror_percent}: use 0 "
                                     "to 50 (Azure ML mirrors at most 50 %)")


def other_slot(name: Optional[str]) -> str:
    """The slot that is not ``name`` (blue when there is none)."""
    return SLOTS[1] if name == SLOTS[0] else SLOTS[0]


def choose_slots(state: EndpointState, version: int) -> Tuple[Optional[str], str]:
    """(the deployment that serves now, the one the version goes to)."""
    serving = state.serving()
    resumable = [name for name, deployed in state.deployments.items()
                 if deployed == version and name != serving]
    return serving, resumable[0] if resumable else other_slot(serving)


class _Steps:
    """The steps a rollout has taken, and the one it is taking (named in an error)."""

    def __init__(self) -> None:
        self.taken: List[str] = []
        self.current = "prepare"

    def start(self, name: str) -> None:
        """Begin a step (the failure message names it)."""
        self.current = name

    def done(self) -> None:
        """The current step finished."""
        self.taken.append(self.current)


def _already_serving(state: EndpointState, version: int) -> Optional[str]:
    """The deployment holding all traffic when it already serves ``version``."""
    serving = state.serving()
    if serving is not None and state.deployments.get(serving) == version \
            and state.traffic.get(serving) == 100:
        return serving
    return None


def _prepare(endpoint: OnlineEndpoint, state: EndpointState, serving: Optional[str],
             new: str, version: int, settings: RolloutSettings, steps: _Steps) -> int:
    """Empty the slot if it holds another version, create the deployment, and mirror to and
    smoke-test it before it takes live traffic; return the live share it already has."""
    if new in state.deployments and state.deployments[new] != version:
        steps.start(f"clear {new}")
        endpoint.set_traffic({serving: 100} if serving else {}, {})
        endpoint.delete_deployment(new)
        steps.done()
        state = EndpointState({n: v for n, v in state.deployments.items() if n != new})
    if new not in state.deployments:
        steps.start(f"create {new} with version {version}")
        endpoint.create_deployment(new, version)
        steps.done()
    current = state.traffic.get(new, 0)
    if serving is not None and current == 0:
        if settings.mirror_percent:
            steps.start(f"mirror {settings.mirror_percent} % to {new}")
            endpoint.set_traffic({serving: 100}, {new: settings.mirror_percent})
            steps.done()
        steps.start(f"smoke test {new}")
        endpoint.smoke_test(new)
        steps.done()
    return current


def _step_in(endpoint: OnlineEndpoint, serving: Optional[str], new: str, current: int,
             settings: RolloutSettings, steps: _Steps) -> None:
    """Move live traffic to ``new`` step by step, smoke-testing the endpoint after each."""
    for percent in settings.traffic_steps if serving is not None else (100,):
        if percent <= current:
            continue
        steps.start(f"{percent} % to {new}")
        traffic = {new: percent}
        if serving is not None:
            traffic[serving] = 100 - percent
        endpoint.set_traffic(traffic, {})
        endpoint.smoke_test()
        steps.done()


def roll_out(endpoint: OnlineEndpoint, version: int,
             settings: RolloutSettings = RolloutSettings()) -> List[str]:
    """Roll ``version`` out to the endpoint; return the steps taken (for the log)."""
    state = endpoint.state()
    steps = _Steps()
    done = _already_serving(state, version)
    if done is not None:
        for name in [n for n in state.deployments if n != done]:
            steps.start(f"delete {name}")
            endpoint.delete_deployment(name)
            steps.done()
        LOGGER.info("Version %s already serves all traffic on %s", version, done)
        return steps.taken
    serving, new = choose_slots(state, version)
    try:
        current = _prepare(endpoint, state, serving, new, version, settings, steps)
        _step_in(endpoint, serving, new, current, settings, steps)
    except MLOpsError as err:
        rollback(endpoint, serving, new)
        where = f"traffic is back on {serving}" if serving else "the endpoint has no deployment"
        raise DeploymentError(f"rollout of version {version} to {new} failed at "
                              f"'{steps.current}': {err}; {new} was deleted and {where}"
                              ) from err
    if serving is not None:
        steps.start(f"delete {serving}")
        endpoint.delete_deployment(serving)
        steps.done()
    LOGGER.info("Version %s serves all traffic on %s: %s", version, new,
                "; ".join(steps.taken))
    return steps.taken


def rollback(endpoint: OnlineEndpoint, serving: Optional[str], new: str) -> None:
    """All traffic back to ``serving`` (none on a first deployment), then delete ``new``."""
    try:
        endpoint.set_traffic({serving: 100} if serving else {}, {})
        endpoint.delete_deployment(new)
    except MLOpsError as err:
        LOGGER.error("Rollback incomplete (%s): check the endpoint's traffic", err)
        raise
