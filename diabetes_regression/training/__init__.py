"""training step of the example model."""
