"""A trained model as an image classifier: image files or bytes in, class probabilities out.

A model folder (models/<stage>/) holds model.keras (uint8 images in, softmax out) and
classifier.json beside it (class names, image spec, size guard). `predict`, the served model and
the inference figures all go through `Classifier`; decoding is imgclf.data.decode's.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import keras
import numpy as np

from imgclf import atomic
from imgclf.data.decode import ImageSpec, UnreadableImage, pixels
from imgclf.data.listing import SplitFile
from imgclf.errors import UserError
from imgclf.inference import measure as measure_module
from imgclf.inference import runtimes

# Names the served model's output uses for its own columns: no class may be called so.
RESERVED_COLUMNS = ("label", "probability")


LabelHeads = Mapping[str, Sequence[str]]  # several label columns: {column: its class names}, in output order


def info(class_names: Sequence[str], spec: ImageSpec, label_heads: LabelHeads | None = None) -> dict:
    """What classifier.json (and the MLflow model's metadata) says about a model; `heads`: several label
    columns, whose probabilities stand side by side in the model's output, in this order."""
    described = {
        "class_names": list(class_names),
        "image_size": [spec.height, spec.width],
        "color_mode": "grayscale" if spec.channels == 1 else "rgb",
        "max_image_pixels": spec.max_pixels,
    }
    if label_heads:  # a list: JSON objects have no order, and the output's columns do
        described["heads"] = [{"column": column, "class_names": list(names)} for column, names in label_heads.items()]
    return described


def write_info(target: Path, class_names: Sequence[str], spec: ImageSpec, label_heads: LabelHeads | None = None) -> None:
    """classifier.json, byte-stable (DVC caches it beside model.keras)."""
    atomic.write_json(target, info(class_names, spec, label_heads))


def spec_of(model: keras.Model | runtimes.Runtime, max_pixels: int) -> ImageSpec:
    """The image spec a model's input says: (height, width, channels) uint8."""
    height, width, channels = model.input_shape[1:]
    return ImageSpec(int(height), int(width), int(channels), int(max_pixels))


@dataclass(frozen=True)
class Outcome:
    """One input's result: class probabilities, or why it could not be classified."""

    source: str  # the file's path, or the row number of a request
    probabilities: np.ndarray | None
    error: str = ""


class Classifier:
    """A model (model.keras, or an exported file in its runtime) and its class names: batches of uint8 images,
    files or bytes -> probabilities.

    With several heads (label columns) the probabilities are the heads' side by side: `groups` says which
    columns of them belong to which head."""

    def __init__(self, model: keras.Model | runtimes.Runtime, class_names: Sequence[str], max_pixels: int,
                 label_heads: LabelHeads | None = None):
        runtime = model if isinstance(model, runtimes.Runtime) else runtimes.KerasRuntime(model)
        if runtime.input_dtype != "uint8" or len(runtime.input_shape) != 4:
            raise UserError(f"model {runtime.name}: takes {runtime.input_dtype} {runtime.input_shape}, not uint8 images: "
                            f"re-run the stage that made it (dvc repro)")
        self.label_heads = {column: tuple(names) for column, names in (label_heads or {}).items()}
        outputs = sum(len(names) for names in self.label_heads.values()) if self.label_heads else len(class_names)
        if runtime.outputs != outputs:
            raise UserError(f"model {runtime.name}: {runtime.outputs} outputs for {outputs} class names")
        clash = sorted(set(class_names) & set(RESERVED_COLUMNS)) if not self.label_heads else []
        if clash:
            raise UserError(f"class names {clash}: reserved for the served model's own columns: rename those classes")
        self.runtime = runtime
        self.model = runtime.model  # the keras.Model (Grad-CAM needs one); None for an exported file
        self.class_names = tuple(class_names)
        self.spec = spec_of(runtime, max_pixels)

    @classmethod
    def load(cls, model_path: Path, info_path: Path, missing_hint: str) -> Classifier:
        """A model file (model.keras with safe_mode, or an export: imgclf.inference.runtimes) and its classifier.json."""
        runtime = runtimes.open_file(Path(model_path), missing_hint)
        if not Path(info_path).is_file():
            raise UserError(f"{info_path}: not found: {missing_hint or 'the class names go beside the model file'}")
        described = json.loads(Path(info_path).read_text())
        label_heads = {head["column"]: head["class_names"] for head in described.get("heads", [])}
        return cls(runtime, described["class_names"], described["max_image_pixels"], label_heads)

    def groups(self) -> list[tuple[str | None, tuple[str, ...], slice]]:
        """(head's column, or None for a one-head model; its class names; its slice of the probabilities)."""
        if not self.label_heads:
            return [(None, self.class_names, slice(0, len(self.class_names)))]
        found, start = [], 0
        for column, names in self.label_heads.items():
            found.append((column, names, slice(start, start + len(names))))
            start += len(names)
        return found

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, classes) float32 probabilities of a uint8 batch (N, height, width, channels)."""
        return self.runtime(images)

    def decode(self, data: bytes, name: str | None = None) -> np.ndarray:
        """One image file's pixels as this model takes them (UnreadableImage if it is not one)."""
        return pixels(data, self.spec, name)

    def classify_bytes(self, items: Sequence[bytes]) -> list[Outcome]:
        """Outcomes of image files' bytes (no names: the format is read from the content), in order."""
        decoded = [_attempt(lambda data=data: self.decode(data)) for data in items]
        return self._score([str(index) for index in range(len(items))], decoded)

    def classify_files(self, files: Sequence[Path], batch_size: int = 32) -> Iterator[Outcome]:
        """Outcomes of image files, in order, batch by batch: the next batch decodes (in threads)
        while the model scores this one."""
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            pending: list[tuple[Path, Future]] = []
            for start in range(0, len(files), batch_size):
                submitted = [(path, pool.submit(self.read, path)) for path in files[start:start + batch_size]]
                if pending:
                    yield from self._collect(pending)
                pending = submitted
            if pending:
                yield from self._collect(pending)

    def read(self, path: Path | SplitFile) -> np.ndarray | str:
        """One image file's pixels as this model takes them, or why it cannot be classified."""
        image = path if isinstance(path, SplitFile) else Path(path)
        try:
            data = image.read_bytes()
        except OSError as error:
            return f"cannot read it ({error.strerror or error})"
        return _attempt(lambda: self.decode(data, image.name))

    def _collect(self, pending: list[tuple[Path, Future]]) -> list[Outcome]:
        return self._score([str(path) for path, _ in pending], [future.result() for _, future in pending])

    def _score(self, sources: list[str], decoded: list[np.ndarray | str]) -> list[Outcome]:
        good = [index for index, value in enumerate(decoded) if not isinstance(value, str)]
        scores = self.probabilities(np.stack([decoded[index] for index in good])) if good else []
        by_index = dict(zip(good, scores, strict=True))
        return [
            Outcome(source, by_index[index]) if index in by_index else Outcome(source, None, decoded[index])
            for index, source in enumerate(sources)
        ]


def _attempt(decode) -> np.ndarray | str:
    try:
        return decode()
    except UnreadableImage as error:
        return str(error)


def measure(classifier: Classifier, seed: int = 0) -> dict[str, float]:
    """Inference figures on this machine (imgclf.inference.measure): batch-1 latency (ms), images/s at batch 32.
    Run-specific (they vary run to run): MLflow metrics, never DVC outputs."""
    spec = classifier.spec
    return measure_module.figures(classifier.probabilities, (spec.height, spec.width, spec.channels), seed)
