"""evaluate step of the example model."""
