"""data/features, the bottleneck features: how they are written (streamed), read and held out.

Memory stays flat whatever the number of images: batches go from tf.data through one compiled
forward pass straight into the .npz's `features.npy` entry (header first, the shape is known from
the image count), so neither the images nor the features are ever all in memory.
Features are written as float32 whatever the precision they were computed in.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from imgclf import paths
from imgclf.errors import UserError

SPLITS = ("train", "test")
CLASSES_FILE = "classes.json"  # class names, label i = classes[i]
BACKBONE_FILE = "backbone.json"  # which backbone, weights, input size and precision made them
FEATURES_KEY = "features"
LABELS_KEY = "labels"
# Fixed entry timestamps: the same features give byte-identical files (a stable DVC hash).
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Extraction:
    """What one extraction wrote and how fast it ran."""

    count: int
    feature_shape: tuple[int, ...]
    seconds: float  # wall time of the whole pass, input pipeline included
    steady_images_per_s: float  # after the first batch (tracing, warm-up) is excluded


@dataclass(frozen=True)
class FeatureSet:
    """Features and integer labels of one split, as read back from its .npz."""

    features: np.ndarray
    labels: np.ndarray


def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_2_0(buffer, header)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def compiled_forward(model: keras.Model) -> tf.types.experimental.GenericFunction:
    """model(images, training=False) as one tf.function, cast to float32 (mixed precision too).

    Traced once, for any batch size: a short last batch reuses the same graph instead of
    retracing (VGG16 at 32x32: ~0.1 s per retrace; small, measured).
    """

    @tf.function(reduce_retracing=True)
    def forward(images: tf.Tensor) -> tf.Tensor:
        return tf.cast(model(images, training=False), tf.float32)

    # float32: what imgclf.data.pipeline yields, under every precision policy.
    forward.get_concrete_function(tf.TensorSpec((None, *model.input_shape[1:]), tf.float32))
    return forward


def extract_to_npz(
    model: keras.Model, dataset: tf.data.Dataset, count: int, target: Path
) -> Extraction:
    """Features of every (images, one-hot labels) batch of `dataset` into `target` (.npz).

    `count` is the number of images (the .npy header needs the shape before the first batch);
    a dataset that yields another number is an error, not a short file.
    """
    forward = compiled_forward(model)
    feature_shape = tuple(int(side) for side in model.output_shape[1:])
    labels = np.empty(count, dtype=np.int64)  # count integers: small next to the features
    written = 0
    started = time.perf_counter()
    steady_from, steady_images = started, 0
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        entry = zipfile.ZipInfo(f"{FEATURES_KEY}.npy", date_time=ZIP_DATE)
        with archive.open(entry, "w", force_zip64=True) as stream:
            stream.write(_npy_header((count, *feature_shape), "<f4"))
            for batch_index, (images, one_hot) in enumerate(dataset):
                batch_features = forward(images).numpy()
                size = batch_features.shape[0]
                if written + size > count:
                    raise ValueError(f"{target}: the dataset yields more than {count} images")
                stream.write(np.ascontiguousarray(batch_features, dtype="<f4").tobytes())
                labels[written:written + size] = np.argmax(one_hot.numpy(), axis=-1)
                written += size
                if batch_index == 0:
                    steady_from = time.perf_counter()
                else:
                    steady_images += size
        if written != count:
            raise ValueError(f"{target}: the dataset yielded {written} images, expected {count}")
        archive.writestr(zipfile.ZipInfo(f"{LABELS_KEY}.npy", date_time=ZIP_DATE), _npy_bytes(labels))
    seconds = time.perf_counter() - started
    steady_seconds = time.perf_counter() - steady_from
    steady_rate = steady_images / steady_seconds if steady_images else count / seconds
    return Extraction(count, feature_shape, seconds, steady_rate)


def load(path: Path) -> FeatureSet:
    """Read a features .npz written by extract_to_npz."""
    if not Path(path).is_file():
        raise UserError(f"{path}: not found: run the bottleneck stage first (dvc repro bottleneck)")
    with np.load(path, allow_pickle=False) as archive:
        return FeatureSet(archive[FEATURES_KEY], archive[LABELS_KEY])


def holdout(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) index arrays: `fraction` of `count` held out, both sorted."""
    order = np.random.default_rng(seed).permutation(count)
    held = int(round(count * fraction))
    if fraction > 0 and count > 1:
        held = min(max(held, 1), count - 1)
    return np.sort(order[held:]), np.sort(order[:held])


def read_classes(folder: Path = paths.FEATURES) -> tuple[str, ...]:
    """Class names of the features (label i is the i-th name)."""
    return tuple(_read_json(folder / CLASSES_FILE))


def read_backbone_facts(folder: Path = paths.FEATURES) -> dict:
    """backbone.json of the features: backbone, weights, input size, precision, feature shape."""
    return _read_json(folder / BACKBONE_FILE)


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise UserError(f"{path}: not found: run the bottleneck stage first (dvc repro bottleneck)")
    return json.loads(path.read_text(encoding="utf-8"))
