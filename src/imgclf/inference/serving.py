"""The served model: MLflow pyfunc whose input is image files (base64 in a string column `image`).

`mlflow models serve` answers POST /invocations with
`{"dataframe_split": {"columns": ["image"], "data": [["<base64 of a JPEG/PNG/... file>"], ...]}}`
by one row per image: `label`, `probability`, and one probability column per class (per head, with
several label columns: `<column>`, `<column>_probability`, `<column>=<class>`). Decoding is
imgclf.inference.classifier's (the split's checks, training's resize). A bad row is a 400 whose message is
one line naming the row and the reason; the server keeps serving.

The model is logged "from code" (served_model.py beside this module), so nothing is pickled; its
artifacts are the stage's model.keras, loaded with safe_mode, and classifier.json.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema
from PIL import Image

from imgclf.errors import UserError
from imgclf.inference.classifier import Classifier

IMAGE_COLUMN = "image"
MODEL_ARTIFACT = "model"  # artifact keys in the logged model
INFO_ARTIFACT = "info"


class RequestError(MlflowException):
    """A bad request: HTTP 400 whose message is our one line.

    MLflow's scoring server prefixes the whole request (repr of the DataFrame) to the message of
    an MlflowException raised in predict; this one keeps its own message.
    """

    def __init__(self, reason: str):
        self._reason = reason
        super().__init__(reason, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:  # type: ignore[override]
        return self._reason

    @message.setter
    def message(self, value: str) -> None:
        pass  # the scoring server's rewrite (see the class docstring)


class ServedClassifier(mlflow.pyfunc.PythonModel):
    """Image files in (base64 strings), label + probabilities out."""

    def load_context(self, context: Any) -> None:
        self.classifier = Classifier.load(
            context.artifacts[MODEL_ARTIFACT], context.artifacts[INFO_ARTIFACT], "the logged model is incomplete"
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame) or list(model_input.columns) != [IMAGE_COLUMN]:
            found = list(model_input.columns) if isinstance(model_input, pd.DataFrame) else type(model_input).__name__
            raise RequestError(f"imgclf: input has columns {found}: send one string column {IMAGE_COLUMN!r} "
                               f"holding base64-encoded image files")
        if model_input.empty:
            raise RequestError(f"imgclf: no rows: send at least one image in column {IMAGE_COLUMN!r}")
        files = [_file_bytes(index, value) for index, value in enumerate(model_input[IMAGE_COLUMN])]
        outcomes = self.classifier.classify_bytes(files)
        failed = [outcome for outcome in outcomes if outcome.probabilities is None]
        if failed:
            raise RequestError("imgclf: " + "; ".join(f"row {outcome.source}: {outcome.error}" for outcome in failed[:5])
                               + (f"; and {len(failed) - 5} more rows" if len(failed) > 5 else ""))
        return rows(self.classifier, np.stack([outcome.probabilities for outcome in outcomes]))


def _file_bytes(index: int, value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise RequestError(f"imgclf: row {index}: not a base64 string: send the image file's bytes, base64-encoded")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"imgclf: row {index}: not valid base64: send the image file's bytes, base64-encoded") from None


def rows(classifier: Classifier, probabilities: np.ndarray) -> pd.DataFrame:
    """The served output: label, probability (of that label), then one column per class; with several heads
    (label columns), per head: `<column>`, `<column>_probability`, and `<column>=<class>` per class."""
    frame = pd.DataFrame(index=range(len(probabilities)))
    for column, names, part in classifier.groups():
        scores = probabilities[:, part]
        best = scores.argmax(axis=1)
        label, probability = (column, f"{column}_probability") if column else ("label", "probability")
        frame[label] = [names[index] for index in best]
        frame[probability] = scores[np.arange(len(best)), best].astype("float64")
        for index, name in enumerate(names):
            frame[f"{column}={name}" if column else name] = scores[:, index].astype("float64")
    return frame


def signature(class_names: Sequence[str], label_heads: Mapping[str, Sequence[str]] | None = None) -> ModelSignature:
    """Input: one string column of base64 image files; output: label, probability, one column per class
    (per head with several label columns, as `rows` names them)."""
    outputs = []
    for column, names in (label_heads or {None: class_names}).items():
        label, probability = (column, f"{column}_probability") if column else ("label", "probability")
        outputs += [ColSpec("string", label), ColSpec("double", probability)]
        outputs += [ColSpec("double", f"{column}={name}" if column else name) for name in names]
    return ModelSignature(inputs=Schema([ColSpec("string", IMAGE_COLUMN)]), outputs=Schema(outputs))


def input_example(image: np.ndarray) -> pd.DataFrame:
    """One request row: a test image (uint8 H x W x C) as a base64 PNG file."""
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return pd.DataFrame({IMAGE_COLUMN: [base64.b64encode(buffer.getvalue()).decode("ascii")]})


SERVED_CODE = Path(__file__).with_name("served_model.py")


def save_local(model_path: Path, info_path: Path, target: Path, requirements: list[str]) -> None:
    """The served model of a model file (an export: .tflite, .onnx, a SavedModel folder; or a .keras file) and its
    classifier.json as an MLflow model folder at `target`, for `mlflow models serve -m <target>` (code, no pickle)."""
    mlflow.pyfunc.save_model(
        path=str(target), python_model=str(SERVED_CODE),
        artifacts={MODEL_ARTIFACT: str(model_path), INFO_ARTIFACT: str(info_path)},
        signature=signature(*_names(info_path)), pip_requirements=requirements,
    )


def _names(info_path: Path) -> tuple[list[str], dict[str, list[str]] | None]:
    described = json.loads(Path(info_path).read_text())
    heads = {head["column"]: head["class_names"] for head in described.get("heads", [])}
    return described["class_names"], heads or None


def unwrap(model: Any, uri: str) -> Classifier:
    """The Classifier inside a loaded pyfunc model, or a UserError if the model is not an imgclf classifier."""
    try:
        python_model = model.unwrap_python_model()
    except MlflowException:
        python_model = None
    if not isinstance(python_model, ServedClassifier):
        raise UserError(f"{uri}: not an imgclf image classifier (a stage's `classifier` model, or the registry's)")
    return python_model.classifier
