"""Exporting a classifier (uint8 images in, softmax out) to files other runtimes run, byte-stable.

Every format starts from one SavedModel whose serving_default signature maps `image` (uint8, any batch)
to `probabilities`; TFLite and ONNX are converted from it with builtin operators only, so plain LiteRT
and onnxruntime run them (no Flex / SELECT_TF_OPS):

- saved_model           the SavedModel folder itself (TensorFlow Serving, tf.saved_model.load)
- tflite_float32        TFLite, float32 weights
- tflite_dynamic_int8   TFLite, int8 weights, float activations (dynamic-range quantization)
- tflite_int8           TFLite, int8 weights and activations (full-integer), ranges from calibration images;
                        uint8 pixels in, float32 probabilities out
- onnx                  ONNX via tf2onnx's from_function (its from_keras is broken on TF >= 2.16)

Each model is converted in a child process of its own (`write`). Byte-stable: the SavedModel's fingerprint.pb
gets a UUID derived from its checksums (TensorFlow draws a random one), and tf2onnx's generated names (`…__<n>`,
numbered from a counter that differs run to run) are renumbered in order of appearance. Keras' own
`model.export` is not used: its SavedModel stores every weight twice in an order that changes run to run, and
its litert path enables SELECT_TF_OPS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from imgclf.errors import require_extra
from imgclf.inference import child
from imgclf.inference.runtimes import SAVED_MODEL_OUTPUT, SAVED_MODEL_SIGNATURE

IMAGE_INPUT = "image"
# Each format's file (or folder) in an export folder, in the order the stage writes and reports them.
FILES = {
    "saved_model": "saved_model",
    "tflite_float32": "float32.tflite",
    "tflite_dynamic_int8": "dynamic_int8.tflite",
    "tflite_int8": "int8.tflite",
    "onnx": "model.onnx",
}
_GENERATED_NAME = re.compile(r"(.*?)__\d+((?::\d+)?)")


class ConversionError(Exception):
    """A model that cannot be converted to one format: the message is the one-line reason."""


def saved_model(model: Any, target: Path) -> None:
    """`model` (a keras.Model, uint8 images in) as a SavedModel folder at `target`, byte-stable."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.uint8, name=IMAGE_INPUT)
    exported = tf.Module()
    # The model's own weights only (no seed generators, no optimizer), in the model's order.
    exported.weights = [getattr(weight, "value", weight) for weight in model.weights]

    @tf.function(input_signature=[spec])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {SAVED_MODEL_OUTPUT: tf.cast(model(image, training=False), tf.float32)}

    exported.serve = serve
    tf.saved_model.save(exported, str(target), signatures={SAVED_MODEL_SIGNATURE: serve})
    _stable_fingerprint(target / "fingerprint.pb")


def _stable_fingerprint(path: Path) -> None:
    """fingerprint.pb's UUID from its content hashes, not drawn at random: the same model, the same bytes."""
    from tensorflow.core.protobuf import fingerprint_pb2

    if not path.is_file():
        return
    fingerprint = fingerprint_pb2.FingerprintDef()
    fingerprint.ParseFromString(path.read_bytes())
    fingerprint.uuid = ""
    digest = hashlib.sha256(fingerprint.SerializeToString(deterministic=True)).digest()
    fingerprint.uuid = str(int.from_bytes(digest[:16], "big"))
    path.write_bytes(fingerprint.SerializeToString(deterministic=True))


def tflite(saved: Path, kind: str, calibration: np.ndarray | None = None) -> bytes:
    """The SavedModel at `saved` as a .tflite file's bytes; kind float32 | dynamic_int8 | int8 (needs `calibration`:
    uint8 images whose activations set the int8 ranges)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if kind in ("dynamic_int8", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "int8":
        if calibration is None or not len(calibration):
            raise ConversionError("full-integer int8 needs calibration images (export.calibration_images)")
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = _representative(calibration)
        converter.inference_input_type = tf.uint8  # pixels in as they are
        converter.inference_output_type = tf.float32  # probabilities out
    try:
        return converter.convert()
    except Exception as error:  # noqa: BLE001 - the converter raises ConverterError, RuntimeError, ValueError...
        raise ConversionError(f"TFLite {kind}: {_first_line(error)}") from None


def _representative(images: np.ndarray) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    def batches() -> Iterator[dict[str, np.ndarray]]:
        for image in images:
            yield {IMAGE_INPUT: image[None]}

    return batches


def onnx(saved: Path, opset: int) -> bytes:
    """The SavedModel at `saved` as an .onnx file's bytes (input `image` uint8, output `probabilities`)."""
    require_extra("tf2onnx", "export", "ONNX export")
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    loaded = tf.saved_model.load(str(saved))
    function = loaded.signatures[SAVED_MODEL_SIGNATURE]
    (spec,) = function.structured_input_signature[1].values()
    signature = [tf.TensorSpec(spec.shape, spec.dtype, name=IMAGE_INPUT)]
    try:
        proto, _ = tf2onnx.convert.from_function(
            tf.function(lambda image: function(**{IMAGE_INPUT: image})), input_signature=signature, opset=opset)
    except Exception as error:  # noqa: BLE001 - tf2onnx raises whatever its handlers do
        raise ConversionError(f"ONNX: {_first_line(error)}") from None
    _renumber_generated_names(proto)
    return proto.SerializeToString(deterministic=True)


def _renumber_generated_names(proto: Any) -> None:
    """tf2onnx names what it adds `<what>__<n>` from a counter whose start varies run to run; of equal constants it
    merges, which survives (and so their order and names) varies too. Made canonical: the constants are put in the
    order the nodes first use them and named `const__<k>`, the other generated names keep their `<what>`; k = 1, 2, ...
    in order of appearance along the nodes (each node's inputs, name and outputs)."""
    graph = proto.graph
    constants = {initializer.name for initializer in graph.initializer}
    numbers: dict[str, str] = {}

    def renamed(name: str) -> str:
        match = _GENERATED_NAME.fullmatch(name)
        if not match:
            return name
        if name not in numbers:
            stem = "const" if name in constants else match.group(1)
            numbers[name] = f"{stem}__{len(numbers) + 1}{match.group(2)}"
        return numbers[name]

    first_use: dict[str, int] = {}
    for position, node in enumerate(graph.node):
        for name in node.input:
            first_use.setdefault(name, position)
        node.input[:] = [renamed(name) for name in node.input]
        node.name = renamed(node.name)
        node.output[:] = [renamed(name) for name in node.output]
    ordered = sorted(graph.initializer, key=lambda tensor: (first_use.get(tensor.name, len(graph.node)), renamed(tensor.name)))
    copies = [type(tensor)() for tensor in ordered]
    for copy, tensor in zip(copies, ordered, strict=True):
        copy.CopyFrom(tensor)
        copy.name = renamed(tensor.name)
    del graph.initializer[:]
    graph.initializer.extend(copies)
    for value in (*graph.value_info, *graph.output):
        value.name = renamed(value.name)


def write(model_file: Path, folder: Path, formats: tuple[str, ...], calibration: np.ndarray, opset: int) -> dict[str, str]:
    """Every format of the .keras file into `folder` (FILES names them), converted in a child process of its own;
    {format: why it failed} for those that did.

    A fresh process per model: TensorFlow numbers the functions it traces from a per-process counter, and the
    SavedModel and ONNX files hold those names, so the same model gives the same bytes whatever ran before it."""
    try:
        return child.run("imgclf.inference.export", calibration, "failed.json",
                         [str(model_file), str(folder), ",".join(formats), str(opset)], lambda answer: json.loads(answer.read_text()))
    except child.ChildFailed as error:
        return {name: f"conversion failed: {str(error)[:200]}" for name in formats}


def write_model(model: Any, folder: Path, formats: tuple[str, ...], calibration: np.ndarray, opset: int) -> dict[str, str]:
    """`write`, in this process, of a loaded keras.Model."""
    saved = folder / FILES["saved_model"]
    failed: dict[str, str] = {}
    try:
        saved_model(model, saved)
    except Exception as error:  # noqa: BLE001 - then no format can be made: each says why
        return {name: f"SavedModel: {_first_line(error)}" for name in formats}
    for name in formats:
        try:
            if name.startswith("tflite_"):
                kind = name.removeprefix("tflite_")
                (folder / FILES[name]).write_bytes(tflite(saved, kind, calibration if kind == "int8" else None))
            elif name == "onnx":
                (folder / FILES[name]).write_bytes(onnx(saved, opset))
        except ConversionError as error:
            failed[name] = str(error)
    if "saved_model" not in formats:
        shutil.rmtree(saved)
    return failed


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = next((line for line in lines if "error" in line.lower()), lines[0] if lines else type(error).__name__)
    return text[:200]


def _child(calibration: Path, answer: Path, model_file: Path, folder: Path, formats: str, opset: int) -> None:
    from imgclf.inference import model_file as model_files

    model = model_files.load(model_file, "")
    failed = write_model(model, folder, tuple(formats.split(",")), np.load(calibration), opset)
    answer.write_text(json.dumps(failed))


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
