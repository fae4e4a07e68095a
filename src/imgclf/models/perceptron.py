"""The chapter's first model: softmax regression on flattened pixels, in low-level TensorFlow.

Variables, tf.GradientTape and a plain SGD update (no keras.Model in training: imgclf.training.lowlevel
runs the loop). The trained W, b are then wrapped in a tiny Keras model (Flatten + Dense softmax)
so the stage saves and logs it like every other model: uint8 pixels in, rescaled inside.
"""

from __future__ import annotations

import keras
import tensorflow as tf

SCALE = 1.0 / 255.0


class SoftmaxRegression(tf.Module):
    """logits = flatten(images) @ W + b, trained by plain SGD on the mean cross-entropy."""

    def __init__(self, num_features: int, num_classes: int, init_stddev: float, learning_rate: float, seed: int):
        super().__init__(name="softmax_regression")
        self.learning_rate = learning_rate
        initial = tf.random.stateless_normal([num_features, num_classes], seed=[seed, 0], stddev=init_stddev)
        self.weights = tf.Variable(initial, name="weights")
        self.biases = tf.Variable(tf.zeros([num_classes]), name="biases")

    def state(self) -> list[tf.Variable]:
        """Every variable training changes (plain SGD keeps no other state), as a checkpoint saves them."""
        return [self.weights, self.biases]

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        """Unnormalised class scores for a batch of images."""
        flat = tf.reshape(rescale(images), [tf.shape(images)[0], -1])
        return tf.matmul(flat, self.weights) + self.biases

    @tf.function
    def train_step(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
        """One SGD step on a batch; the batch's (loss, accuracy) before the update, and the variables
        the chapter summarises in TensorBoard every step (after the update)."""
        with tf.GradientTape() as tape:
            logits = self.logits(images)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        weights_gradient, biases_gradient = tape.gradient(loss, [self.weights, self.biases])
        self.weights.assign_sub(self.learning_rate * weights_gradient)
        self.biases.assign_sub(self.learning_rate * biases_gradient)
        return loss, accuracy(labels, logits), {"weights": tf.identity(self.weights), "biases": tf.identity(self.biases)}

    @tf.function
    def batch_metrics(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
        """(loss, accuracy, the summarised variables) of a batch without training."""
        logits = self.logits(images)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        return loss, accuracy(labels, logits), {"weights": tf.identity(self.weights), "biases": tf.identity(self.biases)}

    def to_keras(self, input_shape: tuple[int, int, int]) -> keras.Model:
        """The learned W, b as Flatten + Dense(softmax): a model to save and log with the keras flavor."""
        inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
        pixels = keras.layers.Rescaling(SCALE, dtype="float32", name="rescale")(inputs)
        dense = keras.layers.Dense(self.biases.shape[0], activation="softmax", name="class")
        model = keras.Model(inputs, dense(keras.layers.Flatten()(pixels)), name="softmax_regression")
        dense.set_weights([self.weights.numpy(), self.biases.numpy()])
        return model


def rescale(images: tf.Tensor) -> tf.Tensor:
    """uint8 pixels -> float32 in [0, 1], the same arithmetic as the saved model's Rescaling layer."""
    return tf.cast(images, tf.float32) * SCALE


def accuracy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """The share of a batch whose largest logit is its one-hot label's class."""
    hits = tf.equal(tf.argmax(logits, axis=1), tf.argmax(labels, axis=1))
    return tf.reduce_mean(tf.cast(hits, tf.float32))
