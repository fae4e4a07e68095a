"""The project's own Keras layers, registered so that a .keras file holding them loads with safe_mode=True.

Every module that loads a model (imgclf.inference.model_file) imports this one: the registry is filled before
any file is read.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

PACKAGE = "imgclf"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ZcaWhitening(keras.layers.Layer):
    """ZCA whitening: (x - mean) @ W over each image's flattened pixels, W = U diag(1 / sqrt(s + epsilon)) U^T
    from the eigen-decomposition U diag(s) U^T of the training images' covariance. `fit` sets mean and W;
    they are weights, so the saved model carries them. float32 whatever the precision policy."""

    def __init__(self, epsilon: float = 0.1, **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape: tuple) -> None:
        size = math.prod(input_shape[1:])
        self.mean = self.add_weight(shape=(size,), initializer="zeros", trainable=False, name="mean")
        self.components = self.add_weight(shape=(size, size), initializer="identity", trainable=False, name="components")

    def call(self, images: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(images)
        flat = tf.reshape(images, [shape[0], -1])
        return tf.reshape(tf.matmul(flat - self.mean, self.components), shape)

    def fit(self, mean: np.ndarray, covariance: np.ndarray) -> None:
        """Set mean and W from the training images' mean (D,) and covariance (D, D) (call after build)."""
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        eigenvalues = np.clip(eigenvalues, 0.0, None)  # rounding can leave tiny negatives
        components = (eigenvectors / np.sqrt(eigenvalues + self.epsilon)) @ eigenvectors.T
        self.set_weights([mean.astype("float32"), components.astype("float32")])

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """AlexNet's local response normalization across channels (tf.nn.local_response_normalization):
    x / (bias + alpha * sum of x^2 over the 2 * depth_radius + 1 neighbouring channels) ** beta.
    The paper's n = 5, k = 2, alpha = 1e-4, beta = 0.75 are the defaults. float32 whatever the policy."""

    def __init__(self, depth_radius: int = 2, bias: float = 2.0, alpha: float = 1e-4, beta: float = 0.75, **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.nn.local_response_normalization(inputs, self.depth_radius, self.bias, self.alpha, self.beta)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"depth_radius": self.depth_radius, "bias": self.bias, "alpha": self.alpha,
                                       "beta": self.beta}


IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # a 2x3 affine matrix, row by row


@keras.saving.register_keras_serializable(package=PACKAGE)
class AffineSampler(keras.layers.Layer):
    """A spatial transformer's grid generator and bilinear sampler (Jaderberg et al., 2015).

    Inputs: images (N, H, W, C) and (N, 6) offsets from the identity: theta = identity + offsets is the
    2x3 affine map from each output pixel's normalised coordinates ([-1, 1], x then y) to where it
    samples the input; a localisation net whose last layer starts at zero starts at the identity.
    Samples outside the image take the nearest edge pixel. Differentiable in the images and in theta.
    """

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        images, offsets = inputs
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        theta = tf.reshape(offsets + tf.constant(IDENTITY, images.dtype), [batch, 2, 3])
        rows, columns = tf.meshgrid(tf.linspace(-1.0, 1.0, height), tf.linspace(-1.0, 1.0, width), indexing="ij")
        grid = tf.stack([tf.reshape(columns, [-1]), tf.reshape(rows, [-1]), tf.ones([height * width])])
        source = tf.matmul(theta, tf.tile(grid[None], [batch, 1, 1]))  # (N, 2, H*W)
        x = (source[:, 0] + 1.0) * tf.cast(width - 1, images.dtype) / 2.0
        y = (source[:, 1] + 1.0) * tf.cast(height - 1, images.dtype) / 2.0
        x0, y0 = tf.floor(x), tf.floor(y)
        flat = tf.reshape(images, [batch, height * width, shape[3]])

        def pixel(column: tf.Tensor, row: tf.Tensor) -> tf.Tensor:
            column = tf.clip_by_value(tf.cast(column, tf.int32), 0, width - 1)
            row = tf.clip_by_value(tf.cast(row, tf.int32), 0, height - 1)
            return tf.gather(flat, row * width + column, batch_dims=1)

        weights = [((x0 + 1.0 - x) * (y0 + 1.0 - y)), ((x0 + 1.0 - x) * (y - y0)),
                   ((x - x0) * (y0 + 1.0 - y)), ((x - x0) * (y - y0))]
        corners = [pixel(x0, y0), pixel(x0, y0 + 1.0), pixel(x0 + 1.0, y0), pixel(x0 + 1.0, y0 + 1.0)]
        sampled = tf.add_n([weight[..., None] * corner for weight, corner in zip(weights, corners, strict=True)])
        return tf.reshape(sampled, shape)

    def compute_output_shape(self, input_shape: list) -> tuple:
        return input_shape[0]
