"""A model file in the runtime made for it: uint8 images (N, height, width, channels) in, float32 probabilities out.

`.keras` runs in Keras (loaded with safe_mode), a SavedModel folder in TensorFlow, `.tflite` in LiteRT
(ai-edge-litert, no TensorFlow), `.onnx` in onnxruntime. The Classifier (predict, serve, the export stage's
scoring) sees only this interface, so every path hands each runtime the same decoded pixels.
TensorFlow is imported only for the two formats that need it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.errors import UserError, require_extra

SUFFIXES = (".keras", ".tflite", ".onnx")  # and a SavedModel folder (saved_model.pb inside)
SAVED_MODEL_SIGNATURE, SAVED_MODEL_OUTPUT = "serving_default", "probabilities"


class Runtime:
    """One loaded model: `input_shape` (None, height, width, channels), `input_dtype`, `outputs` (probabilities
    per image); called on a uint8 batch it gives (N, outputs) float32. `model`: the keras.Model, for Keras files."""

    kind = ""
    name: str
    input_shape: tuple
    input_dtype: str
    outputs: int
    model: Any = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class KerasRuntime(Runtime):
    """A keras.Model, through one traced function: thread-safe, no per-call Keras predict() overhead."""

    kind = "keras"

    def __init__(self, model: Any):
        import tensorflow as tf

        self.model, self.name = model, model.name
        self.input_shape, self.input_dtype = tuple(model.input_shape), str(model.input.dtype)
        self.outputs = int(model.output_shape[-1])
        self._forward = None
        if len(self.input_shape) == 4:
            signature = tf.TensorSpec((None, *self.input_shape[1:]), model.input.dtype)
            self._forward = tf.function(lambda images: tf.cast(model(images, training=False), tf.float32),
                                        input_signature=[signature])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        return self._forward(tf.convert_to_tensor(images, tf.uint8)).numpy()


class SavedModelRuntime(Runtime):
    """A SavedModel folder as the export stage writes it: signature serving_default, image -> probabilities."""

    kind = "saved_model"

    def __init__(self, folder: Path):
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(str(folder))
            self._function = loaded.signatures[SAVED_MODEL_SIGNATURE]
        except (KeyError, OSError, ValueError) as error:
            raise UserError(f"{folder}: not a SavedModel with a {SAVED_MODEL_SIGNATURE} signature "
                            f"({str(error).splitlines()[0][:160]})") from None
        self._loaded = loaded  # keeps the function's variables alive
        (self._input, spec), = self._function.structured_input_signature[1].items()
        self.name, self.input_shape, self.input_dtype = folder.name, tuple(spec.shape), spec.dtype.name
        self.outputs = int(self._function.structured_outputs[SAVED_MODEL_OUTPUT].shape[-1])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        found = self._function(**{self._input: tf.convert_to_tensor(images, tf.uint8)})
        return found[SAVED_MODEL_OUTPUT].numpy().astype(np.float32, copy=False)


class LiteRtRuntime(Runtime):
    """A .tflite file in LiteRT's interpreter (builtin ops only). One invocation at a time: the interpreter
    is not thread-safe, and it is resized when the batch size changes."""

    kind = "litert"

    def __init__(self, path: Path):
        require_extra("ai_edge_litert", "export", f"{path.name} (LiteRT)")
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
        except (ValueError, RuntimeError) as error:
            raise UserError(f"{path}: LiteRT cannot load it ({str(error).splitlines()[0][:160]})") from None
        (self._input,), (self._output,) = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        self.name = path.name
        self.input_shape = (None, *(int(side) for side in self._input["shape_signature"][1:]))
        self.input_dtype = np.dtype(self._input["dtype"]).name
        self.outputs = int(self._output["shape_signature"][-1])
        self._lock, self._batch = threading.Lock(), None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        with self._lock:
            if images.shape[0] != self._batch:
                self._interpreter.resize_tensor_input(self._input["index"], images.shape, strict=False)
                self._interpreter.allocate_tensors()
                self._batch = images.shape[0]
            self._interpreter.set_tensor(self._input["index"], images)
            self._interpreter.invoke()
            found = self._interpreter.get_tensor(self._output["index"]).copy()
        scale, zero_point = self._output["quantization"]
        if np.issubdtype(found.dtype, np.integer) and scale:  # a quantized output: back to probabilities
            return ((found.astype(np.float32) - zero_point) * scale).astype(np.float32)
        return found.astype(np.float32, copy=False)


class OnnxRuntime(Runtime):
    """An .onnx file in onnxruntime's CPU provider (sessions are thread-safe)."""

    kind = "onnxruntime"

    def __init__(self, path: Path):
        require_extra("onnxruntime", "export", f"{path.name} (onnxruntime)")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        try:
            self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own untyped Fail/InvalidGraph errors
            raise UserError(f"{path}: onnxruntime cannot load it ({str(error).splitlines()[0][:160]})") from None
        (given,), (output,) = self._session.get_inputs(), self._session.get_outputs()
        self._input, self.name = given.name, path.name
        self.input_shape = (None, *(int(side) for side in given.shape[1:]))
        self.input_dtype = "uint8" if given.type == "tensor(uint8)" else given.type
        self.outputs = int(output.shape[-1])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        found = self._session.run(None, {self._input: np.ascontiguousarray(images, dtype=np.uint8)})[0]
        return np.asarray(found, dtype=np.float32)


def is_model_file(path: Path) -> bool:
    """Whether `path` names a model file this module runs (by its suffix, or a SavedModel folder)."""
    return Path(path).suffix.lower() in SUFFIXES or (Path(path) / "saved_model.pb").is_file()


def open_file(path: Path, missing_hint: str) -> Runtime:
    """The runtime for a model file: .keras, .tflite, .onnx, or a SavedModel folder."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: not found" + (f": {missing_hint}" if missing_hint else ""))
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise UserError(f"{path}: a folder without saved_model.pb: give a SavedModel folder or a "
                            f"{', '.join(SUFFIXES)} file")
        return SavedModelRuntime(path)
    suffix = path.suffix.lower()
    if suffix == ".keras":
        from imgclf.inference import model_file

        return KerasRuntime(model_file.load(path, missing_hint))
    if suffix == ".tflite":
        return LiteRtRuntime(path)
    if suffix == ".onnx":
        return OnnxRuntime(path)
    raise UserError(f"{path}: not a model file this project runs: give a {', '.join(SUFFIXES)} file or a SavedModel folder")
