"""The file MLflow logs as the served model's code ("models from code": nothing pickled)."""

import mlflow

from imgclf.serving import ServedClassifier

mlflow.models.set_model(ServedClassifier())
