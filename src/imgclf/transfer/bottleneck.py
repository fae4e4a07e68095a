"""Bottleneck features: every image of a split through a backbone, streamed into data/features."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import keras
import numpy as np
import tensorflow as tf

from imgclf import atomic
from imgclf.transfer import features


@dataclass(frozen=True)
class Extraction:
    """What one split's extraction wrote and how fast it ran."""

    count: int
    feature_shape: tuple[int, ...]
    seconds: float  # wall time of the whole pass, input pipeline included
    steady_images_per_s: float  # after the first batch (tracing, warm-up) is excluded


def compiled_forward(model: keras.Model) -> tf.types.experimental.GenericFunction:
    """model(images, training=False) as one tf.function, cast to float32 (mixed precision too).

    Traced once for any batch size, so a short last batch reuses the graph instead of retracing.
    """

    @tf.function(reduce_retracing=True)
    def forward(images: tf.Tensor) -> tf.Tensor:
        return tf.cast(model(images, training=False), tf.float32)

    # float32: what imgclf.data.tfdata yields, under every precision policy.
    forward.get_concrete_function(tf.TensorSpec((None, *model.input_shape[1:]), tf.float32))
    return forward


def extract(model: keras.Model, dataset: tf.data.Dataset, count: int, target: Path) -> Extraction:
    """Features of every (images, one-hot labels) batch of `dataset` into `target` (.npz).

    `count` is the number of images (the file's header needs the shape before the first batch).
    """
    forward = compiled_forward(model)
    feature_shape = tuple(int(side) for side in model.output_shape[1:])
    started = time.perf_counter()
    steady_from, steady_images = started, 0
    with features.writer(target, count, feature_shape) as out:
        for batch_index, (images, one_hot) in enumerate(dataset):
            batch_features = forward(images).numpy()
            out.append(batch_features, np.argmax(one_hot.numpy(), axis=-1))
            if batch_index == 0:
                steady_from = time.perf_counter()
            else:
                steady_images += batch_features.shape[0]
    seconds = time.perf_counter() - started
    steady_seconds = time.perf_counter() - steady_from
    steady_rate = steady_images / steady_seconds if steady_images else count / seconds
    return Extraction(count, feature_shape, seconds, steady_rate)


def write_features(
    model: keras.Model,
    inputs: Mapping[str, tuple[tf.data.Dataset, int]],
    class_names: tuple[str, ...],
    backbone_facts: dict,
    target: Path,
) -> dict[str, Extraction]:
    """data/features: each split of `inputs` ({split: (dataset, image count)}) + classes + backbone.

    The folder appears in one rename, so a failed or killed run leaves no partial features.
    """
    runs: dict[str, Extraction] = {}
    with atomic.directory(target) as temp:
        for split, (dataset, count) in inputs.items():
            runs[split] = extract(model, dataset, count, temp / f"{split}.npz")
        first = next(iter(runs.values()))
        features.write_metadata(temp, class_names, backbone_facts | {"feature_shape": list(first.feature_shape)})
    return runs


def throughput(runs: Mapping[str, Extraction], flops_per_image: int) -> dict[str, float]:
    """images/s and achieved GFLOP/s, over the whole pass and after each split's first batch."""
    images = sum(run.count for run in runs.values())
    seconds = sum(run.seconds for run in runs.values())
    steady = images / sum(run.count / run.steady_images_per_s for run in runs.values())
    return {
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "gflops_per_s": flops_per_image * images / seconds / 1e9,
        "steady_images_per_s": steady,
        "steady_gflops_per_s": flops_per_image * steady / 1e9,
        "gflop_per_image": flops_per_image / 1e9,
    }
