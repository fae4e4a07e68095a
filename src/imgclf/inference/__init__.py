"""Using a trained model: the classifier over image files, predict, the served pyfunc, model files."""
