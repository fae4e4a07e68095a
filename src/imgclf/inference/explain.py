"""Grad-CAM: where in an image a saved classifier looked for the class it gives.

The map is the last convolution's feature maps (for a model built on a backbone: the backbone's last
convolution), each weighted by the mean gradient of the class's log-probability over it, summed, kept
positive, scaled to [0, 1] and resized to the image (Selvaraju et al., 2017). A model without
convolutions (perceptron) has no such map.
"""

from __future__ import annotations

import keras
import matplotlib
import numpy as np
import tensorflow as tf

OVERLAY_ALPHA = 0.45  # the heatmap's share of an overlay pixel


def target_layer(model: keras.Model) -> keras.layers.Layer | None:
    """The model's last Conv2D, looking inside nested models (a backbone's last convolution)."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Conv2D):
            return layer
        if isinstance(layer, keras.Model):
            inner = target_layer(layer)
            if inner is not None:
                return inner
    return None


def gradcam(model: keras.Model, images: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
    """(N, H, W) maps in [0, 1], one per image for its class in `classes`; None when the model has no convolution.

    `images`: uint8 (N, H, W, C), what the model takes; `classes`: an output column per image.
    """
    layer = target_layer(model)
    if layer is None:
        return None
    captured: list[tf.Tensor] = []
    original = layer.call

    def watched(*args, **kwargs):  # the layer's output, recorded on the tape however deep the layer sits
        output = original(*args, **kwargs)
        tape.watch(output)
        captured.append(output)
        return output

    object.__setattr__(layer, "call", watched)
    try:
        with tf.GradientTape() as tape:
            probabilities = model(tf.convert_to_tensor(images), training=False)
            chosen = tf.gather(tf.cast(probabilities, tf.float32), tf.convert_to_tensor(classes), axis=1, batch_dims=1)
            score = tf.math.log(chosen + 1e-12)
    finally:
        object.__delattr__(layer, "call")
    maps = captured[-1]
    gradients = tf.cast(tape.gradient(score, maps), tf.float32)
    maps = tf.cast(maps, tf.float32)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[..., None]
    peak = tf.reduce_max(cams, axis=(1, 2, 3), keepdims=True)
    cams = tf.math.divide_no_nan(cams, peak)
    resized = tf.image.resize(cams, images.shape[1:3], method="bilinear")
    return np.clip(resized.numpy()[..., 0], 0.0, 1.0)


def overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The image (uint8, H x W x 1 or 3) under the map in the jet colours, as uint8 RGB."""
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    heat = matplotlib.colormaps["jet"](cam)[..., :3] * 255.0
    return np.round((1 - OVERLAY_ALPHA) * rgb + OVERLAY_ALPHA * heat).astype(np.uint8)
