"""Blue/green rollout: traffic steps, rollback at every failing step, delete only after 100 %,
and an interrupted rollout resumed by the next run (ml_service/util/online_rollout.py)."""
from dataclasses import replace

import pytest

from ml_service.errors import ConfigurationError, DeploymentError
from ml_service.util.online_rollout import EndpointState, RolloutSettings, roll_out


class SmokeTestFailed(DeploymentError):
    """The sample's answer was wrong."""


class Endpoint:
    """An online endpoint in memory: what each call does to it, and a smoke test that fails
    on the call numbered ``fail_smoke`` (1 = the first smoke test)."""

    def __init__(self, state=EndpointState(), fail_smoke=None):
        self.current = state
        self.calls = []
        self.smokes = 0
        self.fail_smoke = fail_smoke

    def state(self):
        return self.current

    def create_deployment(self, name, version):
        self.calls.append(f"create {name} {version}")
        self.current = replace(self.current,
                               deployments={**self.current.deployments, name: version})

    def set_traffic(self, traffic, mirror):
        assert sum(traffic.values()) in (0, 100), traffic
        assert not set(mirror) & {n for n, p in traffic.items() if p}, (traffic, mirror)
        assert set(traffic) | set(mirror) <= set(self.current.deployments)
        self.calls.append(f"traffic {dict(traffic)} mirror {dict(mirror)}")
        self.current = replace(self.current, traffic=dict(traffic), mirror=dict(mirror))

    def smoke_test(self, deployment=None):
        self.smokes += 1
        self.calls.append(f"smoke {deployment or 'endpoint'}")
        if self.smokes == self.fail_smoke:
            raise SmokeTestFailed("the sample's answer was 'null'")

    def delete_deployment(self, name):
        assert not self.current.traffic.get(name), f"{name} still takes traffic"
        self.calls.append(f"delete {name}")
        self.current = EndpointState(
            {n: v for n, v in self.current.deployments.items() if n != name},
            {n: p for n, p in self.current.traffic.items() if n != name},
            {n: p for n, p in self.current.mirror.items() if n != name})


SERVING_1 = EndpointState({"blue": 1}, {"blue": 100})


def test_a_first_deployment_takes_all_traffic_after_one_smoke_test():
    endpoint = Endpoint()
    roll_out(endpoint, 1)
    assert endpoint.calls == ["create blue 1", "traffic {'blue': 100} mirror {}",
                              "smoke endpoint"]
    assert endpoint.current == EndpointState({"blue": 1}, {"blue": 100}, {})


def test_a_new_version_is_mirrored_tested_stepped_in_then_the_old_one_deleted():
    endpoint = Endpoint(SERVING_1)
    roll_out(endpoint, 2, RolloutSettings(mirror_percent=20, traffic_steps=(10, 50, 100)))
    assert endpoint.calls == [
        "create green 2",
        "traffic {'blue': 100} mirror {'green': 20}", "smoke green",
        "traffic {'green': 10, 'blue': 90} mirror {}", "smoke endpoint",
        "traffic {'green': 50, 'blue': 50} mirror {}", "smoke endpoint",
        "traffic {'green': 100, 'blue': 0} mirror {}", "smoke endpoint",
        "delete blue"]
    assert endpoint.current == EndpointState({"green": 2}, {"green": 100}, {})


@pytest.mark.parametrize("failing, step", [
    (1, "smoke test green"), (2, "10 % to green"), (3, "100 % to green")])
def test_a_failed_smoke_test_at_any_step_returns_traffic_and_deletes_the_new_one(
        failing, step):
    endpoint = Endpoint(SERVING_1, fail_smoke=failing)
    with pytest.raises(DeploymentError, match=f"failed at '{step}'.*traffic is back on blue"):
        roll_out(endpoint, 2)
    assert endpoint.current == EndpointState({"blue": 1}, {"blue": 100}, {})
    assert endpoint.calls[-2:] == ["traffic {'blue': 100} mirror {}", "delete green"]


def test_a_failed_first_deployment_leaves_no_deployment():
    endpoint = Endpoint(fail_smoke=1)
    with pytest.raises(DeploymentError, match="the endpoint has no deployment"):
        roll_out(endpoint, 1)
    assert endpoint.current.deployments == {}


def test_a_failed_call_rolls_back_too():
    class Refusing(Endpoint):
        def create_deployment(self, name, version):
            super().create_deployment(name, version)
            raise DeploymentError("the container did not start")

    endpoint = Refusing(SERVING_1)
    with pytest.raises(DeploymentError, match="failed at 'create green with version 2'"):
        roll_out(endpoint, 2)
    assert endpoint.current.deployments == {"blue": 1}


def test_an_interrupted_rollout_is_carried_on_by_the_next_run():
    interrupted = EndpointState({"blue": 1, "green": 2}, {"blue": 90, "green": 10})
    endpoint = Endpoint(interrupted)
    roll_out(endpoint, 2)
    assert endpoint.calls == ["traffic {'green': 100, 'blue': 0} mirror {}",
                              "smoke endpoint", "delete blue"]


def test_an_interrupted_rollout_of_another_version_is_cleared_first():
    interrupted = EndpointState({"blue": 1, "green": 2}, {"blue": 90, "green": 10})
    endpoint = Endpoint(interrupted)
    roll_out(endpoint, 3)
    assert endpoint.calls[:3] == ["traffic {'blue': 100} mirror {}", "delete green",
                                  "create green 3"]
    assert endpoint.current == EndpointState({"green": 3}, {"green": 100}, {})


def test_a_rollout_stopped_before_deleting_the_old_one_finishes_it():
    endpoint = Endpoint(EndpointState({"blue": 1, "green": 2}, {"blue": 0, "green": 100}))
    roll_out(endpoint, 2)
    assert endpoint.calls == ["delete blue"]


def test_the_version_already_serving_everything_is_left_alone():
    endpoint = Endpoint(SERVING_1)
    roll_out(endpoint, 1)
    assert endpoint.calls == []


@pytest.mark.parametrize("settings", [
    dict(traffic_steps=(10, 50)), dict(traffic_steps=(50, 10, 100)), dict(traffic_steps=()),
    dict(traffic_steps=(0, 100)), dict(mirror_percent=60)])
def test_bad_rollout_settings_are_refused(settings):
    with pytest.raises(ConfigurationError, match="traffic_steps|mirror_percent"):
        RolloutSettings(**settings)
