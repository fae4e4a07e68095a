"""tf.data input: the split (checked layout, seeded hold-out, cached batches), or arrays.

A split in class folders is read by keras.utils.image_dataset_from_directory; a sharded one
(data.storage shards) by imgclf.data.listing, which gives the same images in the same order."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from imgclf import paths
from imgclf.data import holdout, listing
from imgclf.errors import UserError
from imgclf.params import Params

# The extensions keras.utils.image_dataset_from_directory reads.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
# Bounded so a large photo set does not hold two copies in memory; the files are already in a
# seeded random order before the cache, so a window this size still mixes the classes well.
MAX_SHUFFLE_BUFFER = 8192


@dataclass(frozen=True)
class SplitData:
    """The datasets a training stage reads, batched, plus what it needs to know about them."""

    train: tf.data.Dataset  # reshuffled every epoch (seeded), finite: one pass = one epoch
    validation: tf.data.Dataset | None  # seeded hold-out of train; None when the fraction is 0
    test: tf.data.Dataset  # in file order, never shuffled
    class_names: tuple[str, ...]  # sorted folder names; label i is class_names[i]
    class_counts: tuple[int, ...]  # images per class in data/split/train (before the hold-out)
    train_size: int  # images in `train` (after the hold-out)
    steps_per_epoch: int  # batches in one pass over `train`
    input_shape: tuple[int, int, int]  # (height, width, channels)
    # Several label columns (data.label_columns): {column: its class names}, the first being the folders';
    # the labels are then {column: one-hot}. One label column: {} and the labels are one-hot.
    label_heads: dict[str, tuple[str, ...]] = field(default_factory=dict)


def check_layout(root: Path = paths.SPLIT) -> dict[str, dict[str, int]]:
    """Image counts per split and class; a UserError naming the problem if the layout is wrong."""
    if not root.is_dir():
        raise UserError(f"{root}: not found: run the split stage first (dvc repro split)")
    counts: dict[str, dict[str, int]] = {}
    if listing.sharded(root):
        counts = {split: dict(sorted(classes.items())) for split, classes in listing.counts(root).items()}
    for split in paths.SPLITS:
        if split in counts:
            continue
        folder = root / split
        if not folder.is_dir():
            raise UserError(f"{folder}: not found: re-run the split stage (dvc repro -f split)")
        counts[split] = {
            child.name: _count_images(child) for child in sorted(folder.iterdir()) if child.is_dir()
        }
    train_classes, test_classes = set(counts["train"]), set(counts["test"])
    if len(train_classes) < 2:
        found = ", ".join(sorted(train_classes)) or "none"
        raise UserError(
            f"{root / 'train'}: found {len(train_classes)} class folder(s) ({found}): a classifier "
            f"needs at least two, one folder of images per class"
        )
    if train_classes != test_classes:
        raise UserError(
            f"{root}: train and test class folders differ (only in train: "
            f"{sorted(train_classes - test_classes)}, only in test: {sorted(test_classes - train_classes)}): "
            f"re-run the split stage (dvc repro -f split)"
        )
    for split, classes in counts.items():
        for name, count in classes.items():
            if count == 0:
                raise UserError(
                    f"{root / split / name}: class folder has no images ({', '.join(IMAGE_EXTENSIONS)}): "
                    f"add images or remove the folder from both train and test"
                )
    return counts


def _count_images(folder: Path) -> int:
    count = 0
    for child in folder.iterdir():
        if child.is_dir():
            raise UserError(
                f"{child}: sub-folder inside a class folder: Keras would silently read its images as "
                f"class {folder.name!r}; move them up one level or remove the folder"
            )
        count += child.suffix.lower() in IMAGE_EXTENSIONS
    return count


def image_shape(params: Params) -> tuple[int, int, int]:
    """(height, width, channels) of the images this input pipeline yields."""
    channels = 1 if params.image.color_mode == "grayscale" else 3
    return (*params.image.size, channels)


def load_split(params: Params, batch_size: int, *, all_label_columns: bool = False, root: Path = paths.SPLIT) -> SplitData:
    """Train (seeded shuffle, hold-out validation) and test datasets from the split folders.

    `all_label_columns`: a stage that trains one head per label column (data.label_columns, through the manifest);
    without, the labels are the class folders' (the first label column).

    Pixels are raw uint8, as a deployed model receives them: every model rescales (or applies its
    backbone's preprocessing) itself. The hold-out is imgclf.data.holdout's, applied by Keras itself.
    """
    counts = check_layout(root)
    image_size = tuple(params.image.size)
    color_mode = params.image.color_mode
    class_names = tuple(sorted(counts["train"]))
    read = dict(
        image_size=image_size, color_mode=color_mode, label_mode="categorical",
        class_names=list(class_names), batch_size=None, verbose=False,
    )
    label_heads = head_classes(root, params.data.label_columns, class_names) if all_label_columns else {}
    labelled = {split: dict(read) for split in paths.SPLITS}
    if label_heads:  # each file's label is its combination of classes, one per head: split into one-hots below
        for split in paths.SPLITS:
            labelled[split] |= {"labels": _joint_labels(root, split, label_heads), "label_mode": "int", "class_names": None}
    fraction = params.data.validation_fraction
    if not holdout.held_out(sum(counts["train"].values()), fraction):
        fraction = 0.0
    if listing.sharded(root):
        read = {split: dict(labels=labelled[split].get("labels"), root=root, split=split, class_names=class_names,
                            image_size=image_size, color_mode=color_mode) for split in paths.SPLITS}
        train = listing.images(shuffle=True, seed=params.seed, validation_split=fraction, **read["train"])
        test = listing.images(**read["test"])
    else:
        split_args = dict(validation_split=fraction, subset="both") if fraction else {}
        train = keras.utils.image_dataset_from_directory(
            root / "train", shuffle=True, seed=params.seed, **split_args, **labelled["train"]
        )
        test = keras.utils.image_dataset_from_directory(root / "test", shuffle=False, **labelled["test"])
    train, validation = train if fraction else (train, None)
    if label_heads:
        train, test = _one_hot_heads(train, label_heads), _one_hot_heads(test, label_heads)
        validation = None if validation is None else _one_hot_heads(validation, label_heads)
    print(f"images: {image_size[0]}x{image_size[1]} {color_mode} (image.size, image.color_mode), "
          f"{len(class_names)} classes", flush=True)

    train_size = int(train.cardinality())
    buffer_size = min(train_size, MAX_SHUFFLE_BUFFER)
    train = _cached(train).shuffle(buffer_size, seed=params.seed, reshuffle_each_iteration=True)
    return SplitData(
        train=_batched(train, batch_size),
        validation=None if validation is None else _batched(_cached(validation), batch_size),
        test=_batched(_cached(test), batch_size),
        class_names=class_names,
        class_counts=tuple(counts["train"][name] for name in class_names),
        train_size=train_size,
        steps_per_epoch=math.ceil(train_size / batch_size),
        input_shape=image_shape(params),
        label_heads=label_heads,
    )


def head_classes(root: Path, label_columns: Sequence[str], folder_classes: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """{column: class names} for several label columns (the first: the class folders; the others: the values
    the manifest's train rows hold, sorted); {} for one. A UserError when a head cannot be trained or tested."""
    if len(label_columns) < 2:
        return {}
    manifest = _manifest(root)
    missing = [column for column in label_columns[1:] if column not in manifest.columns]
    if missing:
        raise UserError(f"{root / 'manifest.csv'}: no {', '.join(missing)} column (data.label_columns): "
                        f"re-run download and split (dvc repro download split)")
    label_heads = {label_columns[0]: tuple(folder_classes)}
    train, test = manifest[manifest["split"] == "train"], manifest[manifest["split"] == "test"]
    for column in label_columns[1:]:
        names = tuple(sorted(set(train[column])))
        if len(names) < 2:
            raise UserError(f"data.label_columns: {column} has {len(names)} value(s) in train ({', '.join(names)}): "
                            f"a head needs at least two classes")
        unseen = sorted(set(test[column]) - set(names))
        if unseen:
            raise UserError(f"data.label_columns: {column} has values in test that train never shows "
                            f"({', '.join(unseen[:5])}): add training images for them or drop those rows")
        label_heads[column] = names
    return label_heads


def _manifest(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)


def _joint_labels(root: Path, split: str, label_heads: dict[str, tuple[str, ...]]) -> list[int]:
    """Each file's combination of head classes as one integer (mixed radix, first head most significant),
    in the order Keras lists a folder's files for `labels=` (sorted by folder, then file name)."""
    manifest = _manifest(root)
    rows = manifest[manifest["split"] == split]
    first, *others = label_heads
    indices = {column: {name: index for index, name in enumerate(names)} for column, names in label_heads.items()}
    by_path = {}
    for record in rows.to_dict("records"):
        code = indices[first][record["class"]]
        for column in others:
            code = code * len(label_heads[column]) + indices[column][record[column]]
        by_path[record["path"]] = code
    ordered = sorted(by_path, key=lambda path: tuple(path.rsplit("/", 1)))
    return [by_path[path] for path in ordered]


def _one_hot_heads(dataset: tf.data.Dataset, label_heads: dict[str, tuple[str, ...]]) -> tf.data.Dataset:
    """(image, combination) -> (image, {column: one-hot}): the combination's digits, last head first."""
    sizes = [len(names) for names in label_heads.values()]

    def split(images: tf.Tensor, code: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        code = tf.cast(code, tf.int64)
        digits = []
        for size in reversed(sizes):
            digits.append(code % size)
            code = code // size
        return images, {column: tf.one_hot(digit, size) for column, digit, size
                        in zip(label_heads, reversed(digits), sizes, strict=True)}

    return dataset.map(split, num_parallel_calls=tf.data.AUTOTUNE)


def to_uint8(images: tf.Tensor) -> tf.Tensor:
    """Keras' resized float pixels as the uint8 every model takes (resized photos lose < 0.5 levels)."""
    return tf.saturate_cast(tf.round(images), tf.uint8)


def _as_uint8(dataset: tf.data.Dataset) -> tf.data.Dataset:
    return dataset.map(lambda images, labels: (to_uint8(images), labels), num_parallel_calls=tf.data.AUTOTUNE)


def _cached(dataset: tf.data.Dataset) -> tf.data.Dataset:
    # Decoded once, kept as uint8: a quarter of float32's memory.
    return _as_uint8(dataset).cache()


def without_autotuning(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with tf.data's autotuning off: AUTOTUNE parallelism is the number of cores, fixed.

    Every stream this module makes runs this way, and so does what is built on one (the options carry
    downstream: augmentation.augment_dataset, fit.endless). On a machine with few cores the tuning
    threads take the CPU from the model, and dropping an autotuned iterator (fit() drops its validation
    iterator every epoch) waits for the tuning thread (benchmarks/README.md has the figures). Order and
    values do not depend on it.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def _batched(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    return without_autotuning(dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE))


def load_ordered(
    params: Params, split: str, batch_size: int, *, root: Path = paths.SPLIT
) -> tuple[tf.data.Dataset, tuple[str, ...], int]:
    """One split in file order, batched, not cached: (dataset, class_names, image count).

    For a single pass such as bottleneck feature extraction: no shuffle, no hold-out, and no
    cache, so memory does not grow with the number of images.
    """
    counts = check_layout(root)
    class_names = tuple(sorted(counts["train"]))
    if listing.sharded(root):
        dataset = listing.images(root, split, class_names, tuple(params.image.size), params.image.color_mode)
    else:
        dataset = keras.utils.image_dataset_from_directory(
            root / split, shuffle=False, image_size=tuple(params.image.size),
            color_mode=params.image.color_mode, label_mode="categorical",
            class_names=list(class_names), batch_size=None, verbose=False,
        )
    return _batched(_as_uint8(dataset), batch_size), class_names, sum(counts[split].values())


def arrays_dataset(
    values: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, seed: int | None = None
) -> tf.data.Dataset:
    """(values, one-hot labels) batches from arrays; reshuffled every epoch (seeded) when `seed` is given."""
    one_hot = np.eye(num_classes, dtype="float32")[labels]
    dataset = tf.data.Dataset.from_tensor_slices((values, one_hot))
    if seed is not None:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return _batched(dataset, batch_size)


def test_files(root: Path = paths.SPLIT) -> list[listing.SplitFile]:
    """The test split's images in the order every stage's test data has them (Keras' own listing)."""
    return listing.files(root, "test")
