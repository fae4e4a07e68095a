"""One image file -> the uint8 pixels a model takes: the split's checks, then training's decode and resize.

The split stage admits a file through imgclf.data.images.check (format, complete decode, size
guard, EXIF orientation, colour mode) and writes what it returns; training reads that file the way
keras.utils.image_dataset_from_directory does (tf.image.decode_image, bilinear tf.image.resize)
and rounds to uint8 (imgclf.data.tfdata.to_uint8). `pixels` is the two in a row, for one file's
bytes: what `predict` and the served model see is what the pipeline saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from imgclf.data import images, tfdata


class UnreadableImage(ValueError):
    """An input that is not an image the models can take; the message says why, in one line."""


@dataclass(frozen=True)
class ImageSpec:
    """The images a model takes: height x width x channels (1 grayscale, 3 RGB), and the size guard."""

    height: int
    width: int
    channels: int
    max_pixels: int  # data.max_image_pixels: larger images are refused (decompression bombs)


def pixels(data: bytes, spec: ImageSpec, name: str | None = None) -> np.ndarray:
    """(height, width, channels) uint8 pixels of one image file's bytes; UnreadableImage if it is not one.

    name: the file name, whose extension must match the content (as in the split); None for bytes
    without a name (served requests), whose format is read from the content.
    """
    checked = images.check(name, data, rgb=spec.channels == 3, non_rgb="convert", max_pixels=spec.max_pixels)
    if checked.reason:
        raise UnreadableImage(checked.reason)
    try:
        decoded = _decode_resize(tf.constant(checked.data), (spec.height, spec.width), spec.channels)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
        raise UnreadableImage(f"TensorFlow cannot decode it ({error.message.splitlines()[0][:80]})") from None
    return decoded.numpy()


@tf.function(reduce_retracing=True)
def _decode_resize(data: tf.Tensor, size: tuple[int, int], channels: int) -> tf.Tensor:
    # keras' image_dataset_from_directory: decode_image(channels, expand_animations=False), then
    # resize (bilinear, no crop or pad); then the pipeline's rounding to uint8.
    image = tf.image.decode_image(data, channels=channels, expand_animations=False)
    return tfdata.to_uint8(tf.image.resize(image, size, method="bilinear"))
