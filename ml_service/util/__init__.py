"""Settings, command-line helpers, deployment and smoke-test scripts."""
