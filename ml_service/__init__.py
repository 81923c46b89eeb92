"""Platform code: backends, the pipeline definition and its executors, deployment."""
