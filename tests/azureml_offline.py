"""Azure ML SDK objects for offline tests: real where they build offline, else spec'd mocks.

A mock here is always an autospec of the real SDK class with ``spec_set=True``, so a wrong
method name, keyword or call shape fails the test. Attributes that the SDK sets in a
constructor (which an autospec of the class cannot see) are declared on a subclass used
only as the spec, with the type the real constructor gives them.
"""
from unittest.mock import create_autospec

from azureml._restclient.service_context import ServiceContext
from azureml.core import Workspace
from azureml.core.authentication import AbstractAuthentication
from azureml.pipeline.core import _aeva_provider as aeva
from azureml.pipeline.core._aeva_provider import _AevaWorkflowProvider
from azureml.pipeline.core._restclients.aeva.service_caller import AE3PServiceCaller

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


class OfflineAuthentication(AbstractAuthentication):
    """Credentials that are never used: nothing here talks to the service."""


class _ServiceCallerSpec(AE3PServiceCaller):
    """AE3PServiceCaller with the endpoint its constructor sets (read by the graph builder)."""

    _service_endpoint = "https://pipelines.invalid"


class _WorkflowProviderSpec(_AevaWorkflowProvider):
    """_AevaWorkflowProvider with the providers and service caller its constructor sets."""

    graph_provider = aeva._AevaGraphProvider
    datasource_provider = aeva._AevaDataSourceProvider
    module_provider = aeva._AevaModuleProvider
    step_run_provider = aeva._AevaStepRunProvider
    pipeline_run_provider = aeva._AevaPipelineRunProvider
    published_pipeline_provider = aeva._AevaPublishedPipelineProvider
    port_data_reference_provider = aeva._AevaPortDataReferenceProvider
    datatype_provider = aeva._AevaDataTypeProvider
    schedule_provider = aeva._AevaScheduleProvider
    pipeline_endpoint_provider = aeva._AevaPipelineEndpointProvider
    azure_ml_module_version_provider = aeva._AevaMlModuleVersionProvider
    azure_ml_module_provider = aeva._AevaMlModuleProvider
    pipeline_draft_provider = aeva._AevaPipelineDraftProvider
    _service_caller = _ServiceCallerSpec


def offline_workspace() -> Workspace:
    """A real Workspace that never reaches the service: its service context is a spec'd mock."""
    workspace = Workspace(SUBSCRIPTION, "rg", "ws", auth=OfflineAuthentication(),
                          _disable_service_check=True)
    workspace._service_context = create_autospec(ServiceContext, spec_set=True, instance=True)
    return workspace


def offline_workflow_provider() -> _AevaWorkflowProvider:
    """The pipeline service's workflow provider, as a spec'd mock (building a graph needs it)."""
    return create_autospec(_WorkflowProviderSpec, spec_set=True, instance=True)
