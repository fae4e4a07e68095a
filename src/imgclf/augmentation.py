"""Data augmentation: one fused random affine transform per image, inside the tf.data pipeline.

The chapter chains ImageDataGenerator's flip, zoom and shear, each its own resampling. Here every
transform is a 2x2 matrix plus a shift, composed into ONE affine map per image and applied with
one bilinear resampling (`keras.ops.image.affine_transform`), on whole batches. Randomness comes
from stateless RNG seeded by (seed, batch index), so two runs with the same seed are identical.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from imgclf.params import AugmentationParams


class RandomAffine(keras.layers.Layer):
    """Random flip, zoom, shear, rotation and translation, fused into one resampling per image.

    Args:
        horizontal_flip: mirror half of the images left-right.
        zoom: scale drawn from [1 - zoom, 1 + zoom] (> 1 zooms out), as ImageDataGenerator's zoom_range.
        shear: shear factor (tan of the shear angle) drawn from [-shear, shear]. ImageDataGenerator's
            `shear_range` is in degrees, so the chapter's `shear_range=0.3` sheared by at most 0.3
            degrees: effectively off. 0.3 here is about 17 degrees.
        rotation: fraction of a full turn, drawn from [-rotation, rotation] (as keras' RandomRotation).
        translation: fraction of height and width, drawn from [-translation, translation].
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

    def call(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Transform a batch (N, H, W, C); `seed` is a shape-[2] integer tensor (same seed, same output)."""
        images = tf.convert_to_tensor(images)
        transforms = self.transforms(tf.shape(images), seed)
        augmented = keras.ops.image.affine_transform(
            tf.cast(images, tf.float32), transforms, interpolation="bilinear", fill_mode=self.fill_mode
        )
        if images.dtype.is_integer:  # uint8 pixels, as the models take them: rounded, not truncated
            return tf.saturate_cast(tf.round(augmented), images.dtype)
        return tf.cast(augmented, images.dtype)

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
        cos, sin = tf.cos(angle), tf.sin(angle)
        # Inverse map input = A (output - center) + center + shift, A = rotation @ shear @ zoom @ flip.
        a00 = cos * scale * mirror
        a01 = (cos * shear - sin) * scale
        a10 = sin * scale * mirror
        a11 = (sin * shear + cos) * scale
        center_x, center_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        a02 = center_x + shift_x - a00 * center_x - a01 * center_y
        a12 = center_y + shift_y - a10 * center_x - a11 * center_y
        zeros = tf.zeros_like(a00)
        return tf.stack([a00, a01, a02, a10, a11, a12, zeros, zeros], axis=1)

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {
            "horizontal_flip": self.horizontal_flip, "zoom": self.zoom, "shear": self.shear,
            "rotation": self.rotation, "translation": self.translation, "fill_mode": self.fill_mode,
        }


def from_params(augmentation: AugmentationParams) -> RandomAffine:
    """The augmentation layer the `augmentation` params describe (horizontal_flip resolved)."""
    return RandomAffine(
        horizontal_flip=bool(augmentation.horizontal_flip),
        zoom=augmentation.zoom,
        shear=augmentation.shear,
        rotation=augmentation.rotation,
        translation=augmentation.translation,
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
