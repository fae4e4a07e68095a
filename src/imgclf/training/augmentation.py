"""Data augmentation: one fused random affine transform per image, inside the tf.data pipeline.

The chapter chains ImageDataGenerator's flip, zoom and shear, each its own resampling. Here every
geometric transform (flips, zoom, shear, rotation, translation, crop) is a 2x2 matrix plus a shift,
composed into ONE affine map per image and applied with one bilinear resampling
(`keras.ops.image.affine_transform`), on whole batches; the channel shift adds to that result.
Randomness comes from stateless RNG seeded by (seed, batch index), so two runs with the same seed are
identical. (The featurewise normalization and ZCA whitening of the same list are fitted statistics,
not random transforms: imgclf.training.standardization puts them inside the model.)
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from imgclf.params import AugmentationParams


class RandomAffine(keras.layers.Layer):
    """Random flips, zoom, shear, rotation, translation and crop, fused into one resampling per image;
    then a random channel shift.

    Args:
        horizontal_flip: mirror half of the images left-right.
        zoom: scale drawn from [1 - zoom, 1 + zoom] (> 1 zooms out), as ImageDataGenerator's zoom_range.
        shear: shear factor (tan of the shear angle) drawn from [-shear, shear]. ImageDataGenerator's
            `shear_range` is in degrees, so the chapter's `shear_range=0.3` sheared by at most 0.3
            degrees: effectively off. 0.3 here is about 17 degrees.
        rotation: fraction of a full turn, drawn from [-rotation, rotation] (as keras' RandomRotation).
        translation: fraction of height and width, drawn from [-translation, translation].
        vertical_flip: mirror half of the images upside down.
        crop: the fraction of height and width a random crop keeps (1: no crop); the crop, anywhere
            inside the image, is resized back to the full size: one more factor of the same affine map.
        channel_shift: one random value in [-channel_shift, channel_shift] x 255 added to every channel
            of an image, clipped to that image's own min and max (ImageDataGenerator's
            channel_shift_range, as a fraction of 255).
        fill_mode: how to fill pixels from outside the image ("nearest", as ImageDataGenerator).
    """

    def __init__(
        self,
        horizontal_flip: bool = False,
        zoom: float = 0.0,
        shear: float = 0.0,
        rotation: float = 0.0,
        translation: float = 0.0,
        fill_mode: str = "nearest",
        vertical_flip: bool = False,
        crop: float = 1.0,
        channel_shift: float = 0.0,
        **kwargs: Any,
    ):
        # Input-pipeline work: float32 whatever the model's mixed-precision policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.horizontal_flip = horizontal_flip
        self.zoom = zoom
        self.shear = shear
        self.rotation = rotation
        self.translation = translation
        self.fill_mode = fill_mode
        self.vertical_flip = vertical_flip
        self.crop = crop
        self.channel_shift = channel_shift

    def call(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Transform a batch (N, H, W, C); `seed` is a shape-[2] integer tensor (same seed, same output)."""
        images = tf.convert_to_tensor(images)
        transforms = self.transforms(tf.shape(images), seed)
        augmented = keras.ops.image.affine_transform(
            tf.cast(images, tf.float32), transforms, interpolation="bilinear", fill_mode=self.fill_mode
        )
        if self.channel_shift:
            augmented = self._shift_channels(augmented, images, seed)
        if images.dtype.is_integer:  # uint8 pixels, as the models take them: rounded, not truncated
            return tf.saturate_cast(tf.round(augmented), images.dtype)
        return tf.cast(augmented, images.dtype)

    def _extra_draws(self, batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """(N, 4) uniforms in [-1, 1) for the vertical flip, the crop's position and the channel shift, from
        their own stream: with these transforms off, the first six draws (and the images) stay as they were."""
        extra_seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 1)
        return tf.random.stateless_uniform([batch, 4], seed=extra_seed, minval=-1.0, maxval=1.0)

    def _shift_channels(self, augmented: tf.Tensor, original: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        original = tf.cast(original, tf.float32)
        shift = self._extra_draws(tf.shape(original)[0], seed)[:, 3] * self.channel_shift * 255.0
        low = tf.reduce_min(original, axis=[1, 2, 3], keepdims=True)
        high = tf.reduce_max(original, axis=[1, 2, 3], keepdims=True)
        return tf.clip_by_value(augmented + shift[:, None, None, None], low, high)

    def transforms(self, shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """(N, 8) projective transforms mapping output pixels to input pixels, one per image."""
        batch = shape[0]
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        draws = tf.random.stateless_uniform([batch, 6], seed=seed, minval=-1.0, maxval=1.0)
        angle = draws[:, 0] * self.rotation * 2.0 * math.pi
        shear = draws[:, 1] * self.shear
        scale = 1.0 + draws[:, 2] * self.zoom
        shift_x = draws[:, 3] * self.translation * width
        shift_y = draws[:, 4] * self.translation * height
        flip = -1.0 if self.horizontal_flip else 1.0
        mirror = tf.where(draws[:, 5] < 0.0, flip, 1.0)
        mirror_y = tf.ones_like(mirror)
        crop = tf.ones_like(scale)
        offset_x = offset_y = tf.zeros_like(shift_x)
        if self.vertical_flip or self.crop < 1.0:
            extra = self._extra_draws(batch, seed)
            if self.vertical_flip:
                mirror_y = tf.where(extra[:, 0] < 0.0, -1.0, 1.0)
            if self.crop < 1.0:
                # The crop window (crop x the image) is centred anywhere it stays inside the image.
                crop = crop * self.crop
                offset_x = extra[:, 1] * (1.0 - self.crop) * (width - 1.0) / 2.0
                offset_y = extra[:, 2] * (1.0 - self.crop) * (height - 1.0) / 2.0
        cos, sin = tf.cos(angle), tf.sin(angle)
        # Inverse map input = crop x A (output - center) + center + crop x shift + offset,
        # A = rotation @ shear @ zoom @ flips: the crop is the last map, applied to what the others sample.
        a00 = crop * cos * scale * mirror
        a01 = crop * (cos * shear - sin) * scale * mirror_y
        a10 = crop * sin * scale * mirror
        a11 = crop * (sin * shear + cos) * scale * mirror_y
        center_x, center_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        a02 = center_x + crop * shift_x + offset_x - a00 * center_x - a01 * center_y
        a12 = center_y + crop * shift_y + offset_y - a10 * center_x - a11 * center_y
        zeros = tf.zeros_like(a00)
        return tf.stack([a00, a01, a02, a10, a11, a12, zeros, zeros], axis=1)

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {
            "horizontal_flip": self.horizontal_flip, "zoom": self.zoom, "shear": self.shear,
            "rotation": self.rotation, "translation": self.translation, "fill_mode": self.fill_mode,
            "vertical_flip": self.vertical_flip, "crop": self.crop, "channel_shift": self.channel_shift,
        }


def from_params(augmentation: AugmentationParams) -> RandomAffine:
    """The augmentation layer the `augmentation` params describe (horizontal_flip resolved)."""
    return RandomAffine(
        horizontal_flip=bool(augmentation.horizontal_flip),
        zoom=augmentation.zoom,
        shear=augmentation.shear,
        rotation=augmentation.rotation,
        translation=augmentation.translation,
        vertical_flip=augmentation.vertical_flip,
        crop=augmentation.crop,
        channel_shift=augmentation.channel_shift,
    )


def augment_dataset(
    dataset: tf.data.Dataset, augmentation: AugmentationParams, seed: int
) -> tf.data.Dataset:
    """Augment a batched (images, labels) dataset; returns an ENDLESS dataset (fit needs steps_per_epoch).

    The input is repeated before batches are numbered, so batch k of epoch e gets the seed
    (seed, e * batches_per_epoch + k): fresh transforms every epoch, the same ones every run.
    """
    layer = from_params(augmentation)

    def augment(index: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        images, labels = batch
        batch_seed = tf.stack([tf.constant(seed, tf.int64), index])
        return layer(images, seed=batch_seed), labels

    return (
        dataset.repeat()
        .enumerate()
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
