"""data/features, the bottleneck features: the file format, written as a stream and read back.

Each split is one .npz holding `features.npy` (float32, whatever precision computed them) and
`labels.npy` (integer class indices), beside `classes.json` (label i = classes[i]) and
`backbone.json` (which backbone, weights, input size and precision made them). The writer puts
the .npy header first (the shape is known from the image count) and then each batch straight
into the zip entry, so the features of a large set are never all in memory.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from imgclf import atomic, paths
from imgclf.data import holdout, tfdata
from imgclf.errors import UserError

CLASSES_FILE = "classes.json"
BACKBONE_FILE = "backbone.json"
FEATURES_KEY = "features"
LABELS_KEY = "labels"
# Fixed entry timestamps: the same features give byte-identical files (a stable DVC hash).
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
MISSING_HINT = "run the bottleneck stage first (dvc repro bottleneck)"


@dataclass(frozen=True)
class FeatureSet:
    """Features and integer labels of one split, as read back from its .npz."""

    features: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class FeatureArrays:
    """The features a model trains and tests on, as (features, labels) arrays."""

    train: tuple[np.ndarray, np.ndarray]  # train minus the hold-out
    validation: tuple[np.ndarray, np.ndarray]  # the hold-out (empty when validation_fraction is 0)
    test: tuple[np.ndarray, np.ndarray]
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]  # per class, in `train`
    feature_shape: tuple[int, ...]


@dataclass(frozen=True)
class FeatureSplit:
    """What the top stage trains and tests on: batched train/validation, test and train arrays."""

    train: tf.data.Dataset  # reshuffled every epoch (seeded)
    validation: tf.data.Dataset | None  # imgclf.data.holdout's rows of train; None when none held out
    test: tuple[np.ndarray, np.ndarray]  # (features, labels)
    train_arrays: tuple[np.ndarray, np.ndarray]  # the rows `train` yields
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]  # per class, in `train`
    feature_shape: tuple[int, ...]


class SplitWriter:
    """Appends batches of (features, labels) to one split's .npz; see `writer`."""

    def __init__(self, stream: io.BufferedIOBase, target: Path, count: int):
        self._stream = stream
        self._target = target
        self.labels = np.empty(count, dtype=np.int64)  # count integers: small next to the features
        self.written = 0

    def append(self, batch_features: np.ndarray, batch_labels: np.ndarray) -> None:
        """Write one batch; more images than announced is an error, not a longer file."""
        size = batch_features.shape[0]
        if self.written + size > len(self.labels):
            raise ValueError(f"{self._target}: the dataset yields more than {len(self.labels)} images")
        self._stream.write(np.ascontiguousarray(batch_features, dtype="<f4").tobytes())
        self.labels[self.written:self.written + size] = batch_labels
        self.written += size


@contextlib.contextmanager
def writer(target: Path, count: int, feature_shape: Sequence[int]) -> Iterator[SplitWriter]:
    """Stream `count` feature rows of `feature_shape` into `target`; fewer rows is an error."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        entry = zipfile.ZipInfo(f"{FEATURES_KEY}.npy", date_time=ZIP_DATE)
        with archive.open(entry, "w", force_zip64=True) as stream:
            stream.write(_npy_header((count, *feature_shape), "<f4"))
            split_writer = SplitWriter(stream, target, count)
            yield split_writer
        if split_writer.written != count:
            raise ValueError(f"{target}: the dataset yielded {split_writer.written} images, expected {count}")
        archive.writestr(zipfile.ZipInfo(f"{LABELS_KEY}.npy", date_time=ZIP_DATE), _npy_bytes(split_writer.labels))


def write_metadata(folder: Path, class_names: Sequence[str], backbone_facts: dict) -> None:
    """classes.json and backbone.json beside the splits' files."""
    atomic.write_json(folder / CLASSES_FILE, list(class_names))
    atomic.write_json(folder / BACKBONE_FILE, backbone_facts)


def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_2_0(buffer, header)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def load(split: str, folder: Path = paths.FEATURES) -> FeatureSet:
    """One split's features and labels."""
    path = folder / f"{split}.npz"
    if not path.is_file():
        raise UserError(f"{path}: not found: {MISSING_HINT}")
    with np.load(path, allow_pickle=False) as archive:
        return FeatureSet(archive[FEATURES_KEY], archive[LABELS_KEY])


def read_classes(folder: Path = paths.FEATURES) -> tuple[str, ...]:
    """Class names of the features (label i is the i-th name)."""
    return tuple(_read_json(folder / CLASSES_FILE))


def read_backbone_facts(folder: Path = paths.FEATURES) -> dict:
    """backbone.json of the features: backbone, weights, input size, precision, feature shape."""
    return _read_json(folder / BACKBONE_FILE)


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise UserError(f"{path}: not found: {MISSING_HINT}")
    return json.loads(path.read_text(encoding="utf-8"))


def load_arrays(validation_fraction: float, seed: int, folder: Path = paths.FEATURES) -> FeatureArrays:
    """Train features minus the seeded hold-out (imgclf.data.holdout), the hold-out, and test, as arrays."""
    class_names = read_classes(folder)
    train, test = load("train", folder), load("test", folder)
    fit_rows, validation_rows = holdout.split(len(train.labels), validation_fraction, seed)
    fit_rows, validation_rows = np.sort(fit_rows), np.sort(validation_rows)
    train_arrays = (train.features[fit_rows], train.labels[fit_rows])
    return FeatureArrays(
        train=train_arrays,
        validation=(train.features[validation_rows], train.labels[validation_rows]),
        test=(test.features, test.labels),
        class_names=class_names,
        class_counts=tuple(np.bincount(train_arrays[1], minlength=len(class_names)).tolist()),
        feature_shape=tuple(train.features.shape[1:]),
    )


def load_split(batch_size: int, validation_fraction: float, seed: int, folder: Path = paths.FEATURES) -> FeatureSplit:
    """`load_arrays`, with train (reshuffled every epoch, seeded) and the hold-out as batched datasets."""
    arrays = load_arrays(validation_fraction, seed, folder)
    num_classes = len(arrays.class_names)
    validation = None
    if len(arrays.validation[1]):
        validation = tfdata.arrays_dataset(*arrays.validation, num_classes, batch_size)
    return FeatureSplit(
        train=tfdata.arrays_dataset(*arrays.train, num_classes, batch_size, seed),
        validation=validation,
        test=arrays.test,
        train_arrays=arrays.train,
        class_names=arrays.class_names,
        class_counts=arrays.class_counts,
        feature_shape=arrays.feature_shape,
    )
