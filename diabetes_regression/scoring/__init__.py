"""scoring step of the example model."""
