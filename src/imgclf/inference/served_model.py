"""The file MLflow logs as the served model's code ("models from code": nothing pickled)."""

import mlflow

from imgclf.inference.serving import ServedClassifier

mlflow.models.set_model(ServedClassifier())
