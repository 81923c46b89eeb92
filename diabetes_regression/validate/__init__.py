"""validate step of the example model: checks the training data before it is used."""
