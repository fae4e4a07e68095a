"""A stage's models in its MLflow run: the Keras model (keras flavor) and the served classifier (pyfunc).

`model`: model.keras through mlflow.keras, signature uint8 (-1, H, W, C) -> (-1, classes).
`classifier`: the served model (imgclf.inference.serving), logged from code with model.keras and
classifier.json as artifacts; the registry registers this one. `svm` (the svm stage): the scikit-learn
model on features, through the sklearn flavor with skops serialization. Its model id is a run tag
(`imgclf.classifier_model_id`), so the report stage finds it without searching.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any, Mapping

import mlflow
import numpy as np
from mlflow.models import infer_signature

from imgclf.inference import serving
from imgclf.tracking import store
from imgclf.tracking.runs import StageRun
from imgclf.tracking.tags import TAG_CLASSIFIER_MODEL

KERAS_MODEL = "model"
CLASSIFIER_MODEL = "classifier"
SKLEARN_MODEL = "svm"  # the svm stage's model on features (the sklearn flavor), beside its image classifier
SERVED_CODE = serving.SERVED_CODE


def log_keras_model(tracked: StageRun, model: Any, input_example: np.ndarray, metadata: Mapping[str, Any]) -> None:
    """The model through MLflow's keras flavor, with a signature inferred from an example.

    The example itself is not logged with it: MLflow would validate it by loading the model back and
    predicting (seconds for a backbone model, on top of the flavor's own save). The served classifier,
    logged next from the same file, keeps its input example and that check.
    """
    signature = infer_signature(input_example, model.predict(input_example, verbose=0))
    with store.store_lock(tracked.uri):
        mlflow.keras.log_model(
            model, name=KERAS_MODEL, signature=signature,
            pip_requirements=_requirements("mlflow", "keras", "tensorflow", "numpy"), metadata=dict(metadata),
        )


def log_classifier(
    tracked: StageRun, model_path: Path, info_path: Path, class_names: list[str], example_image: np.ndarray,
    metadata: Mapping[str, Any], label_heads: Mapping[str, Any] | None = None,
) -> str:
    """The served classifier (pyfunc from code, artifacts model.keras + classifier.json); returns its model id."""
    with store.store_lock(tracked.uri):
        logged = mlflow.pyfunc.log_model(
            name=CLASSIFIER_MODEL,
            python_model=str(SERVED_CODE),
            artifacts={serving.MODEL_ARTIFACT: str(model_path), serving.INFO_ARTIFACT: str(info_path)},
            signature=serving.signature(class_names, label_heads),
            input_example=serving.input_example(example_image),
            pip_requirements=_requirements("mlflow", "keras", "tensorflow", "numpy", "pandas", "pillow", "imgclf"),
            metadata=dict(metadata),
        )
    tracked.set_tags({TAG_CLASSIFIER_MODEL: logged.model_id})
    return logged.model_id


def _requirements(*names: str) -> list[str]:
    """Pinned to what is installed. Listed, because MLflow's inference of them loads the model once
    more in a subprocess, for every logged model."""
    return [f"{name}=={version(name)}" for name in names]


def log_sklearn_model(
    tracked: StageRun, model: Any, input_example: np.ndarray, metadata: Mapping[str, Any], trusted_types: list[str],
) -> None:
    """A scikit-learn model on features through MLflow's sklearn flavor, serialized with skops (no pickle);
    `trusted_types`: what loading it may build beyond the types skops trusts by default."""
    import mlflow.sklearn

    flat = input_example.reshape(len(input_example), -1)
    with store.store_lock(tracked.uri):
        mlflow.sklearn.log_model(
            model, name=SKLEARN_MODEL, serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=list(trusted_types), signature=infer_signature(flat, model.predict_proba(flat)),
            input_example=flat, pip_requirements=_requirements("mlflow", "scikit-learn", "skops"), metadata=dict(metadata),
        )
