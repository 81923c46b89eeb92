"""The example model: pure training code, step scripts and the scoring script."""
