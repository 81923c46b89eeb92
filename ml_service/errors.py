"""Errors the platform code raises for problems a user can fix."""


class MLOpsError(Exception):
    """Base class: a problem with input, configuration or state, explained in the message."""


class ConfigurationError(MLOpsError):
    """A setting is missing or has a bad value."""


class DatasetNotFoundError(MLOpsError):
    """No dataset with that name and version is registered."""


class ModelNotFoundError(MLOpsError):
    """No model with that name, version or alias is registered."""


class ModelAlreadyRegisteredError(MLOpsError):
    """A model was already registered for this pipeline run."""


class RunNotFoundError(MLOpsError):
    """No run with that id exists."""


class StepFailedError(MLOpsError):
    """A pipeline step exited with an error."""


class DeploymentError(MLOpsError):
    """A deployment could not be started, reached or stopped."""


class PipelineNotFoundError(MLOpsError):
    """No published pipeline (or more than one) matches a name and version."""
