"""register step of the example model."""
