"""Data-parallel training on one node: tf.distribute.MirroredStrategy over its devices, or none.

Multi-node training is deliberately not offered: Keras 3 on the TensorFlow backend fails in fit()
under MultiWorkerMirroredStrategy (keras-team/keras#20585, tensorflow#72388), and Ray Train's
TensorflowTrainer and Horovod inherit or add to that (ray-project/ray#47464). See docs/scaling.md.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from imgclf.params import TrainParams


def scope(settings: TrainParams) -> contextlib.AbstractContextManager:
    """`with distribution.scope(params.train):` around building, compiling and fitting the model.

    `none`: TensorFlow's default strategy (one device). `mirrored`: one replica per visible GPU, else
    per logical CPU device (a test, or a CPU-only user, configures those with
    tf.config.set_logical_device_configuration before TensorFlow initialises).
    """
    if settings.distribute != "mirrored":
        return tf.distribute.get_strategy().scope()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [device.name for device in gpus or tf.config.list_logical_devices("CPU")]
    # GPUs: TensorFlow's NCCL all-reduce; CPUs: a reduction on one device, in a fixed order.
    all_reduce = None if gpus else tf.distribute.ReductionToOneDevice()
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=all_reduce).scope()


def replicas() -> int:
    """Replicas of the strategy in scope now (1 outside any)."""
    return tf.distribute.get_strategy().num_replicas_in_sync
