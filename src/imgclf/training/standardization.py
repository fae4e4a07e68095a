"""Featurewise standardization fitted on the train split, as layers inside the model.

The chapter's ImageDataGenerator list has two transforms that are not random: featurewise
normalization (each channel's mean and standard deviation over the training images) and ZCA
whitening. Both are fitted once on the training images and then belong to the model: the saved file
carries them, so `predict` and serving standardize new images exactly as training did. They act on
pixels rescaled to [0, 1], in that order: normalization, then whitening (fitted on normalized pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from imgclf.models.layers import ZcaWhitening
from imgclf.params import AugmentationParams


@dataclass(frozen=True)
class Statistics:
    """What `fit` measured on the training images (pixels in [0, 1]), in float64."""

    channel_mean: np.ndarray | None  # (C,), when normalization is on
    channel_variance: np.ndarray | None  # (C,)
    pixel_mean: np.ndarray | None  # (H * W * C,) of the normalized pixels, when whitening is on
    pixel_covariance: np.ndarray | None  # (H * W * C, H * W * C)
    whitening_epsilon: float


def fit(train: tf.data.Dataset, augmentation: AugmentationParams) -> Statistics:
    """One pass over `train` (batched uint8 images, labels) for what the params ask for (nothing: no pass)."""
    wanted = augmentation.normalization or augmentation.whitening
    channel_sum = channel_squares = total = outer = None
    count = pixels = 0
    for images, _ in (train.as_numpy_iterator() if wanted else ()):
        batch = images.astype(np.float64) / 255.0
        flat_channels = batch.reshape(-1, batch.shape[-1])
        channel_sum = _add(channel_sum, flat_channels.sum(axis=0))
        channel_squares = _add(channel_squares, np.square(flat_channels).sum(axis=0))
        pixels += len(flat_channels)
        if augmentation.whitening:
            flat = batch.reshape(len(batch), -1)
            total, outer = _add(total, flat.sum(axis=0)), _add(outer, flat.T @ flat)
        count += len(batch)
    mean = variance = pixel_mean = covariance = None
    if augmentation.normalization:
        mean = channel_sum / pixels
        variance = channel_squares / pixels - np.square(mean)
    if augmentation.whitening:
        raw_mean = total / count
        raw_covariance = outer / count - np.outer(raw_mean, raw_mean)
        # Whitening sees normalized pixels z = (x - m) / s per channel: mean and covariance follow from x's.
        scale = np.ones_like(raw_mean) if mean is None else np.tile(1.0 / _std(variance), len(raw_mean) // len(variance))
        shift = np.zeros_like(raw_mean) if mean is None else np.tile(mean, len(raw_mean) // len(mean))
        pixel_mean = (raw_mean - shift) * scale
        covariance = raw_covariance * np.outer(scale, scale)
    return Statistics(mean, variance, pixel_mean, covariance, augmentation.whitening_epsilon)


def layers(statistics: Statistics, input_shape: tuple[int, int, int]) -> list[keras.layers.Layer]:
    """The fitted layers, in order (call inside the distribution scope: they hold variables)."""
    made: list[keras.layers.Layer] = []
    if statistics.channel_mean is not None:
        made.append(keras.layers.Normalization(
            axis=-1, mean=statistics.channel_mean.astype("float32"),
            variance=statistics.channel_variance.astype("float32"), dtype="float32", name="featurewise_normalization",
        ))
    if statistics.pixel_mean is not None:
        whitening = ZcaWhitening(statistics.whitening_epsilon, name="zca_whitening")
        whitening.build((None, *input_shape))
        whitening.fit(statistics.pixel_mean, statistics.pixel_covariance)
        made.append(whitening)
    return made


def _add(total: np.ndarray | None, value: np.ndarray) -> np.ndarray:
    return value if total is None else total + value


def _std(variance: np.ndarray) -> np.ndarray:
    """The standard deviation the Normalization layer divides by (Keras: at least its epsilon)."""
    return np.maximum(np.sqrt(variance), keras.config.epsilon())
