"""The chapter's multi-layer convolutional network, in low-level TensorFlow (tf.Module, tf.nn, GradientTape).

conv 64 (3x3, relu) -> max-pool 2x2 -> conv 128 (3x3, relu) -> max-pool 2x2 -> dense 1024 relu ->
dropout 0.4 (only while training) -> logits; softmax cross-entropy, Adam. Layout "chapter" flattens the
last feature map into the dense layer, as the chapter does for 28x28 digits (5x5x128); "photo" averages
it over the image first (at 150x150 the flattened map would be 35x35x128 into 1024: 160 M weights). Each layer runs in its own
name scope, so TensorBoard's graph tab shows the layers, and every step returns each layer's output
for the chapter's summaries (mean, standard deviation, max, min, histogram). The trained variables
are then copied into the equivalent Keras model, which the stage saves and logs like every other.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from imgclf.models.perceptron import SCALE, accuracy, rescale
from imgclf.params import ConvnetParams

KERNEL = 3
POOL = 2
PHOTO_STRIDE = 2  # the photo layout's first convolution: a quarter of the work at 150x150
# Each step's layer summaries cover the first images of the batch, as many as keep the largest layer output
# (conv1's) within this many values: a whole batch of 100 digits (4.3 M), 14 photos at 150x150.
SUMMARY_VALUES = 5_000_000
# The layers whose outputs are summarised, in order (the name scopes of the graph).
LAYERS = ("conv1", "pool1", "conv2", "pool2", "dense", "logits")


def _glorot(shape: list[int], fan_in: int, fan_out: int, seed: list[int]) -> tf.Tensor:
    """tf.layers' default kernel initialiser (Glorot uniform), seeded and stateless."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return tf.random.stateless_uniform(shape, seed=seed, minval=-limit, maxval=limit)


class ConvNet(tf.Module):
    """The chapter's convnet as variables and tf.nn ops; `train_step` is one Adam step."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, config: ConvnetParams, seed: int):
        super().__init__(name="convnet")
        height, width, channels = input_shape
        first, second = config.filters
        if config.layout not in ("chapter", "photo"):
            raise ValueError(f"convnet.layout must be resolved to chapter or photo, got {config.layout!r}")
        self.layout = config.layout
        self.stride = 1 if self.layout == "chapter" else PHOTO_STRIDE
        side_h, side_w = _side(height, self.stride), _side(width, self.stride)
        if side_h < 1 or side_w < 1:
            raise ValueError(f"convnet: images of {height}x{width} are too small for two conv/pool blocks")
        # The layer outputs summarised each step: at most SUMMARY_VALUES values of the largest (conv1's).
        conv1_values = _side(height, self.stride, blocks=0) * _side(width, self.stride, blocks=0) * first
        self.summary_images = max(1, SUMMARY_VALUES // conv1_values)
        flat = side_h * side_w * second if self.layout == "chapter" else second
        kernel_area = KERNEL * KERNEL
        self.conv1_kernel = tf.Variable(_glorot([KERNEL, KERNEL, channels, first], kernel_area * channels,
                                                kernel_area * first, [seed, 1]), name="conv1/kernel")
        self.conv1_bias = tf.Variable(tf.zeros([first]), name="conv1/bias")
        self.conv2_kernel = tf.Variable(_glorot([KERNEL, KERNEL, first, second], kernel_area * first,
                                                kernel_area * second, [seed, 2]), name="conv2/kernel")
        self.conv2_bias = tf.Variable(tf.zeros([second]), name="conv2/bias")
        self.dense_kernel = tf.Variable(_glorot([flat, config.dense_units], flat, config.dense_units, [seed, 3]),
                                        name="dense/kernel")
        self.dense_bias = tf.Variable(tf.zeros([config.dense_units]), name="dense/bias")
        self.logits_kernel = tf.Variable(_glorot([config.dense_units, num_classes], config.dense_units, num_classes,
                                                 [seed, 4]), name="logits/kernel")
        self.logits_bias = tf.Variable(tf.zeros([num_classes]), name="logits/bias")
        self.dropout_rate = config.dropout
        self.seed = seed
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="steps")  # seeds each step's dropout
        self.optimizer = keras.optimizers.Adam(config.learning_rate)

    def parameters(self) -> list[tf.Variable]:
        """The trained variables, layer by layer (kernel, bias)."""
        return [self.conv1_kernel, self.conv1_bias, self.conv2_kernel, self.conv2_bias,
                self.dense_kernel, self.dense_bias, self.logits_kernel, self.logits_bias]

    def state(self) -> list:
        """Every variable training changes, in a fixed order: the parameters, the step counter (it seeds the
        dropout) and Adam's (built here if no step has run yet), as a checkpoint saves and restores them."""
        if not self.optimizer.built:
            self.optimizer.build(self.parameters())
        return [*self.parameters(), self.steps, *self.optimizer.variables]

    def forward(self, images: tf.Tensor, training: bool) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """(logits, every layer's output for the summaries: of the batch's first `summary_images`) of a uint8
        batch; dropout only when `training`."""
        outputs: dict[str, tf.Tensor] = {}
        with tf.name_scope("input"):
            x = rescale(images)
        with tf.name_scope("conv1"):
            x = outputs["conv1"] = tf.nn.relu(tf.nn.conv2d(x, self.conv1_kernel, self.stride, "VALID") + self.conv1_bias)
        with tf.name_scope("pool1"):
            x = outputs["pool1"] = tf.nn.max_pool2d(x, POOL, POOL, "VALID")
        with tf.name_scope("conv2"):
            x = outputs["conv2"] = tf.nn.relu(tf.nn.conv2d(x, self.conv2_kernel, 1, "VALID") + self.conv2_bias)
        with tf.name_scope("pool2"):
            x = outputs["pool2"] = tf.nn.max_pool2d(x, POOL, POOL, "VALID")
        with tf.name_scope("flatten"):
            x = tf.reshape(x, [tf.shape(x)[0], -1]) if self.layout == "chapter" else tf.reduce_mean(x, axis=[1, 2])
        with tf.name_scope("dense"):
            x = outputs["dense"] = tf.nn.relu(tf.matmul(x, self.dense_kernel) + self.dense_bias)
        if training and self.dropout_rate > 0:
            with tf.name_scope("dropout"):
                seed = tf.stack([tf.constant(self.seed, tf.int64), self.steps])
                x = tf.nn.experimental.stateless_dropout(x, self.dropout_rate, seed=seed)
        with tf.name_scope("logits"):
            logits = outputs["logits"] = tf.matmul(x, self.logits_kernel) + self.logits_bias
        return logits, {name: value[:self.summary_images] for name, value in outputs.items()}

    @tf.function
    def train_step(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
        """One Adam step; the batch's (loss, accuracy) before the update, and every layer's output."""
        with tf.GradientTape() as tape:
            logits, outputs = self.forward(images, training=True)
            with tf.name_scope("loss"):
                loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        with tf.name_scope("optimiser"):
            variables = self.parameters()
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            self.steps.assign_add(1)
        with tf.name_scope("accuracy"):
            hits = accuracy(labels, logits)
        return loss, hits, outputs

    @tf.function
    def batch_metrics(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
        """(loss, accuracy, every layer's output) of a batch without training (no dropout)."""
        logits, outputs = self.forward(images, training=False)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        return loss, accuracy(labels, logits), outputs

    def to_keras(self, input_shape: tuple[int, int, int]) -> keras.Model:
        """The same network as Keras layers carrying the trained variables: the model to save and log."""
        layers = keras.layers
        inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
        conv1 = layers.Conv2D(self.conv1_bias.shape[0], KERNEL, strides=self.stride, activation="relu", name="conv1")
        conv2 = layers.Conv2D(self.conv2_bias.shape[0], KERNEL, activation="relu", name="conv2")
        dense = layers.Dense(self.dense_bias.shape[0], activation="relu", name="dense")
        logits = layers.Dense(self.logits_bias.shape[0], activation="softmax", name="class")
        x = layers.Rescaling(SCALE, dtype="float32", name="rescale")(inputs)
        x = layers.MaxPooling2D(POOL, name="pool1")(conv1(x))
        x = layers.MaxPooling2D(POOL, name="pool2")(conv2(x))
        flatten = layers.Flatten(name="flatten") if self.layout == "chapter" else layers.GlobalAveragePooling2D(name="flatten")
        x = layers.Dropout(self.dropout_rate, name="dropout")(dense(flatten(x)))
        model = keras.Model(inputs, logits(x), name="convnet")
        values = [variable.numpy() for variable in self.parameters()]
        for index, layer in enumerate((conv1, conv2, dense, logits)):
            layer.set_weights(values[2 * index:2 * index + 2])
        return model


def _side(length: int, first_stride: int, blocks: int = 2) -> int:
    """A side after `blocks` (valid 3x3 conv, 2x2 max-pool) blocks, the first conv's stride `first_stride`
    (blocks=0: after the first conv alone): 28 -> 26 -> 13 -> 11 -> 5; photos 150 -> 74 -> 37 -> 35 -> 17."""
    length = (length - KERNEL) // first_stride + 1
    if blocks == 0:
        return length
    length //= POOL
    for _ in range(blocks - 1):
        length = (length - KERNEL + 1) // POOL
    return length
