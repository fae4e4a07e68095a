"""A spatial transformer network (Jaderberg et al., 2015) in front of the chapter's simple CNN.

A localisation net (conv 8 7x7, pool, conv 10 5x5, pool, dense 32, dense 6) looks at the image and
predicts an affine transform, initialised to the identity (its last layer starts at zero); the
sampler (imgclf.models.layers.AffineSampler) resamples the image through it, bilinearly; the simple
CNN (`cnn.layout`, `cnn.filters`, …) classifies the result. The whole is trained end to end. Scaled to
the input: the localisation net looks at an average-pooled copy of at most ~32-63 px a side.
"""

from __future__ import annotations

import keras
from keras import layers

from imgclf.models.layers import AffineSampler
from imgclf.models.simple_cnn import simple_cnn_body
from imgclf.params import CnnParams

LOCALISATION_SIDE = 32  # the localisation net sees images pooled down to between this and twice this


def localisation(x: keras.KerasTensor) -> keras.KerasTensor:
    """(N, 6) offsets from the identity affine map, zero at initialisation."""
    factor = max(1, min(x.shape[1:3]) // LOCALISATION_SIDE)
    if factor > 1:
        x = layers.AveragePooling2D(factor, name="loc_downsample")(x)
    x = layers.Conv2D(8, 7, padding="same", activation="relu", name="loc_conv1")(x)
    x = layers.MaxPooling2D(2, name="loc_pool1")(x)
    x = layers.Conv2D(10, 5, padding="same", activation="relu", name="loc_conv2")(x)
    x = layers.MaxPooling2D(2, name="loc_pool2")(x)
    x = layers.Flatten(name="loc_flatten")(x)
    x = layers.Dense(32, activation="relu", name="loc_dense")(x)
    return layers.Dense(6, kernel_initializer="zeros", bias_initializer="zeros", name="loc_affine")(x)


def body(x: keras.KerasTensor, config: CnnParams) -> keras.KerasTensor:
    """[0, 1] pixels -> transformed pixels -> the simple CNN's features."""
    transformed = AffineSampler(name="spatial_transformer")([x, localisation(x)])
    return simple_cnn_body(transformed, config)
