"""The chapter's linear SVM on bottleneck features, as a model in its own right.

A LinearSVC on standardized features, calibrated by temperature scaling (scikit-learn's
CalibratedClassifierCV, method "temperature", fitted on cross-validated decision values): class
probabilities are softmax(beta x decision values), so the whole model is one linear map and a softmax.
It is kept twice, as what it is and as what serves: `svm.skops`, the scikit-learn model on features
(skops: loading runs no pickle), and `as_keras`, the same function as a Dense layer, which the svm
stage puts on the backbone to make the image classifier every stage saves, predicts with and serves.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from typing import Any

import keras
import numpy as np
import skops.io
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from skops.io.exceptions import UntrustedTypesFoundException

from imgclf.errors import UserError
from imgclf.inference import model_file
from imgclf.params import SvmParams
from imgclf.training.fitted import Fitted

MAX_ITERATIONS = 10_000
SCHEMA = "schema.json"  # a .skops file's description of the object tree
# What a calibrated pipeline holds beyond the estimators skops trusts by default (checked by a test).
TRUSTED_TYPES = ["sklearn.calibration._CalibratedClassifier", "sklearn.calibration._TemperatureScaling"]


def fit(features: np.ndarray, labels: np.ndarray, config: SvmParams, seed: int) -> tuple[CalibratedClassifierCV, Fitted]:
    """The calibrated linear SVM (C = config.c) on flattened, standardized features, and how long it took."""
    weights = None if config.class_weight == "none" else config.class_weight
    svm = make_pipeline(StandardScaler(), LinearSVC(C=config.c, class_weight=weights, dual="auto", random_state=seed,
                                                    max_iter=MAX_ITERATIONS))
    calibrated = CalibratedClassifierCV(svm, method="temperature", cv=config.calibration_folds, ensemble=False)
    started = time.perf_counter()
    calibrated.fit(features.reshape(len(features), -1), labels)
    return calibrated, Fitted({}, time.perf_counter() - started, len(labels))


def decision_layer(model: CalibratedClassifierCV) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (features, classes), bias (classes,)) of the logits softmax takes: beta x the SVM's decision
    values, the standardization folded in; a binary SVM's one margin d becomes the two logits (-d, d)."""
    (calibrated,) = model.calibrated_classifiers_
    pipeline: Pipeline = calibrated.estimator
    scaler, svm = pipeline.named_steps["standardscaler"], pipeline.named_steps["linearsvc"]
    (temperature,) = calibrated.calibrators
    coefficients = svm.coef_ / scaler.scale_  # (classes or 1, features)
    intercepts = svm.intercept_ - coefficients @ scaler.mean_
    if len(svm.classes_) == 2:
        coefficients, intercepts = np.concatenate([-coefficients, coefficients]), np.concatenate([-intercepts, intercepts])
    beta = float(temperature.beta_)
    return (beta * coefficients.T).astype("float32"), (beta * intercepts).astype("float32")


def as_keras(model: CalibratedClassifierCV, feature_shape: tuple[int, ...]) -> keras.Model:
    """The calibrated SVM as Flatten + Dense(softmax) on features of `feature_shape`: same probabilities."""
    kernel, bias = decision_layer(model)
    dense = keras.layers.Dense(len(bias), activation="softmax", dtype="float32", name="svm_decision")
    head = keras.Sequential([keras.Input(shape=feature_shape, name="features"), keras.layers.Flatten(name="svm_flatten"),
                             dense], name="svm")
    dense.set_weights([kernel, bias])
    return head


def to_bytes(model: CalibratedClassifierCV) -> bytes:
    """The scikit-learn model as a .skops file, byte-stable for the same model: skops dates its zip entries
    and names objects and array files by Python id(); those become 1, 2, ... in order of appearance."""
    saved = skops.io.dumps(model)
    with zipfile.ZipFile(io.BytesIO(saved)) as archive:
        numbers: dict[int, int] = {}
        schema = json.dumps(_renumber(json.loads(archive.read(SCHEMA)), numbers)).encode()

    def rename(name: str) -> str:
        stem = name.removesuffix(".npy")
        return f"{numbers.setdefault(int(stem), len(numbers) + 1)}.npy" if name != stem and stem.isdigit() else name

    return model_file.stable_zip(saved, lambda name, data: schema if name == SCHEMA else data, rename)


def _renumber(node: Any, numbers: dict[int, int]) -> Any:
    if isinstance(node, list):
        return [_renumber(value, numbers) for value in node]
    if not isinstance(node, dict):
        return node
    renumbered = {}
    for key, value in node.items():
        if key == "__id__" and isinstance(value, int):
            value = numbers.setdefault(value, len(numbers) + 1)
        elif key == "file" and isinstance(value, str) and value.removesuffix(".npy").isdigit():
            value = f"{numbers.setdefault(int(value.removesuffix('.npy')), len(numbers) + 1)}.npy"
        renumbered[key] = _renumber(value, numbers)
    return renumbered


def from_bytes(data: bytes, source: str) -> CalibratedClassifierCV:
    """A .skops file as `to_bytes` writes it; one that holds any other type not trusted by skops is refused."""
    try:
        return skops.io.loads(data, trusted=TRUSTED_TYPES)
    except UntrustedTypesFoundException as error:
        raise UserError(f"{source}: holds types this project does not load ({error}): it is not an svm.skops "
                        f"written by the svm stage") from None
