"""The pipeline definition and the executors that run it."""
