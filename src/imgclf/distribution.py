"""Data-parallel training on one node: tf.distribute.MirroredStrategy over its devices, or none.

Multi-node training is deliberately not offered: Keras 3 on the TensorFlow backend fails in fit()
under MultiWorkerMirroredStrategy (keras-team/keras#20585, tensorflow#72388), and Ray Train's
TensorflowTrainer and Horovod inherit or add to that (ray-project/ray#47464). See README "Scaling out".
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from imgclf.params import TrainParams


def devices() -> list[str]:
    """The devices one replica each runs on: every visible GPU, else every logical CPU device.

    A test (or a CPU-only user) configures logical CPUs with
    tf.config.set_logical_device_configuration before TensorFlow initialises.
    """
    gpus = tf.config.list_logical_devices("GPU")
    return [device.name for device in (gpus or tf.config.list_logical_devices("CPU"))]


def strategy(settings: TrainParams) -> tf.distribute.Strategy:
    """`none`: TensorFlow's default strategy (one device); `mirrored`: one replica per device."""
    if settings.distribute == "mirrored":
        # Deterministic across runs: the all-reduce adds in a fixed order (no NCCL on CPU).
        return tf.distribute.MirroredStrategy(devices(), cross_device_ops=_cross_device_ops())
    return tf.distribute.get_strategy()


def _cross_device_ops() -> tf.distribute.CrossDeviceOps | None:
    if tf.config.list_logical_devices("GPU"):
        return None  # NCCL all-reduce, TensorFlow's choice on GPUs
    return tf.distribute.ReductionToOneDevice()


def scope(settings: TrainParams) -> contextlib.AbstractContextManager:
    """`with distribution.scope(params.train):` around building, compiling and fitting the model."""
    return strategy(settings).scope()


def replicas() -> int:
    """Replicas of the strategy in scope now (1 outside any)."""
    return tf.distribute.get_strategy().num_replicas_in_sync
