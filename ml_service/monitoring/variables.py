"""The environment variables that choose and configure the scoring service's collector.

Standard library only: the local backend sets them when it deploys, and it is imported where
the collector's own dependencies (orjson) are not installed (the batch scoring environment).
"""
COLLECTOR_VARIABLE = "MLOPS_COLLECTOR"
FOLDER_VARIABLE = "MLOPS_COLLECT_DIR"
SERVICE_VARIABLE = "MLOPS_SERVICE_NAME"
MODEL_NAME_VARIABLE = "MLOPS_MODEL_NAME"
MODEL_VERSION_VARIABLE = "MLOPS_MODEL_VERSION"
# For docs/configuration.md: (name, kind, default, effect). The deployers set the other four
# (ml_service.util.config_reference lists them as set for you).
DESCRIBED_VARIABLES = (
    (COLLECTOR_VARIABLE, "local, log, mdc or off", "log",
     "What the scoring service collects per answered request: the local store (local "
     "deployments set it), the server's log (for Application Insights), Azure ML's data "
     "collector (SDK v2 online deployments), or nothing"),
)
