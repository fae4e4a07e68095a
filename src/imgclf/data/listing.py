"""The split's images, listed and read the same way whichever way they are stored (data.storage).

folders: data/split/<split>/<class>/<file>, listed by Keras itself. shards: no image files; manifest.csv
names each image's shard (raw:<id> or split:<id>, imgclf.data.shards.reference), offset and size.
Either way an image is a `SplitFile` (its split/class/file path, class, and bytes), and the order is
keras.utils.image_dataset_from_directory's: classes sorted, then file names sorted. The manifest is
written in that order, so a sharded split is read row by row, never sorted or loaded whole.

`images` builds a sharded split's tf.data input exactly as Keras builds a folder's (the seeded
`RandomState` shuffle of the listing, the hold-out at its end, `shuffle(1024, seed)` before decoding,
decode_image + bilinear resize): the same pixels in the same order, so the same model.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from imgclf import paths
from imgclf.data import shards
from imgclf.errors import UserError

if TYPE_CHECKING:  # TensorFlow is imported only where a dataset is built: the download and inspect stay light
    import tensorflow as tf

KERAS_SHUFFLE_BUFFER = 1024  # image_dataset_from_directory's buffer when it does not batch (batch_size=None)
READ_BATCH = 32  # images read per call into Python: the call's cost shared, the order kept
SMALL_PIXELS = 64 * 64  # images up to this size are decoded READ_BATCH at a time (faster than one by one)


@dataclass(frozen=True)
class SplitFile:
    """One image of the split: reads like a pathlib.Path (name, parent.name = its class, read_bytes())."""

    path: str  # <split>/<class>/<file>, as in the manifest
    root: Path
    shard: str | None = None  # None: a file under root
    offset: int = 0
    size: int = 0

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def parent(self) -> PurePosixPath:
        return PurePosixPath(self.path).parent

    @property
    def label(self) -> str:
        return self.parent.name

    def read_bytes(self) -> bytes:
        if self.shard is None:
            return (self.root / self.path).read_bytes()
        return _reader(self.root.absolute()).read_unchecked(self.shard, self.offset, self.size)

    def __str__(self) -> str:
        return str(self.root / self.path)


@functools.lru_cache(maxsize=4)
def _reader(root: Path) -> shards.Reader:
    """One reader per split folder (by its absolute path) for SplitFile.read_bytes: its shards opened once,
    not once per image; the last few folders' readers kept (a dropped one's files close with it)."""
    return shards.Reader(root)


def sharded(root: Path = paths.SPLIT) -> bool:
    """Whether the split at `root` keeps its images in shards (its manifest says where each one lies)."""
    manifest = root / paths.MANIFEST.name
    if not manifest.is_file():
        return False
    with open(manifest, newline="", encoding="utf-8") as stream:
        return "shard" in next(csv.reader(stream), [])


def rows(root: Path, split: str | None = None):
    """The manifest's rows (dicts) of `split` (None: all), streamed; a UserError if a row points outside."""
    manifest = root / paths.MANIFEST.name
    with open(manifest, newline="", encoding="utf-8") as stream:
        for line, row in enumerate(csv.DictReader(stream), start=2):
            if split is not None and row["split"] != split:
                continue
            if "shard" in row:  # raw:<id> / split:<id> -> the shard's path relative to the split
                path = shards.referenced_path(row["shard"])
                if path is None:
                    raise UserError(f"{manifest}: line {line} points at {row['shard']!r}, not a shard of the split or "
                                    f"the snapshot: re-run the split stage (dvc repro -f split)")
                row["shard"] = path
            yield row


def counts(root: Path) -> dict[str, dict[str, int]]:
    """Images per split and class of a sharded split."""
    found: dict[str, dict[str, int]] = {split: {} for split in paths.SPLITS}
    for row in rows(root):
        classes = found.setdefault(row["split"], {})
        classes[row["class"]] = classes.get(row["class"], 0) + 1
    return found


def files(root: Path, split: str) -> list[SplitFile]:
    """The images of one split in Keras' order, whichever the storage."""
    if sharded(root):
        found = [SplitFile(row["path"], root, row["shard"], int(row["offset"]), int(row["size"])) for row in rows(root, split)]
        _require(root, {file.shard for file in found})
        return found
    import keras

    listed = keras.utils.image_dataset_from_directory(root / split, labels="inferred", shuffle=False, batch_size=None,
                                                      image_size=(8, 8), verbose=False)
    return [SplitFile(Path(path).relative_to(root).as_posix(), root) for path in listed.file_paths]


@dataclass(frozen=True)
class _Located:
    """A sharded split's images as arrays (flat in memory: four numbers per image, and the shards' names)."""

    shards: list[str]
    shard: np.ndarray  # int32 index into `shards`
    offset: np.ndarray  # int64
    size: np.ndarray  # int64
    label: np.ndarray  # int32 index into the class names


def _locate(root: Path, split: str, class_names: Sequence[str]) -> _Located:
    index = {name: number for number, name in enumerate(class_names)}
    names: dict[str, int] = {}
    shard, offset, size, label = [], [], [], []
    for row in rows(root, split):
        shard.append(names.setdefault(row["shard"], len(names)))
        offset.append(int(row["offset"]))
        size.append(int(row["size"]))
        label.append(index[row["class"]])
    _require(root, names)
    return _Located(list(names), np.array(shard, np.int32), np.array(offset, np.int64), np.array(size, np.int64),
                    np.array(label, np.int32))


def _require(root: Path, names: Iterable[str]) -> None:
    """A UserError naming the first shard the manifest points at that is not there (fetched with data/split alone)."""
    missing = sorted(name for name in set(names) if not (root / name).is_file())
    if missing:
        raise UserError(f"{root / missing[0]}: missing ({len(missing)} shard(s) the split's manifest points at): a sharded "
                        f"split reads data/raw/pack too: dvc pull download split (or dvc repro download split)")


def images(root: Path, split: str, class_names: Sequence[str], image_size: tuple[int, int], color_mode: str, *,
           labels: Sequence[int] | None = None, shuffle: bool = False, seed: int | None = None,
           validation_split: float = 0.0) -> tf.data.Dataset | tuple[tf.data.Dataset, tf.data.Dataset]:
    """A sharded split as image_dataset_from_directory(batch_size=None) gives the same split in folders.

    labels: one integer per image (in listing order), yielded as is (Keras' label_mode int); None: the class's
    one-hot (label_mode categorical). With validation_split: (train, validation), as Keras' subset="both"."""
    import tensorflow as tf
    located = _locate(root, split, class_names)
    codes = np.asarray(labels, np.int32) if labels is not None else located.label
    order = np.arange(len(codes))
    if shuffle:
        np.random.RandomState(seed).shuffle(order)
    held = int(validation_split * len(order)) if validation_split else 0
    parts = [(order[:-held], shuffle), (order[-held:], False)] if held else [(order, shuffle)]
    reader = shards.Reader(root)
    channels = {"grayscale": 1, "rgb": 3, "rgba": 4}[color_mode]

    def read(shard: np.ndarray, offset: np.ndarray, size: np.ndarray) -> np.ndarray:
        return np.array([reader.read_unchecked(located.shards[s], int(o), int(n))
                         for s, o, n in zip(shard, offset, size, strict=True)], dtype=object)

    def read_many(shard: tf.Tensor, offset: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
        data = tf.numpy_function(read, [shard, offset, size], tf.string, stateful=False)
        data.set_shape([None])
        return data

    def load(data: tf.Tensor) -> tf.Tensor:
        image = tf.image.decode_image(data, channels=channels, expand_animations=False)
        image = tf.image.resize(image, image_size, method="bilinear")
        image.set_shape((*image_size, channels))
        return image

    built = []
    for chosen, shuffled in parts:
        where = tf.data.Dataset.from_tensor_slices((located.shard[chosen], located.offset[chosen], located.size[chosen]))
        label_ds = tf.data.Dataset.from_tensor_slices(codes[chosen])
        if labels is None:
            label_ds = label_ds.map(lambda code: tf.one_hot(code, len(class_names)), num_parallel_calls=tf.data.AUTOTUNE)
        dataset = tf.data.Dataset.zip((where, label_ds))
        if shuffled:
            dataset = dataset.shuffle(KERAS_SHUFFLE_BUFFER, seed=seed)
        # Read READ_BATCH images per call into Python (its cost shared), calls in parallel, order kept. Small images
        # are decoded in the same call too: per image, tf.data's own cost would outweigh decoding them.
        if image_size[0] * image_size[1] <= SMALL_PIXELS:
            dataset = dataset.batch(READ_BATCH).map(
                lambda where, label: (tf.map_fn(load, read_many(*where), fn_output_signature=tf.float32), label),
                num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        else:
            dataset = dataset.batch(READ_BATCH).map(lambda where, label: (read_many(*where), label),
                                                    num_parallel_calls=tf.data.AUTOTUNE).unbatch()
            dataset = dataset.map(lambda data, label: (load(data), label), num_parallel_calls=tf.data.AUTOTUNE)
        built.append(dataset.apply(tf.data.experimental.assert_cardinality(len(chosen))))  # as Keras' (unbatch loses it)
    return (built[0], built[1]) if held else built[0]
