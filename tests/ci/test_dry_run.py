"""Dry run of CI and CD: the commands the Azure DevOps YAML runs, in order, on the local backend.

A mismatch between the YAML and the scripts (a renamed module, a wrong argument, a variable
that is never set) fails here instead of on Azure.
"""
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from ml_service.backends.local import LocalBackend
from ml_service.paths import PROJECT_ROOT
from ml_service.util.env_variables import OnlineEndpointSettings
from tests.ci.dry_run import Agent

pytestmark = [pytest.mark.integration, pytest.mark.system]
PIPELINES = PROJECT_ROOT / ".pipelines"
SETTINGS = OnlineEndpointSettings()
ONLINE_ENDPOINTS = (SETTINGS.staging_endpoint_name, SETTINGS.endpoint_name)


def template_variables():
    document = yaml.safe_load((PIPELINES / "diabetes_regression-variables-template.yml")
                              .read_text())
    return {entry["name"]: str(entry["value"]) for entry in document["variables"]}


@pytest.fixture
def agent(mlops_root, tmp_path):
    variables = {
        **template_variables(),
        # Predefined variables of the agent.
        "Build.ArtifactStagingDirectory": str(tmp_path / "staging"),
        "Pipeline.Workspace": str(tmp_path / "workspace"),
        "Build.BuildUri": "vstfs:///Build/Build/dry-run",
        "Agent.TempDirectory": str(tmp_path),
        # The variable group: names only matter on Azure.
        "WORKSPACE_SVC_CONNECTION": "dry-run", "AZURE_RM_SVC_CONNECTION": "dry-run",
    }
    agent = Agent(PROJECT_ROOT, variables,
                  env={"MLOPS_BACKEND": "local", "MLOPS_ROOT": str(mlops_root),
                       "LOCAL_SCORING_PORT": "0", "PYTHONUNBUFFERED": "1"})
    yield agent
    backend = LocalBackend(mlops_root)
    for name in ("ACI_DEPLOYMENT_NAME", "AKS_DEPLOYMENT_NAME"):
        backend.delete_deployment(variables[name])
    for endpoint in ONLINE_ENDPOINTS:
        for slot in ("blue", "green"):
            backend.delete_deployment(f"{endpoint}-{slot}")


@pytest.mark.heavy(rank=3)
def test_ci_then_cd_deploy_a_new_model_and_a_second_build_deploys_nothing(agent, mlops_root):
    backend = LocalBackend(mlops_root)
    agent.variables["Build.BuildId"] = "101"
    agent.run_pipeline(PIPELINES / "diabetes_regression-ci.yml")
    assert agent.ran == ["Publish the Azure ML training pipeline",
                         "Find the pipeline published by this build",
                         "Run pipeline $(AMLPIPELINEID) and wait for it",
                         "Find the model this build registered",
                         "Publish the model artifact"]
    assert agent.variables["getpipelineid.AMLPIPELINEID"]
    assert agent.variables["MODEL_REGISTERED"] == "true"
    production = backend.get_production_model("diabetes_regression_model.pkl")
    assert production.version == 1 and production.tags["BuildId"] == "101"

    agent.ran.clear()
    # The web app stage too: locally, the app calls the local stand-in of the AKS service.
    agent.variables["MODEL_APP_NAME"] = "app-dry-run"
    agent.env["LOCAL_DEPLOYMENT_NAME"] = agent.variables["AKS_DEPLOYMENT_NAME"]
    agent.run_pipeline(PIPELINES / "diabetes_regression-cd.yml")
    assert agent.ran == ["Download the model artifact of the triggering training build",
                         "Read the model artifact",
                         "Deploy model $(MODEL_VERSION) to ACI",
                         "Smoke-test the ACI service",
                         "Download the model artifact of the triggering training build",
                         "Read the model artifact",
                         "Deploy model $(MODEL_VERSION) to AKS",
                         "Smoke-test the AKS service",
                         "Download the model artifact of the triggering training build",
                         "Read the model artifact",
                         "Package the web app for model $(MODEL_VERSION) and store the key"]
    assert {"Deploy the web app package",
            "Smoke-test the web app (the page, one prediction through it)"} <= set(agent.skipped)
    package = Path(agent.variables["Build.ArtifactStagingDirectory"]) / "model_app.zip"
    with zipfile.ZipFile(package) as packaged:
        card = json.loads(packaged.read("model_card/card.json"))
    aks = backend.get_deployment(agent.variables["AKS_DEPLOYMENT_NAME"])
    assert (card["version"], card["scoring_uri"]) == (1, aks.scoring_uri)
    del agent.variables["MODEL_APP_NAME"]
    assert agent.variables["MODEL_VERSION"] == "1"
    assert "stage Deploy_Webapp" in agent.skipped
    # SDK v1 is the default: the SDK v2 online endpoint stages do not run.
    assert {"stage Deploy_Online_Staging", "stage Deploy_Online_Production"} <= set(
        agent.skipped)
    for name in ("ACI_DEPLOYMENT_NAME", "AKS_DEPLOYMENT_NAME"):
        assert backend.get_deployment(agent.variables[name]).model_version == 1

    # The same build's model on SDK v2: the online endpoint stages run instead, with the
    # rollout on local services (each endpoint's first deployment: blue).
    agent.ran.clear()
    agent.variables["MLOPS_BACKEND"] = "azureml-v2"
    agent.run_pipeline(PIPELINES / "diabetes_regression-cd.yml")
    assert [step for step in agent.ran if "endpoint" in step] == [
        "Deploy model $(MODEL_VERSION) to the staging endpoint",
        "Roll model $(MODEL_VERSION) out to the production endpoint"]
    assert "Deploy model $(MODEL_VERSION) to ACI" not in agent.ran
    for endpoint in ONLINE_ENDPOINTS:
        assert backend.get_deployment(f"{endpoint}-blue").model_version == 1
    agent.variables["MLOPS_BACKEND"] = "azureml"

    # The same code again: the new model is no better; nothing is registered or deployed.
    agent.ran.clear()
    agent.variables["Build.BuildId"] = "102"
    agent.run_pipeline(PIPELINES / "diabetes_regression-ci.yml")
    assert agent.variables["MODEL_REGISTERED"] == "false"
    assert [m.version for m in backend.list_models("diabetes_regression_model.pkl")] == [1]
    agent.ran.clear()
    agent.run_pipeline(PIPELINES / "diabetes_regression-cd.yml")
    assert "Deploy model $(MODEL_VERSION) to ACI" not in agent.ran
    assert agent.ran.count("Read the model artifact") == 2
    assert "Deploy model $(MODEL_VERSION) to ACI" in agent.skipped
