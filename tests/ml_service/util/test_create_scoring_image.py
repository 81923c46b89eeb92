"""create_scoring_image, offline: a model version Azure ML does not have is one clear error."""
import logging
from unittest.mock import create_autospec

import pytest
from azureml.core import Model, Workspace  # first: the SDK's own modules import in a cycle
from azureml._model_management._util import populate_model_not_found_details
from azureml.exceptions import WebserviceException

from ml_service.errors import DeploymentError, ModelNotFoundError
from ml_service.util import create_scoring_image
from tests.azureml_offline import offline_workspace

WORKSPACE_VARIABLES = {"SUBSCRIPTION_ID": "sub", "RESOURCE_GROUP": "rg", "WORKSPACE_NAME": "ws"}
# What Model(ws, name=..., version=...) raises (azureml/core/model.py: Model.__init__, and
# ModelsClient.model_error_response_to_webservice_exception for a 404 or another answer).
MISSING = WebserviceException(populate_model_not_found_details(name="m", version=7))
BAD_ANSWER = WebserviceException("Received bad response from Model Management Service:\n"
                                 "Response Code: 500\nCorrelation: c\nContent: boom")


@pytest.fixture
def workspace() -> Workspace:
    return offline_workspace()


@pytest.fixture
def model_class(monkeypatch):
    """The SDK's Model class, autospecced and patched into the script."""
    mock = create_autospec(Model, spec_set=True)
    monkeypatch.setattr(create_scoring_image, "Model", mock)
    return mock


@pytest.mark.parametrize("raised, error, message", [
    (MISSING, ModelNotFoundError, "model 'm' has no version 7"),
    (BAD_ANSWER, DeploymentError,
     "cannot read model 'm' version 7 from Azure ML: Received bad response from Model "
     "Management Service: Response Code: 500 Correlation: c Content: boom"),
])
def test_find_model_turns_the_sdk_error_into_the_project_error(workspace, model_class, raised,
                                                               error, message):
    model_class.side_effect = raised
    with pytest.raises(error, match=f"^{message}$") as caught:
        create_scoring_image.find_model(workspace, "m", 7)
    assert caught.value.__cause__ is raised
    model_class.assert_called_once_with(workspace, name="m", version=7)


def test_a_missing_version_stops_the_script_with_one_line(workspace, model_class, monkeypatch,
                                                          tmp_path, caplog):
    monkeypatch.chdir(tmp_path)
    for name, value in WORKSPACE_VARIABLES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("ml_service.util.workspace.get_workspace", lambda settings: workspace)
    model_class.side_effect = MISSING
    caplog.set_level(logging.ERROR)
    assert create_scoring_image.main(["--model_name", "m", "--model_version", "7"]) == 1
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == ["ModelNotFoundError: model 'm' has no version 7"]
    model_class.package.assert_not_called()
