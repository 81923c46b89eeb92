"""deploy_online_endpoint: staging then a blue/green production rollout on SDK v2 managed
online endpoints, over spec'd azure-ai-ml operations (tests/azureml_v2_fakes.py).

The deployments are azure-ai-ml's own ManagedOnlineDeployment entities, built from the
repository's files with score.py staged. The smoke test posts the real sample through the
project's smoke-test code; the stand-in for the endpoint answers as the deployment the
request reaches would: by the ``azureml-model-deployment`` header, else the deployment with
the smallest live share (the new one, while traffic moves to it). A version in ``BAD``
answers 500.
"""
import logging

import pytest
from azure.ai.ml.entities import Model

from diabetes_regression.parameters import load_parameters
from ml_service.backends import azureml_v2
from ml_service.backends.azureml import PRODUCTION_SINCE_TAG, PRODUCTION_TAG
from ml_service.backends.azureml_v2_online import AzureOnlineEndpoint, model_version
from ml_service.util import deploy_online_endpoint
from ml_service.util import smoke_test_scoring_service as smoke
from ml_service.util.env_variables import OnlineEndpointSettings, TrainingSettings
from ml_service.util.smoke_test_scoring_service import DEPLOYMENT_HEADER
from tests.azureml_v2_fakes import WORKSPACE, FakeClient, FakeOnline, FakeWorkspace

MODEL = TrainingSettings().model_name
STAGING = OnlineEndpointSettings().staging_endpoint_name
PRODUCTION = OnlineEndpointSettings().endpoint_name
BAD = {3}


class Answer:
    """What requests.post returns, as far as the smoke test reads it."""

    def __init__(self, status, body):
        self.status_code, self._body, self.text = status, body, str(body)

    def json(self):
        return self._body


@pytest.fixture
def online():
    return FakeOnline()


@pytest.fixture
def workspace(tmp_path, monkeypatch, online):
    fake = FakeWorkspace(tmp_path / "workspace")
    client = FakeClient(fake, online)
    monkeypatch.setattr(azureml_v2, "make_client", lambda settings: client)
    monkeypatch.setenv("MLOPS_BACKEND", "azureml-v2")
    for name, value in (("SUBSCRIPTION_ID", WORKSPACE.subscription_id),
                        ("RESOURCE_GROUP", WORKSPACE.resource_group),
                        ("WORKSPACE_NAME", WORKSPACE.workspace_name)):
        monkeypatch.setenv(name, value)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    fake.model_dir = model_dir
    return fake


@pytest.fixture
def posts(monkeypatch, online):
    """Requests the smoke test sent: (url, headers)."""
    sent = []
    rows = len(load_parameters().scoring.sample["data"])

    def post(url, json, headers, timeout):
        sent.append((url, dict(headers)))
        endpoint = online.endpoints[url.split("//")[1].split(".")[0]]
        target = headers.get(DEPLOYMENT_HEADER) or min(
            (p, n) for n, p in endpoint.traffic.items() if p)[1]
        deployment = online.deployments[(endpoint.name, target)]
        if model_version(deployment.model) in BAD:
            return Answer(500, "KeyError: 'result'")
        return Answer(200, {"result": [1.5] * rows})

    monkeypatch.setattr("ml_service.util.smoke_test_scoring_service.requests.post", post)
    return sent


def promote(workspace, version):
    """Register versions up to ``version`` and make it production (as the register step)."""
    while len(workspace.models.get(MODEL, {})) < version:
        workspace.create_model(Model(name=MODEL, path=str(workspace.model_dir),
                                     type="mlflow_model", tags={}))
    for stored in workspace.models[MODEL].values():
        stored.tags = {k: v for k, v in stored.tags.items()
                       if k not in (PRODUCTION_TAG, PRODUCTION_SINCE_TAG)}
    workspace.models[MODEL][str(version)].tags.update(
        {PRODUCTION_TAG: "true", PRODUCTION_SINCE_TAG: "2026-12-03T00:00:00.000000Z"})


def test_staging_gets_the_production_model_with_the_staged_score_py(workspace, online, posts,
                                                                    capsys):
    promote(workspace, 1)
    assert deploy_online_endpoint.main(["--stage", "staging"]) == 0
    assert capsys.readouterr().out.strip() == online.endpoints[STAGING].scoring_uri
    assert online.endpoints[STAGING].auth_mode == "key"
    assert online.endpoints[STAGING].traffic == {"blue": 100}
    deployment = online.deployments[(STAGING, "blue")]
    assert type(deployment).__name__ == "ManagedOnlineDeployment"
    assert model_version(deployment.model) == 1 and MODEL in deployment.model
    assert deployment.code_configuration.scoring_script.endswith("score.py")
    assert all(headers["Authorization"] == f"Bearer {FakeOnline.KEY}" for _, headers in posts)


def test_the_endpoints_run_as_the_identity_the_infrastructure_made(
        workspace, online, posts, monkeypatch, caplog):
    identity = ("/subscriptions/0/resourceGroups/rg/providers/"
                "Microsoft.ManagedIdentity/userAssignedIdentities/id-mlops-endpoints")
    monkeypatch.setenv("ONLINE_ENDPOINT_IDENTITY", identity)
    promote(workspace, 1)
    assert deploy_online_endpoint.main(["--stage", "staging"]) == 0
    rest = online.endpoints[STAGING]._to_rest_online_endpoint(location="westeurope").as_dict()
    assert rest["identity"]["type"] == "UserAssigned"
    assert list(rest["identity"]["userAssignedIdentities"]) == [identity]
    # Azure Resource Manager may answer an id in other letter cases: the same identity.
    monkeypatch.setenv("ONLINE_ENDPOINT_IDENTITY", identity.replace("resourceGroups",
                                                                    "resourcegroups"))
    assert deploy_online_endpoint.main(["--stage", "staging"]) == 0
    assert "runs as" not in caplog.text
    monkeypatch.delenv("ONLINE_ENDPOINT_IDENTITY")
    assert deploy_online_endpoint.main(["--stage", "staging"]) == 0
    assert (f"Online endpoint {STAGING} runs as {identity}, not as its own system-assigned "
            "identity (ONLINE_ENDPOINT_IDENTITY)") in caplog.text
    assert f"az ml online-endpoint delete --name {STAGING}" in caplog.text
    assert list(online.endpoints[STAGING].identity.user_assigned_identities)[0].resource_id \
        == identity


def test_the_backend_gives_the_endpoint_the_most_traffic_goes_to_with_its_key(
        workspace, online, posts):
    from ml_service.backends import get_backend

    backend = get_backend()
    assert backend.get_deployment(PRODUCTION) is None
    promote(workspace, 1)
    assert deploy_online_endpoint.main(["--stage", "production"]) == 0
    found = backend.get_deployment(PRODUCTION)
    assert (found.scoring_uri, found.model_name, found.model_version, found.key) == (
        online.endpoints[PRODUCTION].scoring_uri, MODEL, 1, FakeOnline.KEY)


def test_production_rolls_a_new_version_out_blue_green(workspace, online, posts):
    promote(workspace, 1)
    assert deploy_online_endpoint.main(["--stage", "production"]) == 0
    promote(workspace, 2)
    online.history.clear()
    assert deploy_online_endpoint.main(["--stage", "production"]) == 0
    assert online.history == [
        ("create", "green", 2),
        ("traffic", PRODUCTION, {"blue": 100}, {"green": 20}),
        ("traffic", PRODUCTION, {"green": 10, "blue": 90}, {}),
        ("traffic", PRODUCTION, {"green": 100, "blue": 0}, {}),
        ("delete", "blue")]
    assert [headers.get(DEPLOYMENT_HEADER) for _, headers in posts[-3:]] == [
        "green", None, None]


def test_a_version_that_answers_wrongly_is_rolled_back_and_the_step_named(
        workspace, online, posts, caplog):
    promote(workspace, 2)
    assert deploy_online_endpoint.main(["--stage", "production"]) == 0
    promote(workspace, 3)
    with caplog.at_level(logging.INFO):
        assert deploy_online_endpoint.main(["--stage", "production"]) == 1
    assert "failed at 'smoke test green'" in caplog.text
    assert "traffic is back on blue" in caplog.text
    assert online.endpoints[PRODUCTION].traffic == {"blue": 100}
    assert set(online.deployments) == {(PRODUCTION, "blue")}
    assert FakeOnline.KEY not in caplog.text


def test_a_deployment_that_does_not_start_is_rolled_back(workspace, online, posts, caplog):
    promote(workspace, 1)
    assert deploy_online_endpoint.main(["--stage", "production"]) == 0
    promote(workspace, 2)
    online.failing.add(2)
    assert deploy_online_endpoint.main(["--stage", "production"]) == 1
    assert "failed at 'create green with version 2'" in caplog.text
    assert "container of version 2 crashed" in caplog.text
    assert online.endpoints[PRODUCTION].traffic == {"blue": 100}


def test_without_a_production_model_it_says_what_to_do(workspace, posts, caplog):
    assert deploy_online_endpoint.main(["--stage", "staging"]) == 1
    assert "has no production version" in caplog.text


def test_deleting_a_deployment_already_gone_is_not_an_error(workspace, online):
    client = azureml_v2.make_client(WORKSPACE)
    endpoint = AzureOnlineEndpoint(client, PRODUCTION, build_deployment=None, sample={})
    endpoint.ensure_exists()
    endpoint.delete_deployment("green")
    assert online.endpoints[PRODUCTION].auth_mode == "key"


def test_the_sdk_v1_backend_is_told_where_online_endpoints_are(monkeypatch, caplog):
    monkeypatch.setenv("MLOPS_BACKEND", "azureml")
    assert deploy_online_endpoint.main(["--stage", "staging"]) == 1
    assert "set MLOPS_BACKEND=azureml-v2" in caplog.text


@pytest.mark.parametrize("model, version", [
    ("azureml:diabetes.pkl:3", 3),
    ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/"
     "workspaces/ws/models/m.pkl/versions/12", 12)])
def test_the_version_a_deployment_serves_is_read_from_its_model(model, version):
    assert model_version(model) == version


@pytest.mark.parametrize("failing, step", [
    (1, "smoke test green"), (2, "10 % to green"), (3, "100 % to green")])
def test_a_smoke_test_failing_at_any_step_rolls_back_through_the_sdk(
        workspace, online, posts, caplog, monkeypatch, failing, step):
    """The smoke test numbered ``failing`` of the second rollout gets a wrong answer."""
    promote(workspace, 1)
    assert deploy_online_endpoint.main(["--stage", "production"]) == 0
    promote(workspace, 2)
    sent_before = len(posts)
    real_post = smoke.requests.post  # the stand-in the posts fixture installed

    def post(url, json, headers, timeout):
        if len(posts) - sent_before + 1 == failing:
            posts.append((url, dict(headers)))
            return Answer(200, {"result": []})
        return real_post(url, json=json, headers=headers, timeout=timeout)
    monkeypatch.setattr("ml_service.util.smoke_test_scoring_service.requests.post", post)
    assert deploy_online_endpoint.main(["--stage", "production"]) == 1
    assert f"failed at '{step}'" in caplog.text
    assert online.endpoints[PRODUCTION].traffic == {"blue": 100}
    assert set(online.deployments) == {(PRODUCTION, "blue")}


def test_the_next_cd_run_carries_an_interrupted_rollout_on(workspace, online, posts):
    """A CD run stopped after 10 % left green (version 2) beside blue (version 1)."""
    promote(workspace, 1)
    assert deploy_online_endpoint.main(["--stage", "production"]) == 0
    promote(workspace, 2)
    blue = online.deployments[(PRODUCTION, "blue")]
    online.deployments[(PRODUCTION, "green")] = type(blue)(
        name="green", endpoint_name=PRODUCTION, model=f"{MODEL}:2")
    endpoint = online.endpoints[PRODUCTION]
    endpoint.traffic, endpoint.mirror_traffic = {"blue": 90, "green": 10}, {}
    online.history.clear()
    assert deploy_online_endpoint.main(["--stage", "production"]) == 0
    assert online.history == [("traffic", PRODUCTION, {"green": 100, "blue": 0}, {}),
                              ("delete", "blue")]
